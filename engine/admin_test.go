package engine

// Admin API tests (SPEC 6, 7, 8): every endpoint through a real admin
// listener over a relay with a real bbolt spool, forwarding to httptest
// destinations.

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/oklog/ulid/v2"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const adminToken = "s3cret"

// adminRelayYAML is relayYAML with the admin API behind adminToken.
func adminRelayYAML(url, destExtra string) string {
	return strings.Replace(relayYAML(url, destExtra), "admin: { listen: 127.0.0.1:19090 }",
		"admin: { listen: 127.0.0.1:19090, token: "+adminToken+" }", 1)
}

// callAuth sends one admin request with the given Authorization header
// ("" for none) and returns the status and body.
func (tr *testRelay) callAuth(method, path, body, authz string) (int, []byte) {
	tr.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, tr.Admin.URL+path, rd)
	must(tr.t, err)
	if body != "" { // SPEC 6: a body must be JSON
		req.Header.Set("Content-Type", "application/json")
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := testClient(tr.t).Do(req)
	must(tr.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(tr.t, err)
	return resp.StatusCode, b
}

// call sends one admin request with the token.
func (tr *testRelay) call(method, path, body string) (int, []byte) {
	tr.t.Helper()
	return tr.callAuth(method, path, body, "Bearer "+adminToken)
}

// do sends one admin request with the token, fails unless it answers want,
// and decodes the answer into v (when not nil).
func (tr *testRelay) do(method, path, body string, want int, v any) []byte {
	tr.t.Helper()
	status, b := tr.call(method, path, body)
	if status != want {
		tr.t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			tr.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return b
}

func (tr *testRelay) get(path string, v any) []byte {
	tr.t.Helper()
	return tr.do(http.MethodGet, path, "", http.StatusOK, v)
}

// adminEvent is one item of GET /admin/events.
type adminEvent struct {
	ID       string         `json:"id"`
	Provider string         `json:"provider"`
	Type     string         `json:"type"`
	Key      string         `json:"key"`
	Status   string         `json:"status"`
	Data     map[string]any `json:"data"`
}

func (e adminEvent) n() int { f, _ := e.Data["n"].(float64); return int(f) }

type eventPage struct {
	Items      []adminEvent `json:"items"`
	NextCursor string       `json:"next_cursor"`
}

func (tr *testRelay) events(query string) eventPage {
	tr.t.Helper()
	var p eventPage
	tr.get("/admin/events?"+query, &p)
	return p
}

// eventID is the relay's id of the event with key and data.n.
func (tr *testRelay) eventID(key string, n int) string {
	tr.t.Helper()
	for _, e := range tr.events("limit=1000&key=" + key).Items {
		if e.n() == n {
			return e.ID
		}
	}
	tr.t.Fatalf("no event %s/%d", key, n)
	return ""
}

// eventDetail is GET /admin/events/{id}.
type eventDetail struct {
	Event      adminEvent `json:"event"`
	Deliveries []struct {
		Destination         string           `json:"destination"`
		Status              string           `json:"status"`
		Attempts            []map[string]any `json:"attempts"`
		AttemptsBeforeRetry int              `json:"attempts_before_retry"`
	} `json:"deliveries"`
}

func (tr *testRelay) detail(id string) eventDetail {
	tr.t.Helper()
	var d eventDetail
	tr.get("/admin/events/"+id, &d)
	return d
}

// destView is one item of GET /admin/destinations.
type destView struct {
	Name     string         `json:"name"`
	Config   map[string]any `json:"config"`
	Paused   bool           `json:"paused"`
	Pending  int            `json:"pending"`
	Dead     int            `json:"dead"`
	HeldKeys int            `json:"held_keys"`
	Held     []struct {
		Key       string `json:"key"`
		BlockedBy string `json:"blocked_by"`
		Waiting   int    `json:"waiting"`
	} `json:"held"`
}

// waitDest waits until GET /admin/destinations shows name in a state cond
// accepts: a sink sees a request before the relay has recorded its outcome.
func (tr *testRelay) waitDest(name, what string, cond func(destView) bool) {
	tr.t.Helper()
	var last destView
	deadline := time.Now().Add(5 * time.Second)
	for last = tr.dest(name); !cond(last); last = tr.dest(name) {
		if time.Now().After(deadline) {
			tr.t.Fatalf("destination %s never %s: %+v", name, what, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (tr *testRelay) dest(name string) destView {
	tr.t.Helper()
	var l struct{ Items []destView }
	tr.get("/admin/destinations", &l)
	for _, d := range l.Items {
		if d.Name == name {
			return d
		}
	}
	tr.t.Fatalf("no destination %s in GET /admin/destinations", name)
	return destView{}
}

// writeProvider replaces providers.d/NAME.yaml of a running relay.
func (tr *testRelay) writeProvider(name, body string) {
	tr.t.Helper()
	must(tr.t, os.WriteFile(filepath.Join(tr.dir, "providers.d", name+".yaml"), []byte(body), 0o644))
}

// sent is one 2xx answer of a sink: the event, its data.n and the attempt.
type sent struct {
	id, key string
	n       int
	attempt string
	typ     string
}

// okHits lists the sink's 2xx answers in arrival order.
func okHits(t *testing.T, s *sink) []sent {
	t.Helper()
	var out []sent
	for _, h := range s.requests() {
		if h.status < 200 || h.status > 299 {
			continue
		}
		id, key, n := envelope(t, h.body)
		out = append(out, sent{id: id, key: key, n: n, attempt: h.header.Get("X-Hookrelay-Attempt"),
			typ: h.header.Get("X-Hookrelay-Event-Type")})
	}
	return out
}

// scrape reads /metrics and parses it.
func (tr *testRelay) scrape() map[string]*dto.MetricFamily {
	tr.t.Helper()
	b := tr.get("/metrics", nil)
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		tr.t.Fatalf("parse /metrics: %v\n%s", err, b)
	}
	return mfs
}

// metricValue is the value of the series of name with exactly labels: a
// counter's or gauge's value, a histogram's sample count.
func metricValue(mfs map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, lp := range m.GetLabel() {
			if labels[lp.GetName()] != lp.GetValue() {
				continue next
			}
		}
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), true
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), true
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func wantMetric(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels map[string]string, want float64) {
	t.Helper()
	got, ok := metricValue(mfs, name, labels)
	if !ok {
		t.Errorf("%s%v: missing", name, labels)
	} else if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

// TestAdminAuth: every endpoint but /healthz and /readyz needs the token;
// a missing or wrong one is 401 with an {"error"} body.
func TestAdminAuth(t *testing.T) {
	rec := newRecorder(t, nil)
	tr := startRelay(t, adminRelayYAML(rec.srv.URL, ""), map[string]string{"plain": plainProvider})
	unknown := ulid.Make().String()
	endpoints := []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/metrics", "", 200},
		{"GET", "/admin/providers", "", 200},
		{"GET", "/admin/destinations", "", 200},
		{"GET", "/admin/events", "", 200},
		{"GET", "/admin/events/" + unknown, "", 404},
		{"POST", "/admin/events/" + unknown + "/retry", "", 404},
		{"POST", "/admin/events/" + unknown + "/skip", "{}", 404},
		{"POST", "/admin/dead/retry", "", 200},
		{"GET", "/admin/rejections", "", 200},
		{"GET", "/admin/quarantine", "", 200},
		{"POST", "/admin/quarantine/reprocess", "{}", 200},
		{"POST", "/admin/destinations/dest/pause", "", 200},
		{"POST", "/admin/destinations/dest/resume", "", 200},
		{"POST", "/admin/reload", "", 200},
		{"GET", "/admin/no-such-thing", "", 404},
	}
	wrong := []struct{ name, authz string }{
		{"no token", ""},
		{"wrong bearer", "Bearer nope"},
		{"basic", "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+adminToken))},
		{"token without scheme", adminToken},
		{"bearer with a suffix", "Bearer " + adminToken + "x"},
	}
	for _, ep := range endpoints {
		t.Run(ep.method+" "+ep.path, func(t *testing.T) {
			for _, w := range wrong {
				status, body := tr.callAuth(ep.method, ep.path, ep.body, w.authz)
				var e struct{ Error string }
				if status != http.StatusUnauthorized || json.Unmarshal(body, &e) != nil || e.Error == "" {
					t.Errorf("%s: status %d %s, want 401 with an error", w.name, status, body)
				}
			}
			status, body := tr.call(ep.method, ep.path, ep.body)
			if status != ep.want {
				t.Errorf("with the token: status %d, want %d: %s", status, ep.want, body)
			}
			if status >= 400 {
				var e struct{ Error string }
				if json.Unmarshal(body, &e) != nil || e.Error == "" {
					t.Errorf("error body %s, want {\"error\": ...}", body)
				}
			}
		})
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if status, body := tr.callAuth("GET", path, "", ""); status != 200 {
			t.Errorf("%s without a token: %d %s", path, status, body)
		}
	}
	if d := tr.dest("dest"); d.Paused {
		t.Error("dest still paused after resume")
	}
}

// TestAdminSecretsRedacted: the configuration shown by the admin API names
// env: references but never holds a secret value; expressions stay readable.
func TestAdminSecretsRedacted(t *testing.T) {
	signKey := "whsec_" + base64.StdEncoding.EncodeToString([]byte("inline signing key, thirty-two b"))
	envSign := "whsec_" + base64.StdEncoding.EncodeToString([]byte("signing key from the environment"))
	env := map[string]string{
		"ADMINTEST_APIKEY":   "apikey-from-env-7c1",
		"ADMINTEST_SIGN":     envSign,
		"ADMINTEST_DESTTOK":  "desttok-from-env-9f2",
		"ADMINTEST_HMAC":     "hmac-from-env-4d0",
		"ADMINTEST_PASSWORD": "password-from-env-b77",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	// An override through the environment is a secret written inline, too.
	t.Setenv("HOOKRELAY_DESTINATIONS__AUDIT__AUTH__TOKEN", "override-tok-5e8")
	provider := `
paths: [/in/plain]
verify:
  - kind: bearer
    tokens: [t0ken, env:ADMINTEST_DESTTOK]
  - kind: apikey
    in: header
    name: X-Api-Key
    key: env:ADMINTEST_APIKEY
  - kind: basic
    users: { alice: hunter2, bob: env:ADMINTEST_PASSWORD }
  - kind: hmac
    secrets: [inline-hmac-s3cr3t, env:ADMINTEST_HMAC]
    signed: "{body}"
    signature: { header: X-Sig, encoding: hex }
event:
  id: body.id ?? ""
  key: body.key
  type: body.type
  data: { n: body.n }
routes:
  - to: [dest, audit]
`
	extra := "    auth: { kind: basic, username: relay, password: hunter2 }\n" +
		"    sign: { secret: " + signKey + " }\n" +
		"  audit:\n    url: \"http://127.0.0.1:1/audit\"\n" +
		"    auth: { kind: bearer, token: placeholder }\n" +
		"    sign: { secret: env:ADMINTEST_SIGN }\n" +
		"  other:\n    url: \"http://127.0.0.1:1/other\"\n" +
		"    auth: { kind: header, api_key: env:ADMINTEST_APIKEY, name: X-Key }\n" +
		"    headers: { X-Source: hookrelay, Authorization: \"Bearer header-s3cr3t\" }\n"
	tr := startRelay(t, adminRelayYAML("http://127.0.0.1:1/hook", extra), map[string]string{"plain": provider})

	secrets := []string{"t0ken", "hunter2", signKey, strings.TrimPrefix(signKey, "whsec_"), "inline-hmac-s3cr3t",
		"override-tok-5e8", "placeholder", "header-s3cr3t"}
	for _, v := range env {
		secrets = append(secrets, v, strings.TrimPrefix(v, "whsec_"))
	}
	for _, tc := range []struct {
		path string
		refs []string // what must be shown
	}{
		{"/admin/providers", []string{"env:ADMINTEST_DESTTOK", "env:ADMINTEST_APIKEY", "env:ADMINTEST_PASSWORD",
			"env:ADMINTEST_HMAC", "body.key", `body.id ?? \"\"`, "body.type", "alice", "X-Api-Key", "X-Sig"}},
		{"/admin/destinations", []string{"env:ADMINTEST_SIGN", "env:ADMINTEST_APIKEY", `"username":"relay"`, "X-Key",
			"http://127.0.0.1:1/audit"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			body := string(tr.get(tc.path, nil))
			for _, s := range secrets {
				if strings.Contains(body, s) {
					t.Errorf("the answer holds the secret %q:\n%s", s, body)
				}
			}
			for _, ref := range tc.refs {
				if !strings.Contains(body, ref) {
					t.Errorf("the answer does not show %s:\n%s", ref, body)
				}
			}
		})
	}
}

// deadLetter is the scenario of a destination that refuses A1 (key k) for
// good while A2 of k waits behind it.
type deadLetter struct {
	tr     *testRelay
	s      *sink
	fixed  *atomic.Bool
	a1, a2 string
}

// newDeadLetter starts a relay whose destination times A1 out once, then
// answers it 400 until fixed; everything else gets 200. It returns once A1
// is dead and holds k, with A2 queued behind it and B1 of key j delivered.
func newDeadLetter(t *testing.T, destExtra string) *deadLetter {
	fixed := new(atomic.Bool)
	var a1Tries atomic.Int32
	s := newSink(t, func(_ int, r *http.Request, body []byte) reply {
		var e struct {
			Key  string
			Data struct{ N int }
		}
		_ = json.Unmarshal(body, &e)
		if e.Key != "k" || e.Data.N != 1 || fixed.Load() {
			return reply{}
		}
		if a1Tries.Add(1) == 1 {
			<-r.Context().Done() // answers only after the relay gave up (timeout)
			return reply{status: http.StatusGatewayTimeout}
		}
		return reply{status: http.StatusBadRequest, body: `{"error":"invalid iban"}`}
	})
	tr := startRelay(t, adminRelayYAML(s.srv.URL,
		"    timeout: 150ms\n    retry: {initial: 1ms, max: 5ms}\n"+destExtra), map[string]string{"plain": plainProvider})
	tr.mustIngest("k", 1)
	tr.mustIngest("k", 2)
	tr.mustIngest("j", 1)
	dl := &deadLetter{tr: tr, s: s, fixed: fixed, a1: tr.eventID("k", 1), a2: tr.eventID("k", 2)}
	waitFor(t, 10*time.Second, "A1 dead and B1 delivered", func() bool {
		return len(tr.events("status=dead").Items) == 1 && len(okHits(t, s)) == 1
	})
	return dl
}

// TestAdminDeadLetter: SPEC 6's dead-letter workflow, from the failure to
// the replay, through the admin listener.
func TestAdminDeadLetter(t *testing.T) {
	// inspect checks what the admin API shows of a held key.
	inspect := func(t *testing.T, dl *deadLetter) {
		tr := dl.tr
		waitFor(t, 5*time.Second, "k held", func() bool { return tr.dest("dest").HeldKeys == 1 })
		if ids := idsOf(tr.events("status=dead").Items); !slices.Equal(ids, []string{dl.a1}) {
			t.Errorf("status=dead lists %v, want A1 %s", ids, dl.a1)
		}
		if ids := idsOf(tr.events("status=held").Items); !slices.Equal(ids, []string{dl.a2}) {
			t.Errorf("status=held lists %v, want A2 %s", ids, dl.a2)
		}
		if st := tr.detail(dl.a2).Event.Status; st != "held" {
			t.Errorf("A2 status %q, want held", st)
		}
		d := tr.detail(dl.a1)
		if d.Event.Status != "dead" || d.Event.ID != dl.a1 || d.Event.Key != "k" || len(d.Deliveries) != 1 {
			t.Fatalf("A1 detail %+v", d)
		}
		dv := d.Deliveries[0]
		if dv.Destination != "dest" || dv.Status != "dead" || len(dv.Attempts) != 2 {
			t.Fatalf("A1 delivery %+v, want dead to dest after 2 attempts", dv)
		}
		for i, a := range dv.Attempts {
			for _, f := range []string{"at", "status", "error", "duration_ms", "response"} {
				if _, ok := a[f]; !ok {
					t.Errorf("attempt %d has no %q: %v", i, f, a)
				}
			}
		}
		first, last := dv.Attempts[0], dv.Attempts[1]
		if first["status"] != 0.0 || first["error"] == "" || first["duration_ms"].(float64) < 100 {
			t.Errorf("first attempt %v, want a timeout with no status after >= 150ms", first)
		}
		if last["status"] != 400.0 || last["response"] != `{"error":"invalid iban"}` {
			t.Errorf("last attempt %v, want 400 with the destination's answer", last)
		}
		dest := tr.dest("dest")
		if dest.Dead != 1 || dest.HeldKeys != 1 || len(dest.Held) != 1 || dest.Held[0].Key != "k" ||
			dest.Held[0].BlockedBy != dl.a1 || dest.Held[0].Waiting != 1 {
			t.Errorf("destination %+v, want dead 1, held [{k %s 1}]", dest, dl.a1)
		}
		mfs := tr.scrape()
		wantMetric(t, mfs, "hookrelay_dead", map[string]string{"destination": "dest"}, 1)
		wantMetric(t, mfs, "hookrelay_held_keys", map[string]string{"destination": "dest"}, 1)
		wantMetric(t, mfs, "hookrelay_deliveries_total", map[string]string{"destination": "dest", "outcome": "dead"}, 1)
	}

	for _, tc := range []struct{ name, path, body string }{
		{"event retry", "/admin/events/{A1}/retry", ""},
		{"dead retry by destination", "/admin/dead/retry", `{"destination":"dest"}`},
		{"dead retry by provider and key", "/admin/dead/retry", `{"provider":"plain","key":"k"}`},
		{"dead retry of everything", "/admin/dead/retry", `{}`},
	} {
		t.Run(tc.name, bubbled(func(t *testing.T) {
			dl := newDeadLetter(t, "")
			tr := dl.tr
			inspect(t, dl)
			dl.fixed.Store(true)
			var got map[string]int
			tr.do("POST", strings.ReplaceAll(tc.path, "{A1}", dl.a1), tc.body, 200, &got)
			if got["requeued"] != 1 {
				t.Errorf("answer %v, want requeued 1", got)
			}
			waitFor(t, 5*time.Second, "A1 and A2 delivered", func() bool { return len(okHits(t, dl.s)) == 3 })
			hits := okHits(t, dl.s)
			if hits[1].id != dl.a1 || hits[2].id != dl.a2 {
				t.Errorf("delivered %+v, want A1 then A2", hits[1:])
			}
			if hits[1].attempt != "1" {
				t.Errorf("A1 replayed as attempt %s, want 1", hits[1].attempt)
			}
			d := tr.detail(dl.a1)
			if d.Event.Status != "delivered" || len(d.Deliveries[0].Attempts) != 3 || d.Deliveries[0].AttemptsBeforeRetry != 2 {
				t.Errorf("A1 after the replay %+v", d)
			}
			tr.waitDest("dest", "empty after the replay", func(d destView) bool {
				return d.Dead == 0 && d.HeldKeys == 0 && d.Pending == 0 && len(d.Held) == 0
			})
			if n := len(tr.events("status=dead").Items) + len(tr.events("status=held").Items); n != 0 {
				t.Errorf("%d dead or held events left", n)
			}
		}))
	}

	t.Run("dead retry matching nothing", bubbled(func(t *testing.T) {
		dl := newDeadLetter(t, "")
		tr := dl.tr
		inspect(t, dl)
		dl.fixed.Store(true)
		for _, body := range []string{`{"provider":"nobody"}`, `{"key":"j"}`, `{"destination":"nowhere"}`,
			`{"destination":"dest","provider":"plain","key":"other"}`} {
			var got map[string]int
			tr.do("POST", "/admin/dead/retry", body, 200, &got)
			if got["requeued"] != 0 {
				t.Errorf("%s: %v, want requeued 0", body, got)
			}
		}
		// A dry run counts what a retry would requeue, and requeues nothing.
		for body, want := range map[string]float64{`{"dry_run":true}`: 1, `{"dry_run":true,"key":"k","destination":"dest"}`: 1,
			`{"dry_run":true,"provider":"plain"}`: 1, `{"dry_run":true,"key":"j"}`: 0, `{"dry_run":true,"provider":"nobody"}`: 0} {
			var got map[string]any
			tr.do("POST", "/admin/dead/retry", body, 200, &got)
			if got["matching"] != want || got["dry_run"] != true || got["requeued"] != nil {
				t.Errorf("%s: %v, want matching %v", body, got, want)
			}
		}
		tr.do("POST", "/admin/dead/retry", `{"nonsense":1}`, 400, nil)
		// Retrying an event that is not dead requeues nothing.
		var got map[string]int
		tr.do("POST", "/admin/events/"+dl.a2+"/retry", "", 200, &got)
		if got["requeued"] != 0 {
			t.Errorf("retry of held A2: %v, want requeued 0", got)
		}
		advance(time.Hour) // on the bubble's clock: an hour in which nothing moves
		if n := len(okHits(t, dl.s)); n != 1 {
			t.Errorf("%d deliveries in an hour, want only B1's", n)
		}
		inspect(t, dl)
	}))

	t.Run("skip the dead event", bubbled(func(t *testing.T) {
		dl := newDeadLetter(t, "")
		tr := dl.tr
		inspect(t, dl)
		var got map[string]int
		tr.do("POST", "/admin/events/"+dl.a1+"/skip", "", 200, &got)
		if got["skipped"] != 1 {
			t.Errorf("answer %v, want skipped 1", got)
		}
		waitFor(t, 5*time.Second, "A2 delivered", func() bool { return len(okHits(t, dl.s)) == 2 })
		if h := okHits(t, dl.s)[1]; h.id != dl.a2 || h.attempt != "1" {
			t.Errorf("delivered %+v, want A2 at its first attempt", h)
		}
		if d := tr.detail(dl.a1); d.Event.Status != "skipped" || d.Deliveries[0].Status != "skipped" {
			t.Errorf("A1 after skip %+v", d)
		}
		tr.waitDest("dest", "empty after skip", func(d destView) bool {
			return d.Dead == 0 && d.HeldKeys == 0 && d.Pending == 0
		})
		tr.do("POST", "/admin/events/"+dl.a1+"/skip", "", 200, &got)
		if got["skipped"] != 0 {
			t.Errorf("second skip: %v, want skipped 0", got)
		}
		mfs := tr.scrape()
		wantMetric(t, mfs, "hookrelay_deliveries_total", map[string]string{"destination": "dest", "outcome": "skipped"}, 1)
		wantMetric(t, mfs, "hookrelay_dead", map[string]string{"destination": "dest"}, 0)
	}))

	t.Run("skip the held event", bubbled(func(t *testing.T) {
		dl := newDeadLetter(t, "")
		tr := dl.tr
		inspect(t, dl)
		var got map[string]int
		tr.do("POST", "/admin/events/"+dl.a2+"/skip", "", 200, &got)
		if got["skipped"] != 1 {
			t.Errorf("answer %v, want skipped 1", got)
		}
		if st := tr.detail(dl.a2).Event.Status; st != "skipped" {
			t.Errorf("A2 status %q, want skipped", st)
		}
		if dest := tr.dest("dest"); dest.Dead != 1 || dest.HeldKeys != 1 || len(dest.Held) != 1 || dest.Held[0].Waiting != 0 {
			t.Errorf("destination after skipping A2 %+v, want k still held by A1 with nothing behind", dest)
		}
		dl.fixed.Store(true)
		tr.do("POST", "/admin/events/"+dl.a1+"/retry", "", 200, &got)
		synctest.Wait()
		advance(time.Hour)
		if hits := okHits(t, dl.s); len(hits) != 2 || hits[1].id != dl.a1 {
			t.Errorf("delivered %+v in an hour, want B1 and A1 only", hits)
		}
	}))
}

func idsOf(es []adminEvent) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

// TestAdminOnExhaustedSkip: with on_exhausted: skip the key moves on, and
// the dead delivery stays listed and can be retried later; several dead
// deliveries of a key are retried in their original order.
func TestAdminOnExhaustedSkip(t *testing.T) {
	var fixed atomic.Bool
	s := newSink(t, func(_ int, _ *http.Request, body []byte) reply {
		var e struct {
			Key  string
			Data struct{ N int }
		}
		_ = json.Unmarshal(body, &e)
		if e.Key == "k" && e.Data.N <= 2 && !fixed.Load() {
			return reply{status: http.StatusUnprocessableEntity}
		}
		return reply{}
	})
	tr := startRelay(t, adminRelayYAML(s.srv.URL, "    on_exhausted: skip\n"), map[string]string{"plain": plainProvider})
	for n := 1; n <= 3; n++ {
		tr.mustIngest("k", n)
	}
	waitFor(t, 5*time.Second, "k/3 delivered past the dead ones", func() bool { return len(okHits(t, s)) == 1 })
	a1, a2 := tr.eventID("k", 1), tr.eventID("k", 2)
	waitFor(t, 5*time.Second, "two dead", func() bool { return len(tr.events("status=dead").Items) == 2 })
	if ids := idsOf(tr.events("status=dead").Items); !slices.Equal(ids, []string{a2, a1}) {
		t.Errorf("status=dead %v, want A2, A1 (newest first)", ids)
	}
	if n := len(tr.events("status=held").Items); n != 0 {
		t.Errorf("%d held events with on_exhausted: skip", n)
	}
	tr.waitDest("dest", "dead 2 and no held key", func(d destView) bool { return d.Dead == 2 && d.HeldKeys == 0 && d.Pending == 0 })

	// Later: fixed; retried while paused, so that both are queued before
	// either is sent, and they must go in their original order.
	fixed.Store(true)
	tr.do("POST", "/admin/destinations/dest/pause", "", 200, nil)
	var got map[string]int
	tr.do("POST", "/admin/dead/retry", `{"destination":"dest"}`, 200, &got)
	if got["requeued"] != 2 {
		t.Errorf("answer %v, want requeued 2", got)
	}
	if d := tr.dest("dest"); d.Dead != 0 || d.Pending != 2 {
		t.Errorf("destination after the retry %+v, want pending 2, dead 0", d)
	}
	tr.do("POST", "/admin/destinations/dest/resume", "", 200, nil)
	waitFor(t, 5*time.Second, "A1 and A2 delivered", func() bool { return len(okHits(t, s)) == 3 })
	hits := okHits(t, s)
	if hits[1].id != a1 || hits[2].id != a2 || hits[1].attempt != "1" || hits[2].attempt != "1" {
		t.Errorf("replayed %+v, want A1 then A2, each at attempt 1", hits[1:])
	}
	tr.waitDest("dest", "empty", func(d destView) bool { return d.Pending == 0 && d.Dead == 0 })
	for _, id := range []string{a1, a2} {
		if st := tr.detail(id).Event.Status; st != "delivered" {
			t.Errorf("%s: status %q after the retry", id, st)
		}
	}
}

// TestAdminPause: a paused destination sends nothing, stays paused across
// a restart, and delivers its queue in order once resumed.
func TestAdminPause(t *testing.T) { inBubble(t, testAdminPause) }

func testAdminPause(t *testing.T) {
	s := newSink(t, nil)
	tr := startRelay(t, adminRelayYAML(s.srv.URL, ""), map[string]string{"plain": plainProvider})
	var got map[string]any
	tr.do("POST", "/admin/destinations/dest/pause", "", 200, &got)
	if got["paused"] != true || got["destination"] != "dest" {
		t.Errorf("pause answered %v", got)
	}
	for n := 1; n <= 3; n++ {
		tr.mustIngest("k", n)
	}
	tr.mustIngest("j", 1)
	advance(time.Hour) // on the bubble's clock: an hour in which nothing may move
	if n := len(s.requests()); n != 0 {
		t.Fatalf("%d requests to a paused destination in an hour", n)
	}
	if d := tr.dest("dest"); !d.Paused || d.Pending != 4 {
		t.Errorf("destination %+v, want paused with 4 pending", d)
	}
	if n := len(tr.events("status=pending").Items); n != 4 {
		t.Errorf("%d pending events, want 4", n)
	}

	tr = tr.restart()
	advance(time.Hour)
	if n := len(s.requests()); n != 0 {
		t.Fatalf("%d requests in an hour after a restart of a paused destination", n)
	}
	if d := tr.dest("dest"); !d.Paused || d.Pending != 4 {
		t.Errorf("destination after restart %+v, want paused with 4 pending", d)
	}
	wantMetric(t, tr.scrape(), "hookrelay_pending", map[string]string{"destination": "dest"}, 4)

	tr.do("POST", "/admin/destinations/dest/resume", "", 200, &got)
	if got["paused"] != false {
		t.Errorf("resume answered %v", got)
	}
	synctest.Wait() // no time passes
	if n := len(okHits(t, s)); n != 4 {
		t.Fatalf("%d deliveries once resumed, want the 4 at once", n)
	}
	var ks []int
	for _, h := range okHits(t, s) {
		if h.key == "k" {
			ks = append(ks, h.n)
		}
	}
	if !slices.Equal(ks, []int{1, 2, 3}) {
		t.Errorf("k delivered as %v, want 1 2 3", ks)
	}
	tr.waitDest("dest", "resumed and empty", func(d destView) bool { return !d.Paused && d.Pending == 0 })

	for _, path := range []string{"/admin/destinations/nowhere/pause", "/admin/destinations/nowhere/resume"} {
		status, body := tr.call("POST", path, "")
		var e struct{ Error string }
		if status != 404 || json.Unmarshal(body, &e) != nil || e.Error == "" {
			t.Errorf("%s: %d %s, want 404 with an error", path, status, body)
		}
	}
}

// TestAdminEvents: filters, newest-first cursor pagination and the errors
// of GET /admin/events.
func TestAdminEvents(t *testing.T) {
	s := newSink(t, nil)
	provider := strings.Replace(plainProvider, "  - to: [dest]\n",
		"  - to: [dest]\n  - when: body.type == \"loan.created\"\n    to: [audit]\n", 1)
	other := strings.Replace(plainProvider, "/in/plain", "/in/other", 1)
	tr := startRelay(t, adminRelayYAML(s.srv.URL, "  audit:\n    url: \""+s.srv.URL+"/audit\"\n"),
		map[string]string{"plain": provider, "other": other})
	tr.do("POST", "/admin/destinations/audit/pause", "", 200, nil) // created events stay pending

	for n := 0; n < 3; n++ {
		must(t, tr.ingestAt("/in/other", eventBody("o", n)))
	}
	for n := 0; n < 25; n++ {
		typ := "loan.updated"
		if n%3 == 0 {
			typ = "loan.created"
		}
		body := fmt.Sprintf(`{"id":"p-%d","key":"k%d","type":%q,"n":%d}`, n, n%5, typ, n)
		must(t, tr.ingest(body))
	}
	waitFor(t, 5*time.Second, "28 deliveries to dest", func() bool { return len(okHits(t, s)) == 28 })
	waitFor(t, 5*time.Second, "19 delivered events", func() bool {
		return len(tr.events("status=delivered&limit=100").Items) == 19
	})

	count := func(pred func(n int) bool) int {
		c := 0
		for n := 0; n < 25; n++ {
			if pred(n) {
				c++
			}
		}
		return c
	}
	created := count(func(n int) bool { return n%3 == 0 })
	for _, tc := range []struct {
		query string
		want  int
		check func(adminEvent) bool
	}{
		{"provider=other", 3, func(e adminEvent) bool { return e.Provider == "other" }},
		{"provider=plain", 25, func(e adminEvent) bool { return e.Provider == "plain" }},
		{"type=loan.created", created, func(e adminEvent) bool { return e.Type == "loan.created" }},
		{"key=k0", 5, func(e adminEvent) bool { return e.Key == "k0" }},
		{"destination=audit", created, func(e adminEvent) bool { return e.Type == "loan.created" }},
		{"destination=dest", 28, nil},
		{"status=pending", created, func(e adminEvent) bool { return e.Status == "pending" && e.Type == "loan.created" }},
		{"status=delivered", 28 - created, func(e adminEvent) bool { return e.Status == "delivered" }},
		{"status=dead", 0, nil},
		{"status=held", 0, nil},
		{"status=skipped", 0, nil},
		{"status=quarantined", 0, nil},
		{"provider=plain&type=loan.created&key=k0", count(func(n int) bool { return n%3 == 0 && n%5 == 0 }), nil},
		{"provider=nobody", 0, nil},
	} {
		t.Run(tc.query, func(t *testing.T) {
			var raw map[string]json.RawMessage
			tr.get("/admin/events?limit=1000&"+tc.query, &raw)
			if string(raw["items"]) == "null" {
				t.Errorf("items is null, want a list")
			}
			p := tr.events("limit=1000&" + tc.query)
			if len(p.Items) != tc.want || p.NextCursor != "" {
				t.Errorf("%d items, cursor %q; want %d and no cursor", len(p.Items), p.NextCursor, tc.want)
			}
			for _, e := range p.Items {
				if tc.check != nil && !tc.check(e) {
					t.Errorf("item %+v does not match", e)
				}
			}
		})
	}

	for _, tc := range []struct {
		query string
		pages []int
	}{
		{"provider=plain&limit=10", []int{10, 10, 5}},
		{"limit=10", []int{10, 10, 8}},
		{"type=loan.created&limit=4", []int{4, 4, 1}},
	} {
		t.Run("pages "+tc.query, func(t *testing.T) {
			var ids []string
			var sizes []int
			cursor := ""
			for page := 0; ; page++ {
				if page > 5 {
					t.Fatalf("more than 5 pages")
				}
				p := tr.events(tc.query + "&cursor=" + cursor)
				sizes = append(sizes, len(p.Items))
				ids = append(ids, idsOf(p.Items)...)
				if p.NextCursor == "" {
					break
				}
				cursor = p.NextCursor
			}
			if !slices.Equal(sizes, tc.pages) {
				t.Errorf("pages of %v, want %v", sizes, tc.pages)
			}
			if !slices.IsSortedFunc(ids, func(a, b string) int { return strings.Compare(b, a) }) {
				t.Errorf("not newest first: %v", ids)
			}
			if len(slices.Compact(slices.Clone(ids))) != len(ids) {
				t.Errorf("duplicates across pages: %v", ids)
			}
		})
	}
	// Newest first is ingest order reversed.
	p := tr.events("provider=plain&limit=25")
	for i, e := range p.Items {
		if e.n() != 24-i {
			t.Errorf("item %d is n=%d, want %d", i, e.n(), 24-i)
		}
	}

	for _, q := range []string{"limit=0", "limit=-1", "limit=ten", "status=bogus", "status=Dead", "cursor=not-an-id"} {
		status, body := tr.call("GET", "/admin/events?"+q, "")
		var e struct{ Error string }
		if status != 400 || json.Unmarshal(body, &e) != nil || e.Error == "" {
			t.Errorf("%s: %d %s, want 400 with an error", q, status, body)
		}
	}
	for _, id := range []string{ulid.Make().String(), "nope"} {
		for _, req := range [][2]string{{"GET", "/admin/events/" + id}, {"POST", "/admin/events/" + id + "/retry"},
			{"POST", "/admin/events/" + id + "/skip"}} {
			status, body := tr.call(req[0], req[1], "")
			var e struct{ Error string }
			if status != 404 || json.Unmarshal(body, &e) != nil || e.Error == "" {
				t.Errorf("%s %s: %d %s, want 404 with an error", req[0], req[1], status, body)
			}
		}
	}
}

// TestAdminQuarantine: requests our mapping cannot read are listed, and
// reprocessed once the provider file is fixed and reloaded.
func TestAdminQuarantine(t *testing.T) {
	s := newSink(t, nil)
	tr := startRelay(t, adminRelayYAML(s.srv.URL, ""), map[string]string{"plain": plainProvider})
	bodies := []string{ // no key: the mapping fails
		`{"id":"q1","ref":"R1","type":"loan.updated","n":1}`,
		`{"id":"q2","ref":"R2","type":"loan.updated","n":2}`,
		`{"id":"q3","type":"loan.updated","n":3}`,
	}
	for _, b := range bodies {
		resp := tr.post("/in/plain", b, map[string]string{"Authorization": "Bearer t0ken", "X-Trace": "trace-1"})
		if resp.StatusCode != 200 {
			t.Fatalf("quarantined request answered %d, want the provider's success", resp.StatusCode)
		}
	}
	type qitem struct {
		ID, Provider, Reason, Status, Method, Path string
		Headers                                    map[string]string
		BodySHA256                                 string `json:"body_sha256"`
	}
	var ql struct {
		Items      []qitem
		NextCursor string `json:"next_cursor"`
	}
	raw := tr.get("/admin/quarantine", &ql)
	if strings.Contains(string(raw), "t0ken") {
		t.Errorf("the quarantine listing shows the bearer token: %s", raw)
	}
	if len(ql.Items) != 3 {
		t.Fatalf("%d quarantined, want 3: %s", len(ql.Items), raw)
	}
	for i, q := range ql.Items { // newest first
		sum := sha256.Sum256([]byte(bodies[2-i]))
		if q.Provider != "plain" || !strings.Contains(q.Reason, "event.key") || q.Path != "/in/plain" || q.Method != "POST" ||
			q.Headers["Authorization"] != "***" || q.Headers["X-Trace"] != "trace-1" || q.BodySHA256 != hex.EncodeToString(sum[:]) ||
			q.Status != "quarantined" {
			t.Errorf("quarantined %d: %+v", i, q)
		}
	}
	var ev struct{ Items []qitem }
	tr.get("/admin/events?status=quarantined", &ev)
	if len(ev.Items) != 3 || ev.Items[0].ID != ql.Items[0].ID {
		t.Errorf("status=quarantined lists %+v", ev.Items)
	}
	var page struct {
		Items      []qitem
		NextCursor string `json:"next_cursor"`
	}
	tr.get("/admin/quarantine?limit=2", &page)
	if len(page.Items) != 2 || page.NextCursor == "" {
		t.Errorf("limit=2: %d items, cursor %q", len(page.Items), page.NextCursor)
	}
	tr.get("/admin/quarantine?limit=2&cursor="+page.NextCursor, &page)
	if len(page.Items) != 1 || page.Items[0].ID != ql.Items[2].ID || page.NextCursor != "" {
		t.Errorf("second page %+v", page)
	}

	type result struct {
		Reprocessed int
		Failed      []struct{ ID, Reason string }
	}
	reprocess := func(want int, failed ...string) {
		t.Helper()
		var res result
		tr.do("POST", "/admin/quarantine/reprocess", "", 200, &res)
		var ids []string
		for _, f := range res.Failed {
			if f.Reason == "" {
				t.Errorf("failure %s without a reason", f.ID)
			}
			ids = append(ids, f.ID)
		}
		slices.Sort(ids)
		slices.Sort(failed)
		if res.Reprocessed != want || !slices.Equal(ids, failed) {
			t.Errorf("reprocess: %+v, want %d reprocessed and %v failed", res, want, failed)
		}
	}
	// Nothing changed yet: all three still fail and stay.
	reprocess(0, ql.Items[0].ID, ql.Items[1].ID, ql.Items[2].ID)

	tr.writeProvider("plain", strings.Replace(plainProvider, "key: body.key", "key: body.ref", 1))
	tr.do("POST", "/admin/reload", "", 200, nil)
	reprocess(2, ql.Items[0].ID) // q3 has no ref either
	waitFor(t, 5*time.Second, "R1 and R2 delivered", func() bool { return len(okHits(t, s)) == 2 })
	var left struct{ Items []qitem }
	tr.get("/admin/quarantine", &left)
	if len(left.Items) != 1 || left.Items[0].ID != ql.Items[0].ID {
		t.Errorf("quarantine after reprocessing %+v, want q3 only", left.Items)
	}

	tr.writeProvider("plain", strings.Replace(plainProvider, "key: body.key", `key: body.ref ?? "none"`, 1))
	tr.do("POST", "/admin/reload", "", 200, nil)
	reprocess(1)
	waitFor(t, 5*time.Second, "q3 delivered", func() bool { return len(okHits(t, s)) == 3 })
	keys := map[string]bool{}
	for _, h := range okHits(t, s) {
		keys[h.key] = true
	}
	if !keys["R1"] || !keys["R2"] || !keys["none"] {
		t.Errorf("delivered keys %v", keys)
	}
	tr.get("/admin/quarantine", &left)
	if len(left.Items) != 0 {
		t.Errorf("quarantine not empty: %+v", left.Items)
	}
	if n := len(tr.events("status=quarantined").Items); n != 0 {
		t.Errorf("%d quarantined events left", n)
	}
	reprocess(0)
}

// TestAdminRejections: refused requests are listed with their reason,
// credentials masked and the body as a hash.
func TestAdminRejections(t *testing.T) {
	rec := newRecorder(t, nil)
	other := strings.Replace(plainProvider, "/in/plain", "/in/other", 1)
	tr := startRelay(t, adminRelayYAML(rec.srv.URL, ""), map[string]string{"plain": plainProvider, "other": other})
	bodies := []string{`{"id":"r1","key":"k"}`, `{"id":"r2","key":"k"}`, `{"id":"r3","key":"k"}`}
	for i, b := range bodies {
		h := map[string]string{"Authorization": "Bearer n0tit", "X-Trace": strconv.Itoa(i)}
		if i == 2 {
			h = map[string]string{"X-Trace": "2"}
		}
		if resp := tr.post("/in/plain", b, h); resp.StatusCode != 401 {
			t.Fatalf("refused request answered %d", resp.StatusCode)
		}
	}
	tr.post("/in/other", `{}`, nil)
	tr.post("/in/plain", eventBody("k", 1), authPlain) // accepted: not listed

	type rj struct {
		At         time.Time
		Provider   string
		Path       string
		Reason     string
		Headers    map[string]string
		BodySHA256 string `json:"body_sha256"`
	}
	var l struct{ Items []rj }
	raw := tr.get("/admin/rejections?provider=plain", &l)
	if strings.Contains(string(raw), "n0tit") {
		t.Errorf("rejections show the presented token: %s", raw)
	}
	if len(l.Items) != 3 {
		t.Fatalf("%d rejections of plain, want 3: %s", len(l.Items), raw)
	}
	for i, r := range l.Items { // newest first
		j := 2 - i
		sum := sha256.Sum256([]byte(bodies[j]))
		if r.Provider != "plain" || r.Path != "/in/plain" || r.Reason == "" || r.At.IsZero() ||
			r.BodySHA256 != hex.EncodeToString(sum[:]) || r.Headers["X-Trace"] != strconv.Itoa(j) {
			t.Errorf("rejection %d: %+v", i, r)
		}
		if auth, ok := r.Headers["Authorization"]; (j < 2 && auth != "***") || (j == 2 && ok) {
			t.Errorf("rejection %d: Authorization %q", i, auth)
		}
	}
	tr.get("/admin/rejections?provider=plain&limit=2", &l)
	if len(l.Items) != 2 || l.Items[0].Headers["X-Trace"] != "2" || l.Items[1].Headers["X-Trace"] != "1" {
		t.Errorf("limit=2: %+v", l.Items)
	}
	tr.get("/admin/rejections", &l)
	if len(l.Items) != 4 || l.Items[0].Provider != "other" {
		t.Errorf("all rejections: %+v", l.Items)
	}
	tr.get("/admin/rejections?provider=nobody", &l)
	if len(l.Items) != 0 {
		t.Errorf("provider=nobody: %+v", l.Items)
	}
	tr.do("GET", "/admin/rejections?limit=0", "", 400, nil)
}

// TestAdminReload: a refused reload changes nothing; one that takes effect
// under traffic loses no request; destinations come and go.
func TestAdminReload(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		s := newSink(t, nil)
		tr := startRelay(t, adminRelayYAML(s.srv.URL, ""), map[string]string{"plain": plainProvider})
		bad := strings.Replace(plainProvider, "key: body.key", "key: body.key +", 1)
		bad = strings.Replace(bad, "to: [dest]", "to: [dest, nowhere]", 1)
		tr.writeProvider("plain", bad)
		var res struct {
			Error  string
			Errors []string
		}
		tr.do("POST", "/admin/reload", "", http.StatusUnprocessableEntity, &res)
		if res.Error == "" || len(res.Errors) < 2 {
			t.Fatalf("refusal %+v, want an error and both problems", res)
		}
		line := regexp.MustCompile(`plain\.yaml:\d+: `)
		var key, route bool
		for _, p := range res.Errors {
			if !line.MatchString(p) {
				t.Errorf("problem %q is not file:line: message", p)
			}
			key = key || strings.Contains(p, "event.key")
			route = route || strings.Contains(p, "nowhere")
		}
		if !key || !route {
			t.Errorf("problems %q, want the bad expression and the unknown destination", res.Errors)
		}
		// Nothing changed: the old provider serves, as shown.
		tr.mustIngest("k", 1)
		waitFor(t, 5*time.Second, "delivery", func() bool { return len(okHits(t, s)) == 1 })
		if body := string(tr.get("/admin/providers", nil)); !strings.Contains(body, `"key":"body.key"`) {
			t.Errorf("providers after a refused reload: %s", body)
		}
		if status, _ := tr.callAuth("GET", "/readyz", "", ""); status != 200 {
			t.Errorf("readyz %d after a refused reload", status)
		}
	})

	t.Run("under traffic", func(t *testing.T) {
		s := newSink(t, nil)
		tr := startRelay(t, adminRelayYAML(s.srv.URL, ""), map[string]string{"plain": plainProvider})
		const posters, perPoster = 3, 100
		type req struct {
			start, end time.Time
			err        error
		}
		reqs := make([]req, posters*perPoster)
		var acked atomic.Int32
		var wg sync.WaitGroup
		for p := 0; p < posters; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < perPoster; i++ {
					n := p*perPoster + i
					start := time.Now()
					// Each poster owns its keys, so that each key's order is defined.
					err := tr.ingest(fmt.Sprintf(`{"id":"t-%d","key":"p%d-%d","type":"loan.updated","n":%d}`, n, p, i%4, n))
					reqs[n] = req{start, time.Now(), err}
					acked.Add(1)
				}
			}()
		}
		waitFor(t, 20*time.Second, "100 requests", func() bool { return acked.Load() >= 100 })
		tr.writeProvider("plain", strings.Replace(plainProvider, "  type: body.type\n",
			"  type: body.type\n  types: { loan.updated: loan.changed }\n", 1))
		reloadStart := time.Now()
		tr.do("POST", "/admin/reload", "", 200, nil)
		reloadEnd := time.Now()
		wg.Wait()

		for n, r := range reqs {
			if r.err != nil {
				t.Errorf("request %d: %v", n, r.err)
			}
		}
		total := posters * perPoster
		// Nothing is ingested after the posters: once the relay holds no
		// delivery, none can come.
		waitFor(t, 20*time.Second, "every event delivered and nothing queued", func() bool {
			return len(okHits(t, s)) >= total && tr.settled()
		})
		hits := okHits(t, s)
		if len(hits) != total {
			t.Errorf("%d deliveries of %d events", len(hits), total)
		}
		seen := map[int]int{}
		lastOfKey := map[string]int{}
		before, after := 0, 0
		for _, h := range hits {
			seen[h.n]++
			if prev, ok := lastOfKey[h.key]; ok && prev > h.n {
				t.Errorf("key %s: %d delivered after %d", h.key, h.n, prev)
			}
			lastOfKey[h.key] = h.n
			switch r := reqs[h.n]; {
			case r.start.After(reloadEnd):
				after++
				if h.typ != "loan.changed" {
					t.Errorf("event %d sent after the reload has type %q", h.n, h.typ)
				}
			case r.end.Before(reloadStart):
				before++
				if h.typ != "loan.updated" {
					t.Errorf("event %d acknowledged before the reload has type %q", h.n, h.typ)
				}
			}
		}
		for n := 0; n < total; n++ {
			if seen[n] != 1 {
				t.Errorf("event %d delivered %d times", n, seen[n])
			}
		}
		if before == 0 || after == 0 {
			t.Errorf("%d events before and %d after the reload: the reload did not happen mid-stream", before, after)
		}
	})

	t.Run("destinations added and removed", bubbled(func(t *testing.T) {
		s := newSink(t, nil)
		extra := newSink(t, nil)
		tr := startRelay(t, adminRelayYAML(s.srv.URL, ""), map[string]string{"plain": plainProvider})
		withExtra := "  extra:\n    url: \"" + extra.srv.URL + "\"\n"
		writeConfig(t, tr.dir, adminRelayYAML(s.srv.URL, withExtra),
			map[string]string{"plain": strings.Replace(plainProvider, "to: [dest]", "to: [dest, extra]", 1)})
		tr.do("POST", "/admin/reload", "", 200, nil)
		tr.mustIngest("k", 1)
		waitFor(t, 5*time.Second, "delivery to the new destination", func() bool {
			return len(okHits(t, extra)) == 1 && len(okHits(t, s)) == 1
		})
		tr.dest("extra")

		// Queue two for extra, then remove it: they stay in the spool.
		tr.do("POST", "/admin/destinations/extra/pause", "", 200, nil)
		tr.mustIngest("k", 2)
		tr.mustIngest("k", 3)
		waitFor(t, 5*time.Second, "dest delivered", func() bool { return len(okHits(t, s)) == 3 })
		writeConfig(t, tr.dir, adminRelayYAML(s.srv.URL, ""), map[string]string{"plain": plainProvider})
		tr.do("POST", "/admin/reload", "", 200, nil)
		var l struct{ Items []destView }
		tr.get("/admin/destinations", &l)
		if len(l.Items) != 1 || l.Items[0].Name != "dest" {
			t.Errorf("destinations after removal %+v", l.Items)
		}
		tr.do("POST", "/admin/destinations/extra/resume", "", 404, nil)
		if q := tr.queued("extra"); len(q) != 2 {
			t.Errorf("%d deliveries to the removed destination in the spool, want 2", len(q))
		}
		if p := tr.events("destination=extra&status=pending"); len(p.Items) != 2 {
			t.Errorf("events pending for the removed destination: %+v", p.Items)
		}
		tr.mustIngest("k", 4)
		synctest.Wait()
		if n := len(okHits(t, s)); n != 4 {
			t.Errorf("%d deliveries to dest after the removal, want 4", n)
		}
		advance(time.Hour)
		if n := len(okHits(t, extra)); n != 1 {
			t.Errorf("%d deliveries to the removed destination in an hour, want the one before", n)
		}
	}))
}

// TestAdminMetrics: after a known run the Prometheus text parses and counts
// it; no label value is an event id or key.
func TestAdminMetrics(t *testing.T) { inBubble(t, testAdminMetrics) }

func testAdminMetrics(t *testing.T) {
	s := newSink(t, statuses(http.StatusServiceUnavailable))
	tr := startRelay(t, adminRelayYAML(s.srv.URL, "    retry: {initial: 1ms, max: 5ms}\n"),
		map[string]string{"plain": plainProvider})
	keys := []string{"cust-7781", "cust-9902"}
	tr.mustIngest(keys[0], 1)
	tr.mustIngest(keys[0], 2)
	tr.mustIngest(keys[1], 1)
	tr.mustIngest(keys[0], 1) // duplicate
	for i := 0; i < 2; i++ {
		tr.post("/in/plain", eventBody("cust-rejected", i), map[string]string{"Authorization": "Bearer wrong"})
	}
	tr.post("/in/plain", `{"id":"cust-q-1"}`, authPlain) // quarantined
	waitFor(t, 5*time.Second, "3 deliveries", func() bool { return len(okHits(t, s)) == 3 })
	tr.waitDest("dest", "empty", func(d destView) bool { return d.Pending == 0 })

	mfs := tr.scrape()
	for outcome, want := range map[string]float64{"accepted": 3, "duplicate": 1, "rejected": 2, "quarantined": 1} {
		wantMetric(t, mfs, "hookrelay_ingest_requests_total", map[string]string{"provider": "plain", "outcome": outcome}, want)
	}
	dest := map[string]string{"destination": "dest"}
	wantMetric(t, mfs, "hookrelay_deliveries_total", map[string]string{"destination": "dest", "outcome": "success"}, 3)
	wantMetric(t, mfs, "hookrelay_deliveries_total", map[string]string{"destination": "dest", "outcome": "retry"}, 1)
	wantMetric(t, mfs, "hookrelay_ingest_duration_seconds", map[string]string{"provider": "plain"}, 7)
	wantMetric(t, mfs, "hookrelay_delivery_duration_seconds", dest, 4)
	for _, name := range []string{"hookrelay_pending", "hookrelay_dead", "hookrelay_held_keys", "hookrelay_oldest_pending_seconds"} {
		wantMetric(t, mfs, name, dest, 0)
	}
	if mf := mfs["hookrelay_ingest_duration_seconds"]; mf == nil || mf.GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("hookrelay_ingest_duration_seconds is not a histogram")
	}
	if mf := mfs["hookrelay_delivery_duration_seconds"]; mf == nil || mf.GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("hookrelay_delivery_duration_seconds is not a histogram")
	}
	if v, ok := metricValue(mfs, "hookrelay_spool_bytes", map[string]string{}); !ok || v <= 0 {
		t.Errorf("hookrelay_spool_bytes = %v (present %v), want > 0", v, ok)
	}

	// While a delivery waits, the queue gauges show it.
	tr.do("POST", "/admin/destinations/dest/pause", "", 200, nil)
	tr.mustIngest(keys[1], 2)
	advance(20 * time.Millisecond)
	mfs = tr.scrape()
	wantMetric(t, mfs, "hookrelay_pending", dest, 1)
	// Its age is 20ms, and under a millisecond more: event ids keep milliseconds.
	if v, _ := metricValue(mfs, "hookrelay_oldest_pending_seconds", dest); v < 0.020 || v >= 0.021 {
		t.Errorf("hookrelay_oldest_pending_seconds = %v with a delivery waiting 20ms", v)
	}

	forbidden := append([]string{}, keys...)
	for _, e := range tr.events("limit=1000").Items {
		forbidden = append(forbidden, e.ID)
	}
	forbidden = append(forbidden, "cust-7781-1", "cust-7781-2", "cust-9902-1", "cust-q-1", "cust-rejected")
	if len(forbidden) < 6 {
		t.Fatalf("only %d ids and keys to look for", len(forbidden))
	}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				for _, f := range forbidden {
					if strings.Contains(lp.GetValue(), f) {
						t.Errorf("%s{%s=%q} carries the event id or key %s", name, lp.GetName(), lp.GetValue(), f)
					}
				}
			}
		}
	}
}
