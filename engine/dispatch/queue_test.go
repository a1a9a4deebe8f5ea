package dispatch

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// TestLaneTakesKeysWhenDue drives one lane's queues without a relay, on the
// bubble's clock: a worker takes each key exactly when its head is due, in
// due order; a key that comes due sooner than the one waited for wakes the
// worker; a paused lane gives nothing, however overdue, and gives it at once
// when resumed.
func TestLaneTakesKeysWhenDue(t *testing.T) { synctest.Test(t, testLaneTakesKeysWhenDue) }

func testLaneTakesKeysWhenDue(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	l := newLane(ctx, cancel, nil, &Destination{Name: "dest", ordered: true, concurrency: 1})
	l.workers = 1
	start := time.Now()
	push := func(key string, after time.Duration) {
		at := time.Time{} // due now
		if after > 0 {
			at = start.Add(after)
		}
		l.push(item{eventID: "ev-" + key}, "p", key, false, at)
	}
	push("k3s", 3*time.Second)
	push("k1s", time.Second)
	push("k2s", 2*time.Second)
	push("now", 0)

	taken := make(chan string)
	go func() {
		defer close(taken)
		for kq := l.take(); kq != nil; kq = l.take() {
			taken <- kq.eventKey // the key stays in flight: it is not taken again
		}
	}()
	take := func(want string, at time.Duration) {
		t.Helper()
		if got := <-taken; got != want || time.Since(start) != at {
			t.Errorf("took %s at %v, want %s at %v", got, time.Since(start), want, at)
		}
	}
	take("now", 0)
	take("k1s", time.Second)
	// While the worker waits for k2s, a key due sooner comes.
	push("k1.5s", 1500*time.Millisecond)
	take("k1.5s", 1500*time.Millisecond)
	take("k2s", 2*time.Second)

	// Paused: k3s is due and more keys come, yet nothing is taken.
	l.setPaused(true)
	push("paused", 0)
	advance(time.Hour)
	select {
	case k := <-taken:
		t.Fatalf("took %s from a paused lane", k)
	default:
	}
	l.setPaused(false)
	resumed := time.Since(start)
	take("paused", resumed) // due since 2s, k3s since 3s
	take("k3s", resumed)

	advance(time.Hour)
	select {
	case k := <-taken:
		t.Fatalf("took %s with no key left", k)
	default:
	}
	l.mu.Lock()
	if n := len(l.timers) + len(l.ready); n != 0 {
		t.Errorf("%d keys still scheduled", n)
	}
	l.mu.Unlock()
	cancel()
	if k, ok := <-taken; ok {
		t.Errorf("took %s after the lane stopped", k)
	}
	if l.workers != 0 {
		t.Errorf("%d workers counted after the lane stopped, want 0", l.workers)
	}
}

// advance moves the bubble's clock d forward and returns once every
// goroutine of the bubble is blocked again.
func advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// TestCommandWaitsForTheWorker: an operator's retry of a delivery whose
// worker has yet to take in its outcome (dead, key held) waits for it and
// then applies on top: the key ends released, not held by a stale outcome.
func TestCommandWaitsForTheWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		l := newLane(ctx, cancel, nil, &Destination{Name: "dest", ordered: true, concurrency: 1, hold: true})
		l.workers = 1
		l.push(item{eventID: "ev-1"}, "p", "k", false, time.Time{})
		kq := l.take() // the worker holds ev-1
		done := make(chan struct{})
		go func() {
			defer close(done)
			l.requeue("ev-1", "p", "k", 0)
		}()
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("the retry applied while the worker held the delivery")
		default:
		}
		// The worker's outcome: dead, and the destination holds.
		l.mu.Lock()
		kq.inflight, kq.held, kq.scheduled = false, true, false
		l.held++
		l.dead++
		l.idle.Broadcast()
		l.mu.Unlock()
		<-done
		l.mu.Lock()
		defer l.mu.Unlock()
		if kq.held || l.held != 0 || l.dead != 0 || !kq.scheduled || len(l.ready) != 1 {
			t.Errorf("after the retry: held %v (lane %d), dead %d, scheduled %v, ready %d; want the key released and ready",
				kq.held, l.held, l.dead, kq.scheduled, len(l.ready))
		}
	})
}
