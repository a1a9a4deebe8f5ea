package engine

import (
	"context"
	"math"
	rtmetrics "runtime/metrics"
	"sync/atomic"
	"time"
)

// shedder bounds how many ingest requests are admitted at once, and lowers
// the bound while requests wait longer than shed_delay, so that under
// overload the relay answers the requests it keeps in time and refuses the
// rest at once with 503 and Retry-After. A lender waits 10 to 30 s, then
// counts a failure and sends again, adding to the load: an answer it waits
// seconds for helps nobody.
//
// A fixed max_inflight does not do this: under overload most requests wait
// for a CPU, before the handler runs and between its steps, while the count
// in the handler stays under any bound that does not also cut the relay's
// throughput when it is not overloaded. So the wait is estimated directly,
// every tick, as the mean handler time of the requests finished in it (the
// spool's commit, and a CPU at each wake-up on the way) plus the 99th
// percentile of how long goroutines waited for a CPU (what a request waits
// before its handler runs), smoothed over about 50 ms. The bound follows
// Netflix's gradient limit: it shrinks in proportion while the estimate is
// over the target, and grows slowly while it is not.
type shedder struct {
	limit atomic.Int64 // requests admitted at once, now; 0 before the first tick
	// The handler times of the current tick.
	sum   atomic.Int64 // ns
	count atomic.Int64
}

const (
	// shedTick is how often the limit is adjusted.
	shedTick = 10 * time.Millisecond
	// shedFloor is the lowest limit: a handful of requests at once is never
	// an overload, however slow the machine.
	shedFloor = 8
)

// observe records one admitted request's handler time.
func (s *shedder) observe(d time.Duration) {
	s.sum.Add(int64(d))
	s.count.Add(1)
}

// run adjusts the limit every tick until ctx ends. target and ceiling
// (max_inflight) are read each tick, so that a reload applies; a target of
// 0 turns shedding off, leaving the ceiling.
func (s *shedder) run(ctx context.Context, target func() time.Duration, ceiling func() int64) {
	t := time.NewTicker(shedTick)
	defer t.Stop()
	var w schedWaits
	var mean, est time.Duration
	lim := float64(ceiling())
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if sum, n := s.sum.Swap(0), s.count.Swap(0); n > 0 {
			mean = time.Duration(sum / n) // else the last tick's: answers come in batches
		}
		est = (4*est + mean + w.quantile(0.99)) / 5
		lim = nextLimit(lim, est, target(), float64(ceiling()))
		s.limit.Store(int64(lim))
	}
}

// nextLimit is the limit after a tick whose estimated wait was est, for the
// target wait: the gradient limit of Netflix's concurrency-limits
// (Gradient2), with the target in place of its long-run baseline. The new
// limit is lim*g + sqrt(lim), g = target/est bounded to [0.5, 1], smoothed
// by a fifth: over the target it shrinks by a tenth a tick at most, at or
// under it it grows by a fifth of its square root.
func nextLimit(lim float64, est, target time.Duration, ceiling float64) float64 {
	if target <= 0 {
		return ceiling
	}
	g := min(max(float64(target)/float64(max(est, 1)), 0.5), 1)
	next := 0.8*lim + 0.2*(lim*g+math.Sqrt(lim))
	return min(max(next, shedFloor), ceiling)
}

// schedWaits reads how long goroutines waited for a CPU (runtime/metrics'
// /sched/latencies) since its last read.
type schedWaits struct {
	sample []rtmetrics.Sample
	prev   []uint64 // the histogram's counts at the last read
}

// quantile is the q-quantile of the waits since the last call, at the
// upper bound of its histogram bucket; 0 when there were none.
func (w *schedWaits) quantile(q float64) time.Duration {
	if w.sample == nil {
		w.sample = []rtmetrics.Sample{{Name: "/sched/latencies:seconds"}}
	}
	rtmetrics.Read(w.sample)
	if w.sample[0].Value.Kind() != rtmetrics.KindFloat64Histogram {
		return 0
	}
	h := w.sample[0].Value.Float64Histogram()
	if len(w.prev) != len(h.Counts) {
		w.prev = make([]uint64, len(h.Counts))
	}
	var total uint64
	for i, c := range h.Counts {
		total += c - w.prev[i]
	}
	want := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	at := 0.0
	for i, c := range h.Counts {
		if seen < want {
			if seen += c - w.prev[i]; seen >= want {
				at = h.Buckets[i+1]
			}
		}
		w.prev[i] = c
	}
	if math.IsInf(at, 1) {
		at = h.Buckets[len(h.Buckets)-2]
	}
	return time.Duration(at * float64(time.Second))
}
