package engine

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testRelay is a relay on real loopback listeners with a real bbolt file.
type testRelay struct {
	*Relay
	t      *testing.T
	dir    string
	Ingest *httptest.Server
	Admin  *httptest.Server
}

// writeConfig writes relay.yaml and providers.d/NAME.yaml files into dir.
func writeConfig(t *testing.T, dir, relayYAML string, providers map[string]string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Join(dir, "providers.d"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte(relayYAML), 0o644))
	for name, body := range providers {
		must(t, os.WriteFile(filepath.Join(dir, "providers.d", name+".yaml"), []byte(body), 0o644))
	}
}

// startRelay writes the configuration into a new temp dir and starts a relay on it.
func startRelay(t *testing.T, relayYAML string, providers map[string]string) *testRelay {
	t.Helper()
	dir := t.TempDir()
	writeConfig(t, dir, relayYAML, providers)
	return openRelay(t, dir)
}

// openRelay starts a relay on an existing config dir (and its spool).
func openRelay(t *testing.T, dir string) *testRelay {
	t.Helper()
	cfg, err := Load(filepath.Join(dir, "relay.yaml"), true)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	useTestSpool(t, cfg, dir)
	return serveConfig(t, dir, cfg)
}

// serveConfig opens and starts a relay on cfg as it stands (openRelay's
// choice of the tests' spool already made, or deliberately not) and serves
// its listeners until t ends.
func serveConfig(t *testing.T, dir string, cfg *Config) *testRelay {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	r, err := Open(cfg, log)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if n := netOf(t); n != nil {
		useNetwork(r, n)
	}
	if err := r.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	tr := &testRelay{Relay: r, t: t, dir: dir, Ingest: testServer(t, r.IngestHandler()), Admin: testServer(t, r.AdminHandler())}
	t.Cleanup(tr.stop)
	return tr
}

// stop closes listeners and the relay; safe to call twice.
func (tr *testRelay) stop() {
	if tr.Ingest == nil {
		return
	}
	tr.Ingest.Close()
	tr.Admin.Close()
	tr.Ingest = nil
	_ = tr.Close(5 * time.Second)
}

// restart stops the relay and starts a new one on the same files.
func (tr *testRelay) restart() *testRelay {
	tr.stop()
	return openRelay(tr.t, tr.dir)
}

// post sends body to the ingest listener with the given headers.
func (tr *testRelay) post(path, body string, headers map[string]string) *http.Response {
	tr.t.Helper()
	req, err := http.NewRequest(http.MethodPost, tr.Ingest.URL+path, strings.NewReader(body))
	must(tr.t, err)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := testClient(tr.t).Do(req)
	must(tr.t, err)
	resp.Body.Close()
	return resp
}

// ingestAt posts one body to path with authPlain's headers.
func (tr *testRelay) ingestAt(path, body string) error {
	req, err := http.NewRequest(http.MethodPost, tr.Ingest.URL+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range authPlain {
		req.Header.Set(k, v)
	}
	resp, err := testClient(tr.t).Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ingest %s %s: status %d", path, body, resp.StatusCode)
	}
	return nil
}

// recorder is a destination that records what it receives and answers
// with the status its handler chooses (200 when nil).
type recorder struct {
	srv     *httptest.Server
	mu      sync.Mutex
	n       int
	got     []received
	respond func(n int, r *http.Request) int // n counts requests from 1
}

type received struct {
	Header http.Header
	Path   string
	Query  string
	Body   []byte
	Status int
}

func newRecorder(t *testing.T, respond func(n int, r *http.Request) int) *recorder {
	rec := &recorder{respond: respond}
	rec.srv = testServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.n++
		n := rec.n
		rec.mu.Unlock()
		status := http.StatusOK
		if rec.respond != nil {
			status = rec.respond(n, r)
		}
		rec.mu.Lock()
		rec.got = append(rec.got, received{Header: r.Header.Clone(), Path: r.URL.Path, Query: r.URL.RawQuery, Body: body, Status: status})
		rec.mu.Unlock()
		w.WriteHeader(status)
	}))
	return rec
}

// requests returns a copy of everything received so far.
func (rec *recorder) requests() []received {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]received(nil), rec.got...)
}

// delivered returns the envelopes of the requests answered with 2xx.
func (rec *recorder) delivered(t *testing.T) []map[string]any {
	var out []map[string]any
	for _, r := range rec.requests() {
		if r.Status >= 200 && r.Status < 300 {
			var m map[string]any
			must(t, json.Unmarshal(r.Body, &m))
			out = append(out, m)
		}
	}
	return out
}

// settled reports whether the relay's lanes hold no delivery: every stored
// delivery is final, so that none can be sent after this unless more is
// ingested. Ingest queues an event before it answers (the spool's commit
// hook runs before the commit returns), and a lane counts a delivery until
// its outcome, after the destination's answer, is stored: once a test's
// requests were answered, waiting for settled proves that nothing more comes,
// where a sleep after the last expected delivery only hoped so.
func (tr *testRelay) settled() bool {
	pending, _ := tr.Backlog()
	return pending == 0
}

// waitFor polls cond every 10ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func hmacHex(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// relayYAML returns a relay.yaml with one destination "dest" at url and
// extra YAML appended under it (indented by the caller).
func relayYAML(url, destExtra string) string {
	return "listen: 127.0.0.1:18080\nadmin: { listen: 127.0.0.1:19090 }\nspool: { path: ./spool.db }\n" +
		"destinations:\n  dest:\n    url: \"" + url + "\"\n" + destExtra
}

// plainProvider is a provider with a bearer token, keyed and typed from the body.
const plainProvider = `
paths: [/in/plain]
verify:
  - kind: bearer
    token: t0ken
event:
  id: body.id ?? ""
  key: body.key
  type: body.type
  data: { n: body.n }
routes:
  - to: [dest]
`

// authPlain is the header set plainProvider accepts.
var authPlain = map[string]string{"Authorization": "Bearer t0ken", "Content-Type": "application/json"}
