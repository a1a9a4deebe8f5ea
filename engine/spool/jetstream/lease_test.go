package jetstream_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream"
)

// follower records what a Shared store feeds it.
type follower struct {
	mu     sync.Mutex
	queued []string // event ids, in the order fed
	drops  int
}

func (f *follower) Queue(_ string, q *spool.QueuedDelivery) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queued = append(f.queued, q.EventID.String())
}

func (f *follower) Drop(func(provider, key string) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drops++
}
func (f *follower) Apply(spool.Command) {}
func (f *follower) Paused(string, bool) {}

func (f *follower) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.queued...)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLeaseFeedsAndLowMark: the holder of a partition is fed its events in
// order; the partition's low mark rises to the first event not final, and
// the next holder, after a clean stop, is fed exactly the events left, in
// order, while a fenced write by the stopped holder is refused.
func TestLeaseFeedsAndLowMark(t *testing.T) {
	stream := newStream()
	openOne := func() *jetstream.Store {
		s, err := jetstream.Open(context.Background(), jetstream.Options{URLs: []string{srv.ClientURL()}, Stream: stream,
			Replicas: 1, Partitions: 1, LeaseTTL: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	a := openOne()
	var ids []string
	for i := range 10 {
		id := ulid.Make().String()
		ids = append(ids, id)
		ev := &spool.Event{ID: id, Provider: "bank", Key: fmt.Sprint("k", i%3), ReceivedAt: time.Now(), Envelope: []byte(`{}`), Destinations: []string{"d"}}
		if _, err := a.Append(context.Background(), ev, 0); err != nil {
			t.Fatal(err)
		}
	}
	fa := &follower{}
	ctx, stop := context.WithCancel(context.Background())
	doneA, err := a.Share(ctx, fa)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a fed every event", func() bool { return len(fa.ids()) == 10 })
	if got := fa.ids(); fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatalf("fed %v, want %v", got, ids)
	}
	for _, id := range ids[:6] {
		d, err := a.Delivery("d", id)
		if err != nil {
			t.Fatal(err)
		}
		d.Status = spool.Delivered
		if err := a.Update(spool.Fenced(context.Background()), d); err != nil {
			t.Fatal(err)
		}
	}
	seventh, err := a.Delivery("d", ids[6])
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the low mark at the 7th event", func() bool { return jetstream.LowMark(a, 0) == seventh.Seq })

	stop()
	<-doneA
	if fa.drops != 1 {
		t.Errorf("a dropped %d partitions on its stop, want 1", fa.drops)
	}
	seventh.Status = spool.Delivered
	if err := a.Update(spool.Fenced(context.Background()), seventh); err == nil {
		t.Error("a fenced write after the lease was given up was accepted")
	}

	b := openOne()
	fb := &follower{}
	ctxB, stopB := context.WithCancel(context.Background())
	doneB, err := b.Share(ctxB, fb)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { stopB(); <-doneB }()
	waitUntil(t, "b fed the events left", func() bool { return len(fb.ids()) >= 4 })
	if got := fb.ids(); fmt.Sprint(got) != fmt.Sprint(ids[6:]) {
		t.Fatalf("b fed %v, want %v", got, ids[6:])
	}
	// A delivered state is final: b's fenced write of it as pending is refused.
	d, err := b.Delivery("d", ids[0])
	if err != nil {
		t.Fatal(err)
	}
	d.Status = spool.Pending
	if err := b.Update(spool.Fenced(context.Background()), d); err == nil {
		t.Error("a fenced write over a delivered state was accepted")
	}
}

// gatedFollower holds the feed's first Queue call until released, and
// notes how far the feed had read when it came.
type gatedFollower struct {
	follower
	first   chan struct{} // closed at the first Queue call
	release chan struct{}
	once    sync.Once
}

func (f *gatedFollower) Queue(dest string, q *spool.QueuedDelivery) {
	f.once.Do(func() {
		close(f.first)
		<-f.release
	})
	f.follower.Queue(dest, q)
}

// TestFeedHandsTheFirstEventsBeforeReadingTheRest: a relay taking a
// partition with a long backlog hands the dispatcher its first delivery
// before it has read the rest (so the first send does not wait for the
// whole backlog, the failover cost that grew with it), then the rest, in
// order.
func TestFeedHandsTheFirstEventsBeforeReadingTheRest(t *testing.T) {
	const n = 600 // past a fetch of the feed's consumer
	s, err := jetstream.Open(context.Background(), jetstream.Options{URLs: []string{srv.ClientURL()}, Stream: newStream(),
		Replicas: 1, Partitions: 1, LeaseTTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	var ids []string
	for i := range n {
		id := ulid.Make().String()
		ids = append(ids, id)
		ev := &spool.Event{ID: id, Provider: "bank", Key: fmt.Sprint("k", i%7), ReceivedAt: time.Now(), Envelope: []byte(`{}`), Destinations: []string{"d"}}
		if _, err := s.Append(context.Background(), ev, 0); err != nil {
			t.Fatal(err)
		}
	}
	d, err := s.Delivery("d", ids[n-1])
	if err != nil {
		t.Fatal(err)
	}
	last := d.Seq
	f := &gatedFollower{first: make(chan struct{}), release: make(chan struct{})}
	ctx, stop := context.WithCancel(context.Background())
	done, err := s.Share(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { stop(); <-done }()
	select {
	case <-f.first:
	case <-time.After(15 * time.Second):
		t.Fatal("no delivery fed 15s after Share")
	}
	read := jetstream.FeedRead(s, 0)
	close(f.release)
	if read >= last {
		t.Fatalf("the first delivery was fed after the feed read all %d events (up to seq %d)", n, read)
	}
	waitUntil(t, "every event fed", func() bool { return len(f.ids()) == n })
	if got := f.ids(); fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatal("the events were fed out of order")
	}
}
