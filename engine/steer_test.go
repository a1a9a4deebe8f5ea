package engine

// Issue #12, items 9 and 12: a sender never steers where a request goes
// (SPEC 2, SPEC 9), and a poll answer cannot make the relay allocate or
// spool without bound.

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// uriRecorder is a destination that records each request's Host and
// RequestURI as they came off the wire.
type uriRecorder struct {
	url string
	mu  sync.Mutex
	got []string // "host requestURI authorization"
}

func newURIRecorder(t *testing.T) *uriRecorder {
	u := &uriRecorder{}
	u.url = newLoopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		u.mu.Lock()
		u.got = append(u.got, r.Host+" "+r.RequestURI+" "+r.Header.Get("Authorization"))
		u.mu.Unlock()
	}))
	return u
}

func (u *uriRecorder) requests() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.got...)
}

// TestTemplateHostileEventStaysInPath: an event whose type and key are
// crafted to climb to an admin path is delivered to the configured host
// and path, each value one escaped segment (or one query value), with the
// broker's token; a value that would be a dot segment is not sent at all.
func TestTemplateHostileEventStaysInPath(t *testing.T) {
	dest := newURIRecorder(t)
	tr := startRelay(t, relayYAML(dest.url+"/events/{{ event.type }}/{{ event.key }}?type={{ event.type }}",
		"    auth: { kind: bearer, token: broker-token }\n    retry: { initial: 1ms }\n    on_exhausted: skip\n"),
		map[string]string{"plain": plainProvider})
	host := strings.TrimPrefix(dest.url, "http://")

	// "/", "?" and "#" stay inside the segment. (With ".." segments inside
	// too it is not sent at all: TestTemplateEncodedTraversalNotSent.)
	const typ = "admin/users/42/delete?force=1#"
	resp := tr.post("/in/plain", `{"key": "k/x", "type": "`+typ+`"}`, authPlain)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ingest: %d", resp.StatusCode)
	}
	waitFor(t, 10*time.Second, "the delivery", func() bool { return len(dest.requests()) == 1 })
	want := host + " /events/admin%2Fusers%2F42%2Fdelete%3Fforce=1%23/k%2Fx" +
		"?type=admin%2Fusers%2F42%2Fdelete%3Fforce%3D1%23 Bearer broker-token"
	if got := dest.requests()[0]; got != want {
		t.Errorf("request\n got %s\nwant %s", got, want)
	}

	// ".." as a whole segment: percent-encoding would not help against a
	// server that decodes before it cleans the path. Dead, never sent.
	resp = tr.post("/in/plain", `{"key": "..", "type": "t"}`, authPlain)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ingest: %d", resp.StatusCode)
	}
	resp = tr.post("/in/plain", `{"key": "after", "type": "t"}`, authPlain)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ingest: %d", resp.StatusCode)
	}
	waitFor(t, 10*time.Second, "the next delivery", func() bool { return len(dest.requests()) == 2 })
	waitFor(t, 10*time.Second, "the dot-segment event dead", func() bool {
		for _, d := range tr.queued("dest") {
			if d.Status == spool.Dead && len(d.Attempts) == 1 && strings.Contains(d.Attempts[0].Error, "path segment") {
				return true
			}
		}
		return false
	})
	for _, r := range dest.requests() {
		if strings.Contains(r, " /admin") || strings.Contains(r, "/../") {
			t.Errorf("a request left its path: %s", r)
		}
	}
}

// TestTemplateEncodedTraversalNotSent: a destination behind a server that
// decodes the path before it normalises it (nginx in front, or a handler
// that cleans r.URL.Path) reads "..%2F..%2Fadmin" as "../../admin". An event
// whose type would climb out of /events/ that way, by "/" or "\\" inside
// the value, a path parameter or one more level of escaping, is dead at its
// first attempt and never sent; the key's next event goes on.
func TestTemplateEncodedTraversalNotSent(t *testing.T) {
	var mu sync.Mutex
	var cleaned []string // the paths such a server routes on
	u := newLoopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		p := path.Clean(strings.ReplaceAll(r.URL.Path, "\\", "/"))
		mu.Lock()
		cleaned = append(cleaned, p)
		mu.Unlock()
	}))
	tr := startRelay(t, relayYAML(u+"/events/{{ event.type }}/x",
		"    auth: { kind: bearer, token: broker-token }\n    retry: { initial: 1ms }\n    on_exhausted: skip\n"),
		map[string]string{"plain": plainProvider})
	hostile := []string{"../../../admin/users/42/delete?force=1#", "x/../../admin", "..\\..\\admin",
		"..;jsessionid=1", "%2e%2e%2fadmin"}
	for i, typ := range hostile {
		body, _ := json.Marshal(map[string]any{"id": fmt.Sprint("h", i), "key": "k", "type": typ})
		if resp := tr.post("/in/plain", string(body), authPlain); resp.StatusCode != http.StatusOK {
			t.Fatalf("ingest %q: %d", typ, resp.StatusCode)
		}
	}
	if resp := tr.post("/in/plain", `{"id": "ok", "key": "k", "type": "a/b"}`, authPlain); resp.StatusCode != http.StatusOK {
		t.Fatalf("ingest: %d", resp.StatusCode)
	}
	waitFor(t, 10*time.Second, "the last event delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(cleaned) > 0
	})
	mu.Lock()
	defer mu.Unlock()
	if len(cleaned) != 1 || cleaned[0] != "/events/a/b/x" {
		t.Errorf("the destination routed %q, want only /events/a/b/x", cleaned)
	}
	dead := 0
	for _, d := range tr.queued("dest") {
		if d.Status == spool.Dead && len(d.Attempts) == 1 && strings.Contains(d.Attempts[0].Error, "path segment") {
			dead++
		}
	}
	if dead != len(hostile) {
		t.Errorf("%d of %d hostile events dead at their first attempt", dead, len(hostile))
	}
}

// TestTemplatePlacesRefusedAtLoad: a placeholder over sender data in a
// URL's scheme, host, port or userinfo is a configuration error, for
// destinations and poll requests alike, also when a value comes first.
func TestTemplatePlacesRefusedAtLoad(t *testing.T) {
	pollBlock := func(url string) string {
		return "paths: [/in/p]\nverify: none\nevent: { key: body.k, type: body.t }\nroutes: [{ to: [dest] }]\n" +
			"poll:\n  values: { base: 'https://lender.' }\n  request: { url: '" + url + "' }\n  response: json\n  event: { type: response.body.t }\n"
	}
	for _, c := range []struct {
		name, dest, provider, want string
	}{
		{"destination host", "http://{{ event.type }}.example/x", "", "relay.yaml:6: destinations.dest.url: {{ event.type }} is in the scheme, userinfo, host or port"},
		{"destination whole URL", "{{ event.data.url }}", "", "destinations.dest.url: {{ event.data.url }} is in the scheme"},
		{"destination port", "http://127.0.0.1:{{ event.key }}/x", "", "destinations.dest.url: {{ event.key }} is in the scheme"},
		{"destination userinfo", "http://{{ event.key }}@127.0.0.1/x", "", "destinations.dest.url: {{ event.key }} is in the scheme"},
		{"poll host", "http://127.0.0.1:1/x", pollBlock("https://{{ key }}.lender.example/status"), "p.yaml:7: poll.request.url: {{ key }} is in the scheme"},
		{"poll host after a value", "http://127.0.0.1:1/x", pollBlock("{{ values.base }}{{ key }}/status"), "p.yaml:7: poll.request.url: {{ key }} is in the scheme"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			providers := map[string]string{"plain": plainProvider}
			if c.provider != "" {
				providers = map[string]string{"p": c.provider}
			}
			writeConfig(t, dir, relayYAML(c.dest, ""), providers)
			_, err := Load(filepath.Join(dir, "relay.yaml"), true)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("load: %v\nwant %q", err, c.want)
			}
		})
	}
}

// steerPollRelay runs the shipped resurs.yaml against f, with the poll
// block edited by edit.
func steerPollRelay(t *testing.T, f *fakeResurs, edit func(string) string) (*testRelay, *recorder, resursKey) {
	t.Helper()
	const kid = "1cb06a4a-3465-4f11-ac3d-d8bb2bdb1eb7"
	key := newResursKey(t, kid)
	keys := newJWKSServer(t, key)
	yaml := shippedProvider(t, "resurs")
	const anchor = "  interval: 5m\n"
	if !strings.Contains(yaml, anchor) {
		t.Fatalf("resurs.yaml has no %q line", strings.TrimSpace(anchor))
	}
	yaml = edit(strings.Replace(yaml, anchor, "  interval: "+pollInterval.String()+"\n", 1))
	tr, rec := seedRelay(t, seedProviderCopy(t, map[string]string{"resurs": yaml}), map[string]string{
		"RESURS_JWKS_URL": keys.url, "RESURS_JWKS_APIKEY": resursAPIKey,
		"RESURS_API_URL": f.url, "RESURS_API_USERNAME": fakeResursUser, "RESURS_API_PASSWORD": fakeResursPass,
	})
	return tr, rec, key
}

// TestPollHostileKeyNotPolled: a webhook's key that does not match
// poll.key_pattern is counted, never polled; the admin API refuses it.
func TestPollHostileKeyNotPolled(t *testing.T) {
	f := newFakeResurs(t)
	tr, rec, k := steerPollRelay(t, f, func(s string) string { return s })
	const hostile = "APP-1</applicationReference><applicationReference>APP-2"
	f.set(hostile, "paid")
	f.set("APP-2", "paid")
	f.set("APP-OK", "signed")
	resursWebhook(t, tr, k, hostile, "WAITING_FOR_ADDITION")
	refused := tr.m.pollRefused.WithLabelValues("resurs", "key_pattern")
	if n := testutil.ToFloat64(refused); n != 1 {
		t.Errorf("refused keys counted %v, want 1", n)
	}
	resp, err := http.Post(tr.Admin.URL+"/admin/providers/resurs/poll", "application/json",
		strings.NewReader(`{"key":"APP-1\u003c/applicationReference\u003e"}`))
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("admin poll of a hostile key: %d, want 400", resp.StatusCode)
	}
	// A good key after it is polled: the loop ran, and the hostile key
	// was never sent, whole or split.
	resursWebhook(t, tr, k, "APP-OK", "WAITING_FOR_ADDITION")
	waitPolled(t, rec, "APP-OK", 1)
	waitRequests(t, f, "APP-OK", 2)
	if n := f.requests(hostile) + f.requests("APP-1") + f.requests("APP-2"); n != 0 {
		t.Errorf("the hostile key was polled %d times", n)
	}
	if n := testutil.ToFloat64(refused); n != 2 {
		t.Errorf("refused keys counted %v, want 2", n)
	}
	f.check(t)
}

// TestPollBodyXMLEscaped: with a key_pattern that lets markup through, the
// shipped SOAP body carries the key XML-escaped: the lender reads the key
// back exactly, and no element of the sender's.
func TestPollBodyXMLEscaped(t *testing.T) {
	f := newFakeResurs(t)
	tr, rec, k := steerPollRelay(t, f, func(s string) string {
		const shipped = "  key_pattern: '^[A-Za-z0-9._:-]{1,128}$'\n"
		if !strings.Contains(s, shipped) {
			t.Fatalf("resurs.yaml has no %q line", strings.TrimSpace(shipped))
		}
		return strings.Replace(s, shipped, "  key_pattern: '.{1,200}'\n", 1)
	})
	const key = `APP-1</applicationReference><applicationReference>APP-2&amp;'`
	f.set(key, "signed")
	resursWebhook(t, tr, k, key, "WAITING_FOR_ADDITION")
	got := waitPolled(t, rec, key, 1)
	if got[0]["type"] != "application.signed" {
		t.Errorf("type %v", got[0]["type"])
	}
	if n := f.requests("APP-1") + f.requests("APP-2"); n != 0 {
		t.Errorf("the key was split into %d requests", n)
	}
	f.check(t)
}

// TestRegisterBodyXMLEscaped: resurs.yaml's setCallback body carries
// public_url XML-escaped.
func TestRegisterBodyXMLEscaped(t *testing.T) {
	lender := newFakeLender(t, func(int, lenderCall) (int, string) { return 200, fmt.Sprintf(resursAnswer, "true") })
	p := loadRegisterProvider(t, "resurs", shippedProvider(t, "resurs"),
		map[string]string{"RESURS_API_URL": lender.URL + "/ws/setCallback", "RELAY_PUBLIC_URL": "https://relay.example/a&b<c>"})
	must(t, p.Register(context.Background(), false))
	c := lender.got()[0]
	var sc setCallback
	if err := xml.Unmarshal([]byte(c.body), &sc); err != nil {
		t.Fatalf("setCallback body: %v\n%s", err, c.body)
	}
	if sc.Config.URL != "https://relay.example/a&b<c>/in/resurs" || !strings.Contains(c.body, "a&amp;b&lt;c&gt;") {
		t.Errorf("callbackUrl %q in\n%s", sc.Config.URL, c.body)
	}
}

// TestRegisterHeaderControlCharacter: a register header that renders with
// CR LF fails the registration; nothing is sent.
func TestRegisterHeaderControlCharacter(t *testing.T) {
	lender := newFakeLender(t, func(int, lenderCall) (int, string) { return 200, "" })
	p := loadRegisterProvider(t, "acme", plainProvider+`
register:
  public_url: https://relay.example
  values: { url: env:LENDER_URL, token: env:STEER_TOKEN }
  request:
    url: "{{ values.url }}/hooks"
    headers: { X-Token: "{{ values.token }}" }
`, map[string]string{"LENDER_URL": lender.URL, "STEER_TOKEN": "tok\r\nX-Evil: 1"})
	err := p.Register(context.Background(), false)
	if err == nil || !strings.Contains(err.Error(), "header X-Token: the value holds a control character") {
		t.Fatalf("got %v", err)
	}
	if n := len(lender.got()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

// TestPollEventLargerThanMaxBody: a polled event whose envelope would be
// larger than the provider's max_body is counted and not spooled; an
// answer larger than max_body is not even read whole; a small one passes.
func TestPollEventLargerThanMaxBody(t *testing.T) {
	pad := strings.Repeat("x", 2500)
	lender := newLoopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/status/BIG": // 2.5 KiB answer, 5+ KiB event
			fmt.Fprintf(w, `{"t": "big", "pad": %q}`, pad)
		case "/status/HUGE": // larger than max_body itself
			fmt.Fprintf(w, `{"t": "huge", "pad": %q}`, pad+pad)
		default:
			fmt.Fprint(w, `{"t": "small", "pad": "p"}`)
		}
	}))
	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL, ""), map[string]string{"pp": `
paths: [/in/pp]
verify: none
max_body: 4KiB
event: { key: body.k, type: body.t }
routes: [{ to: [dest] }]
poll:
  interval: 100ms
  request: { method: GET, url: "` + lender + `/status/{{ key }}" }
  response: json
  event: { type: response.body.t, data: { pad: response.body.pad } }
`})
	must(t, tr.pollKey("pp", "BIG"))
	must(t, tr.pollKey("pp", "HUGE"))
	refused := tr.m.pollRefused.WithLabelValues("pp", "too_large")
	waitFor(t, 10*time.Second, "the big event refused", func() bool { return testutil.ToFloat64(refused) >= 1 })
	must(t, tr.pollKey("pp", "SMALL"))
	waitFor(t, 10*time.Second, "the small event delivered", func() bool { return len(rec.delivered(t)) == 1 })
	for _, ev := range rec.delivered(t) {
		if ev["type"] != "small" {
			t.Errorf("delivered a %v event", ev["type"])
		}
	}
	waitFor(t, 10*time.Second, "the huge answer failed", func() bool { return pollStateOf(t, tr, "pp", "HUGE").Errors > 0 })
	for _, key := range []string{"BIG", "HUGE"} {
		if st := pollStateOf(t, tr, "pp", key); st.Last != "" || st.LastType != "" {
			t.Errorf("%s: a result was stored: %+v", key, st)
		}
	}
}

func pollStateOf(t *testing.T, tr *testRelay, provider, key string) spool.PollState {
	t.Helper()
	var st spool.PollState
	must(t, tr.spool.PollKeys(provider, func(k string, s *spool.PollState) error {
		if k == key {
			st = *s
		}
		return nil
	}))
	return st
}

// TestHeaderControlCharacter: a header rendered with CR LF from sender data
// fails the delivery attempt as permanent (dead after one attempt, nothing
// sent), and fails a poll request (nothing sent, the key backs off).
func TestHeaderControlCharacter(t *testing.T) {
	dest := newURIRecorder(t)
	var polls sync.Mutex
	polled := 0
	lender := newLoopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		polls.Lock()
		polled++
		polls.Unlock()
		fmt.Fprint(w, `{"t": "x"}`)
	}))
	tr := startRelay(t, relayYAML(dest.url+"/in", "    headers: {X-Key: \"{{ event.key }}\"}\n    retry: {max_attempts: 5, initial: 1ms}\n"),
		map[string]string{"plain": plainProvider, "pp": `
paths: [/in/pp]
verify: none
event: { key: body.k, type: body.t }
routes: [{ to: [dest] }]
poll:
  interval: 100ms
  key_pattern: '(?s).+'
  request: { method: GET, url: "` + lender + `/status", headers: { X-Ref: "{{ key }}" } }
  response: json
  event: { type: response.body.t }
`})
	resp := tr.post("/in/plain", `{"key": "a\r\nX-Injected: 1", "type": "t"}`, authPlain)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ingest: %d", resp.StatusCode)
	}
	waitFor(t, 10*time.Second, "the delivery dead", func() bool {
		q := tr.queued("dest")
		return len(q) == 1 && q[0].Status == spool.Dead
	})
	if d := tr.queued("dest")[0]; len(d.Attempts) != 1 || !strings.Contains(d.Attempts[0].Error, "control character") {
		t.Errorf("attempts %+v, want one, refused before sending", d.Attempts)
	}
	must(t, tr.pollKey("pp", "b\r\nX-Injected: 1"))
	waitFor(t, 10*time.Second, "the poll failed", func() bool { return pollStateOf(t, tr, "pp", "b\r\nX-Injected: 1").Errors > 0 })
	polls.Lock()
	defer polls.Unlock()
	if n := len(dest.requests()); n != 0 || polled != 0 {
		t.Errorf("sent %d deliveries and %d polls", n, polled)
	}
}
