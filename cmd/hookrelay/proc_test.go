package main

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
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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

// errGiveUp: ingestOnce reported a test error and resending the event
// cannot help.
var errGiveUp = errors.New("ingest: given up")

// ingestOnce posts body, signed, to the relay's ingest URL once and returns
// nil when the relay acknowledged it (2xx), errGiveUp when it cannot be sent
// or the relay refused its signature (both reported), or why else it was not
// acknowledged (worth resending).
func ingestOnce(ctx context.Context, t *testing.T, c *http.Client, ingest string, ev evKey, body []byte) error {
	t.Helper()
	req, err := signedRequest(ctx, ingest+providerPath, body)
	if err != nil {
		t.Errorf("request: %v", err)
		return errGiveUp
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode == http.StatusUnauthorized:
		t.Errorf("event %v: 401: signature refused", ev)
		return errGiveUp
	}
	return fmt.Errorf("status %d", resp.StatusCode)
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
