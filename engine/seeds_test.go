package engine

// Every example of the lenders' documents (../../shared/seeds, SPEC 10) goes
// through the real ingest listener with the shipped providers.d, signed the
// way its document says, and must reach the broker as the expected canonical
// event; every forged, tampered or replayed variant must be refused (401,
// recorded in the rejections, nothing delivered) or dropped as a repeat.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

// seedDir holds the documents' example payloads (see its README.md).
const seedDir = "testdata/seeds"

// seedWait bounds every wait for deliveries.
const seedWait = 10 * time.Second

// seedRelay sets every secret of the shipped providers (shippedEnv, then env
// on top) and starts a relay on providersDir with one destination, broker, at
// a new recorder.
func seedRelay(t *testing.T, providersDir string, env map[string]string) (*testRelay, *recorder) {
	t.Helper()
	for k, v := range shippedEnv {
		t.Setenv(k, v)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	rec := newRecorder(t, nil)
	dir := t.TempDir()
	relay := "listen: 127.0.0.1:18080\nadmin: { listen: 127.0.0.1:19090 }\nspool: { path: ./spool.db }\n" +
		"providers_dir: " + strconv.Quote(providersDir) + "\n" +
		"destinations:\n  broker:\n    url: " + strconv.Quote(rec.srv.URL+"/lender-events") + "\n"
	writeConfig(t, dir, relay, nil)
	return openRelay(t, dir), rec
}

// seedProviderCopy writes the given provider files into a new providers dir
// and returns its path.
func seedProviderCopy(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "providers.d")
	must(t, os.MkdirAll(dir, 0o755))
	for name, body := range files {
		must(t, os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(body), 0o644))
	}
	return dir
}

// shippedProvider reads providers.d/NAME.yaml.
func shippedProvider(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "providers.d", name+".yaml"))
	must(t, err)
	return string(b)
}

func seedFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(seedDir, name))
	must(t, err)
	return string(b)
}

// seedPost sends a request to the ingest listener and returns status and body.
func seedPost(t *testing.T, tr *testRelay, path, body string, headers map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, tr.Ingest.URL+path, strings.NewReader(body))
	must(t, err)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := testClient(tr.t).Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// seedAccept posts a request the provider must take: 200.
func seedAccept(t *testing.T, tr *testRelay, path, body string, headers map[string]string) {
	t.Helper()
	if status, resp := seedPost(t, tr, path, body, headers); status != http.StatusOK {
		t.Fatalf("POST %s: %d %s, want 200", path, status, resp)
	}
}

// seedRefuse posts a request the provider must refuse: 401 with a reason,
// and the rejection recorded with the path and the body's hash.
func seedRefuse(t *testing.T, tr *testRelay, provider, path, body string, headers map[string]string) {
	t.Helper()
	before := len(tr.rejections.List(provider, 1000))
	status, resp := seedPost(t, tr, path, body, headers)
	var e struct{ Error string }
	if status != http.StatusUnauthorized || json.Unmarshal([]byte(resp), &e) != nil || e.Error == "" {
		t.Errorf("POST %s: %d %s, want 401 with a reason", path, status, resp)
		return
	}
	got := tr.rejections.List(provider, 1000)
	if len(got) != before+1 {
		t.Errorf("POST %s: %d rejections recorded for %s, want %d", path, len(got), provider, before+1)
		return
	}
	sum := sha256.Sum256([]byte(body))
	rj := got[0]
	wantPath, _, _ := strings.Cut(path, "?")
	if rj.Path != wantPath || rj.Reason != e.Error || rj.BodySHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("rejection recorded as %+v; want path %s, reason %q and the body's sha256", rj, wantPath, e.Error)
	}
}

// seedEvent is a canonical event the broker must receive.
type seedEvent struct {
	typ, key string
	idem     *regexp.Regexp // shape of idempotency_id
	data     map[string]any // data, exactly
	raw      string         // the provider body (decrypted), as JSON
	occurred string         // occurred_at; "" means none
	sequence float64
}

var ulidRE = regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{26}$`)

// seedData is data with every name of names present: those in setJSON (a
// JSON object) with their values, the others null.
func seedData(t *testing.T, names []string, setJSON string) map[string]any {
	t.Helper()
	m := map[string]any{}
	must(t, json.Unmarshal([]byte(setJSON), &m))
	for _, n := range names {
		if _, ok := m[n]; !ok {
			m[n] = nil
		}
	}
	return m
}

func seedJSON(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, s)
	}
	return v
}

// seedExpect waits for exactly len(want) deliveries (until tr holds no
// delivery, after which no extra one can come), checks each envelope and its
// headers, and returns the envelopes in the order of want. Deliveries and
// want are matched by raw.
func seedExpect(t *testing.T, tr *testRelay, rec *recorder, provider string, want []seedEvent) []map[string]any {
	t.Helper()
	waitFor(t, seedWait, fmt.Sprintf("%d deliveries and nothing queued", len(want)), func() bool {
		return len(rec.requests()) >= len(want) && tr.settled()
	})
	got := rec.requests()
	if len(got) != len(want) {
		for _, r := range got {
			var ev map[string]any
			_ = json.Unmarshal(r.Body, &ev)
			t.Logf("delivered: %v %v %v", ev["type"], ev["key"], ev["idempotency_id"])
		}
		t.Fatalf("%d deliveries, want %d", len(got), len(want))
	}
	out := make([]map[string]any, len(want))
	used := make([]bool, len(got))
	for i, w := range want {
		wantRaw := seedJSON(t, w.raw)
		for j, r := range got {
			var ev map[string]any
			must(t, json.Unmarshal(r.Body, &ev))
			if used[j] || !reflect.DeepEqual(ev["raw"], wantRaw) {
				continue
			}
			used[j] = true
			out[i] = ev
			seedCheck(t, r, ev, provider, w)
			break
		}
		if out[i] == nil {
			t.Errorf("no delivery of %s %s with raw %s", w.typ, w.key, w.raw)
		}
	}
	return out
}

func seedCheck(t *testing.T, r received, ev map[string]any, provider string, w seedEvent) {
	t.Helper()
	what := fmt.Sprintf("%s %s", w.typ, w.key)
	if r.Path != "/lender-events" {
		t.Errorf("%s: delivered to %s", what, r.Path)
	}
	if ev["type"] != w.typ || ev["key"] != w.key || ev["provider"] != provider || ev["source"] != "webhook" {
		t.Errorf("%s: delivered type %v, key %v, provider %v, source %v", what, ev["type"], ev["key"], ev["provider"], ev["source"])
	}
	if id, _ := ev["id"].(string); !ulidRE.MatchString(id) {
		t.Errorf("%s: id %q is not a ULID", what, ev["id"])
	}
	idem, _ := ev["idempotency_id"].(string)
	if !w.idem.MatchString(idem) {
		t.Errorf("%s: idempotency_id %q does not match %s", what, idem, w.idem)
	}
	if ev["sequence"] != w.sequence {
		t.Errorf("%s: sequence %v, want %v", what, ev["sequence"], w.sequence)
	}
	if at, _ := ev["received_at"].(string); at == "" {
		t.Errorf("%s: no received_at", what)
	} else if _, err := time.Parse(time.RFC3339Nano, at); err != nil {
		t.Errorf("%s: received_at %q: %v", what, at, err)
	}
	if got, _ := ev["occurred_at"].(string); got != w.occurred {
		t.Errorf("%s: occurred_at %q, want %q", what, got, w.occurred)
	}
	if !reflect.DeepEqual(ev["data"], w.data) {
		gotData, _ := json.Marshal(ev["data"])
		wantData, _ := json.Marshal(w.data)
		t.Errorf("%s: data\n got %s\nwant %s", what, gotData, wantData)
	}
	for h, want := range map[string]string{
		"Idempotency-Key": idem, "X-Hookrelay-Provider": provider, "X-Hookrelay-Event-Type": w.typ,
		"X-Hookrelay-Event-Id": fmt.Sprint(ev["id"]), "X-Hookrelay-Attempt": "1",
	} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("%s: header %s = %q, want %q", what, h, got, want)
		}
	}
}

// sha256IdemRE is the shape of an idempotency id made from the body's hash.
func sha256IdemRE(provider string) *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(provider) + `:[0-9a-f]{64}$`)
}

// ---------------------------------------------------------------- Resurs (001)

// jwksServer serves Resurs' JWK set, only to requests with the apikey header.
type jwksServer struct {
	url     string
	mu      sync.Mutex
	set     jwk.Set
	fetches int
}

func newJWKSServer(t *testing.T, keys ...resursKey) *jwksServer {
	s := &jwksServer{set: jwk.NewSet()}
	for _, k := range keys {
		s.publish(t, k)
	}
	srv := newLoopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("apikey") != resursAPIKey {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		s.mu.Lock()
		s.fetches++
		b, err := json.Marshal(s.set)
		s.mu.Unlock()
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}))
	s.url = srv + "/api/auth_service/jwks"
	return s
}

func (s *jwksServer) publish(t *testing.T, k resursKey) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	must(t, s.set.AddKey(k.pub))
}

func (s *jwksServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

// newLoopbackServer is an httptest server on 127.0.0.1 that stops with the
// test; it returns the base URL.
func newLoopbackServer(t *testing.T, h http.Handler) string {
	srv := testServer(t, h)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("test server at %s, want 127.0.0.1", srv.URL)
	}
	return srv.URL
}

// ---------------------------------------------------------------- Kompar (002)

// ---------------------------------------------------------------- Avida (003)

// ---------------------------------------------------------------- Nordiska (004)

// ---------------------------------------------------------------- Stripe, GitHub, Standard Webhooks

// standardSign signs per Standard Webhooks: base64 HMAC-SHA256, keyed with
// the base64 after whsec_, over "id.timestamp.body".
func standardSign(t *testing.T, secret, id, ts, body string) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	must(t, err)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "." + body))
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}
