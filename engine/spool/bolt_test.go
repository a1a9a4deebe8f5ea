package spool

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/hookrelay/hookrelay/engine/internal/benchkit"
)

// mustOpen opens a spool in a fresh directory. At cleanup it closes it,
// reopens the file and runs the consistency check, so every test ends with
// Check on what it left behind.
func mustOpen(t testing.TB, opts ...Options) *Bolt {
	t.Helper()
	return mustOpenPath(t, filepath.Join(t.TempDir(), "data", "spool.db"), opts...)
}

func mustOpenPath(t testing.TB, path string, opts ...Options) *Bolt {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	b, err := Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		b, err := Open(path, Options{})
		if err != nil {
			t.Fatalf("reopen for check: %v", err)
		}
		defer func() { must(t, b.Close()) }()
		if err := b.Check(); err != nil {
			t.Errorf("check: %v", err)
		}
	})
	return b
}

// reopen closes b and opens its file again.
func reopen(t *testing.T, b *Bolt, opts ...Options) *Bolt {
	t.Helper()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	return mustOpenPath(t, b.path, opts...)
}

// event returns an event received at, with a ULID of that time.
func event(at time.Time, idem string, dests ...string) *Event {
	return &Event{
		ID:            ulid.MustNewDefault(at).String(),
		Provider:      "acme",
		Type:          "payment.settled",
		Key:           "loan-1",
		IdempotencyID: idem,
		ReceivedAt:    at.UTC().Round(0),
		Envelope:      []byte(`{"type":"payment.settled"}`),
		Raw:           []byte(`{"id":"evt_1"}`),
		Destinations:  dests,
	}
}

func mustAppend(t testing.TB, b *Bolt, ev *Event) {
	t.Helper()
	dup, err := b.Append(context.Background(), ev, time.Hour)
	if err != nil || dup != "" {
		t.Fatalf("append %s: dupOf %q, %v", ev.ID, dup, err)
	}
}

// appendAll appends n events from newEvent concurrently, so that they share
// commits, and returns them.
func appendAll(t *testing.T, b *Bolt, n int, newEvent func() *Event) []*Event {
	t.Helper()
	evs := make([]*Event, n)
	var wg sync.WaitGroup
	for i := range evs {
		evs[i] = newEvent()
		wg.Go(func() {
			if _, err := b.Append(context.Background(), evs[i], 0); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	return evs
}

func mustUpdate(t *testing.T, b *Bolt, d *Delivery) {
	t.Helper()
	if err := b.Update(context.Background(), d); err != nil {
		t.Fatalf("update %s/%s: %v", d.EventID, d.Destination, err)
	}
}

// queued returns the event ids in dest's queue, in order.
func queued(t *testing.T, b *Bolt, dest string) []string {
	t.Helper()
	var ids []string
	err := b.Queue(dest, func(d *Delivery) error {
		ids = append(ids, d.EventID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func countEvents(t testing.TB, b *Bolt) int {
	t.Helper()
	n := 0
	err := b.view(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketEvents).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAppendReadBack(t *testing.T) {
	b := mustOpen(t)
	ev := event(time.Now(), "idem-1", "ledger", "crm")
	ev.Sequence = 7
	mustAppend(t, b, ev)

	got, err := b.Event(ev.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ev) {
		t.Errorf("Event = %+v, want %+v", got, ev)
	}
	for _, dest := range ev.Destinations {
		d, err := b.Delivery(dest, ev.ID)
		if err != nil {
			t.Fatal(err)
		}
		if d.Status != Pending || d.Seq == 0 || d.Key != "loan-1" || d.Sequence != 7 || d.EventID != ev.ID || d.Destination != dest {
			t.Errorf("Delivery(%s) = %+v", dest, d)
		}
	}
	if _, err := b.Event(ulid.Make().String()); !errors.Is(err, ErrNotFound) {
		t.Errorf("Event(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := b.Delivery("nowhere", ev.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delivery(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := b.Append(context.Background(), &Event{ID: "not-a-ulid"}, 0); err == nil {
		t.Error("Append accepted a malformed id")
	}
	if b.Size() <= 0 {
		t.Errorf("Size = %d", b.Size())
	}
}

func TestAppendNoDestinations(t *testing.T) {
	b := mustOpen(t)
	ev := event(time.Now(), "")
	mustAppend(t, b, ev)
	if _, err := b.Event(ev.ID); err != nil {
		t.Fatal(err)
	}
}

func TestCommittedOrder(t *testing.T) {
	var mu sync.Mutex
	var refs []Ref
	hook := func(r []Ref) {
		mu.Lock()
		refs = append(refs, r...)
		mu.Unlock()
	}
	b := mustOpen(t, Options{Committed: hook, MaxBatch: 16})
	var wg sync.WaitGroup
	for i := range 300 {
		dests := []string{"ledger", "crm"}
		if i%3 == 0 {
			dests = dests[:1]
		}
		wg.Go(func() {
			if _, err := b.Append(context.Background(), event(time.Now(), fmt.Sprint("idem-", i), dests...), 0); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(refs) != 300+200 {
		t.Fatalf("hook saw %d refs, want 500", len(refs))
	}
	want := map[string][]string{}
	for i, r := range refs {
		if i > 0 && r.Seq < refs[i-1].Seq {
			t.Fatalf("ref %d: seq %d after %d", i, r.Seq, refs[i-1].Seq)
		}
		want[r.Destination] = append(want[r.Destination], r.EventID)
	}
	b = reopen(t, b)
	for dest, ids := range want {
		if got := queued(t, b, dest); !reflect.DeepEqual(got, ids) {
			t.Errorf("Queue(%s) order differs from the Committed order", dest)
		}
	}
}

func TestUpdate(t *testing.T) {
	b := mustOpen(t)
	evs := []*Event{event(time.Now(), "a", "ledger"), event(time.Now(), "b", "ledger"), event(time.Now(), "c", "ledger")}
	for _, ev := range evs {
		mustAppend(t, b, ev)
	}
	at := time.Now().UTC().Truncate(time.Millisecond)
	attempts := []Attempt{
		{At: at, Status: 503, DurationMS: 12, Response: "busy"},
		{At: at.Add(time.Second), Error: "connection refused"},
	}
	next := at.Add(time.Minute)

	mustUpdate(t, b, &Delivery{EventID: evs[0].ID, Destination: "ledger", Status: Delivered, Attempts: attempts[:1]})
	mustUpdate(t, b, &Delivery{EventID: evs[1].ID, Destination: "ledger", Status: Dead, Attempts: attempts})
	mustUpdate(t, b, &Delivery{EventID: evs[2].ID, Destination: "ledger", Status: Pending, Attempts: attempts, NextAt: next})
	if got, want := queued(t, b, "ledger"), []string{evs[1].ID, evs[2].ID}; !reflect.DeepEqual(got, want) {
		t.Errorf("queue = %v, want %v (delivered gone, dead held)", got, want)
	}

	b = reopen(t, b)
	d, err := b.Delivery("ledger", evs[2].ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.Attempts, attempts) || !d.NextAt.Equal(next) || d.Status != Pending {
		t.Errorf("after reopen: %+v", d)
	}

	// An operator's skip releases the dead one; a retry of a skipped one requeues it.
	mustUpdate(t, b, &Delivery{EventID: evs[1].ID, Destination: "ledger", Status: Skipped, Attempts: attempts})
	if got := queued(t, b, "ledger"); !reflect.DeepEqual(got, []string{evs[2].ID}) {
		t.Errorf("queue after skip = %v", got)
	}
	mustUpdate(t, b, &Delivery{EventID: evs[1].ID, Destination: "ledger", Status: Pending})
	if got := queued(t, b, "ledger"); !reflect.DeepEqual(got, []string{evs[1].ID, evs[2].ID}) {
		t.Errorf("queue after requeue = %v, want original order", got)
	}

	err = b.Update(context.Background(), &Delivery{EventID: ulid.Make().String(), Destination: "ledger", Status: Delivered})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Update(unknown) = %v, want ErrNotFound", err)
	}
	if err := b.Update(context.Background(), &Delivery{EventID: evs[0].ID, Destination: "ledger", Status: "lost"}); err == nil {
		t.Error("Update accepted an unknown status")
	}
}

func TestQueueManyChunks(t *testing.T) {
	var want []string // in commit order
	b := mustOpen(t, Options{Committed: func(refs []Ref) {
		for _, r := range refs {
			want = append(want, r.EventID)
		}
	}})
	appendAll(t, b, queueChunk*2+3, func() *Event { return event(time.Now(), "", "ledger") })
	if got := queued(t, b, "ledger"); !reflect.DeepEqual(got, want) {
		t.Errorf("queue has %d entries, want %d in order", len(got), len(want))
	}
	stop := errors.New("stop")
	n := 0
	err := b.Queue("ledger", func(*Delivery) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("Queue did not stop at fn's error: n=%d err=%v", n, err)
	}
}

func TestPurge(t *testing.T) {
	b := mustOpen(t)
	now := time.Now()
	old, cutoff := now.Add(-48*time.Hour), now.Add(-24*time.Hour)

	oldFinal := event(old, "old-final", "ledger", "crm")
	oldPending := event(old, "old-pending", "ledger")
	oldDead := event(old, "old-dead", "ledger")
	oldBare := event(old, "") // no destinations: nothing to wait for
	newFinal := event(now, "new-final", "ledger")
	for _, ev := range []*Event{oldFinal, oldPending, oldDead, oldBare, newFinal} {
		mustAppend(t, b, ev)
	}
	// Enough old, final events to take several chunks.
	filler := appendAll(t, b, purgeChunk*2+10, func() *Event { return event(old.Add(time.Minute), "") })
	mustUpdate(t, b, &Delivery{EventID: oldFinal.ID, Destination: "ledger", Status: Delivered})
	mustUpdate(t, b, &Delivery{EventID: oldFinal.ID, Destination: "crm", Status: Skipped})
	mustUpdate(t, b, &Delivery{EventID: oldDead.ID, Destination: "ledger", Status: Dead})
	mustUpdate(t, b, &Delivery{EventID: newFinal.ID, Destination: "ledger", Status: Delivered})

	n, err := b.Purge(cutoff)
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 + len(filler); n != want {
		t.Errorf("Purge deleted %d, want %d", n, want)
	}
	for _, ev := range []*Event{oldFinal, oldBare, filler[0], filler[len(filler)-1]} {
		if _, err := b.Event(ev.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("event %s survived: %v", ev.ID, err)
		}
	}
	if _, err := b.Delivery("crm", oldFinal.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("delivery of a purged event survived: %v", err)
	}
	for _, ev := range []*Event{oldPending, oldDead, newFinal} {
		if _, err := b.Event(ev.ID); err != nil {
			t.Errorf("event %s was purged: %v", ev.ID, err)
		}
	}

	// Old dedup entries are gone; the new one still catches a repeat.
	ctx := context.Background()
	if dup, err := b.Append(ctx, event(now, "old-final"), 365*24*time.Hour); err != nil || dup != "" {
		t.Errorf("old idem entry survived: dupOf %q, %v", dup, err)
	}
	if dup, err := b.Append(ctx, event(now, "new-final"), time.Hour); err != nil || dup != newFinal.ID {
		t.Errorf("new idem entry lost: dupOf %q, %v", dup, err)
	}
	if n, err := b.Purge(cutoff); err != nil || n != 0 {
		t.Errorf("second Purge = %d, %v; want 0", n, err)
	}
}

func TestQuarantine(t *testing.T) {
	b := mustOpen(t)
	q := &Quarantined{
		ID:         ulid.Make().String(),
		Provider:   "acme",
		Reason:     "map: field amount: not a number",
		ReceivedAt: time.Now().UTC().Round(0),
		Method:     "POST",
		Path:       "/hooks/acme",
		Header:     map[string][]string{"Content-Type": {"application/json"}},
		Query:      map[string][]string{"v": {"2"}},
		Params:     map[string]string{"tenant": "t1"},
		Body:       []byte(`{"amount":"x"}`),
		RemoteAddr: "192.0.2.1:4711",
	}
	if err := b.Quarantine(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	b = reopen(t, b)
	got, err := b.Quarantined(q.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, q) {
		t.Errorf("Quarantined = %+v, want %+v", got, q)
	}
}

// benchmarkAppend appends events with ids in ascending order (ULIDs), or,
// with randomIDs, with random ids as lenders send them (UUIDs) into a
// dedup index that already holds 50,000.
func benchmarkAppend(b *testing.B, parallel, randomIDs bool) {
	s := mustOpen(b)
	body := []byte(`{"type":"payment.settled","data":{"loan":"L-1","amount":"1250.00","currency":"EUR"}}`)
	newEvent := func() *Event {
		id := ulid.Make()
		idem := id.String()
		if randomIDs {
			var r [16]byte
			_, _ = crand.Read(r[:])
			idem = fmt.Sprintf("%x-%x-%x-%x-%x", r[:4], r[4:6], r[6:8], r[8:10], r[10:])
		}
		return &Event{
			ID: id.String(), Provider: "acme", Type: "payment.settled", Key: "L-1",
			IdempotencyID: idem, ReceivedAt: time.Now(),
			Envelope: body, Raw: body, Destinations: []string{"ledger"},
		}
	}
	ctx := context.Background()
	if randomIDs {
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				for range 50_000 / 64 {
					if _, err := s.Append(ctx, newEvent(), time.Hour); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := s.commits.Load()
	cpu0, cpuOK := benchkit.ProcessCPU()
	defer func() {
		if n := s.commits.Load() - start; n > 0 {
			b.ReportMetric(float64(b.N)/float64(n), "appends/commit")
		}
		// CPU time per append: the fsyncs' wait, which ns/op is mostly
		// made of on a shared disk, is not in it.
		if cpu1, _ := benchkit.ProcessCPU(); cpuOK {
			b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		}
	}()
	if !parallel {
		for b.Loop() {
			if _, err := s.Append(ctx, newEvent(), time.Hour); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	// About 64 appenders, as many concurrent webhooks would be.
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Append(ctx, newEvent(), time.Hour); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkAppendParallel(b *testing.B)          { benchmarkAppend(b, true, false) }
func BenchmarkAppendSerial(b *testing.B)            { benchmarkAppend(b, false, false) }
func BenchmarkAppendParallelRandomIDs(b *testing.B) { benchmarkAppend(b, true, true) }
