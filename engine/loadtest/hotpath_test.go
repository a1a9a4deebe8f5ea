package loadtest

// The hot path as users run it (issue 14, item 8; `make bench-h`). Unlike
// the report (TestBenchReport), nothing under test runs in this process:
//
//   - (h) is engine/loadtest/hserver, built and started as a process of its
//     own: net/http, the body read, one group-committed, fsynced bbolt put
//     per request, 200 after the commit.
//   - the relay is the built `hookrelay serve` binary, with a relay.yaml of
//     one destination ("broker", which the shipped providers route to),
//     `log.level: info` written to a file (its standard error), and one of
//     the shipped lenders' provider files from providers.d, unchanged.
//   - deliveries, when they run, go to `hookrelay sink` in a third process
//     (its printing to /dev/null). "Ingest alone" pauses the destination
//     through the admin API before the load (POST
//     /admin/destinations/broker/pause): the events are spooled and queued
//     as always, and nothing is sent, as behind a destination an operator
//     paused. A stopped sink would instead make the relay retry and back
//     off, which is work, not its absence.
//
// The load comes from this process: requests signed before the clock
// starts, sent closed loop by a fixed number of clients over keep-alive
// connections to 127.0.0.1. Each round runs (h) and the relay on fresh
// processes and files, which one goes first alternating from round to round,
// so that a drift in the machine's other load falls on both sides; the
// figure is the median over the rounds of relay ÷ (h).

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/internal/benchkit"
)

// TestHotPath measures (h) and the relay as described at the top of this
// file. It runs only with HOOKRELAY_HOTPATH=1 (make bench-h). Settings:
// HOOKRELAY_HOTPATH_PROVIDERS (default nordiska,kompar,avida,resurs),
// HOOKRELAY_HOTPATH_MODES (alone,deliver), HOOKRELAY_HOTPATH_ROUNDS (3),
// HOOKRELAY_HOTPATH_SECONDS (5 measured after a warm-up),
// HOOKRELAY_HOTPATH_CLIENTS (64), HOOKRELAY_HOTPATH_IDS=ascending
// (nordiska's event ids numbered in order instead of UUIDs), HOOKRELAY_BIN (a built hookrelay; else
// it is built), HOOKRELAY_HOTPATH_PROFILE=DIR (each relay run writes a CPU
// profile there, through HOOKRELAY_CPUPROFILE). Any answer but 200 fails
// it; the targets are printed, not asserted: on a shared machine they are
// a measurement, not a test.
func TestHotPath(t *testing.T) {
	if os.Getenv("HOOKRELAY_HOTPATH") == "" {
		t.Skip("the hot-path harness runs with HOOKRELAY_HOTPATH=1 (make bench-h)")
	}
	rounds := envInt(t, "HOOKRELAY_HOTPATH_ROUNDS", 3)
	dur := envSeconds(t, "HOOKRELAY_HOTPATH_SECONDS", 5*time.Second)
	clients := envInt(t, "HOOKRELAY_HOTPATH_CLIENTS", 64)
	names := strings.Split(envString("HOOKRELAY_HOTPATH_PROVIDERS", "nordiska,kompar,avida,resurs"), ",")
	modes := strings.Split(envString("HOOKRELAY_HOTPATH_MODES", "alone,deliver"), ",")
	profDir := os.Getenv("HOOKRELAY_HOTPATH_PROFILE")

	bins := t.TempDir()
	relayBin := os.Getenv("HOOKRELAY_BIN")
	if relayBin == "" {
		relayBin = filepath.Join(bins, "hookrelay")
		goBuild(t, relayBin, "../../cmd/hookrelay")
	}
	hBin := filepath.Join(bins, "hserver")
	goBuild(t, hBin, "./hserver")

	var jwksOnce sync.Once
	var jwks string
	lenders := hotLenders()
	fmt.Printf("hot path: %d rounds of %v after a warm-up, %d clients, %d CPUs (%s)\n",
		rounds, dur, clients, runtime.NumCPU(), cpuModel())
	var summary []string
	for _, name := range names {
		l, ok := lenders[name]
		if !ok {
			t.Fatalf("HOOKRELAY_HOTPATH_PROVIDERS: no lender %q", name)
		}
		if name == "resurs" {
			jwksOnce.Do(func() { jwks, _ = benchJWKS(t) })
			l.env = merged(l.env, map[string]string{"RESURS_JWKS_URL": jwks})
		}
		for _, mode := range modes {
			if mode != "alone" && mode != "deliver" {
				t.Fatalf("HOOKRELAY_HOTPATH_MODES: %q is not alone or deliver", mode)
			}
			summary = append(summary, hotRounds(t, l, mode, rounds, dur, clients, relayBin, hBin, profDir))
		}
	}
	fmt.Println("\nhot path: relay ÷ (h), medians over rounds (range); targets: nordiska alone >= 0.70, deliver >= 0.40")
	for _, s := range summary {
		fmt.Println(s)
	}
}

// hotRun is one measured run of one server.
type hotRun struct {
	n         int
	elapsed   time.Duration
	serverCPU time.Duration // the server's process (the relay's alone: not the sink's)
	sinkCPU   time.Duration
	clientCPU time.Duration
	p50, p99  time.Duration
	ranOut    bool
}

func (r hotRun) rate() float64 { return float64(r.n) / r.elapsed.Seconds() }

func (r hotRun) cpuPer(d time.Duration) float64 {
	return float64(d) / float64(time.Microsecond) / float64(max(1, r.n))
}

// hotRounds measures one lender in one mode and returns its summary line.
func hotRounds(t *testing.T, l hotLender, mode string, rounds int, dur time.Duration, clients int, relayBin, hBin, profDir string) string {
	const warm = 3000
	pool := warm + int(float64(l.rate)*dur.Seconds())
	reqs := l.reqs(t, 0, pool, time.Now())
	var sink *hotProc
	sinkAddr := freeAddr(t)
	if mode == "deliver" {
		sink = startProc(t, relayBin, t.TempDir(), nil, os.DevNull, "sink", "--listen", sinkAddr)
		defer sink.stop(t)
		waitTCP(t, sinkAddr)
	}
	fmt.Printf("\n%s, %s: %d requests of %d bytes (first)\n", l.name, hotModeName(mode), pool, len(reqs[0].body))
	fmt.Printf("%-6s %-6s %10s %8s %8s %10s %10s %10s %s\n", "round", "server", "req/s", "p50 ms", "p99 ms", "srv µs/req", "sink µs/req", "gen µs/req", "")
	var ratios, cpuRatios []float64
	for round := 1; round <= rounds; round++ {
		order := []string{"h", "relay"}
		if round%2 == 0 {
			order = []string{"relay", "h"}
		}
		runs := map[string]hotRun{}
		for _, who := range order {
			var r hotRun
			if who == "h" {
				r = hotRunH(t, hBin, reqs, warm, clients, dur)
			} else {
				prof := ""
				if profDir != "" {
					prof = filepath.Join(profDir, fmt.Sprintf("%s-%s-%d.pprof", l.name, mode, round))
				}
				r = hotRunRelay(t, l, mode, relayBin, sink, sinkAddr, prof, reqs, warm, clients, dur)
			}
			runs[who] = r
			note := ""
			if r.ranOut {
				note = "(sent every pre-built request before the time was up: a shorter run)"
			}
			fmt.Printf("%-6d %-6s %10.0f %8.2f %8.2f %10.1f %10.1f %10.1f %s\n", round, who, r.rate(),
				ms(r.p50), ms(r.p99), r.cpuPer(r.serverCPU), r.cpuPer(r.sinkCPU), r.cpuPer(r.clientCPU), note)
		}
		ratios = append(ratios, runs["relay"].rate()/runs["h"].rate())
		hc, rc := runs["h"].cpuPer(runs["h"].serverCPU), runs["relay"].cpuPer(runs["relay"].serverCPU+runs["relay"].sinkCPU)
		if rc > 0 {
			cpuRatios = append(cpuRatios, hc/rc)
		}
	}
	return fmt.Sprintf("  %-9s %-22s req/s %.2f (%s)   server CPU per request, (h)'s ÷ relay's: %.2f (%s)",
		l.name, hotModeName(mode), median(ratios), spread(ratios), median(cpuRatios), spread(cpuRatios))
}

func hotModeName(mode string) string {
	if mode == "alone" {
		return "ingest alone"
	}
	return "deliveries running"
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func spread(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', 2, 64)
	}
	return fmt.Sprintf("%.2f-%.2f; rounds %s", slices.Min(xs), slices.Max(xs), strings.Join(parts, " "))
}

// hotRunH starts (h) on a fresh file, loads it and stops it.
func hotRunH(t *testing.T, hBin string, reqs []hotReq, warm, clients int, dur time.Duration) hotRun {
	dir := t.TempDir()
	addr := freeAddr(t)
	p := startProc(t, hBin, dir, nil, filepath.Join(dir, "h.log"), "-listen", addr, "-db", filepath.Join(dir, "h.db"))
	defer p.stop(t)
	waitTCP(t, addr)
	return hotLoad(t, "http://"+addr, reqs, warm, clients, dur, p, nil)
}

// hotRunRelay starts `hookrelay serve` on a fresh spool with the lender's
// shipped provider file, loads it and stops it.
func hotRunRelay(t *testing.T, l hotLender, mode, relayBin string, sink *hotProc, sinkAddr, prof string, reqs []hotReq, warm, clients int, dur time.Duration) hotRun {
	dir := t.TempDir()
	shipped, err := os.ReadFile(filepath.Join("..", "..", "providers.d", l.name+".yaml"))
	must(t, err)
	addr, admin := freeAddr(t), freeAddr(t)
	writeConfig(t, dir, "listen: "+addr+"\nadmin: { listen: \""+admin+"\" }\nspool: { path: ./spool.db }\n"+
		"log: { level: info, format: json }\ndestinations:\n  broker:\n    url: \"http://"+sinkAddr+"/hook\"\n",
		map[string]string{l.name: string(shipped)})
	env := merged(l.env, map[string]string{"HOOKRELAY_ADMIN_TOKEN": ""})
	if prof != "" {
		env["HOOKRELAY_CPUPROFILE"] = prof
	}
	logFile := filepath.Join(dir, "relay.log")
	p := startProc(t, relayBin, dir, env, logFile, "serve", "--config", filepath.Join(dir, "relay.yaml"))
	waitReady(t, "http://"+admin, l.name)
	if mode == "alone" {
		resp, err := http.Post("http://"+admin+"/admin/destinations/broker/pause", "application/json", nil)
		must(t, err)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("pause: status %d", resp.StatusCode)
		}
	}
	r := hotLoad(t, "http://"+addr, reqs, warm, clients, dur, p, sink)
	p.stop(t)
	// The access log is what is measured too: it must hold a line per
	// request.
	logged := countLines(t, logFile, `"msg":"ingest accepted"`)
	if logged < r.n {
		t.Fatalf("relay log has %d ingest lines for %d requests", logged, r.n)
	}
	return r
}

// hotLoad sends warm requests, then the rest for dur, from clients
// closed-loop senders, and measures the run.
func hotLoad(t *testing.T, base string, reqs []hotReq, warm, clients int, dur time.Duration, server, sink *hotProc) hotRun {
	tr := &http.Transport{MaxIdleConns: 2 * clients, MaxIdleConnsPerHost: 2 * clients, IdleConnTimeout: time.Minute, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	build := func(rs []hotReq) []*http.Request {
		out := make([]*http.Request, len(rs))
		for i, r := range rs {
			req, err := http.NewRequest(http.MethodPost, base+r.path, bytes.NewReader(r.body))
			must(t, err)
			req.Header = r.header
			out[i] = req
		}
		return out
	}
	warmReqs, measured := build(reqs[:warm]), build(reqs[warm:])
	// The first request alone, as a lender's first callback: a JWS
	// provider fetches its key set on it (until it has one, concurrent
	// requests are answered 503, which the lender would retry).
	if res := hotSend(client, warmReqs[:1], 1, 0); res.failed > 0 {
		t.Fatalf("first request: %s", res.firstErr)
	}
	if res := hotSend(client, warmReqs[1:], clients, 0); res.failed > 0 {
		t.Fatalf("warm-up: %d failed; first: %s", res.failed, res.firstErr)
	}
	s0, k0 := server.cpu(t), sink.cpu(t)
	c0, _ := benchkit.ProcessCPU()
	res := hotSend(client, measured, clients, dur)
	c1, _ := benchkit.ProcessCPU()
	s1, k1 := server.cpu(t), sink.cpu(t)
	if res.failed > 0 {
		t.Fatalf("%d of %d requests failed; first: %s", res.failed, res.n+res.failed, res.firstErr)
	}
	slices.Sort(res.lat)
	return hotRun{n: res.n, elapsed: res.elapsed, serverCPU: s1 - s0, sinkCPU: k1 - k0, clientCPU: c1 - c0,
		p50: quantile(res.lat, 0.50), p99: quantile(res.lat, 0.99), ranOut: res.n+res.failed == len(measured)}
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

type hotSent struct {
	n, failed int
	firstErr  string
	elapsed   time.Duration
	lat       []time.Duration
}

// hotSend sends reqs from clients senders, each its next request as soon as
// its last is answered, until they run out or dur (when > 0) has passed.
func hotSend(client *http.Client, reqs []*http.Request, clients int, dur time.Duration) hotSent {
	var next atomic.Int64
	var mu sync.Mutex
	var out hotSent
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			failed, firstErr := 0, ""
			for {
				i := int(next.Add(1)) - 1
				if i >= len(reqs) || (dur > 0 && time.Since(start) >= dur) {
					break
				}
				t0 := time.Now()
				ok, why := do(client, reqs[i])
				if !ok {
					failed++
					if firstErr == "" {
						firstErr = why
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			out.n += len(lat)
			out.lat = append(out.lat, lat...)
			out.failed += failed
			if out.firstErr == "" {
				out.firstErr = firstErr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	out.elapsed = time.Since(start)
	return out
}
