package spooltest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/seal"
	"github.com/hookrelay/hookrelay/engine/spool"
)

func quarantined(at time.Time, provider, key string) *spool.Quarantined {
	return &spool.Quarantined{ID: newID(at), Provider: provider, Key: key, Reason: "unmapped", ReceivedAt: at.UTC(), Method: "POST",
		Path: "/in/" + provider, Header: map[string][]string{"Content-Type": {"application/json"}}, Body: []byte(`{"ssn":"19121212-1212"}`)}
}

func testQuarantine(t *testing.T, open Factory) {
	s, _ := open(t, spool.Options{})
	ctx := context.Background()
	now := time.Now()
	var ids []string
	for i := range 4 {
		q := quarantined(now.Add(time.Duration(i)*time.Millisecond), "bank", "")
		if err := s.Quarantine(ctx, q); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, q.ID)
	}
	list, err := s.QuarantineList("", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != ids[3] || list[1].ID != ids[2] {
		t.Fatalf("first page %v", list)
	}
	list, err = s.QuarantineList(ids[2], 0)
	if err != nil || len(list) != 2 || list[0].ID != ids[1] || list[1].ID != ids[0] {
		t.Fatalf("page after %s: %v, %v", ids[2], list, err)
	}
	list, err = s.QuarantineOldest("", 3)
	if err != nil || len(list) != 3 || list[0].ID != ids[0] || list[2].ID != ids[2] {
		t.Fatalf("oldest first: %v, %v", list, err)
	}
	list, err = s.QuarantineOldest(ids[2], 0)
	if err != nil || len(list) != 1 || list[0].ID != ids[3] {
		t.Fatalf("oldest first after %s: %v, %v", ids[2], list, err)
	}
	q, err := s.Quarantined(ids[1])
	if err != nil || string(q.Body) != `{"ssn":"19121212-1212"}` || q.Header["Content-Type"][0] != "application/json" {
		t.Fatalf("read back %+v, %v", q, err)
	}
	if err := s.DeleteQuarantined(ids[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Quarantined(ids[1]); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("after delete: %v, want ErrNotFound", err)
	}
}

func testPaused(t *testing.T, open Factory) {
	s, _ := open(t, spool.Options{})
	for _, d := range []string{"crm", "audit log"} {
		if err := s.SetPaused(d, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetPaused("crm", false); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPaused("never-paused", false); err != nil {
		t.Fatal(err)
	}
	p, err := s.Paused()
	if err != nil || len(p) != 1 || !p["audit log"] {
		t.Fatalf("paused %v, %v", p, err)
	}
}

func testPoller(t *testing.T, open Factory) {
	s, _ := open(t, spool.Options{})
	ctx := context.Background()
	sts, err := s.PollTrack(ctx, []spool.TrackedKey{{Provider: "bank", Key: "b"}, {Provider: "bank", Key: "a"}, {Provider: "bank", Key: "done", Final: true}})
	if err != nil || len(sts) != 3 || sts[0].Since.IsZero() || !sts[2].Final {
		t.Fatalf("track: %+v, %v", sts, err)
	}
	since := sts[0].Since
	st := spool.PollState{Last: "sum", LastType: "loan.offer", Errors: 2, NextAt: time.Now().Add(time.Minute).UTC().Truncate(time.Millisecond)}
	if err := s.PollSave(ctx, "bank", "b", &st); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PollTrack(ctx, []spool.TrackedKey{{Provider: "bank", Key: "a", Final: true}}); err != nil {
		t.Fatal(err)
	}
	var seen []string
	err = s.PollKeys("bank", func(key string, st *spool.PollState) error {
		seen = append(seen, key)
		if key == "b" && (st.Last != "sum" || st.Errors != 2 || !st.Since.Equal(since)) {
			return fmt.Errorf("state of b %+v", st)
		}
		return nil
	})
	if err != nil || !slices.Equal(seen, []string{"b"}) {
		t.Fatalf("poll keys %v, %v; want only b (a and done are final)", seen, err)
	}
	// Final sticks through a save that does not say so.
	if err := s.PollSave(ctx, "bank", "a", &spool.PollState{}); err != nil {
		t.Fatal(err)
	}
	sts, _ = s.PollTrack(ctx, []spool.TrackedKey{{Provider: "bank", Key: "a"}})
	if !sts[0].Final {
		t.Fatal("a save unset Final")
	}
	if _, err := s.PollTrack(ctx, []spool.TrackedKey{{Provider: "", Key: "x"}}); err == nil {
		t.Fatal("empty provider: no error")
	}
}

func testPurge(t *testing.T, open Factory) {
	s, _ := open(t, spool.Options{})
	ctx := context.Background()
	old := time.Now().Add(-48 * time.Hour)
	delivered, pendingEv, recent := event("bank", "k", old, "crm"), event("bank", "k", old, "crm"), event("bank", "k", time.Now(), "crm")
	delivered.IdempotencyID = "cb-old"
	if _, err := s.Append(ctx, delivered, time.Hour); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, pendingEv)
	mustAppend(t, s, recent)
	for _, ev := range []*spool.Event{delivered, recent} {
		d, _ := s.Delivery("crm", ev.ID)
		d.Status = spool.Delivered
		if err := s.Update(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.Purge(time.Now().Add(-24 * time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("purge: %d, %v; want 1", n, err)
	}
	if _, err := s.Event(delivered.ID); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("purged event: %v", err)
	}
	for _, ev := range []*spool.Event{pendingEv, recent} {
		if _, err := s.Event(ev.ID); err != nil {
			t.Fatalf("kept event %s: %v", ev.ID, err)
		}
	}
	// Its dedup entry went with it: the same id is a new event now.
	again := event("bank", "k", time.Now(), "crm")
	again.IdempotencyID = "cb-old"
	if dup, err := s.Append(ctx, again, 100*time.Hour); err != nil || dup != "" {
		t.Fatalf("after purge: dup %q, %v", dup, err)
	}
}

// eraser and deadPurger are what the engine asks a store for besides Store.
type (
	eraser interface {
		EraseKey(ctx context.Context, provider, key string) (spool.Erased, error)
	}
	deadPurger interface {
		PurgeDead(ctx context.Context, cutoff time.Time) (spool.Erased, error)
		PurgeQuarantined(ctx context.Context, cutoff time.Time) (int, error)
	}
)

func testEraseKey(t *testing.T, open Factory) {
	s, _ := open(t, spool.Options{})
	er, ok := s.(eraser)
	if !ok {
		t.Fatal("the store cannot erase by key")
	}
	ctx := context.Background()
	now := time.Now()
	a, b, keep := event("bank", "app-1", now, "crm", "audit"), event("bank", "app-1", now, "crm"), event("bank", "app-2", now, "crm")
	a.IdempotencyID = "cb-a"
	if _, err := s.Append(ctx, a, time.Hour); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, b)
	mustAppend(t, s, keep)
	d, _ := s.Delivery("crm", a.ID)
	d.Status = spool.Delivered
	_ = s.Update(ctx, d)
	d, _ = s.Delivery("audit", a.ID)
	d.Status = spool.Dead
	_ = s.Update(ctx, d)
	if err := s.Quarantine(ctx, quarantined(now, "bank", "app-1")); err != nil {
		t.Fatal(err)
	}
	unmapped := quarantined(now, "bank", "")
	if err := s.Quarantine(ctx, unmapped); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PollTrack(ctx, []spool.TrackedKey{{Provider: "bank", Key: "app-1"}}); err != nil {
		t.Fatal(err)
	}
	out, err := er.EraseKey(ctx, "bank", "app-1")
	if err != nil {
		t.Fatal(err)
	}
	if out.Events != 2 || out.Deliveries != 3 || out.Pending != 2 || len(out.Dropped) != 2 || out.Quarantined != 1 ||
		out.PollStates != 1 || out.Dedup != 2 {
		t.Fatalf("erased %+v", out)
	}
	dead := 0
	for _, d := range out.Dropped {
		if d.Dead {
			dead++
		}
	}
	if dead != 1 {
		t.Fatalf("dropped %+v, want one dead", out.Dropped)
	}
	for _, ev := range []*spool.Event{a, b} {
		if _, err := s.Event(ev.ID); !errors.Is(err, spool.ErrNotFound) {
			t.Fatalf("erased event %s: %v", ev.ID, err)
		}
	}
	if q := pending(t, s, "crm"); !slices.Equal(q, []string{keep.ID}) {
		t.Fatalf("queue after erasure %v", q)
	}
	if _, err := s.Quarantined(unmapped.ID); err != nil {
		t.Fatalf("a request without the key was erased: %v", err)
	}
	if sts, _ := s.PollTrack(ctx, []spool.TrackedKey{{Provider: "bank", Key: "other"}}); len(sts) != 1 {
		t.Fatal("poller broken after erasure")
	}
}

func testPurgeDead(t *testing.T, open Factory) {
	s, _ := open(t, spool.Options{})
	dp, ok := s.(deadPurger)
	if !ok {
		t.Fatal("the store cannot purge dead events")
	}
	ctx := context.Background()
	old := time.Now().Add(-48 * time.Hour)
	dead, mixed := event("bank", "k", old, "crm"), event("bank", "k", old, "crm", "audit")
	mustAppend(t, s, dead)
	mustAppend(t, s, mixed)
	for _, x := range []struct {
		ev   *spool.Event
		dest string
	}{{dead, "crm"}, {mixed, "crm"}} {
		d, _ := s.Delivery(x.dest, x.ev.ID)
		d.Status = spool.Dead
		if err := s.Update(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	out, err := dp.PurgeDead(ctx, time.Now().Add(-24*time.Hour))
	if err != nil || out.Events != 1 || len(out.Dropped) != 1 || !out.Dropped[0].Dead || out.Dropped[0].EventID != dead.ID {
		t.Fatalf("purge dead: %+v, %v; want the dead event only (the other has a pending delivery)", out, err)
	}
	if _, err := s.Event(mixed.ID); err != nil {
		t.Fatal(err)
	}
	oldQ, newQ := quarantined(old, "bank", ""), quarantined(time.Now(), "bank", "")
	_ = s.Quarantine(ctx, oldQ)
	_ = s.Quarantine(ctx, newQ)
	n, err := dp.PurgeQuarantined(ctx, time.Now().Add(-24*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("purge quarantined: %d, %v", n, err)
	}
	if _, err := s.Quarantined(newQ.ID); err != nil {
		t.Fatal(err)
	}
}

func testAdminEvents(t *testing.T, open Factory) {
	s, _ := open(t, spool.Options{})
	now := time.Now()
	var ids []string
	for i := range 5 {
		ev := event("bank", fmt.Sprint("k", i), now.Add(time.Duration(i)*time.Millisecond), "crm")
		mustAppend(t, s, ev)
		ids = append(ids, ev.ID)
	}
	var got []string
	err := s.Events("", 0, func(ev *spool.Event, ds []*spool.Delivery) bool {
		if len(ds) != 1 || ds[0].Destination != "crm" {
			t.Errorf("deliveries of %s: %+v", ev.ID, ds)
		}
		got = append(got, ev.ID)
		return len(got) < 2
	})
	if err != nil || !slices.Equal(got, []string{ids[4], ids[3]}) {
		t.Fatalf("first page %v, %v", got, err)
	}
	got = nil
	err = s.Events(ids[3], 2, func(ev *spool.Event, _ []*spool.Delivery) bool {
		got = append(got, ev.ID)
		return true
	})
	if err != nil || !slices.Equal(got, []string{ids[2], ids[1]}) {
		t.Fatalf("page after %s, 2 scanned: %v, %v", ids[3], got, err)
	}
}

// Keystore opens a keystore with a new master key in a temporary directory,
// the Sealer of the privacy tests.
func Keystore(t *testing.T) *seal.Keystore {
	t.Helper()
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	mk, err := seal.ParseMasterKey(base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		t.Fatal(err)
	}
	ks, err := seal.Open(filepath.Join(t.TempDir(), "keys.db"), mk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ks.Close() })
	return ks
}

func testSealed(t *testing.T, open Factory) {
	ks := Keystore(t)
	s, reopen := open(t, spool.Options{Sealer: ks})
	ctx := context.Background()
	ev := event("bank", "app-1", time.Now(), "crm")
	mustAppend(t, s, ev)
	d, _ := s.Delivery("crm", ev.ID)
	d.Attempts = []spool.Attempt{{At: time.Now().UTC(), Status: 500, Response: "ssn 19121212-1212 refused"}}
	if err := s.Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	s = reopen()
	got, err := s.Event(ev.ID)
	if err != nil || string(got.Envelope) != string(ev.Envelope) {
		t.Fatalf("sealed event read back: %v, %v", got, err)
	}
	d, err = s.Delivery("crm", ev.ID)
	if err != nil || len(d.Attempts) != 1 || d.Attempts[0].Response != "ssn 19121212-1212 refused" {
		t.Fatalf("sealed delivery read back: %+v, %v", d, err)
	}
	if err := ks.Destroy("bank", "app-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Event(ev.ID); err == nil {
		t.Fatal("event opened after its data key was destroyed")
	}
}

func testConcurrent(t *testing.T, open Factory) {
	s, _ := open(t, spool.Options{})
	const writers, each = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				ev := event("bank", fmt.Sprint("key-", w), time.Now(), "crm")
				if _, err := s.Append(context.Background(), ev, time.Hour); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := len(pending(t, s, "crm")); n != writers*each {
		t.Fatalf("%d queued after concurrent appends", n)
	}
}
