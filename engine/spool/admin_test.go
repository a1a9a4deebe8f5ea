package spool

import (
	"context"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
)

func TestEventsNewestFirstWithCursor(t *testing.T) {
	b := mustOpen(t)
	base := time.Now().Add(-time.Hour)
	var ids []string
	for i := range 600 { // more than one read chunk
		ev := event(base.Add(time.Duration(i)*time.Millisecond), "", "broker", "alerts")
		mustAppend(t, b, ev)
		ids = append(ids, ev.ID)
	}
	var got []string
	must(t, b.Events("", 0, func(ev *Event, ds []*Delivery) bool {
		if len(ds) != 2 || ds[0].EventID != ev.ID {
			t.Fatalf("event %s has deliveries %+v", ev.ID, ds)
		}
		got = append(got, ev.ID)
		return len(got) < 10
	}))
	if len(got) != 10 || got[0] != ids[599] || got[9] != ids[590] {
		t.Fatalf("first page %v", got)
	}
	var page2 []string
	must(t, b.Events(got[9], 0, func(ev *Event, _ []*Delivery) bool {
		page2 = append(page2, ev.ID)
		return true
	}))
	if len(page2) != 590 || page2[0] != ids[589] || page2[589] != ids[0] {
		t.Fatalf("after the cursor: %d events, first %s", len(page2), page2[0])
	}
	n := 0
	must(t, b.Events("", 300, func(*Event, []*Delivery) bool { n++; return true }))
	if n != 300 {
		t.Errorf("scan bound: visited %d, want 300", n)
	}
}

func TestAttemptsBeforeAndDeliveries(t *testing.T) {
	b := mustOpen(t)
	ev := event(time.Now(), "", "broker")
	mustAppend(t, b, ev)
	d, err := b.Delivery("broker", ev.ID)
	must(t, err)
	d.Status, d.Attempts = Dead, []Attempt{{Status: 500}, {Status: 500}}
	mustUpdate(t, b, d)
	d.Status, d.AttemptsBefore = Pending, 2 // an operator's retry
	mustUpdate(t, b, d)
	b = reopen(t, b)
	ds, err := b.Deliveries(ev.ID)
	must(t, err)
	if len(ds) != 1 || ds[0].AttemptsBefore != 2 || ds[0].Tries() != 0 || len(ds[0].Attempts) != 2 || ds[0].Status != Pending {
		t.Errorf("after retry: %+v", ds)
	}
	if q := queued(t, b, "broker"); len(q) != 1 {
		t.Errorf("a requeued delivery is not queued: %v", q)
	}
}

func TestQuarantineListAndDelete(t *testing.T) {
	b := mustOpen(t)
	var ids []string
	for i := range 5 {
		q := &Quarantined{ID: ulid.MustNewDefault(time.Now().Add(time.Duration(i) * time.Millisecond)).String(), Provider: "acme", Reason: "r"}
		must(t, b.Quarantine(context.Background(), q))
		ids = append(ids, q.ID)
	}
	page, err := b.QuarantineList("", 2)
	must(t, err)
	if len(page) != 2 || page[0].ID != ids[4] || page[1].ID != ids[3] {
		t.Fatalf("first page %+v", page)
	}
	rest, err := b.QuarantineList(page[1].ID, 0)
	must(t, err)
	if len(rest) != 3 || rest[0].ID != ids[2] {
		t.Fatalf("rest %+v", rest)
	}
	must(t, b.DeleteQuarantined(ids[4]))
	all, _ := b.QuarantineList("", 0)
	if len(all) != 4 || all[0].ID != ids[3] {
		t.Errorf("after delete %+v", all)
	}
}

func TestPausedSurvivesRestart(t *testing.T) {
	b := mustOpen(t)
	must(t, b.SetPaused("broker", true))
	must(t, b.SetPaused("alerts", true))
	must(t, b.SetPaused("alerts", false))
	b = reopen(t, b)
	p, err := b.Paused()
	must(t, err)
	if len(p) != 1 || !p["broker"] {
		t.Errorf("paused %v", p)
	}
}

func TestLastSequence(t *testing.T) {
	b := mustOpen(t)
	for _, seq := range []int64{2, 1, 3} {
		ev := event(time.Now(), "", "broker")
		ev.Sequence = seq
		mustAppend(t, b, ev)
		d, err := b.Delivery("broker", ev.ID)
		must(t, err)
		d.Status = Delivered
		mustUpdate(t, b, d)
	}
	b = reopen(t, b)
	if got, err := b.LastSequence("broker", "acme", "loan-1"); err != nil || got != 3 {
		t.Errorf("LastSequence = %d, %v; want 3", got, err)
	}
	if got, _ := b.LastSequence("alerts", "acme", "loan-1"); got != 0 {
		t.Errorf("another destination: %d", got)
	}
	// Keys are scoped by provider (SPEC 5.2): another lender's loan-1 is
	// another key.
	if got, _ := b.LastSequence("broker", "other", "loan-1"); got != 0 {
		t.Errorf("another provider's key: %d", got)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
