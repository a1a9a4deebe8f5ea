// Package spooltest is the conformance suite of spool.Store: what any
// backend (bbolt, JetStream) must do the same, run by each backend's tests
// with a constructor of its own.
//
// It may import engine/spool, engine/seal and ulid, and is imported by tests
// only.
package spooltest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// Factory opens a new, empty store with opts for t, closed when t ends.
// reopen closes it and opens the same store again with the same opts, as
// a restarted relay would.
type Factory func(t *testing.T, opts spool.Options) (s spool.Store, reopen func() spool.Store)

// Run runs every conformance test against the stores open makes.
func Run(t *testing.T, open Factory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open Factory)
	}{
		{"AppendReadBack", testAppendReadBack},
		{"CommittedInSeqOrder", testCommitted},
		{"Dedup", testDedup},
		{"DuplicateID", testDuplicateID},
		{"UpdateAndQueue", testUpdateAndQueue},
		{"LastSequence", testLastSequence},
		{"SurvivesReopen", testReopen},
		{"Quarantine", testQuarantine},
		{"Paused", testPaused},
		{"Poller", testPoller},
		{"Purge", testPurge},
		{"EraseKey", testEraseKey},
		{"PurgeDeadAndQuarantined", testPurgeDead},
		{"AdminEvents", testAdminEvents},
		{"Sealed", testSealed},
		{"ConcurrentAppends", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

// entropy makes ULIDs; guarded, since tests append concurrently.
var (
	entropyMu sync.Mutex
	entropy   = ulid.Monotonic(rand.Reader, 0)
)

// newID is a ULID of time at.
func newID(at time.Time) string {
	entropyMu.Lock()
	defer entropyMu.Unlock()
	return ulid.MustNew(ulid.Timestamp(at), entropy).String()
}

// event is an event of provider's key to dests, received at.
func event(provider, key string, at time.Time, dests ...string) *spool.Event {
	id := newID(at)
	return &spool.Event{ID: id, Provider: provider, Type: "loan.offer", Key: key, IdempotencyID: "idem-" + id,
		ReceivedAt: at.UTC(), Envelope: []byte(`{"type":"loan.offer","ssn":"19121212-1212"}`), Raw: []byte("raw-" + id),
		Destinations: dests}
}

func mustAppend(t *testing.T, s spool.Spool, ev *spool.Event) {
	t.Helper()
	dup, err := s.Append(context.Background(), ev, 0)
	if err != nil {
		t.Fatalf("append %s: %v", ev.ID, err)
	}
	if dup != "" {
		t.Fatalf("append %s: a duplicate of %s", ev.ID, dup)
	}
}

// pending lists the event ids queued for dest, in Pending order.
func pending(t *testing.T, s spool.Spool, dest string) []string {
	t.Helper()
	var out []string
	var last uint64
	err := s.Pending(dest, func(q *spool.QueuedDelivery) error {
		if q.Seq <= last {
			return fmt.Errorf("seq %d after %d: not in commit order", q.Seq, last)
		}
		last = q.Seq
		out = append(out, q.EventID.String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func testAppendReadBack(t *testing.T, open Factory) {
	s, _ := open(t, spool.Options{})
	now := time.Now()
	a := event("bank", "app-1", now, "crm", "audit", "crm")
	b := event("bank", "app-2", now, "crm")
	mustAppend(t, s, a)
	mustAppend(t, s, b)
	got, err := s.Event(a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != a.ID || got.Key != "app-1" || string(got.Raw) != string(a.Raw) || string(got.Envelope) != string(a.Envelope) ||
		!got.ReceivedAt.Equal(a.ReceivedAt) {
		t.Fatalf("event read back as %+v, want %+v", got, a)
	}
	if _, err := s.Event(newID(now)); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("unknown event: %v, want ErrNotFound", err)
	}
	d, err := s.Delivery("audit", a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != spool.Pending || d.Key != "app-1" || d.Provider != "bank" || len(d.Attempts) != 0 || d.Seq == 0 {
		t.Fatalf("new delivery %+v", d)
	}
	if _, err := s.Delivery("nowhere", a.ID); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("delivery to an unrouted destination: %v, want ErrNotFound", err)
	}
	if got := pending(t, s, "crm"); !slices.Equal(got, []string{a.ID, b.ID}) {
		t.Fatalf("crm queue %v, want %v", got, []string{a.ID, b.ID})
	}
	if got := pending(t, s, "audit"); !slices.Equal(got, []string{a.ID}) {
		t.Fatalf("audit queue %v", got)
	}
	ds, err := s.Deliveries(a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 || ds[0].Destination != "audit" || ds[1].Destination != "crm" {
		t.Fatalf("deliveries of a: %+v, want audit then crm (a destination listed twice gets one)", ds)
	}
	if _, err := s.Append(context.Background(), event("bank", "k", now, ""), 0); err == nil {
		t.Fatal("append with an empty destination name: no error")
	}
}

func testCommitted(t *testing.T, open Factory) {
	var mu sync.Mutex
	var refs []spool.Ref
	s, _ := open(t, spool.Options{Committed: func(r []spool.Ref) {
		mu.Lock()
		refs = append(refs, r...)
		mu.Unlock()
	}})
	now := time.Now()
	var ids []string
	for i := range 5 {
		ev := event("bank", "app-1", now, "crm", "audit")
		ev.Sequence = int64(i + 1)
		mustAppend(t, s, ev)
		ids = append(ids, ev.ID)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(refs) != 10 {
		t.Fatalf("%d refs committed, want 10", len(refs))
	}
	var crm []string
	var last uint64
	for _, r := range refs {
		if r.Destination == "crm" {
			if r.Seq <= last {
				t.Fatalf("refs not in seq order: %+v", refs)
			}
			last = r.Seq
			crm = append(crm, r.EventID)
		}
		if r.Provider != "bank" || r.Key != "app-1" || r.Sequence == 0 {
			t.Fatalf("ref %+v", r)
		}
	}
	if !slices.Equal(crm, ids) {
		t.Fatalf("crm refs %v, want %v", crm, ids)
	}
}

func testDedup(t *testing.T, open Factory) {
	s, _ := open(t, spool.Options{})
	ctx := context.Background()
	now := time.Now()
	first := event("bank", "app-1", now, "crm")
	first.IdempotencyID = "cb-1"
	if dup, err := s.Append(ctx, first, time.Hour); err != nil || dup != "" {
		t.Fatalf("first copy: dup %q, %v", dup, err)
	}
	second := event("bank", "app-1", now.Add(time.Minute), "crm")
	second.IdempotencyID = "cb-1"
	dup, err := s.Append(ctx, second, time.Hour)
	if err != nil || dup != first.ID {
		t.Fatalf("copy within the window: dup %q, %v; want %s", dup, err, first.ID)
	}
	if _, err := s.Event(second.ID); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("the copy was stored: %v", err)
	}
	other := event("insurer", "app-1", now, "crm")
	other.IdempotencyID = "cb-1"
	if dup, err := s.Append(ctx, other, time.Hour); err != nil || dup != "" {
		t.Fatalf("same id from another provider: dup %q, %v; want a new event", dup, err)
	}
	// A provider window shorter than any server-side one: a copy after it is new.
	short := event("bank", "app-1", now, "crm")
	short.IdempotencyID = "cb-short"
	if dup, err := s.Append(ctx, short, time.Second); err != nil || dup != "" {
		t.Fatalf("short window, first: %q, %v", dup, err)
	}
	later := event("bank", "app-1", now.Add(5*time.Second), "crm")
	later.IdempotencyID = "cb-short"
	if dup, err := s.Append(ctx, later, time.Second); err != nil || dup != "" {
		t.Fatalf("copy after a 1s window: dup %q, %v; want a new event", dup, err)
	}
	// dedup 0 disables the check.
	again := event("bank", "app-1", now, "crm")
	again.IdempotencyID = "cb-1"
	if dup, err := s.Append(ctx, again, 0); err != nil || dup != "" {
		t.Fatalf("dedup 0: dup %q, %v", dup, err)
	}
	if got := len(pending(t, s, "crm")); got != 5 {
		t.Fatalf("%d queued, want 5", got)
	}
}

func testDuplicateID(t *testing.T, open Factory) {
	s, _ := open(t, spool.Options{})
	ev := event("bank", "app-1", time.Now(), "crm")
	mustAppend(t, s, ev)
	copyEv := *ev
	copyEv.IdempotencyID = "another"
	if _, err := s.Append(context.Background(), &copyEv, 0); !errors.Is(err, spool.ErrExists) {
		t.Fatalf("same ULID twice: %v, want ErrExists", err)
	}
}

func testUpdateAndQueue(t *testing.T, open Factory) {
	s, _ := open(t, spool.Options{})
	ctx := context.Background()
	now := time.Now()
	a, b, c := event("bank", "k1", now, "crm"), event("bank", "k2", now, "crm"), event("bank", "k3", now, "crm")
	for _, ev := range []*spool.Event{a, b, c} {
		mustAppend(t, s, ev)
	}
	next := now.Add(time.Minute).UTC().Truncate(time.Millisecond)
	d, err := s.Delivery("crm", a.ID)
	if err != nil {
		t.Fatal(err)
	}
	d.Attempts = append(d.Attempts, spool.Attempt{At: now.UTC(), Status: 503, Error: "unavailable", DurationMS: 12, Response: "busy"})
	d.NextAt = next
	if err := s.Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	got, err := s.Delivery("crm", a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != spool.Pending || len(got.Attempts) != 1 || got.Attempts[0].Response != "busy" || !got.NextAt.Equal(next) {
		t.Fatalf("after a failed attempt: %+v", got)
	}
	var queued []*spool.Delivery
	if err := s.Queue("crm", func(d *spool.Delivery) error { queued = append(queued, d); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(queued) != 3 || queued[0].EventID != a.ID || len(queued[0].Attempts) != 1 {
		t.Fatalf("queue %+v", queued)
	}
	var nextAt time.Time
	_ = s.Pending("crm", func(q *spool.QueuedDelivery) error {
		if q.EventID.String() == a.ID {
			nextAt = q.NextAt
		}
		return nil
	})
	if !nextAt.Equal(next) {
		t.Fatalf("pending entry's next attempt %v, want %v", nextAt, next)
	}
	got.Status = spool.Delivered
	if err := s.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	bd, _ := s.Delivery("crm", b.ID)
	bd.Status = spool.Dead
	if err := s.Update(ctx, bd); err != nil {
		t.Fatal(err)
	}
	if q := pending(t, s, "crm"); !slices.Equal(q, []string{b.ID, c.ID}) {
		t.Fatalf("queue after delivered and dead: %v, want the dead one kept", q)
	}
	cd, _ := s.Delivery("crm", c.ID)
	cd.Status = spool.Skipped
	if err := s.Update(ctx, cd); err != nil {
		t.Fatal(err)
	}
	// An operator's retry puts a dead delivery back.
	bd.Status, bd.AttemptsBefore = spool.Pending, len(bd.Attempts)
	if err := s.Update(ctx, bd); err != nil {
		t.Fatal(err)
	}
	if q := pending(t, s, "crm"); !slices.Equal(q, []string{b.ID}) {
		t.Fatalf("queue after skip and retry: %v", q)
	}
	missing := &spool.Delivery{EventID: newID(now), Destination: "crm", Status: spool.Delivered}
	if err := s.Update(ctx, missing); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("update of an unknown delivery: %v, want ErrNotFound", err)
	}
	if err := s.Update(ctx, &spool.Delivery{EventID: a.ID, Destination: "elsewhere", Status: spool.Delivered}); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("update to an unrouted destination: %v, want ErrNotFound", err)
	}
	if err := s.Update(ctx, &spool.Delivery{EventID: a.ID, Destination: "crm", Status: "lost"}); err == nil {
		t.Fatal("unknown status: no error")
	}
}

func testLastSequence(t *testing.T, open Factory) {
	s, _ := open(t, spool.Options{})
	ctx := context.Background()
	now := time.Now()
	var evs []*spool.Event
	for i := range 3 {
		ev := event("bank", "app-1", now, "crm")
		ev.Sequence = int64(i + 1)
		mustAppend(t, s, ev)
		evs = append(evs, ev)
	}
	if n, err := s.LastSequence("crm", "bank", "app-1"); err != nil || n != 0 {
		t.Fatalf("before any release: %d, %v", n, err)
	}
	for _, i := range []int{1, 0} { // released out of order: the highest stays
		d, _ := s.Delivery("crm", evs[i].ID)
		d.Status = spool.Delivered
		if err := s.Update(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.LastSequence("crm", "bank", "app-1"); err != nil || n != 2 {
		t.Fatalf("last sequence %d, %v; want 2", n, err)
	}
	if n, _ := s.LastSequence("crm", "insurer", "app-1"); n != 0 {
		t.Fatalf("another provider's key: %d, want 0", n)
	}
}

func testReopen(t *testing.T, open Factory) {
	s, reopen := open(t, spool.Options{})
	ctx := context.Background()
	now := time.Now()
	a, b := event("bank", "k", now, "crm"), event("bank", "k", now, "crm")
	a.IdempotencyID = "cb-9"
	if _, err := s.Append(ctx, a, time.Hour); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, b)
	d, _ := s.Delivery("crm", a.ID)
	d.Status = spool.Delivered
	if err := s.Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPaused("crm", true); err != nil {
		t.Fatal(err)
	}
	s = reopen()
	if q := pending(t, s, "crm"); !slices.Equal(q, []string{b.ID}) {
		t.Fatalf("queue after reopen %v, want %v", q, []string{b.ID})
	}
	copyEv := event("bank", "k", now.Add(time.Second), "crm")
	copyEv.IdempotencyID = "cb-9"
	if dup, err := s.Append(ctx, copyEv, time.Hour); err != nil || dup != a.ID {
		t.Fatalf("dedup after reopen: %q, %v", dup, err)
	}
	if p, err := s.Paused(); err != nil || !p["crm"] {
		t.Fatalf("paused after reopen: %v, %v", p, err)
	}
}
