package loadtest

// The report's load generator runs in a process of its own: this test
// binary, started again with HOOKRELAY_LOADGEN naming a spec file, runs only
// TestLoadGenerator. In the relay's process, a generator's thousands of
// goroutines would share the Go scheduler's run queues with the relay's, and
// every request's wait behind them would count against the relay (most of
// session 2's overload latency was that). As its own process it shares only
// the two cores, as a lender's client on the same machine would.

import (
	"bufio"
	"encoding/gob"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/internal/benchkit"
)

// loadSpec is one run of the external generator.
type loadSpec struct {
	URL  string
	TS   string             // X-Timestamp of the signed requests
	Reqs []benchkit.Request // warm-up first
	// Warm is how many of the requests warm up (connections, caches) before
	// the measured run, at the same rate or concurrency, unmeasured.
	Warm int
	// Rate > 0 sends open loop at Rate requests/s; otherwise Clients send
	// closed loop, each its next request as soon as the last is answered.
	Rate    float64
	Clients int
	// Dur bounds the measured run (0: until the requests run out).
	Dur time.Duration
	// Stream, with Rate, sends Warm HMAC requests to URL to warm up, then
	// signs and sends more in chunks of about a second (startIngest) until
	// the child's standard input closes. It is for runs whose length is not
	// known up front and may outlast pre-signed requests (their timestamps
	// expire, and they take memory).
	Stream bool
	Out    string // where the child writes its loadOut
}

// loadOut is what the child measured over the measured run.
type loadOut struct {
	N            int
	Elapsed      time.Duration
	Lat, ShedLat []time.Duration // 200s, and 503s (shed), sorted
	NoRetryAfter int             // 503s without Retry-After
	Failed       int
	FirstErr     string
	MaxInFlight  int
	// Tenths are the p99 of the 200s' latencies in each tenth of an open
	// loop run, by due time: whether a tail is a moment or the whole run.
	Tenths []time.Duration
	// StartLag is the p50 and p99 of an open loop's delay from a request's
	// due time to its sender starting: the generator's own share of the wait.
	StartLag [2]time.Duration
	CPU      time.Duration // the child's own, over the measured run
	Chunks   []loadOut     // a Stream run's, each as sendOpen measured it
	// When the measured run began; runLoad sets it to when this process
	// heard so, and ParentCPU to this process's CPU over the run.
	Start     time.Time
	ParentCPU time.Duration
}

// TestLoadGenerator is the child's side: it runs the spec HOOKRELAY_LOADGEN
// names and writes its loadOut. Skipped in every other run.
func TestLoadGenerator(t *testing.T) {
	path := os.Getenv("HOOKRELAY_LOADGEN")
	if path == "" {
		t.Skip("the load generator runs only as a child of the benchmark report")
	}
	var spec loadSpec
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	err = gob.NewDecoder(f).Decode(&spec)
	_ = f.Close()
	if err != nil {
		t.Fatal(err)
	}
	src := &loadSource{url: spec.URL, ts: spec.TS, reqs: spec.Reqs}
	if spec.Stream {
		src = hmacSource(spec.URL, 0, spec.Warm) // the warm-up's; the rest is signed as it goes
	}
	tr := benchTransport(max(openLoopSenders, spec.Clients))
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	warm, rest := src.slice(0, spec.Warm), src.slice(spec.Warm, len(src.reqs))
	var out loadOut
	switch {
	case spec.Stream:
		if spec.Warm > 0 {
			sendOpen(client, warm, spec.Rate, 0, nil)
		}
		fmt.Println("go")
		d := startIngest(t, client, spec.URL, spec.Rate, spec.Warm)
		told := make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin) // until the parent says stop
			close(told)
		}()
		select {
		case <-told:
		case <-d.done: // a chunk failed: end now, so that the parent hears
		}
		d.stop()
		out.Chunks = d.chunks
	case spec.Rate > 0:
		if spec.Warm > 0 {
			sendOpen(client, warm, spec.Rate, 0, nil)
		}
		out = sendOpen(client, rest, spec.Rate, spec.Dur, func() { fmt.Println("go") })
	default:
		if spec.Warm > 0 {
			sendClosed(client, warm, spec.Clients, time.Second, nil)
		}
		out = sendClosed(client, rest, spec.Clients, spec.Dur, func() { fmt.Println("go") })
	}
	f, err = os.Create(spec.Out)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if err := gob.NewEncoder(f).Encode(&out); err != nil {
		t.Fatal(err)
	}
}

// slice is requests [from, to) of s.
func (s *loadSource) slice(from, to int) *loadSource {
	return &loadSource{url: s.url, ts: s.ts, reqs: s.reqs[from:to]}
}

// sendClosed sends src's requests from clients goroutines, each its next as
// soon as its last is answered, until they run out or dur (when > 0) has
// passed. Latency runs from the send to the end of the answer.
func sendClosed(client *http.Client, src *loadSource, clients int, dur time.Duration, started func()) loadOut {
	n := len(src.reqs)
	var next atomic.Int64
	lats := make([][]time.Duration, clients)
	var o outcomes
	var wg sync.WaitGroup
	if started != nil {
		started()
	}
	cpu0, _ := benchkit.ProcessCPU()
	t0 := time.Now()
	deadline := t0.Add(dur)
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, n/clients+1)
			for {
				i := int(next.Add(1)) - 1
				if i >= n || (dur > 0 && i%16 == 0 && time.Now().After(deadline)) {
					break
				}
				start := time.Now()
				if ok, why := do(client, src.request(i)); ok {
					mine = append(mine, time.Since(start))
				} else {
					o.miss(i, why, 0, nil)
				}
			}
			lats[w] = mine
		}()
	}
	wg.Wait()
	cpu1, _ := benchkit.ProcessCPU()
	out := o.out(t0, cpu1-cpu0)
	out.Lat = slices.Concat(lats...)
	slices.Sort(out.Lat)
	out.N = len(out.Lat) + out.Failed
	out.MaxInFlight = clients
	return out
}

// sendOpen sends src's requests at rate for dur (all of them when dur is 0):
// request i is due at start + i/rate whatever became of the ones before, and
// its latency runs from that due time to the end of its answer, so that a
// stall shows in every request it delays (no coordinated omission). Each
// request has its own goroutine, at most openLoopSenders at once.
func sendOpen(client *http.Client, src *loadSource, rate float64, dur time.Duration, started func()) loadOut {
	n := len(src.reqs)
	if dur > 0 {
		n = min(n, int(rate*dur.Seconds()))
	}
	byDue := make([]time.Duration, n) // the 200s' latencies; -1 for the others
	lag := make([]time.Duration, n)
	var shed []time.Duration
	var mu sync.Mutex // shed
	var o outcomes
	sem := make(chan struct{}, openLoopSenders)
	var wg sync.WaitGroup
	var inFlight, maxInFlight atomic.Int64
	if started != nil {
		started()
	}
	cpu0, _ := benchkit.ProcessCPU()
	t0 := time.Now().Add(time.Millisecond)
	for i := range n {
		due := t0.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			lag[i] = time.Since(due)
			f := inFlight.Add(1)
			for m := maxInFlight.Load(); f > m && !maxInFlight.CompareAndSwap(m, f); m = maxInFlight.Load() {
			}
			ok, why := do(client, src.request(i))
			inFlight.Add(-1)
			if byDue[i] = time.Since(due); !ok {
				mu.Lock()
				o.miss(i, why, byDue[i], &shed)
				mu.Unlock()
				byDue[i] = -1
			}
		}()
	}
	wg.Wait()
	cpu1, _ := benchkit.ProcessCPU()
	out := o.out(t0, cpu1-cpu0)
	sorted200 := func(lat []time.Duration) []time.Duration {
		lat = slices.DeleteFunc(slices.Clone(lat), func(d time.Duration) bool { return d < 0 })
		slices.Sort(lat)
		return lat
	}
	slices.Sort(shed)
	out.N, out.Lat, out.ShedLat, out.MaxInFlight = n, sorted200(byDue), shed, int(maxInFlight.Load())
	if slices.Sort(lag); n > 0 {
		out.StartLag = [2]time.Duration{lag[n/2], lag[n*99/100]}
	}
	for k := range 10 {
		tenth := sorted200(byDue[k*n/10 : (k+1)*n/10])
		var p99 time.Duration
		if len(tenth) > 0 {
			p99 = tenth[len(tenth)*99/100]
		}
		out.Tenths = append(out.Tenths, p99)
	}
	return out
}

// outcomes tallies answers other than 200.
type outcomes struct {
	noRetryAfter, failed atomic.Int64
	firstErr             atomic.Pointer[string]
}

// miss files request i's answer other than 200, why, which took d: under
// shed when it is a 503 and shed is not nil, else as a failure.
func (o *outcomes) miss(i int, why string, d time.Duration, shed *[]time.Duration) {
	switch {
	case shed != nil && strings.HasPrefix(why, "status 503"):
		*shed = append(*shed, d)
		if strings.HasPrefix(why, `status 503 (Retry-After "")`) {
			o.noRetryAfter.Add(1)
		}
	default:
		if o.failed.Add(1) == 1 {
			msg := fmt.Sprintf("request %d: %s", i, why)
			o.firstErr.Store(&msg)
		}
	}
}

func (o *outcomes) out(start time.Time, cpu time.Duration) loadOut {
	out := loadOut{Start: start, Elapsed: time.Since(start), CPU: cpu, NoRetryAfter: int(o.noRetryAfter.Load()), Failed: int(o.failed.Load())}
	if p := o.firstErr.Load(); p != nil {
		out.FirstErr = *p
	}
	return out
}

// runLoad runs spec in a child process and returns what it measured, with
// this process's CPU over the measured run. started, when set, runs as the
// measured run begins.
func runLoad(tb testing.TB, spec loadSpec, started func()) loadOut {
	tb.Helper()
	return startLoad(tb, spec, started).wait()
}

// loadRun is a child process running a spec.
type loadRun struct {
	tb      testing.TB
	cmd     *exec.Cmd
	stdin   io.Closer
	outPath string
	done    chan struct{} // closed when the child's output ends
	start   time.Time     // when it said the measured run began
	cpu     time.Duration // this process's CPU over the measured run
	tail    []string      // the rest of its output
}

// startLoad starts spec in a child process; started, when set, runs as the
// measured run begins.
func startLoad(tb testing.TB, spec loadSpec, started func()) *loadRun {
	tb.Helper()
	dir := tb.TempDir()
	specPath := filepath.Join(dir, "spec.gob")
	spec.Out = filepath.Join(dir, "out.gob")
	f, err := os.Create(specPath)
	if err != nil {
		tb.Fatal(err)
	}
	if err := gob.NewEncoder(f).Encode(&spec); err != nil {
		tb.Fatal(err)
	}
	_ = f.Close()
	self, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	r := &loadRun{tb: tb, outPath: spec.Out, done: make(chan struct{})}
	r.cmd = exec.Command(self, "-test.run=^TestLoadGenerator$", "-test.count=1")
	r.cmd.Env = append(os.Environ(), "HOOKRELAY_LOADGEN="+specPath)
	r.cmd.Stderr = os.Stderr
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if r.stdin, err = r.cmd.StdinPipe(); err != nil {
		tb.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		defer close(r.done)
		var cpu0 time.Duration
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "go" {
				if started != nil {
					started()
				}
				cpu0, _ = benchkit.ProcessCPU()
				r.start = time.Now()
				continue
			}
			r.tail = append(r.tail, sc.Text())
		}
		cpu1, _ := benchkit.ProcessCPU()
		r.cpu = cpu1 - cpu0
	}()
	return r
}

// exited reports whether the child has ended (before being told to, for a
// Stream run: it failed).
func (r *loadRun) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// stop tells a Stream child to finish, and waits for it.
func (r *loadRun) stop() loadOut {
	_ = r.stdin.Close()
	return r.wait()
}

// wait waits for the child to end and returns what it measured.
func (r *loadRun) wait() loadOut {
	tb := r.tb
	tb.Helper()
	<-r.done
	if err := r.cmd.Wait(); err != nil {
		tb.Fatalf("load generator: %v\n%s", err, strings.Join(r.tail, "\n"))
	}
	f, err := os.Open(r.outPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var out loadOut
	if err := gob.NewDecoder(f).Decode(&out); err != nil {
		tb.Fatal(err)
	}
	out.Start, out.ParentCPU = r.start, r.cpu
	return out
}

// specOf is a spec for src's requests, the first warm of them warming up.
func specOf(src *loadSource, warm int) loadSpec {
	return loadSpec{URL: src.url, TS: src.ts, Warm: warm, Reqs: src.reqs}
}

// asResult is out as a loadResult (200s only), its CPU both processes'.
func (out loadOut) asResult() loadResult {
	return loadResult{n: out.N, start: out.Start, elapsed: out.Elapsed, lat: out.Lat, cpu: out.CPU + out.ParentCPU,
		cpuOK: out.CPU > 0, failed: out.Failed, firstErr: out.FirstErr}
}

// asOpen is out as an openResult.
func (out loadOut) asOpen() openResult { return openResult{out.asResult(), out} }

// closedExt sends src's requests closed loop from benchClients clients of
// the external generator for dur (until they run out when dur is 0).
func closedExt(tb testing.TB, src *loadSource, dur time.Duration, started func()) loadOut {
	spec := specOf(src, 0)
	spec.Clients, spec.Dur = benchClients, dur
	return runLoad(tb, spec, started)
}

// openExt sends src's requests open loop at rate from the external
// generator: the first warm unmeasured, then the rest for dur.
func openExt(tb testing.TB, src *loadSource, warm int, rate float64, dur time.Duration) loadOut {
	tb.Helper()
	spec := specOf(src, warm)
	spec.Rate, spec.Dur = rate, dur
	return answered(tb, runLoad(tb, spec, nil), rate)
}

// answered fails tb when an open loop at rate got any answer but 200 and
// 503, and returns out.
func answered(tb testing.TB, out loadOut, rate float64) loadOut {
	tb.Helper()
	if out.Failed > 0 {
		tb.Fatalf("%.0f req/s: %d of %d requests failed; first: %s", rate, out.Failed, out.N, out.FirstErr)
	}
	return out
}
