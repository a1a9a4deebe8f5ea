package engine

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestNextLimit(t *testing.T) {
	const ceiling = 512
	for _, c := range []struct {
		name        string
		lim         float64
		est, target time.Duration
		lo, hi      float64 // the result's bounds
	}{
		{"off: the ceiling", 20, time.Second, 0, ceiling, ceiling},
		{"at the target: grows by a fifth of its root", 100, 25 * time.Millisecond, 25 * time.Millisecond, 102, 102},
		{"under the target: grows the same", 100, time.Millisecond, 25 * time.Millisecond, 102, 102},
		{"twice the target: a tenth less, plus a fifth of its root", 100, 50 * time.Millisecond, 25 * time.Millisecond, 92, 92},
		{"ten times: still a tenth at most", 100, 250 * time.Millisecond, 25 * time.Millisecond, 92, 92},
		{"a third over: shrinks in proportion", 100, 100 * time.Millisecond / 3, 25 * time.Millisecond, 96.9, 97.1},
		{"never under the floor", 8, time.Second, 25 * time.Millisecond, shedFloor, shedFloor},
		{"never over the ceiling", ceiling, 0, 25 * time.Millisecond, ceiling, ceiling},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := nextLimit(c.lim, c.est, c.target, ceiling)
			if got < c.lo || got > c.hi {
				t.Errorf("nextLimit(%v, %v, %v) = %.2f, want [%v, %v]", c.lim, c.est, c.target, got, c.lo, c.hi)
			}
		})
	}
}

// TestShedderFollowsWait runs the shedder's loop: handler times far over
// the target bring the limit down to the floor within a few ticks; with
// none over it, the limit grows back toward max_inflight.
func TestShedderFollowsWait(t *testing.T) {
	var s shedder
	var target atomic.Int64
	target.Store(int64(time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.run(ctx, func() time.Duration { return time.Duration(target.Load()) }, func() int64 { return 512 })
	}()
	defer func() { cancel(); <-done }()

	deadline := time.Now().Add(10 * time.Second)
	for s.limit.Load() != shedFloor {
		if time.Now().After(deadline) {
			t.Fatalf("limit %d after 10 s of requests taking 100x the target, want %d", s.limit.Load(), shedFloor)
		}
		s.observe(100 * time.Millisecond)
		time.Sleep(time.Millisecond)
	}
	// A target no wait reaches: the limit only grows from here.
	target.Store(int64(time.Hour))
	low := s.limit.Load()
	for s.limit.Load() < 4*low {
		if time.Now().After(deadline) {
			t.Fatalf("limit %d after requests well under the target, want it over %d", s.limit.Load(), 4*low)
		}
		s.observe(time.Millisecond)
		time.Sleep(time.Millisecond)
	}
	// Off: max_inflight alone.
	target.Store(0)
	for s.limit.Load() != 512 {
		if time.Now().After(deadline) {
			t.Fatalf("limit %d with shedding off, want max_inflight 512", s.limit.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSchedWaitsQuantile(t *testing.T) {
	var w schedWaits
	w.quantile(0.99) // the baseline
	// Many goroutines runnable at once on GOMAXPROCS CPUs: some wait.
	done := make(chan struct{})
	for range 64 {
		go func() {
			defer func() { done <- struct{}{} }()
			end := time.Now().Add(20 * time.Millisecond)
			for time.Now().Before(end) {
			}
		}()
	}
	for range 64 {
		<-done
	}
	if got := w.quantile(0.99); got <= 0 {
		t.Errorf("p99 wait for a CPU with 64 goroutines spinning = %v, want > 0", got)
	}
}
