package main

// Crash and shutdown tests against the real `hookrelay serve` binary: it is
// built once in TestMain, run as a child process on loopback ports, killed
// with SIGKILL mid-load and restarted on the same spool, and stopped with
// SIGTERM. Traffic only ever goes to 127.0.0.1; the only processes signalled
// are the ones these tests start, by their PID.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// binPath is the hookrelay binary TestMain builds.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hookrelay-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash_test:", err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "hookrelay")
	build := exec.Command(goTool(), "build", "-o", binPath, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "crash_test: go build:", err)
		_ = os.RemoveAll(dir) // a temporary directory: failing to remove it changes nothing
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// goTool is the go command of the toolchain running the tests (go test
// sets GOROOT for them), else the one on PATH.
func goTool() string {
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" && fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

const (
	testSecret   = "crash-test-secret-3c1f"
	secretEnv    = "HOOKRELAY_CRASHTEST_SECRET"
	missingEnv   = "HOOKRELAY_CRASHTEST_MISSING"
	providerPath = "/in/crash"
)

// providerYAML verifies HMAC-SHA256 over "{X-Timestamp}.{body}" and keys
// events on body.key with body.id as the lender's event id.
const providerYAML = `name: crash
paths: [` + providerPath + `]
verify:
  - kind: hmac
    secret: env:` + secretEnv + `
    algorithm: sha256
    signed: "{header.X-Timestamp}.{body}"
    signature: { header: X-Signature, encoding: hex }
    timestamp: { header: X-Timestamp, format: unix, tolerance: 5m }
event:
  id: body.id
  key: body.key
  type: body.type
  data:
    n: body.n
routes:
  - to: [sink]
`

// lockedProviderYAML needs a secret that is never set, so it loads disabled.
const lockedProviderYAML = `name: locked
paths: [/in/locked]
verify:
  - kind: hmac
    secret: env:` + missingEnv + `
    algorithm: sha256
    signed: "{header.X-Timestamp}.{body}"
    signature: { header: X-Signature, encoding: hex }
    timestamp: { header: X-Timestamp, format: unix }
event:
  id: body.id
  key: body.key
routes:
  - to: [sink]
`

// freePort returns a loopback port that was free a moment ago, below the
// kernel's ephemeral range: a relay restarted on its port after a kill must
// not find it taken as the source port of some other connection, which an
// ephemeral port can become as soon as its listener is gone.
func freePort(t *testing.T) int {
	t.Helper()
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				lo = n
			}
		}
	}
	for i := 0; i < 200 && lo > 11000; i++ {
		port := 10000 + rand.IntN(lo-11000)
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			must(t, ln.Close()) // the port is free only once closed
			return port
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	must(t, ln.Close())
	return port
}

// freePorts returns two different free loopback ports.
func freePorts(t *testing.T) (int, int) {
	t.Helper()
	a, b := freePort(t), freePort(t)
	for i := 0; a == b && i < 10; i++ {
		b = freePort(t)
	}
	if a == b {
		t.Fatalf("no second free port")
	}
	return a, b
}

// childEnv is the environment of a relay: the test's own, without any
// HOOKRELAY_ override that could change the configuration or a provider
// secret set by the caller (make run's), plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOOKRELAY_") && !strings.HasPrefix(kv, "EXAMPLE_WEBHOOK_SECRET=") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// relayProc is one relay configuration, run as a child process; start may be
// called again after the process ended, on the same spool.
type relayProc struct {
	dir     string // working directory, holds relay.yaml, providers.d and the spool
	ingest  string // base URL
	admin   string // base URL
	spool   string // spool file path
	timeout time.Duration
	ready   time.Duration // how long start waits for /readyz; 0 means 15s
	env     []string
	args    []string // serve's arguments; nil means --config DIR/relay.yaml
	log     *os.File

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has exited
	waitErr error
	starts  int
}

// relayOpts changes newRelayWith's configuration; zero values keep the
// defaults.
type relayOpts struct {
	destTimeout time.Duration // the sink's per-attempt timeout; 0 means 3s
}

// newRelay writes relay.yaml and providers.d into a temp dir. The
// destination `sink` is sinkURL.
func newRelay(t *testing.T, sinkURL string, providers map[string]string) *relayProc {
	t.Helper()
	return newRelayWith(t, sinkURL, providers, relayOpts{})
}

// newRelayWith is newRelay with options.
func newRelayWith(t *testing.T, sinkURL string, providers map[string]string, o relayOpts) *relayProc {
	t.Helper()
	if o.destTimeout == 0 {
		o.destTimeout = 3 * time.Second
	}
	dir := t.TempDir()
	in, adm := freePorts(t)
	r := &relayProc{
		dir:     dir,
		ingest:  fmt.Sprintf("http://127.0.0.1:%d", in),
		admin:   fmt.Sprintf("http://127.0.0.1:%d", adm),
		spool:   filepath.Join(dir, "spool", "hookrelay.db"),
		timeout: 5 * time.Second,
		env:     childEnv(secretEnv + "=" + testSecret),
	}
	cfg := fmt.Sprintf(`listen: "127.0.0.1:%d"
admin:
  listen: "127.0.0.1:%d"
spool:
  path: ./spool/hookrelay.db
providers_dir: ./providers.d
shutdown_timeout: %s
log: { level: warn, format: text }
destinations:
  sink:
    url: "%s/hook"
    timeout: %s
    concurrency: 8
    retry:
      max_attempts: 200
      initial: 20ms
      max: 300ms
      multiplier: 2
      jitter: full
`, in, adm, r.timeout, sinkURL, o.destTimeout)
	must(t, os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte(cfg), 0o644))
	must(t, os.MkdirAll(filepath.Join(dir, "providers.d"), 0o755))
	for name, body := range providers {
		must(t, os.WriteFile(filepath.Join(dir, "providers.d", name+".yaml"), []byte(body), 0o644))
	}
	return logTo(t, r, filepath.Join(dir, "relay.log"))
}

// logTo gives r a log file at path and, when the test ends, stops r and
// shows the log's last 8 KiB if the test failed.
func logTo(t *testing.T, r *relayProc, path string) *relayProc {
	t.Helper()
	f, err := os.Create(path)
	must(t, err)
	r.log = f
	t.Cleanup(func() {
		r.stopHard()
		_ = f.Close() // the relay wrote the log through its own descriptor
		if t.Failed() {
			if b, err := os.ReadFile(f.Name()); err == nil {
				t.Logf("relay log (last 8 KiB):\n%s", tail(b, 8<<10))
			}
		}
	})
	return r
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// start runs `hookrelay serve` and waits until /readyz answers 200. It does
// not call t.Fatal, so other goroutines may use it.
func (r *relayProc) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done != nil {
		select {
		case <-r.done:
		default:
			return errors.New("relay already running")
		}
	}
	r.starts++
	fmt.Fprintf(r.log, "=== start %d at %s ===\n", r.starts, time.Now().Format(time.RFC3339Nano))
	args := r.args
	if args == nil {
		args = []string{"serve", "--config", filepath.Join(r.dir, "relay.yaml")}
	}
	cmd := exec.Command(binPath, args...)
	cmd.Dir = r.dir
	cmd.Env = r.env
	cmd.Stdout, cmd.Stderr = r.log, r.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start relay: %w", err)
	}
	done := make(chan struct{})
	r.cmd, r.done = cmd, done
	go func() {
		err := cmd.Wait()
		r.mu.Lock()
		r.waitErr = err
		r.mu.Unlock()
		close(done)
	}()
	limit := r.ready
	if limit == 0 {
		limit = 15 * time.Second
	}
	return r.waitReady(done, limit)
}

func (r *relayProc) waitReady(done chan struct{}, limit time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("relay exited during start-up: %w", r.exitErr())
		default:
		}
		if resp, err := c.Get(r.admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("relay not ready after %s", limit)
}

func (r *relayProc) exitErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.waitErr
}

func (r *relayProc) current() (*exec.Cmd, chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cmd, r.done
}

// kill sends SIGKILL to the running relay and waits for it to be gone.
func (r *relayProc) kill() error {
	cmd, done := r.current()
	if cmd == nil {
		return errors.New("relay not started")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill relay: %w", err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("relay still running 10s after SIGKILL")
	}
}

// terminate sends SIGTERM and waits for the exit, up to limit. It returns
// the exit code and how long the relay took to exit.
func (r *relayProc) terminate(limit time.Duration) (int, time.Duration, error) {
	cmd, done := r.current()
	if cmd == nil {
		return -1, 0, errors.New("relay not started")
	}
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return -1, 0, fmt.Errorf("terminate relay: %w", err)
	}
	select {
	case <-done:
	case <-time.After(limit):
		return -1, time.Since(start), fmt.Errorf("relay still running %s after SIGTERM", limit)
	}
	took := time.Since(start)
	return cmd.ProcessState.ExitCode(), took, nil
}

// stopHard kills the relay if it is still running; for cleanup.
func (r *relayProc) stopHard() {
	cmd, done := r.current()
	if cmd == nil {
		return
	}
	select {
	case <-done:
	default:
		_ = cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	}
}

// signedRequest builds a POST signed the way providerYAML verifies.
func signedRequest(ctx context.Context, url string, body []byte) (*http.Request, error) {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, []byte(testSecret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Timestamp", ts)
	req.Header.Set("X-Signature", hex.EncodeToString(mac.Sum(nil)))
	return req, nil
}

// eventBody is the webhook body of event n of key.
func eventBody(key string, n int) []byte {
	return fmt.Appendf(nil, `{"id":"%s-%d","key":%q,"type":"test.event","n":%d}`, key, n, key, n)
}

// evKey names one test event.
type evKey struct {
	key string
	n   int
}

// arrival is one request the sink received.
type arrival struct {
	ev      evKey
	idem    string // Idempotency-Key
	eventID string // X-Hookrelay-Event-Id
	attempt string // X-Hookrelay-Attempt
	status  int
	at      time.Time
}

// sink is the destination: it records every request, in arrival order.
type sink struct {
	failRate float64       // share answered 500
	slowRate float64       // share delayed by slow
	slow     time.Duration // delay of slow requests
	always   time.Duration // delay of every request

	mu       sync.Mutex
	arrivals []arrival
	bad      []string // requests that could not be read
	done     int      // handlers that wrote their response
}

// readArrival reads the event a delivery request carries and its headers;
// ev.n is -1 for events of other shapes than eventBody's. The error says why
// the request could not be read, with the start of its body.
func readArrival(req *http.Request) (arrival, error) {
	body, err := io.ReadAll(req.Body)
	var env struct {
		Raw struct {
			Key string `json:"key"`
			N   *int   `json:"n"`
		} `json:"raw"`
	}
	if err == nil {
		err = json.Unmarshal(body, &env)
	}
	if err == nil && env.Raw.Key == "" {
		err = errors.New("no raw.key")
	}
	if err != nil {
		return arrival{}, fmt.Errorf("%w: %.200s", err, body)
	}
	n := -1
	if env.Raw.N != nil {
		n = *env.Raw.N
	}
	return arrival{
		ev: evKey{env.Raw.Key, n}, idem: req.Header.Get("Idempotency-Key"),
		eventID: req.Header.Get("X-Hookrelay-Event-Id"), attempt: req.Header.Get("X-Hookrelay-Attempt"),
		at: time.Now(),
	}, nil
}

func (s *sink) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	a, err := readArrival(req)
	if err != nil {
		s.mu.Lock()
		s.bad = append(s.bad, err.Error())
		s.mu.Unlock()
		http.Error(w, "bad envelope", http.StatusBadRequest)
		return
	}
	status := http.StatusOK
	if rand.Float64() < s.failRate {
		status = http.StatusInternalServerError
	}
	// Recorded on arrival: the relay sends a key's next event only after it
	// has this one's answer, so arrival order is delivery order per key.
	a.status = status
	s.mu.Lock()
	s.arrivals = append(s.arrivals, a)
	s.mu.Unlock()
	delay := s.always
	if s.slowRate > 0 && rand.Float64() < s.slowRate {
		delay += s.slow
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	w.WriteHeader(status)
	s.mu.Lock()
	s.done++
	s.mu.Unlock()
}

func (s *sink) snapshot() ([]arrival, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]arrival(nil), s.arrivals...), s.done
}

// firstDeliveries returns the first 2xx arrival of each event.
func firstDeliveries(arrivals []arrival) map[evKey]arrival {
	first := map[evKey]arrival{}
	for _, a := range arrivals {
		if a.status/100 != 2 {
			continue
		}
		if _, ok := first[a.ev]; !ok {
			first[a.ev] = a
		}
	}
	return first
}

// checkArrivals checks the sink's arrivals: per key, first 2xx deliveries
// in counter order (each inversion is an error, the first five reported),
// and duplicate 2xx deliveries carrying the first one's Idempotency-Key and
// event id. It returns the first 2xx delivery of each event and the counts
// of inversions, duplicate 2xx deliveries and arrivals that were not 2xx.
func checkArrivals(t *testing.T, arrivals []arrival) (firstSeen map[evKey]arrival, inversions, dups, fails int) {
	t.Helper()
	firstSeen = map[evKey]arrival{}
	lastN := map[string]int{}
	for _, a := range arrivals {
		if a.status/100 != 2 {
			fails++
			continue
		}
		if f, ok := firstSeen[a.ev]; ok {
			dups++
			if a.idem != f.idem {
				t.Errorf("event %v: duplicate delivery with Idempotency-Key %q, first had %q", a.ev, a.idem, f.idem)
			}
			if a.eventID != f.eventID {
				t.Errorf("event %v: delivered as two events, %s and %s (dedup failed)", a.ev, f.eventID, a.eventID)
			}
			continue
		}
		firstSeen[a.ev] = a
		if a.idem == "" {
			t.Errorf("event %v: delivered without Idempotency-Key", a.ev)
		}
		if last, ok := lastN[a.ev.key]; ok && a.ev.n < last {
			inversions++
			if inversions <= 5 {
				t.Errorf("key %s: event %d first delivered after event %d", a.ev.key, a.ev.n, last)
			}
		}
		lastN[a.ev.key] = max(lastN[a.ev.key], a.ev.n)
	}
	return firstSeen, inversions, dups, fails
}

// pending reads hookrelay_pending for a destination from /metrics; -1 when
// it cannot be read.
func pending(admin, dest string) int {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	prefix := `hookrelay_pending{destination="` + dest + `"} `
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return -1
			}
			return int(f)
		}
	}
	return -1
}

// TestCrashKillResume runs 1,000 events through the real binary while it is
// SIGKILLed two or three times, and checks at-least-once delivery, per-key
// order, idempotency keys, and the spool's integrity afterwards.
func TestCrashKillResume(t *testing.T) {
	const (
		keys      = 20
		perKey    = 50
		clients   = 8
		loadLimit = 40 * time.Second // for all clients to get every event acknowledged
	)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	t.Logf("seed %d", seed)

	sk := &sink{failRate: 0.2, slowRate: 0.1, slow: 50 * time.Millisecond}
	dest := httptest.NewServer(sk)
	t.Cleanup(dest.Close)
	r := newRelay(t, dest.URL, map[string]string{"crash": providerYAML})
	must(t, r.start())

	// Kill points, in acknowledged events: the first after some hundreds,
	// then one or two more while load still flows.
	kills := 2 + rng.IntN(2)
	var at []int
	next := 150 + rng.IntN(200)
	for range kills {
		at = append(at, next)
		next += 120 + rng.IntN(130)
	}
	t.Logf("kills after %v acknowledged events", at)

	var (
		ackMu     sync.Mutex
		acked     = map[evKey]bool{}
		ackCount  atomic.Int64
		failedReq atomic.Int64
		gaveUp    atomic.Int64
	)
	loadCtx, cancelLoad := context.WithTimeout(context.Background(), loadLimit)
	defer cancelLoad()
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: clients, IdleConnTimeout: 5 * time.Second},
	}
	// send retries one event until the relay acknowledges it, bounded in
	// attempts and by loadCtx.
	send := func(ev evKey) bool {
		body := eventBody(ev.key, ev.n)
		for attempt := 0; attempt < 5000 && loadCtx.Err() == nil; attempt++ {
			req, err := signedRequest(loadCtx, r.ingest+providerPath, body)
			if err != nil {
				t.Errorf("request: %v", err)
				return false
			}
			resp, err := client.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					return true
				}
				if resp.StatusCode == http.StatusUnauthorized {
					t.Errorf("event %v: 401: signature refused", ev)
					return false
				}
			}
			failedReq.Add(1)
			time.Sleep(time.Duration(5+rand.IntN(20)) * time.Millisecond)
		}
		return false
	}

	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []string
			for k := c; k < keys; k += clients {
				mine = append(mine, fmt.Sprintf("key-%02d", k))
			}
			// Round-robin over this client's keys; each key strictly in order.
			for n := range perKey {
				for _, key := range mine {
					ev := evKey{key, n}
					if !send(ev) {
						gaveUp.Add(1)
						return // later events of these keys would overtake this one
					}
					ackMu.Lock()
					acked[ev] = true
					ackMu.Unlock()
					ackCount.Add(1)
				}
			}
		}()
	}

	// The killer: SIGKILL at each kill point, then restart at once on the
	// same spool and config.
	killed := 0
	for _, point := range at {
		for ackCount.Load() < int64(point) && loadCtx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		if loadCtx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
		if err := r.kill(); err != nil {
			t.Fatal(err)
		}
		killed++
		t.Logf("kill %d after %d acknowledged", killed, ackCount.Load())
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		if err := r.start(); err != nil {
			cancelLoad()
			wg.Wait()
			t.Fatalf("restart %d: %v", killed, err)
		}
	}
	wg.Wait()
	if killed != kills {
		t.Errorf("killed %d times, planned %d", killed, kills)
	}
	total := int(ackCount.Load())
	if total != keys*perKey {
		t.Errorf("acknowledged %d of %d events (%d clients gave up)", total, keys*perKey, gaveUp.Load())
	}

	// Every acknowledged event must reach the sink with a 2xx.
	var first map[evKey]arrival
	var arrivals []arrival
	var missing []evKey
	deadline := time.Now().Add(60 * time.Second)
	for {
		arrivals, _ = sk.snapshot()
		first = firstDeliveries(arrivals)
		missing = missing[:0]
		ackMu.Lock()
		for ev := range acked {
			if _, ok := first[ev]; !ok {
				missing = append(missing, ev)
			}
		}
		ackMu.Unlock()
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Errorf("%d acknowledged events never delivered, e.g. %v", len(missing), missing[:min(5, len(missing))])
	}
	// Let redeliveries of events already seen settle, so that the spool
	// should hold no pending delivery when the relay stops.
	settled := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if pending(r.admin, "sink") == 0 {
			settled = true
			break
		}
	}
	arrivals, _ = sk.snapshot()

	firstSeen, inversions, dups, fails := checkArrivals(t, arrivals)
	if inversions > 0 {
		t.Errorf("%d order inversions", inversions)
	}
	sk.mu.Lock()
	if len(sk.bad) > 0 {
		t.Errorf("sink got %d unreadable requests, e.g. %s", len(sk.bad), sk.bad[0])
	}
	sk.mu.Unlock()
	t.Logf("events: %d acknowledged, %d delivered; %d kills; ingest requests refused or failed: %d; "+
		"sink: %d requests, %d answered 500, %d duplicate 2xx deliveries; settled: %v",
		total, len(firstSeen), killed, failedReq.Load(), len(arrivals), fails, dups, settled)

	code, took, err := r.terminate(r.timeout + 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Errorf("SIGTERM: exit status %d, want 0", code)
	}
	t.Logf("SIGTERM: exited in %s", took.Round(time.Millisecond))

	sp, err := spool.Open(r.spool, spool.Options{})
	if err != nil {
		t.Fatalf("open spool after the run: %v", err)
	}
	defer func() { must(t, sp.Close()) }()
	if err := sp.Check(); err != nil {
		t.Errorf("spool check: %v", err)
	}
	open := 0
	must(t, sp.Queue("sink", func(d *spool.Delivery) error {
		open++
		return nil
	}))
	if settled && open > 0 {
		t.Errorf("spool holds %d deliveries not final, though the relay reported none pending", open)
	}
	for ev, a := range firstSeen {
		dl, err := sp.Delivery("sink", a.eventID)
		if err != nil {
			t.Errorf("event %v (%s): %v", ev, a.eventID, err)
			continue
		}
		if settled && dl.Status != spool.Delivered {
			t.Errorf("event %v (%s): spool status %s, want delivered", ev, a.eventID, dl.Status)
		}
	}
}

// TestSigtermDrains checks that SIGTERM finishes the deliveries in flight,
// exits 0 within shutdown_timeout, and that a restart delivers the rest,
// each event once.
func TestSigtermDrains(t *testing.T) {
	sk := &sink{always: 300 * time.Millisecond}
	dest := httptest.NewServer(sk)
	t.Cleanup(dest.Close)
	r := newRelay(t, dest.URL, map[string]string{"crash": providerYAML})
	must(t, r.start())

	// Five keys, two events each: the first of each key is in flight when
	// SIGTERM comes, the second waits behind it.
	const keys = 5
	var sent []evKey
	c := &http.Client{Timeout: 5 * time.Second}
	for n := range 2 {
		for k := range keys {
			ev := evKey{fmt.Sprintf("drain-%d", k), n}
			req, err := signedRequest(context.Background(), r.ingest+providerPath, eventBody(ev.key, ev.n))
			must(t, err)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("send %v: %v", ev, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("send %v: status %d", ev, resp.StatusCode)
			}
			sent = append(sent, ev)
		}
	}
	// SIGTERM once the head of every key is in flight.
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if a, _ := sk.snapshot(); len(a) >= keys {
			break
		}
	}
	inFlight, _ := sk.snapshot()
	if len(inFlight) == 0 {
		t.Fatal("no delivery started within 3s of the events being acknowledged")
	}
	code, took, err := r.terminate(r.timeout + 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	before, finished := sk.snapshot()
	if code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	if took > r.timeout {
		t.Errorf("exit took %s, more than shutdown_timeout %s", took, r.timeout)
	}
	// The relay waited for the answers: every request it had made was
	// answered before it exited.
	if finished != len(before) {
		t.Errorf("%d requests reached the sink before exit but only %d were answered", len(before), finished)
	}
	// ... and it started none after SIGTERM: the second event of each key
	// waits for the restart.
	if len(inFlight) == keys {
		for _, a := range before {
			if a.ev.n > 0 {
				t.Errorf("event %v was sent after SIGTERM: the relay kept sending its backlog", a.ev)
			}
		}
	}
	if took < 100*time.Millisecond {
		t.Errorf("exit took %s: the deliveries in flight (300ms each) were not waited for", took)
	}
	t.Logf("SIGTERM with %d deliveries in flight: exited in %s, %d delivered before exit",
		len(inFlight), took.Round(time.Millisecond), len(before))

	must(t, r.start())
	var arrivals []arrival
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		arrivals, _ = sk.snapshot()
		if len(firstDeliveries(arrivals)) == len(sent) {
			break
		}
	}
	// Give a wrongly repeated delivery a moment to show up.
	time.Sleep(400 * time.Millisecond)
	arrivals, _ = sk.snapshot()
	count := map[evKey]int{}
	for _, a := range arrivals {
		count[a.ev]++
	}
	for _, ev := range sent {
		switch count[ev] {
		case 1:
		case 0:
			t.Errorf("event %v lost: never delivered", ev)
		default:
			t.Errorf("event %v delivered %d times: the delivery in flight at SIGTERM was not recorded", ev, count[ev])
		}
	}
	for _, a := range before {
		if count[a.ev] != 1 {
			t.Errorf("in-flight event %v was sent again after restart", a.ev)
		}
	}
	t.Logf("after restart: %d requests in all for %d events", len(arrivals), len(sent))
	if code, _, err := r.terminate(r.timeout + 5*time.Second); err != nil || code != 0 {
		t.Errorf("second SIGTERM: status %d, %v", code, err)
	}
}

// TestDisabledProvider: a provider whose secret variable is missing does not
// stop the relay; its path answers 503 and /readyz lists it.
func TestDisabledProvider(t *testing.T) {
	sk := &sink{}
	dest := httptest.NewServer(sk)
	t.Cleanup(dest.Close)
	r := newRelay(t, dest.URL, map[string]string{"crash": providerYAML, "locked": lockedProviderYAML})
	must(t, r.start())
	c := &http.Client{Timeout: 5 * time.Second}

	req, err := signedRequest(context.Background(), r.ingest+"/in/locked", eventBody("k", 0))
	must(t, err)
	resp, err := c.Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("POST /in/locked: status %d, want 503", resp.StatusCode)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Errorf("POST /in/locked: 503 without Retry-After")
	}

	req, err = signedRequest(context.Background(), r.ingest+providerPath, eventBody("k", 0))
	must(t, err)
	resp, err = c.Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("POST %s (enabled provider): status %d, want 200", providerPath, resp.StatusCode)
	}

	resp, err = c.Get(r.admin + "/readyz")
	must(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /readyz: status %d, want 200: %s", resp.StatusCode, body)
	}
	var ready struct {
		Disabled []string `json:"disabled_providers"`
	}
	if err := json.Unmarshal(body, &ready); err != nil {
		t.Fatalf("GET /readyz: %v: %s", err, body)
	}
	// SPEC 6: /readyz names disabled providers and nothing more; the
	// variable's name is in the start-up log and /admin/providers.
	if !slices.Contains(ready.Disabled, "locked") {
		t.Errorf("GET /readyz does not list provider locked: %s", body)
	}
	if bytes.Contains(body, []byte(missingEnv)) {
		t.Errorf("GET /readyz names the variable %s: %s", missingEnv, body)
	}
	if slices.Contains(ready.Disabled, "crash") {
		t.Errorf("GET /readyz lists the enabled provider crash as disabled: %s", body)
	}
	if log, _ := os.ReadFile(r.log.Name()); !bytes.Contains(log, []byte(missingEnv)) {
		t.Errorf("start-up log does not warn about %s:\n%s", missingEnv, log)
	}
	if code, _, err := r.terminate(r.timeout + 5*time.Second); err != nil || code != 0 {
		t.Errorf("SIGTERM: status %d, %v", code, err)
	}
}

// runBin runs the binary in dir and returns its exit code and output.
func runBin(t *testing.T, dir string, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Dir, cmd.Env = dir, env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("hookrelay %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// copyDir copies the regular files of a tree.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	must(t, filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	}))
}

// TestDefaults runs the binary in a directory with the shipped providers.d
// and no relay.yaml: `check` on built-in defaults, config errors, and
// `serve` on the defaults with only the listeners and the broker URL moved.
func TestDefaults(t *testing.T) {
	const secret = "defaults-test-secret-77ab"
	dir := t.TempDir()
	copyDir(t, filepath.Join("..", "..", "providers.d"), filepath.Join(dir, "providers.d"))
	env := childEnv("EXAMPLE_WEBHOOK_SECRET=" + secret)

	t.Run("check", func(t *testing.T) {
		code, out, errOut := runBin(t, dir, env, "check")
		if code != 0 {
			t.Fatalf("check: exit %d\n%s%s", code, out, errOut)
		}
		for _, re := range []string{`(?m)^config built-in defaults`, `(?m)^provider\s+example\s.*\bok$`, `(?m)^destination\s+broker\s+http://127\.0\.0\.1:3000/lender-events$`} {
			if !regexp.MustCompile(re).MatchString(out) {
				t.Errorf("check output does not match %s:\n%s", re, out)
			}
		}
		if strings.Contains(out+errOut, secret) {
			t.Errorf("check printed the secret:\n%s%s", out, errOut)
		}
		if fileExists(filepath.Join(dir, "data")) {
			t.Errorf("check created the spool directory")
		}
	})

	t.Run("check without the secret", func(t *testing.T) {
		code, out, errOut := runBin(t, dir, childEnv(), "check")
		if code != 0 {
			t.Fatalf("check: exit %d, want 0 (the provider loads disabled)\n%s%s", code, out, errOut)
		}
		if !regexp.MustCompile(`(?m)^provider\s+example\s.*EXAMPLE_WEBHOOK_SECRET`).MatchString(out + errOut) {
			t.Errorf("check does not warn that example lacks EXAMPLE_WEBHOOK_SECRET:\n%s%s", out, errOut)
		}
	})

	t.Run("missing config", func(t *testing.T) {
		code, out, errOut := runBin(t, dir, env, "check", "--config", "missing.yaml")
		if code != 1 {
			t.Errorf("check --config missing.yaml: exit %d, want 1\n%s%s", code, out, errOut)
		}
		if !strings.Contains(errOut, "missing.yaml") {
			t.Errorf("check --config missing.yaml: error does not name the file: %q", errOut)
		}
	})

	t.Run("unknown field", func(t *testing.T) {
		for _, tc := range []struct {
			name, yaml, line, field string
		}{
			{"top level", "listen: \"127.0.0.1:1\"\nadmin:\n  listen: \"127.0.0.1:2\"\ncolour: blue\n",
				"relay.yaml:4: ", "colour"},
			{"nested", "listen: \"127.0.0.1:1\"\nspool:\n  path: ./x.db\n  colour: blue\n",
				"relay.yaml:4: ", "spool.colour"},
			{"in a destination", "listen: \"127.0.0.1:1\"\ndestinations:\n  broker:\n    url: http://127.0.0.1:1/x\n    colour: blue\n",
				"relay.yaml:5: ", "colour"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				sub := t.TempDir()
				copyDir(t, filepath.Join(dir, "providers.d"), filepath.Join(sub, "providers.d"))
				must(t, os.WriteFile(filepath.Join(sub, "relay.yaml"), []byte(tc.yaml), 0o644))
				code, out, errOut := runBin(t, sub, env, "check")
				if code != 1 {
					t.Errorf("exit %d, want 1\n%s%s", code, out, errOut)
				}
				if !strings.HasPrefix(errOut, tc.line) || !strings.Contains(errOut, tc.field) {
					t.Errorf("stderr %q: want %q naming %s", errOut, tc.line+"...", tc.field)
				}
				if strings.Contains(out, "provider") {
					t.Errorf("check listed providers despite the error:\n%s", out)
				}
			})
		}
	})

	t.Run("serve", func(t *testing.T) {
		// No relay.yaml: built-in defaults, with the listeners and the broker
		// moved by environment overrides so that nothing uses the fixed ports.
		sk := &sink{}
		dest := httptest.NewServer(sk)
		t.Cleanup(dest.Close)
		sub := t.TempDir()
		copyDir(t, filepath.Join(dir, "providers.d"), filepath.Join(sub, "providers.d"))
		in, adm := freePorts(t)
		r := logTo(t, &relayProc{
			dir: sub, timeout: 20 * time.Second, args: []string{"serve"},
			ingest: fmt.Sprintf("http://127.0.0.1:%d", in), admin: fmt.Sprintf("http://127.0.0.1:%d", adm),
			env: append(childEnv("EXAMPLE_WEBHOOK_SECRET="+secret),
				fmt.Sprintf("HOOKRELAY_LISTEN=127.0.0.1:%d", in), fmt.Sprintf("HOOKRELAY_ADMIN__LISTEN=127.0.0.1:%d", adm),
				"HOOKRELAY_DESTINATIONS__BROKER__URL="+dest.URL+"/lender-events", "HOOKRELAY_LOG__LEVEL=warn"),
		}, filepath.Join(t.TempDir(), "relay.log"))
		must(t, r.start())
		if !fileExists(filepath.Join(sub, "data", "hookrelay.db")) {
			t.Errorf("spool not at ./data/hookrelay.db")
		}

		// The example provider's own scheme: "sha256=" + hex over "ts.body".
		body := []byte(`{"id":"evt-1","key":"order-42","type":"order.paid","data":{"amount":100}}`)
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(ts + "."))
		mac.Write(body)
		req, err := http.NewRequest(http.MethodPost, r.ingest+"/in/example", bytes.NewReader(body))
		must(t, err)
		req.Header.Set("X-Timestamp", ts)
		req.Header.Set("X-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /in/example: status %d", resp.StatusCode)
		}
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if a, _ := sk.snapshot(); len(a) > 0 {
				break
			}
		}
		if a, _ := sk.snapshot(); len(a) != 1 || a[0].ev.key != "order-42" {
			t.Errorf("broker got %+v, want the one event", a)
		} else if a[0].idem != "example:evt-1" {
			t.Errorf("Idempotency-Key %q, want example:evt-1", a[0].idem)
		}
		if code, _, err := r.terminate(25 * time.Second); err != nil || code != 0 {
			t.Errorf("SIGTERM: status %d, %v", code, err)
		}
	})
}
