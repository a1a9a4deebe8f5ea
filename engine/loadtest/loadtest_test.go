package loadtest

// The benchmark report (BENCHMARKS.md): the ceilings and hookrelay measured
// one after the other in one process, so that their ratios are fair, the
// latency under an open-loop load, and overload. The load comes from a
// generator in a process of its own (loadgen_test.go). All are skipped
// unless HOOKRELAY_BENCH_REPORT=1:
//
//	HOOKRELAY_BENCH_REPORT=1 go test -run 'TestBenchReport|TestOpenLoopLatency|TestOverload' -count 1 -v ./engine/loadtest/
//
// HOOKRELAY_BENCH_SECONDS sets how long each measurement runs (default 5).

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine"
)

// benchReport skips t unless HOOKRELAY_BENCH_REPORT=1, and returns how long
// each measurement runs.
func benchReport(t *testing.T) time.Duration {
	if os.Getenv("HOOKRELAY_BENCH_REPORT") != "1" {
		t.Skip("set HOOKRELAY_BENCH_REPORT=1 to run the benchmark report")
	}
	return envSeconds(t, "HOOKRELAY_BENCH_SECONDS", 5*time.Second)
}

// envSeconds is the duration the environment variable name gives in
// seconds, or def when it is unset.
func envSeconds(t *testing.T, name string, def time.Duration) time.Duration {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	secs, err := strconv.ParseFloat(s, 64)
	if err != nil || secs <= 0 {
		t.Fatalf("%s=%q: want a positive number of seconds", name, s)
	}
	return time.Duration(secs * float64(time.Second))
}

// envInt is the positive integer the environment variable name gives, or
// def when it is unset.
func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, s)
	}
	return n
}

// reportRow is one line of the report.
type reportRow struct {
	id, what     string
	rate         float64 // req/s, or delivered events/s for (d)
	p50, p99, pX float64 // ms; pX is p99.9
	cpu          float64 // process CPU µs per request (per event for (d))
	n            int
	elapsed      time.Duration
	note         string
}

func rowOf(id, what string, lr loadResult) reportRow {
	return reportRow{id: id, what: what, rate: lr.rate(), p50: lr.pct(0.50), p99: lr.pct(0.99),
		pX: lr.pct(0.999), cpu: lr.cpuPerReq(), n: lr.n, elapsed: lr.elapsed}
}

// sourceFn returns requests [from, to) of one kind, to one URL.
type sourceFn func(from, to int) *loadSource

// measureClosed warms a target up with the external generator's closed loop
// for a second (warmN requests at most), lets settle run (a drain of the
// deliveries the warm-up left, say), then measures it for dur with a fresh
// set of requests: spare times as many as the warm-up's rate asks for. The
// requests are built before the clock starts; should they run out before
// dur the run is shorter, as its elapsed says. settle runs again after the
// run, so that nothing it left behind loads the next measurement.
func measureClosed(t *testing.T, mk sourceFn, warmN int, spare float64, dur time.Duration, settle func()) loadResult {
	t.Helper()
	warm := closedExt(t, mk(0, warmN), time.Second, nil).asResult()
	if warm.failed > 0 {
		t.Fatalf("warm-up: %d of %d requests failed; first: %s", warm.failed, warm.n, warm.firstErr)
	}
	if settle != nil {
		settle()
	}
	n := int(warm.rate()*dur.Seconds()*spare) + 1000
	src := mk(warmN, warmN+n)
	runtime.GC()
	lr := closedExt(t, src, dur, nil).asResult()
	if lr.failed > 0 {
		t.Fatalf("%d of %d requests failed; first: %s", lr.failed, lr.n, lr.firstErr)
	}
	if settle != nil {
		settle()
	}
	return lr
}

// TestBenchReport runs (g), (h), (b), (c) and (d) one after the other, each
// for HOOKRELAY_BENCH_SECONDS after a one-second warm-up, and prints their
// figures and their ratios to (h) and (g) as a Markdown table, then the
// targets met and missed, and privacy's cost: (bp) and (b0p), which are (b)
// and (b0) with privacy on, divided by their plain rows.
func TestBenchReport(t *testing.T) {
	dur := benchReport(t)
	rounds := envInt(t, "HOOKRELAY_BENCH_ROUNDS", 1)
	var all [][]reportRow
	for round := range rounds {
		fmt.Printf("\nRound %d of %d\n", round+1, rounds)
		rows := benchRound(t, dur, round)
		printReport(rows)
		all = append(all, rows)
	}
	if rounds > 1 {
		printMedians(all)
	}
}

// benchRound measures (g), (h), (b), (bp), (b0), (b0p), (c), (c0) and (d)
// once, each on servers and relays of its own; round decides which of each
// privacy pair goes first.
func benchRound(t *testing.T, dur time.Duration, round int) []reportRow {
	hmac := func(url string) sourceFn {
		return func(from, to int) *loadSource { return hmacSource(url, from, to-from) }
	}
	var rows []reportRow

	// (g) bare net/http.
	rows = append(rows, rowOf("g", "net/http: read body, answer 200",
		measureClosed(t, hmac(startBaselineHTTP(t)), 60000, 2, dur, nil)))

	// (h) plus a group-committed, fsynced bbolt put.
	hURL, _ := startBaselineBoltPut(t)
	rows = append(rows, rowOf("h", "(g) + group-committed fsynced bbolt put",
		measureClosed(t, hmac(hURL), 30000, 2, dur, nil)))

	// (b) HMAC ingest, deliveries alongside; (b0) the same ingest alone: the
	// destination takes one request per 1000 s, so deliveries take no CPU
	// (as behind a paused destination). (bp) and (b0p) are the same with
	// privacy on, each measured next to its plain row, first in one round
	// and second in the next, so that drift in the machine's other load
	// falls on both sides of privacyRatios alike.
	dest, _ := countingDest(t)
	drain := func(r *engine.Relay) func() { return func() { waitDelivered(t, r, 5*time.Minute) } }
	type hmacRow struct {
		id, what string
		start    func(testing.TB, string, string, map[string]string) (*engine.Relay, *httptest.Server)
		extra    string
		drain    bool
	}
	for _, pair := range [][2]hmacRow{
		{{"b", "ingest, HMAC (deliveries alongside)", benchRelay, "", true},
			{"bp", "ingest, HMAC, privacy on (deliveries alongside)", benchRelayPrivacy, "", true}},
		{{"b0", "ingest, HMAC (ingest alone)", benchRelay, noDelivery, false},
			{"b0p", "ingest, HMAC, privacy on (ingest alone)", benchRelayPrivacy, noDelivery, false}},
	} {
		if round%2 == 1 {
			pair[0], pair[1] = pair[1], pair[0]
		}
		for _, hr := range pair {
			r, srv := hr.start(t, dest.URL, hr.extra, nil)
			var settle func()
			if hr.drain {
				settle = drain(r)
			}
			rows = append(rows, rowOf(hr.id, hr.what, measureClosed(t, hmac(srv.URL+"/in/example"), 30000, 2, dur, settle)))
		}
	}

	// (c) JWS ingest: RS256 against a loopback JWKS, payload must-match;
	// (c0) alone, as (b0).
	const jwsWarm = 1500
	jwsBodies(t, 0, 1+jwsWarm+int(2*6000*dur.Seconds())) // sign a likely amount up front, on every core
	destC, _ := countingDest(t)
	jwksURL, _ := benchJWKS(t)
	jws := func(url string) sourceFn {
		return func(from, to int) *loadSource { return &loadSource{url: url, reqs: jwsBodies(t, 1+from, 1+to)} }
	}
	rc, srvC := benchRelay(t, destC.URL, "", map[string]string{"resurs": benchJWSProvider(t, jwksURL)})
	primeJWS(t, srvC.URL+"/in/resurs")
	rows = append(rows, rowOf("c", "ingest, RS256 JWS + JWKS, must-match (deliveries alongside)",
		measureClosed(t, jws(srvC.URL+"/in/resurs"), jwsWarm, 1.3, dur, drain(rc))))
	_, srvC0 := benchRelay(t, destC.URL, noDelivery, map[string]string{"resurs": benchJWSProvider(t, jwksURL)})
	primeJWS(t, srvC0.URL+"/in/resurs")
	rows = append(rows, rowOf("c0", "ingest, RS256 JWS + JWKS, must-match (ingest alone)",
		measureClosed(t, jws(srvC0.URL+"/in/resurs"), jwsWarm, 1.3, dur, nil)))

	// (d) end to end: ingested, delivered, recorded delivered. The warm-up
	// (2000 events) gives the rate, which sizes the run to about dur.
	destD, counter := countingDest(t)
	rd, srvD := benchRelay(t, destD.URL, "", nil)
	dURL := srvD.URL + "/in/example"
	const dWarm = 2000
	ext := func(src *loadSource) func(func()) (loadResult, time.Duration) {
		return func(started func()) (loadResult, time.Duration) {
			out := closedExt(t, src, 0, started)
			return out.asResult(), out.CPU
		}
	}
	warm := endToEnd(t, rd, counter, ext(hmacSource(dURL, 0, dWarm)))
	n := int(warm.rate()*dur.Seconds()) + 1
	src := hmacSource(dURL, dWarm, n)
	runtime.GC()
	e := endToEnd(t, rd, counter, ext(src))
	age := loadResult{lat: e.ages}
	d := reportRow{id: "d", what: "end to end: delivered and recorded (events/s)", rate: e.rate(),
		p50: e.ingest.pct(0.50), p99: e.ingest.pct(0.99), pX: e.ingest.pct(0.999), n: n, elapsed: e.total,
		note: fmt.Sprintf("ingest alone %.0f req/s; age at the destination p50 %.0f ms, p99 %.0f ms, p99.9 %.0f ms",
			e.ingest.rate(), age.pct(0.50), age.pct(0.99), age.pct(0.999))}
	if e.cpuOK {
		d.cpu = float64(e.cpu) / float64(time.Microsecond) / float64(n)
	}
	return append(rows, d)
}

// printMedians prints, per row, the median over the rounds of its
// throughput and CPU ratios to (h) of the same round, with their range, and
// the targets judged on the medians.
func printMedians(all [][]reportRow) {
	type ratios struct{ rate, cpu []float64 }
	by := map[string]*ratios{}
	var ids []string
	for _, rows := range all {
		var h reportRow
		for _, r := range rows {
			if r.id == "h" {
				h = r
			}
		}
		for _, r := range rows {
			if by[r.id] == nil {
				by[r.id] = &ratios{}
				ids = append(ids, r.id)
			}
			by[r.id].rate = append(by[r.id].rate, r.rate/h.rate)
			if r.cpu > 0 {
				by[r.id].cpu = append(by[r.id].cpu, h.cpu/r.cpu)
			}
		}
	}
	median := func(x []float64) (med, lo, hi float64) {
		if len(x) == 0 {
			return 0, 0, 0
		}
		x = slices.Clone(x)
		slices.Sort(x)
		n := len(x)
		return (x[(n-1)/2] + x[n/2]) / 2, x[0], x[n-1]
	}
	fmt.Printf("\nMedians over %d rounds, each ratio to (h) of its own round\n\n", len(all))
	fmt.Println("| | req/s ÷h: median | range | (h)'s CPU per request ÷ its: median | range |")
	fmt.Println("|---|--:|--:|--:|--:|")
	for _, id := range ids {
		m, lo, hi := median(by[id].rate)
		cm, clo, chi := median(by[id].cpu)
		fmt.Printf("| %s | %.2f | %.2f-%.2f | %.2f | %.2f-%.2f |\n", id, m, lo, hi, cm, clo, chi)
	}
	fmt.Printf("\nPrivacy's cost: median over the rounds of each round's privacy row ÷ its plain row\n\n")
	fmt.Println("| | req/s: median | range | CPU per request: median | range |")
	fmt.Println("|---|--:|--:|--:|--:|")
	for _, pp := range privacyPairs {
		var rate, cpu []float64
		for _, rows := range all {
			if r, c, ok := privacyRatio(rows, pp); ok {
				rate, cpu = append(rate, r), append(cpu, c)
			}
		}
		m, lo, hi := median(rate)
		cm, clo, chi := median(cpu)
		fmt.Printf("| %s ÷ %s | %.3f | %.3f-%.3f | %.3f | %.3f-%.3f |\n", pp[1], pp[0], m, lo, hi, cm, clo, chi)
	}
	fmt.Println()
	for _, tg := range reportTargets {
		m, _, _ := median(by[tg.id].rate)
		verdict := "met"
		if m < tg.want {
			verdict = fmt.Sprintf("MISSED by %.0f%% of (h)", 100*(tg.want-m))
		}
		fmt.Printf("  (%s) >= %.0f%% of (h): median %.0f%% -> %s\n", tg.id, 100*tg.want, 100*m, verdict)
	}
}

// privacyPairs are the report's rows without and with privacy: on.
var privacyPairs = [][2]string{{"b", "bp"}, {"b0", "b0p"}}

// privacyRatio is, in one round's rows, the privacy row's throughput ÷ the
// plain row's, and its CPU per request ÷ the plain row's.
func privacyRatio(rows []reportRow, pair [2]string) (rate, cpu float64, ok bool) {
	var plain, priv reportRow
	for _, r := range rows {
		switch r.id {
		case pair[0]:
			plain = r
		case pair[1]:
			priv = r
		}
	}
	if plain.rate == 0 || priv.rate == 0 {
		return 0, 0, false
	}
	if plain.cpu > 0 {
		cpu = priv.cpu / plain.cpu
	}
	return priv.rate / plain.rate, cpu, true
}

// reportTargets are the throughput targets, as shares of (h).
var reportTargets = []struct {
	id   string
	want float64
}{{"b", 0.70}, {"bp", 0.70}, {"b0", 0.70}, {"b0p", 0.70}, {"c", 0.40}, {"c0", 0.40}, {"d", 0.40}}

// printReport writes the table and the targets to stdout.
func printReport(rows []reportRow) {
	by := map[string]reportRow{}
	for _, r := range rows {
		by[r.id] = r
	}
	g, h := by["g"], by["h"]
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s, GOMAXPROCS %d, %s\n\n", runtime.Version(), runtime.GOMAXPROCS(0), cpuModel())
	b.WriteString("| | what | req/s | ÷h | ÷g | p50 ms | ÷h | ÷g | p99 ms | ÷h | ÷g | p99.9 ms | ÷h | ÷g | CPU µs/req | ÷h | requests | s |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.0f | %.2f | %d | %.1f |\n",
			r.id, r.what, r.rate, r.rate/h.rate, r.rate/g.rate,
			r.p50, r.p50/h.p50, r.p50/g.p50, r.p99, r.p99/h.p99, r.p99/g.p99, r.pX, r.pX/h.pX, r.pX/g.pX,
			r.cpu, r.cpu/h.cpu, r.n, r.elapsed.Seconds())
	}
	b.WriteString("\n")
	for _, r := range rows {
		if r.note != "" {
			fmt.Fprintf(&b, "(%s) %s\n", r.id, r.note)
		}
	}
	b.WriteString("\nPrivacy's cost (privacy row ÷ plain row, this round):\n")
	for _, pp := range privacyPairs {
		if rate, cpu, ok := privacyRatio(rows, pp); ok {
			fmt.Fprintf(&b, "  (%s) ÷ (%s): req/s %.3f, CPU per request %.3f\n", pp[1], pp[0], rate, cpu)
		}
	}
	b.WriteString("\nTargets (throughput as a share of (h); in brackets, the share (h)'s CPU per request implies):\n")
	for _, tg := range reportTargets {
		r := by[tg.id]
		got := r.rate / h.rate
		verdict := "met"
		if got < tg.want {
			verdict = fmt.Sprintf("MISSED by %.0f%% of (h) (%.0f req/s)", 100*(tg.want-got), tg.want*h.rate-r.rate)
		}
		fmt.Fprintf(&b, "  (%s) >= %.0f%% of (h): %.0f%% [CPU: %.0f%%] -> %s\n", tg.id, 100*tg.want, 100*got, 100*h.cpu/r.cpu, verdict)
	}
	fmt.Print(b.String())
}

// cpuModel is the CPU's model name from /proc/cpuinfo, when there is one.
func cpuModel() string {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// openLoopSenders bounds the requests in flight under the open-loop load.
const openLoopSenders = 2000

// openResult is one open-loop run as the generator measured it, with its
// 200s as a loadResult (latencies from each request's scheduled send time,
// the wait for a free sender included) for pct, rate and CPU.
type openResult struct {
	loadResult
	loadOut
}

// shed is how many requests were answered 503; they are not in lat.
func (r openResult) shed() int { return len(r.ShedLat) }

// tenthsMS formats the p99 of each tenth of the run in ms.
func (r openResult) tenthsMS() string {
	parts := make([]string, len(r.Tenths))
	for i, d := range r.Tenths {
		parts[i] = fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond))
	}
	return strings.Join(parts, " ")
}

// TestOpenLoopLatency measures the latency of (h) and (b) under an
// open-loop load of 1000, 2000 and 5000 requests/s, each for
// HOOKRELAY_BENCH_SECONDS after a tenth of that of warm-up at the same rate
// from the same generator process, latency counted from each request's
// scheduled send time. (b)'s deliveries run alongside; its queue is drained
// before each (h) run so that they do not load the machine under (h).
func TestOpenLoopLatency(t *testing.T) {
	dur := benchReport(t)
	hURL, _ := startBaselineBoltPut(t)
	dest, _ := countingDest(t)
	rb, srv := benchRelay(t, dest.URL, "", nil)
	bURL := srv.URL + "/in/example"

	type target struct {
		id, url string
		after   func()
	}
	targets := []target{{"h", hURL, nil}, {"b", bURL, func() { waitDelivered(t, rb, 5*time.Minute) }}}
	next := map[string]int{} // the next request number per target: event ids stay unique
	// run warms up for a tenth of d at rate (connections, caches), then
	// measures d, in one generator process.
	run := func(tg target, rate float64, d time.Duration) openResult {
		warm, n := int(rate*d.Seconds()/10)+1, int(rate*d.Seconds())+1
		src := hmacSource(tg.url, next[tg.id], warm+n)
		next[tg.id] += warm + n
		runtime.GC()
		res := openExt(t, src, warm, rate, d).asOpen()
		if tg.after != nil {
			tg.after()
		}
		return res
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\nOpen loop, %.0f s per rate, latency from the scheduled send time; %s, GOMAXPROCS %d\n\n",
		dur.Seconds(), runtime.Version(), runtime.GOMAXPROCS(0))
	b.WriteString("| rate/s | | achieved/s | p50 ms | p99 ms | p99.9 ms | shed (503) | max in flight | CPU µs/req |\n")
	b.WriteString("|--:|---|--:|--:|--:|--:|--:|--:|--:|\n")
	var verdicts []string
	for _, rate := range []float64{1000, 2000, 5000} {
		res := map[string]openResult{}
		for _, tg := range targets {
			res[tg.id] = run(tg, rate, dur)
		}
		for _, tg := range targets {
			r := res[tg.id]
			fmt.Fprintf(&b, "| %.0f | %s | %.0f | %.2f | %.2f | %.2f | %d | %d | %.0f |\n", rate, tg.id,
				float64(r.n)/r.elapsed.Seconds(), r.pct(0.50), r.pct(0.99), r.pct(0.999), r.shed(), r.MaxInFlight, r.cpuPerReq())
		}
		h, bb := res["h"], res["b"]
		ratio := bb.pct(0.99) / h.pct(0.99)
		verdict := "met"
		if ratio > 2 {
			verdict = fmt.Sprintf("MISSED: %.1fx (h)'s p99, %.2f ms over 2x", ratio, bb.pct(0.99)-2*h.pct(0.99))
		}
		if bb.shed() > 0 {
			verdict += fmt.Sprintf("; and %d requests (%.1f%%) shed with 503", bb.shed(), 100*float64(bb.shed())/float64(bb.n))
		}
		verdicts = append(verdicts, fmt.Sprintf("  %5.0f/s: p50 (b)/(h) %.2f, p99 (b)/(h) %.2f, p99.9 (b)/(h) %.2f -> p99 <= 2x (h): %s",
			rate, bb.pct(0.50)/h.pct(0.50), ratio, bb.pct(0.999)/h.pct(0.999), verdict))
	}
	b.WriteString("\n" + strings.Join(verdicts, "\n") + "\n")
	fmt.Print(b.String())
}

// TestOverload offers (b) twice the rate it saturates at. The relay must
// shed with 503 and Retry-After rather than let latency grow to seconds
// (lenders give up after 10-30 s and count a failure), and the requests it
// accepts must keep p99 under 100 ms. The saturating rate is (b)'s
// closed-loop rate with 64 clients, measured first in the same run on a
// relay of its own, so that the overload starts on a fresh spool.
func TestOverload(t *testing.T) {
	dur := benchReport(t)
	dest, _ := countingDest(t)
	rs, srvS := benchRelay(t, dest.URL, "", nil)
	sat := measureClosed(t, func(from, to int) *loadSource { return hmacSource(srvS.URL+"/in/example", from, to-from) },
		20_000, 1.5, dur, func() { waitDelivered(t, rs, 5*time.Minute) })
	rate := 2 * sat.rate()

	destO, _ := countingDest(t)
	rb, _ := benchRelay(t, destO.URL, "", nil)
	var inHandler handlerTimes
	srv := httptest.NewServer(inHandler.wrap(rb.IngestHandler()))
	t.Cleanup(srv.Close)
	warm, n := int(rate*dur.Seconds()/10)+1, int(rate*dur.Seconds())+1
	src := hmacSource(srv.URL+"/in/example", 0, warm+n)
	runtime.GC()
	out := openExt(t, src, warm, rate, dur)
	waitDelivered(t, rb, 5*time.Minute)
	r := out.asOpen()

	pct := func(lat []time.Duration, p float64) float64 { return (&loadResult{lat: lat}).pct(p) }
	fmt.Printf("\nOverload, %.0f s, %s, GOMAXPROCS %d: (b) saturates at %.0f req/s (closed loop, 64 clients); offered %.0f req/s\n\n",
		dur.Seconds(), runtime.Version(), runtime.GOMAXPROCS(0), sat.rate(), rate)
	fmt.Println("| answer | answers/s | share | p50 ms | p99 ms | p99.9 ms | max ms |")
	fmt.Println("|---|--:|--:|--:|--:|--:|--:|")
	for _, row := range []struct {
		name string
		lat  []time.Duration
	}{{"accepted (200)", r.lat}, {"shed (503)", r.ShedLat}} {
		fmt.Printf("| %s | %.0f | %.1f%% | %.2f | %.2f | %.2f | %.2f |\n", row.name,
			float64(len(row.lat))/r.elapsed.Seconds(), 100*float64(len(row.lat))/float64(r.n),
			pct(row.lat, 0.50), pct(row.lat, 0.99), pct(row.lat, 0.999), pct(row.lat, 1))
	}
	verdict := "met"
	if p99 := pct(r.lat, 0.99); p99 >= 100 {
		verdict = fmt.Sprintf("MISSED by %.0f ms", p99-100)
	}
	secs := out.Elapsed.Seconds()
	fmt.Printf("\nCPU over the run: relay %.2f cores, generator %.2f cores; accepted p99 by tenth of the run (ms): %s\n",
		out.ParentCPU.Seconds()/secs, out.CPU.Seconds()/secs, r.tenthsMS())
	fmt.Printf("503s without Retry-After: %d of %d; max in flight %d; accepted p99 < 100 ms: %s\n",
		r.NoRetryAfter, r.shed(), r.MaxInFlight, verdict)
	ok, shed := inHandler.sorted()
	fmt.Printf("Where the wait is (p50 / p99 ms): from due time to the generator's sender starting %.2f / %.2f; "+
		"in the relay's handler (request read, to answer written), accepted %.2f / %.2f, shed %.2f / %.2f\n",
		out.StartLag[0].Seconds()*1e3, out.StartLag[1].Seconds()*1e3, pct(ok, 0.5), pct(ok, 0.99), pct(shed, 0.5), pct(shed, 0.99))
	if r.NoRetryAfter > 0 {
		t.Errorf("%d of %d 503 answers had no Retry-After", r.NoRetryAfter, r.shed())
	}
	if len(r.lat) == 0 {
		t.Errorf("nothing accepted at %.0f req/s", rate)
	}
}

// handlerTimes records how long each answer took inside the handler it
// wraps, from the handler's first line (the request's header read) to its
// return: the relay's own share of a request's wait. Warm-up included.
type handlerTimes struct {
	mu       sync.Mutex
	ok, shed []time.Duration
}

func (h *handlerTimes) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, req)
		d := time.Since(start)
		h.mu.Lock()
		defer h.mu.Unlock()
		if sw.status == http.StatusOK {
			h.ok = append(h.ok, d)
		} else {
			h.shed = append(h.shed, d)
		}
	})
}

// sorted returns the 200s' and the other answers' times, each sorted.
func (h *handlerTimes) sorted() (ok, other []time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ok, other = slices.Clone(h.ok), slices.Clone(h.shed)
	slices.Sort(ok)
	slices.Sort(other)
	return ok, other
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}
