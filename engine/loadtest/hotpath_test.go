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
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/internal/benchkit"
)

// hotReq is one pre-built request of a lender.
type hotReq struct {
	path   string
	header http.Header
	body   []byte
}

// hotLender is a shipped provider, the secrets its file names, and how its
// lender signs a request.
type hotLender struct {
	name string
	env  map[string]string
	// reqs builds requests [from, to), signed at ts.
	reqs func(t *testing.T, from, to int, ts time.Time) []hotReq
	// rate is about the most requests per second (h) can take of these:
	// it sizes the pool of pre-built requests.
	rate int
}

const (
	hotNordiskaSecret = "nordiska-signing-secret-0123456789"
	hotNordiskaToken  = "nordiska-auth-token"
	hotKomparToken    = "kompar-token-xxxxx-yyyyy"
	hotKomparKey      = "0123456789abcdef0123456789abcdef"
	hotAvidaPassword  = "avida-basic-password"
)

func hotLenders() map[string]hotLender {
	return map[string]hotLender{
		"nordiska": {
			name: "nordiska",
			env:  map[string]string{"NORDISKA_SIGNING_SECRET": hotNordiskaSecret, "NORDISKA_AUTH_TOKEN": hotNordiskaToken},
			rate: 15000,
			reqs: func(_ *testing.T, from, to int, ts time.Time) []hotReq {
				stamp := ts.UTC().Format(time.RFC3339)
				out := make([]hotReq, 0, to-from)
				for i := from; i < to; i++ {
					// 1024 onboardings, each numbering its events from 1 in
					// the order they are sent.
					// Event ids as a lender makes them (UUIDs: in no order),
					// which is what the dedup index's writes cost;
					// HOOKRELAY_HOTPATH_IDS=ascending numbers them instead,
					// to measure that cost.
					id := hotUUID(i)
					if os.Getenv("HOOKRELAY_HOTPATH_IDS") == "ascending" {
						id = fmt.Sprintf("evt-%012d", i)
					}
					body := fmt.Appendf(nil, `{"eventId":"%s","onboardingId":"onb-%04d","eventType":"SIGNING_SESSION_CREATED",`+
						`"sequence":%d,"signingUrl":"https://sign.nordiska.example/session/%010d","engagementId":"eng-%04d"}`,
						id, i%1024, i/1024+1, i, i%1024)
					h := http.Header{}
					h.Set("Content-Type", "application/json")
					h.Set("X-Card-Onboarding-Timestamp", stamp)
					h.Set("X-Card-Onboarding-Signature", benchkit.HMACHex(hotNordiskaSecret, stamp+":"+string(body)))
					h.Set("Authorization", "Bearer "+hotNordiskaToken)
					out = append(out, hotReq{path: "/in/nordiska", header: h, body: body})
				}
				return out
			},
		},
		"kompar": {
			name: "kompar",
			env: map[string]string{"KOMPAR_WEBHOOK_TOKEN": hotKomparToken, "KOMPAR_AES_KEY": hotKomparKey,
				"RELAY_PUBLIC_URL": "https://relay.example", "KOMPAR_API_URL": "https://api.kompar.example", "KOMPAR_API_TOKEN": "api-token"},
			rate: 15000,
			reqs: func(t *testing.T, from, to int, _ time.Time) []hotReq {
				block, err := aes.NewCipher([]byte(hotKomparKey))
				must(t, err)
				out := make([]hotReq, 0, to-from)
				for i := from; i < to; i++ {
					plain := fmt.Appendf(nil, `{"application_id":"K-%04d","name":"Ada Lovelace","ssn":"191212121212",`+
						`"company_id":"556677-8899","company_name":"Analytical Engines AB","company_type":"AB",`+
						`"company_revenue":125000.5,"company_age":4.5,"amount":%d,"duration":36,"purpose":"working capital"}`,
						i%1024, 100000+i)
					iv := fmt.Appendf(nil, "%016d", i)
					n := aes.BlockSize - len(plain)%aes.BlockSize
					padded := slices.Concat(plain, bytes.Repeat([]byte{byte(n)}, n))
					cipher.NewCBCEncrypter(block, iv).CryptBlocks(padded, padded)
					body := fmt.Appendf(nil, `{"data":"%s","iv":"%s"}`,
						base64.StdEncoding.EncodeToString(padded), base64.StdEncoding.EncodeToString(iv))
					h := http.Header{}
					h.Set("Content-Type", "application/json")
					h.Set("Authorization", "token "+hotKomparToken)
					out = append(out, hotReq{path: "/in/kompar/applications", header: h, body: body})
				}
				return out
			},
		},
		"avida": {
			name: "avida",
			env:  map[string]string{"AVIDA_BASIC_PASSWORD": hotAvidaPassword},
			rate: 15000,
			reqs: func(_ *testing.T, from, to int, ts time.Time) []hotReq {
				stamp := ts.UTC().Format(time.RFC3339)
				out := make([]hotReq, 0, to-from)
				for i := from; i < to; i++ {
					body := fmt.Appendf(nil, `{"applicationId":"A-%04d","externalApplicationId":"ext-%010d","agentId":"agent-7",`+
						`"timestamp":"%s","payload":{"product":"consumer-loan","approvedAmount":%d,"duration":60}}`,
						i%1024, i, stamp, 100000+i)
					h := http.Header{}
					h.Set("Content-Type", "application/json")
					h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("hookrelay:"+hotAvidaPassword)))
					out = append(out, hotReq{path: "/in/avida/approved", header: h, body: body})
				}
				return out
			},
		},
		"resurs": {
			name: "resurs",
			env:  map[string]string{"RESURS_JWKS_APIKEY": benchJWKSAPIKey},
			rate: 3000, // RSA verification; and signing the pool takes a while
			reqs: func(t *testing.T, from, to int, _ time.Time) []hotReq {
				out := make([]hotReq, 0, to-from)
				for _, r := range jwsBodies(t, from, to) {
					h := http.Header{}
					h.Set("Content-Type", "application/json")
					out = append(out, hotReq{path: "/in/resurs", header: h, body: r.Body})
				}
				return out
			},
		},
	}
}

// hotUUID is a UUID-shaped id drawn from i: the same for the same i, in no
// order from one i to the next.
func hotUUID(i int) string {
	h := sha256.Sum256(strconv.AppendInt(nil, int64(i), 10))
	x := hex.EncodeToString(h[:16])
	return x[:8] + "-" + x[8:12] + "-4" + x[13:16] + "-a" + x[17:20] + "-" + x[20:32]
}

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

// hotProc is a child process of the harness.
type hotProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	out  *os.File
}

func startProc(t *testing.T, bin, dir string, env map[string]string, outFile string, args ...string) *hotProc {
	t.Helper()
	out, err := os.Create(outFile)
	must(t, err)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	must(t, cmd.Start())
	p := &hotProc{cmd: cmd, done: make(chan struct{}), out: out}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop ends the process with SIGTERM (a relay then drains and closes its
// spool, and writes its profile), and with SIGKILL after 30 s.
func (p *hotProc) stop(t *testing.T) {
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not stop in 30 s after SIGTERM", filepath.Base(p.cmd.Path))
	}
	_ = p.out.Close()
}

// cpu is the process's user and system time so far, from /proc (0 where
// there is none).
func (p *hotProc) cpu(t *testing.T) time.Duration {
	if p == nil {
		return 0
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command's ")" : state is field 3, utime 14, stime 15.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	if len(f) < 13 {
		t.Fatalf("/proc/%d/stat: %q", p.cmd.Process.Pid, raw)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticks
}

func goBuild(t *testing.T, out, pkg string) {
	t.Helper()
	goTool := os.Getenv("GO")
	if goTool == "" {
		goTool = "go"
	}
	cmd := exec.Command(goTool, "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

// freeAddr is a loopback address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := ln.Addr().String()
	must(t, ln.Close())
	return addr
}

// waitTCP waits up to 20 s for addr to accept connections.
func waitTCP(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s after 20 s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitReady waits up to 30 s for the relay's /readyz to answer 200 with the
// provider enabled.
func waitReady(t *testing.T, admin, provider string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	last := ""
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/readyz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			last = string(b)
			if resp.StatusCode == http.StatusOK {
				if strings.Contains(last, `"`+provider+`"`) {
					t.Fatalf("the relay disabled %s: %s", provider, last)
				}
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("relay not ready after 30 s: %s", last)
}

func countLines(t *testing.T, file, sub string) int {
	t.Helper()
	f, err := os.Open(file)
	must(t, err)
	defer func() { _ = f.Close() }()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), []byte(sub)) {
			n++
		}
	}
	must(t, sc.Err())
	return n
}

func merged(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
