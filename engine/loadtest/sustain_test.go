package loadtest

// The sustained measurements, skipped unless HOOKRELAY_SUSTAIN=1:
//
//	HOOKRELAY_SUSTAIN=1 go test -run TestSustainedAndOutage -count 1 -v -timeout 60m ./engine/loadtest/
//
// (a short -timeout fails at once, saying how long the run may take).
//
// HOOKRELAY_SUSTAIN_SECONDS sets N, the length of the sustained run and of
// the outage (default 60). HOOKRELAY_SUSTAIN_RETRY replaces the outage
// destinations' retry block (a YAML flow mapping; default
// "{ max_attempts: 1000, initial: 100ms }", everything else the relay's defaults).
// HOOKRELAY_DESTINATIONS__DEST__CONCURRENCY=N sets the destination's
// concurrency (default 16), as for any relay.

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine"
)

// sustainRetry is the retry block BENCHMARKS.md's outage runs were measured
// with: then the default was 10 attempts from 100ms, so the count was raised
// to keep every delivery alive through the outage; the 100ms start keeps
// the drain comparable with those runs (today's default starts at 1s).
const sustainRetry = "{ max_attempts: 1000, initial: 100ms }"

// sustainKeys is how many ordering keys benchRequests spreads events over.
const sustainKeys = 1024

// sustainConfig skips t unless HOOKRELAY_SUSTAIN=1 and returns N and the
// outage runs' retry block.
func sustainConfig(t *testing.T) (time.Duration, string) {
	if os.Getenv("HOOKRELAY_SUSTAIN") != "1" {
		t.Skip("set HOOKRELAY_SUSTAIN=1 to run the sustained and outage measurements")
	}
	dur := envSeconds(t, "HOOKRELAY_SUSTAIN_SECONDS", 60*time.Second)
	retry := sustainRetry
	if s := os.Getenv("HOOKRELAY_SUSTAIN_RETRY"); s != "" {
		retry = s
	}
	return dur, retry
}

// backlogSample is lanesPending at some time into a phase.
type backlogSample struct {
	at time.Duration
	n  int
}

// sampleBacklog samples lanesPending(r) every `every` until stop is closed
// or `until` has passed (when positive).
func sampleBacklog(r *engine.Relay, every, until time.Duration, stop <-chan struct{}) []backlogSample {
	start := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	var out []backlogSample
	for {
		select {
		case <-stop:
			return out
		case <-tick.C:
			out = append(out, backlogSample{time.Since(start), lanesPending(r)})
			if until > 0 && time.Since(start) >= until {
				return out
			}
		}
	}
}

// slope is the least-squares slope of the samples at or after from, in
// events/s (0 with fewer than two).
func slope(samples []backlogSample, from time.Duration) float64 {
	var n, sx, sy, sxx, sxy float64
	for _, s := range samples {
		if s.at < from {
			continue
		}
		x, y := s.at.Seconds(), float64(s.n)
		n, sx, sy, sxx, sxy = n+1, sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	if n < 2 || n*sxx == sx*sx {
		return 0
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

func medianBacklog(samples []backlogSample) int {
	if len(samples) == 0 {
		return 0
	}
	ns := make([]int, len(samples))
	for i, s := range samples {
		ns[i] = s.n
	}
	slices.Sort(ns)
	return ns[len(ns)/2]
}

// waitBacklog polls lanesPending(r) every 50 ms until it is at most level
// or timeout has passed; it returns how long that took and whether it got there.
func waitBacklog(r *engine.Relay, level int, timeout time.Duration) (time.Duration, bool) {
	start := time.Now()
	for {
		if lanesPending(r) <= level {
			return time.Since(start), true
		}
		if time.Since(start) >= timeout {
			return time.Since(start), false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// switchDest is a destination that answers 200, or `down` while it is set
// (503, no Retry-After, is a destination that is down behind its proxy).
type switchDest struct {
	down      atomic.Int32 // status to answer; 0: up
	ok, fails atomic.Int64
}

func newSwitchDest(t *testing.T) (*httptest.Server, *switchDest) {
	s := new(switchDest)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if st := s.down.Load(); st != 0 {
			s.fails.Add(1)
			w.WriteHeader(int(st))
			return
		}
		s.ok.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv, s
}

// ingestDriver sends to a URL at a fixed rate in sendOpen chunks of about a
// second, each started on schedule whether or not the last one's answers
// are in (but at most two at once, so at most 2 × openLoopSenders requests
// in flight), until stopped: an outage run does not know its length up
// front, and sendOpen cannot be cut short. It runs in the external
// generator (loadSpec.Stream).
type ingestDriver struct {
	halt   atomic.Bool
	done   chan struct{}
	mu     sync.Mutex
	chunks []loadOut
}

func startIngest(t *testing.T, client *http.Client, url string, rate float64, first int) *ingestDriver {
	d := &ingestDriver{done: make(chan struct{})}
	n := max(1, int(rate))
	period := time.Duration(float64(n) / rate * float64(time.Second))
	// Half a request's slack, so that sendOpen's int(rate*dur) is n.
	chunk := time.Duration((float64(n) + 0.5) / rate * float64(time.Second))
	go func() {
		defer close(d.done)
		var wg sync.WaitGroup
		defer wg.Wait()
		busy := make(chan struct{}, 2)
		start := time.Now()
		for k := 0; !d.halt.Load() && !t.Failed(); k++ {
			src := hmacSource(url, first+k*n, n) // signed before its start time
			busy <- struct{}{}
			time.Sleep(time.Until(start.Add(time.Duration(k) * period)))
			wg.Add(1)
			go func() {
				defer func() { <-busy; wg.Done() }() // also when answered fails t (Goexit)
				res := answered(t, sendOpen(client, src, rate, chunk, nil), rate)
				d.mu.Lock()
				d.chunks = append(d.chunks, res)
				d.mu.Unlock()
			}()
		}
	}()
	return d
}

// stop ends the load after the current chunk and waits for every answer.
func (d *ingestDriver) stop() {
	d.halt.Store(true)
	<-d.done
}

// streamed is a Stream run's chunks, as the parent gets them.
type streamed []loadOut

// phase sums the chunks that started in [from, to): requests sent, shed,
// and the accepted requests' latencies, sorted.
func (s streamed) phase(from, to time.Time) loadResult {
	var lr loadResult
	for _, c := range s {
		if c.Start.Before(from) || !c.Start.Before(to) {
			continue
		}
		lr.n += c.N
		lr.failed += len(c.ShedLat)
		lr.lat = append(lr.lat, c.Lat...)
	}
	slices.Sort(lr.lat)
	return lr
}

// sent is how many requests the chunks sent and over how long.
func (s streamed) sent() (int, time.Duration) {
	n := 0
	var first, last time.Time
	for _, c := range s {
		n += c.N
		if first.IsZero() || c.Start.Before(first) {
			first = c.Start
		}
		if end := c.Start.Add(c.Elapsed); end.After(last) {
			last = end
		}
	}
	return n, last.Sub(first)
}

// sustainResult is the sustained phase.
type sustainResult struct {
	rate              float64 // offered, req/s
	res               openResult
	delivered         int64
	elapsed           time.Duration
	samples           []backlogSample
	slope             float64 // events/s over the second half
	ages              []time.Duration
	empty             time.Duration // from the end of ingest until no delivery was pending
	emptied           bool
	median            int
	first, peak, last int
	concurrency       int // the destination's
}

// sustained drives a fresh relay open loop at rate for dur from the
// external generator (after 2 s at the same rate to warm up), sampling its
// backlog every second, with a countingDest as the destination.
func sustained(t *testing.T, rate float64, dur time.Duration) sustainResult {
	dest, counter := countingDest(t)
	relay, srv := benchRelay(t, dest.URL, "", nil)
	warmN := int(2*rate) + 1
	spec := specOf(hmacSource(srv.URL+"/in/example", 0, warmN+int(rate*dur.Seconds())+1), warmN)
	spec.Rate, spec.Dur = rate, dur
	s := sustainResult{rate: rate, concurrency: 16}
	if c := relay.Config().Destinations["dest"].Config.Concurrency; c > 0 {
		s.concurrency = c
	}
	var before int64
	var start time.Time
	stop, sampled := make(chan struct{}), make(chan struct{})
	runtime.GC()
	out := runLoad(t, spec, func() {
		before, start = counter.n.Load(), time.Now()
		counter.takeAges()
		counter.record.Store(true)
		go func() {
			defer close(sampled)
			s.samples = sampleBacklog(relay, time.Second, dur+time.Minute, stop)
		}()
	})
	close(stop)
	<-sampled
	s.elapsed = time.Since(start)
	s.delivered = counter.n.Load() - before
	counter.record.Store(false)
	s.ages = counter.takeAges()
	s.res = answered(t, out, rate).asOpen()
	s.empty, s.emptied = waitBacklog(relay, 0, max(time.Minute, 2*dur))
	_ = relay.Close(time.Second) // as in outage
	s.slope = slope(s.samples, dur/2)
	s.median = medianBacklog(s.samples)
	for i, b := range s.samples {
		if i == 0 {
			s.first = b.n
		}
		s.peak, s.last = max(s.peak, b.n), b.n
	}
	return s
}

// outageResult is one outage run.
type outageResult struct {
	rate             float64 // offered, req/s
	achieved         float64 // sent, req/s
	base             int     // median backlog before the outage
	built            int     // B: backlog when the destination came back
	threshold        int     // drained: backlog at most this
	drain            time.Duration
	drained          bool
	left             int           // backlog when drained or given up on
	empty            time.Duration // from the destination's return to no delivery pending (ingest stops at drain)
	emptied          bool
	deliveredDrain   int64 // 200s from the destination's return to drained
	refused          int64 // 503s answered during the outage: retry attempts
	dead             int
	shed             int        // ingest requests answered 503, whole run after the warm-up
	pre, down, after loadResult // ingest before, during, after the outage
}

// outage runs a fresh relay under a constant ingest at rate: pre with the
// destination up, dur with it answering 503, then up again until the
// backlog is back to the steady level (or 10×dur passed).
func outage(t *testing.T, rate float64, dur, pre time.Duration, retry string) outageResult {
	dest, sw := newSwitchDest(t)
	relay, srv := benchRelay(t, dest.URL, "    retry: "+retry+"\n", nil)
	began := make(chan struct{})
	run := startLoad(t, loadSpec{URL: srv.URL + "/in/example", Rate: rate, Warm: int(rate) + 1, Stream: true},
		func() { close(began) })
	check := func() {
		if run.exited() {
			run.wait() // fails t, saying why
			t.FailNow()
		}
	}
	select {
	case <-began: // warmed up
	case <-run.done:
		check()
	}
	o := outageResult{rate: rate}
	o.base = medianBacklog(sampleBacklog(relay, time.Second, pre, nil))
	check()

	sw.down.Store(http.StatusServiceUnavailable)
	tDown := time.Now()
	time.Sleep(dur)
	o.built = lanesPending(relay)
	o.refused = sw.fails.Load()
	okUp := sw.ok.Load()
	sw.down.Store(0)
	tUp := time.Now()
	check()

	limit := 10 * dur
	o.threshold = max(int(rate), o.base)
	o.drain, o.drained = waitBacklog(relay, o.threshold, limit)
	tDrained := time.Now()
	o.left = lanesPending(relay)
	o.deliveredDrain = sw.ok.Load() - okUp
	drv := streamed(run.stop().Chunks)
	n, d := drv.sent()
	o.achieved = float64(n) / d.Seconds()
	o.pre, o.down, o.after = drv.phase(time.Time{}, tDown), drv.phase(tDown, tUp), drv.phase(tUp, tDrained)
	o.shed = drv.phase(time.Time{}, time.Now()).failed
	_, o.emptied = waitBacklog(relay, 0, max(limit-time.Since(tUp), 2*dur))
	o.empty = time.Since(tUp)
	o.dead = lanesDead(relay)
	// Whatever is left must not load the next run; the cleanup's second
	// Close is a no-op.
	_ = relay.Close(time.Second)
	return o
}

// quietResult is one outage after which no more events come in.
type quietResult struct {
	rate    float64 // offered, req/s
	base    int     // median backlog before the outage
	built   int     // B: backlog when the destination came back
	down    time.Duration
	drain   time.Duration // from the destination's return to a backlog of at most base
	drained bool
	dead    int
	res     openResult // ingest over the whole run, outage included
}

// outageThenQuiet runs a fresh relay under ingest at rate from the external
// generator for pre + dur; the destination answers 503 from pre on, and
// comes back when the load ends. The backlog then drains with nothing more
// coming in: the pace at which deliveries alone catch up.
func outageThenQuiet(t *testing.T, rate float64, dur, pre time.Duration, retry string) quietResult {
	dest, sw := newSwitchDest(t)
	relay, srv := benchRelay(t, dest.URL, "    retry: "+retry+"\n", nil)
	warmN := int(rate) + 1
	spec := specOf(hmacSource(srv.URL+"/in/example", 0, warmN+int(rate*(pre+dur).Seconds())+1), warmN)
	spec.Rate, spec.Dur = rate, pre+dur
	q := quietResult{rate: rate}
	var tDown time.Time
	wentDown := make(chan struct{})
	out := runLoad(t, spec, func() {
		go func() {
			defer close(wentDown)
			q.base = medianBacklog(sampleBacklog(relay, time.Second, pre, nil))
			sw.down.Store(http.StatusServiceUnavailable)
			tDown = time.Now()
		}()
	})
	<-wentDown
	q.built = lanesPending(relay)
	sw.down.Store(0)
	q.down = time.Since(tDown)
	q.res = answered(t, out, rate).asOpen()
	q.drain, q.drained = waitBacklog(relay, q.base, 10*dur)
	q.dead = lanesDead(relay)
	_ = relay.Close(time.Second)
	return q
}

// TestSustainedAndOutage measures, against (h) closed loop for 5 s:
// (1) end to end at 40% of (h), open loop for N s: is the backlog flat?
// (2) a destination outage of N s under constant ingest, at that rate and
// at a quarter of it, each on its own relay: does the backlog drain at
// least twice as fast as it built (drain time D <= N/2)?
// (3) the same outage at 40% of (h), with the load ending as the
// destination comes back: the drain of deliveries alone.
// All take their load from the external generator, as the report does.
func TestSustainedAndOutage(t *testing.T) {
	dur, retry := sustainConfig(t)
	const pre = 5 * time.Second
	// Worst case: (h), the sustained run and its drain, two outage runs and
	// the quiet one.
	budget := 30*time.Second + 2*time.Second + dur + max(time.Minute, 2*dur) + 2*(pre+13*dur+5*time.Second) + pre + 11*dur
	if dl, ok := t.Deadline(); ok && time.Until(dl) < budget {
		t.Fatalf("may take %v, more than -timeout leaves (%v): run with -timeout %.0fm",
			budget.Round(time.Second), time.Until(dl).Round(time.Second), budget.Minutes()+5)
	}
	began := time.Now()

	hURL, _ := startBaselineBoltPut(t)
	h := measureClosed(t, func(from, to int) *loadSource { return hmacSource(hURL, from, to-from) }, 30000, 2, 5*time.Second, nil)
	r := 0.40 * h.rate()
	t.Logf("(h) %.0f req/s; sustained run at %.0f req/s for %v", h.rate(), r, dur)

	s := sustained(t, r, dur)
	t.Logf("sustained: %d delivered, backlog last %d; outage runs", s.delivered, s.last)

	var outs []outageResult
	for _, rate := range []float64{r, r / 4} {
		outs = append(outs, outage(t, rate, dur, pre, retry))
		t.Logf("outage at %.0f req/s: B %d, drained %v in %v", rate, outs[len(outs)-1].built,
			outs[len(outs)-1].drained, outs[len(outs)-1].drain)
	}
	q := outageThenQuiet(t, r, dur, pre, retry)
	t.Logf("outage at %.0f req/s, then no load: B %d, drained %v in %v", r, q.built, q.drained, q.drain)

	var b strings.Builder
	N := dur.Seconds()
	fmt.Fprintf(&b, "\nSustained and outage, N = %.0f s; %s, GOMAXPROCS %d, %s\n", N, runtime.Version(), runtime.GOMAXPROCS(0), cpuModel())
	fmt.Fprintf(&b, "Events spread over %d ordering keys (FIFO per key); destination concurrency %d. "+
		"(h) closed loop, 64 clients, 5 s: %.0f req/s; r = 0.40 × (h) = %.0f req/s.\n\n", sustainKeys, s.concurrency, h.rate(), r)

	b.WriteString("(1) End to end, open loop at r for N s, delivered to a loopback destination answering 200:\n\n")
	b.WriteString("| offered/s | sent | shed (503) | delivered/s | ÷h | ingest p50 ms | p99 ms | age p50 ms | age p99 ms | backlog first | median | max | last | slope, 2nd half /s | empty after |\n")
	b.WriteString("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	dRate := float64(s.delivered) / s.elapsed.Seconds()
	age := loadResult{lat: s.ages}
	empty := fmt.Sprintf("%.1f s", s.empty.Seconds())
	if !s.emptied {
		empty = fmt.Sprintf("not in %.0f s", s.empty.Seconds())
	}
	fmt.Fprintf(&b, "| %.0f | %d | %d | %.0f | %.2f | %.2f | %.2f | %.0f | %.0f | %d | %d | %d | %d | %+.1f | %s |\n",
		s.rate, s.res.n, s.res.shed(), dRate, dRate/h.rate(), s.res.pct(0.50), s.res.pct(0.99), age.pct(0.50), age.pct(0.99),
		s.first, s.median, s.peak, s.last, s.slope, empty)
	verdict := "met"
	var why []string
	if s.slope > 0.01*r {
		why = append(why, fmt.Sprintf("backlog grows %.1f/s > 1%% of r (%.1f/s)", s.slope, 0.01*r))
	}
	if float64(s.last) > r {
		why = append(why, fmt.Sprintf("last backlog %d > r × 1 s (%.0f)", s.last, r))
	}
	if s.res.shed() > 0 {
		why = append(why, fmt.Sprintf("%d requests shed", s.res.shed()))
	}
	if len(why) > 0 {
		verdict = "MISSED: " + strings.Join(why, "; ")
	}
	fmt.Fprintf(&b, "\n  (d) at 40%% of (h) for %.0f s with no backlog growth (slope <= 1%% of r, last <= r × 1 s, nothing shed): %s\n\n", N, verdict)

	fmt.Fprintf(&b, "(2) Outage: constant ingest (after 1 s of it to warm up); %.0f s with the destination up, %.0f s answering 503 (no Retry-After), then up until the backlog is back to max(rate × 1 s, pre-outage median) (at most 10 × N); "+
		"retry: %s (unset fields: relay defaults, initial 100ms, multiplier 2, max 1h, jitter full). Each rate on its own relay.\n\n", pre.Seconds(), N, retry)
	b.WriteString("| offered/s | achieved/s | backlog before | B (end of outage) | build B/N /s | drained: backlog | D s | drain B/D /s | ÷ build | delivered/s while draining | empty after s | 503s sent | dead | ingest p99 ms before / outage / after | shed |\n")
	b.WriteString("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	p99 := func(lr loadResult) string {
		if len(lr.lat) == 0 {
			return "—" // no chunk started in that phase
		}
		return fmt.Sprintf("%.1f", lr.pct(0.99))
	}
	var verdicts []string
	for _, o := range outs {
		build := float64(o.built) / N
		d, drainRate, ratio := "—", "—", "—"
		v := fmt.Sprintf("MISSED: not drained in %.0f s (backlog %d, B was %d)", o.drain.Seconds(), o.left, o.built)
		emptyS := fmt.Sprintf("%.1f", o.empty.Seconds())
		if !o.emptied {
			emptyS = fmt.Sprintf("not in %.0f", o.empty.Seconds())
		}
		if o.drained {
			dr := float64(o.built) / o.drain.Seconds()
			d, drainRate, ratio = fmt.Sprintf("%.1f", o.drain.Seconds()), fmt.Sprintf("%.0f", dr), fmt.Sprintf("%.2f", dr/build)
			v = "met"
			if o.drain > dur/2 {
				v = fmt.Sprintf("MISSED: D %.1f s > N/2 (%.0f s)", o.drain.Seconds(), N/2)
			}
		}
		if o.dead > 0 {
			v += fmt.Sprintf(" (%d deliveries went dead: raise max_attempts)", o.dead)
		}
		fmt.Fprintf(&b, "| %.0f | %.0f | %d | %d | %.0f | <= %d | %s | %s | %s | %.0f | %s | %d | %d | %s / %s / %s | %d |\n",
			o.rate, o.achieved, o.base, o.built, build, o.threshold, d, drainRate, ratio,
			float64(o.deliveredDrain)/o.drain.Seconds(), emptyS, o.refused, o.dead,
			p99(o.pre), p99(o.down), p99(o.after), o.shed)
		verdicts = append(verdicts, fmt.Sprintf("  %5.0f/s: drain rate >= 2 × build rate (D <= N/2): %s", o.rate, v))
	}
	b.WriteString("\n" + strings.Join(verdicts, "\n") + "\n")

	fmt.Fprintf(&b, "\n(3) Outage, then no more load: ingest at r for %.0f s, the destination answering 503 (no Retry-After) from %.0f s on; "+
		"it comes back as the load ends, and the backlog drains with nothing coming in.\n\n", pre.Seconds()+N, pre.Seconds())
	b.WriteString("| offered/s | sent | shed (503) | ingest p99 ms | backlog before | outage s | B | build B/outage /s | D s (to <= backlog before) | drain B/D /s | ÷ build | dead |\n")
	b.WriteString("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	build := float64(q.built) / q.down.Seconds()
	d, drainRate, ratio := fmt.Sprintf("not in %.0f", q.drain.Seconds()), "—", "—"
	v := fmt.Sprintf("MISSED: not drained in %.0f s", q.drain.Seconds())
	if q.drained {
		dr := float64(q.built) / q.drain.Seconds()
		d, drainRate, ratio = fmt.Sprintf("%.1f", q.drain.Seconds()), fmt.Sprintf("%.0f", dr), fmt.Sprintf("%.2f", dr/build)
		v = "met"
		if dr < 2*build {
			v = fmt.Sprintf("MISSED: drain %.0f/s < 2 × build (%.0f/s)", dr, 2*build)
		}
	}
	if q.dead > 0 {
		v += fmt.Sprintf(" (%d deliveries went dead: raise max_attempts)", q.dead)
	}
	fmt.Fprintf(&b, "| %.0f | %d | %d | %.1f | %d | %.1f | %d | %.0f | %s | %s | %s | %d |\n",
		q.rate, q.res.n, q.res.shed(), q.res.pct(0.99), q.base, q.down.Seconds(), q.built, build, d, drainRate, ratio, q.dead)
	fmt.Fprintf(&b, "\n  %5.0f/s, no load after: drain rate >= 2 × build rate: %s\n", q.rate, v)
	fmt.Fprintf(&b, "\nTook %.0f s. Reproduce: HOOKRELAY_SUSTAIN=1 HOOKRELAY_SUSTAIN_SECONDS=%.0f go test -run TestSustainedAndOutage -count 1 -v -timeout %.0fm ./engine/loadtest/\n",
		time.Since(began).Seconds(), N, budget.Minutes()+5)
	fmt.Print(b.String())
}
