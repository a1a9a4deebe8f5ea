package loadtest

import (
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine"
	"github.com/hookrelay/hookrelay/engine/internal/benchkit"
)

// lanesPending is how many deliveries the relay's lanes still hold: queued
// in memory and not yet recorded final in the spool.
func lanesPending(r *engine.Relay) int {
	pending, _ := r.Backlog()
	return pending
}

// lanesDead is how many of those are dead.
func lanesDead(r *engine.Relay) int {
	_, dead := r.Backlog()
	return dead
}

// waitDelivered polls lanesPending every millisecond until it is 0 and
// returns when it saw it so, or fails tb after timeout.
func waitDelivered(tb testing.TB, r *engine.Relay, timeout time.Duration) time.Time {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if lanesPending(r) == 0 {
			return time.Now()
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d deliveries still pending after %v", lanesPending(r), timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// e2eResult is one end-to-end run: the ingest requests, the time from
// their start until every event was recorded delivered, the process CPU
// meanwhile, and each delivery's age at the destination (sorted).
type e2eResult struct {
	ingest loadResult
	total  time.Duration
	cpu    time.Duration
	cpuOK  bool
	ages   []time.Duration
}

func (e *e2eResult) rate() float64 { return float64(e.ingest.n) / e.total.Seconds() }

// endToEnd ingests with send into r and waits until every event is
// recorded delivered; dest is r's destination. send calls started as its
// measured run begins, and returns its result and the CPU its client used
// outside this process (0 when it runs in this one).
func endToEnd(tb testing.TB, r *engine.Relay, dest *destCounter, send func(started func()) (loadResult, time.Duration)) e2eResult {
	tb.Helper()
	before := dest.n.Load()
	dest.takeAges()
	dest.record.Store(true)
	defer dest.record.Store(false)
	var cpu0 time.Duration
	var e e2eResult
	ingest, clientCPU := send(func() { cpu0, e.cpuOK = benchkit.ProcessCPU() })
	e.ingest = ingest
	if e.ingest.failed > 0 {
		tb.Fatalf("%d of %d requests failed; first: %s", e.ingest.failed, e.ingest.n, e.ingest.firstErr)
	}
	done := waitDelivered(tb, r, 5*time.Minute)
	cpu1, _ := benchkit.ProcessCPU()
	e.total, e.cpu = done.Sub(e.ingest.start), cpu1-cpu0+clientCPU
	if got := dest.n.Load() - before; got < int64(e.ingest.n) {
		tb.Fatalf("destination got %d deliveries, want %d", got, e.ingest.n)
	}
	e.ages = dest.takeAges()
	return e
}

// BenchmarkEndToEnd is hookrelay end to end (d): b.N HMAC-signed events
// ingested by 64 clients and each delivered to a loopback destination that
// answers 200, and recorded delivered in the spool; the clock stops when no
// delivery is pending. delivered/s is b.N over that time; the latencies are
// the ingest requests'; age-p50/p99 are from an event's ingest (its ULID
// time, in ms) to its arrival at the destination.
func BenchmarkEndToEnd(b *testing.B) {
	dest, delivered := countingDest(b)
	r, srv := benchRelay(b, dest.URL, "", nil)
	src := hmacSource(srv.URL+"/in/example", 0, b.N)
	b.ReportAllocs()
	e := endToEnd(b, r, delivered, func(started func()) (loadResult, time.Duration) {
		return closedLoop(src, b.N, 0, func() { b.ResetTimer(); started() }), 0
	})
	b.StopTimer()
	b.ReportMetric(e.rate(), "delivered/s")
	b.ReportMetric(e.ingest.rate(), "ingest-req/s")
	b.ReportMetric(e.ingest.pct(0.50), "p50-ms")
	b.ReportMetric(e.ingest.pct(0.99), "p99-ms")
	b.ReportMetric(e.ingest.pct(0.999), "p99.9-ms")
	age := loadResult{lat: e.ages}
	b.ReportMetric(age.pct(0.50), "age-p50-ms")
	b.ReportMetric(age.pct(0.99), "age-p99-ms")
	if e.cpuOK {
		b.ReportMetric(float64(e.cpu)/float64(time.Microsecond)/float64(b.N), "cpu-us/event")
	}
}
