package engine

import (
	"context"
	"testing"
	"time"
)

// TestLaneTakesKeysWhenDue drives one lane's queues without a relay, on the
// bubble's clock: a worker takes each key exactly when its head is due, in
// due order; a key that comes due sooner than the one waited for wakes the
// worker; a paused lane gives nothing, however overdue, and gives it at once
// when resumed.
func TestLaneTakesKeysWhenDue(t *testing.T) { inBubble(t, testLaneTakesKeysWhenDue) }

func testLaneTakesKeysWhenDue(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	l := &lane{ctx: ctx, cancel: cancel, keys: map[string]*keyQueue{}, wake: make(chan struct{}, 1),
		reconf: make(chan struct{}), workers: 1}
	l.setDestination(&Destination{Name: "dest", ordered: true, concurrency: 1})
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
