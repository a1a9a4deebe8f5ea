package engine

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/admin"
	"github.com/hookrelay/hookrelay/engine/spool"
)

// pollInterval is the tests' poll interval, in place of the shipped 5m.
const pollInterval = 100 * time.Millisecond

// fakeResurs answers getApplicationStatus as seed 001 shows it, with a
// status per application the test sets, and checks every request's shape.
type fakeResurs struct {
	url  string
	soap bool // answer inside a SOAP Envelope/Body

	mu       sync.Mutex
	status   map[string]string // key -> waiting | signed | paid | in_progress | fail | garbage
	count    map[string]int
	times    map[string][]time.Time // when each key was polled
	problems []string
}

const (
	fakeResursUser = "resurs-user"
	fakeResursPass = "resurs-password"
)

func newFakeResurs(t *testing.T) *fakeResurs {
	f := &fakeResurs{status: map[string]string{}, count: map[string]int{}, times: map[string][]time.Time{}}
	f.url = newLoopbackServer(t, http.HandlerFunc(f.serve)) + "/ws/status"
	return f
}

func (f *fakeResurs) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req struct {
		XMLName              xml.Name
		ApplicationReference string `xml:"applicationReference"`
	}
	var problems []string
	if r.Method != http.MethodPost || r.URL.Path != "/ws/status" {
		problems = append(problems, r.Method+" "+r.URL.Path)
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "text/xml" {
		problems = append(problems, "Content-Type "+r.Header.Get("Content-Type"))
	}
	if u, p, ok := r.BasicAuth(); !ok || u != fakeResursUser || p != fakeResursPass {
		problems = append(problems, "Authorization "+r.Header.Get("Authorization"))
	}
	if err := xml.Unmarshal(body, &req); err != nil || req.XMLName.Local != "getApplicationStatus" || req.ApplicationReference == "" {
		problems = append(problems, fmt.Sprintf("body %q (%v)", body, err))
	}
	key := req.ApplicationReference
	f.mu.Lock()
	f.problems = append(f.problems, problems...)
	f.count[key]++
	f.times[key] = append(f.times[key], time.Now())
	status := f.status[key]
	f.mu.Unlock()

	waiting, signed, paid := "false", "", "false"
	switch status {
	case "waiting":
		waiting = "true"
	case "signed":
		signed = "E_SIGN"
	case "paid":
		signed, paid = "E_SIGN", "true"
	case "fail":
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	case "garbage":
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprint(w, "<fault><reason>no such application</reason></fault>")
		return
	}
	answer := "<getApplicationStatusResponse>\n" +
		"    <waitingForAddition>" + waiting + "</waitingForAddition>\n" +
		"    <signedWithMethod>" + signed + "</signedWithMethod>\n" +
		"    <requestedSigningMethod>E_SIGN</requestedSigningMethod>\n" +
		"    <paidOut>" + paid + "</paidOut>\n" +
		"</getApplicationStatusResponse>"
	if f.soap {
		answer = `<?xml version="1.0" encoding="UTF-8"?>` +
			`<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>` +
			strings.Replace(answer, "<getApplicationStatusResponse>", `<ns2:getApplicationStatusResponse xmlns:ns2="http://ecommerce.resurs.com/v4/msg/shopflow">`, 1) +
			"</soap:Body></soap:Envelope>"
		answer = strings.Replace(answer, "</getApplicationStatusResponse>", "</ns2:getApplicationStatusResponse>", 1)
	}
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	fmt.Fprint(w, answer)
}

func (f *fakeResurs) set(key, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status[key] = status
}

func (f *fakeResurs) requests(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count[key]
}

// gaps returns the time between key's polls, in intervals.
func (f *fakeResurs) gaps(key string) []float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []float64
	for i := 1; i < len(f.times[key]); i++ {
		out = append(out, float64(f.times[key][i].Sub(f.times[key][i-1]))/float64(pollInterval))
	}
	return out
}

// pollRounds waits until the fake has seen n more polls of a marker key
// whose answer is unmappable, so that it makes no event and is polled every
// interval (±10%): n-1 intervals at least passed on the poll loop's own
// clock, however loaded the machine, in which any key still polled was
// polled too.
func pollRounds(t *testing.T, tr *testRelay, f *fakeResurs, n int) {
	t.Helper()
	const marker = "APP-MARKER"
	f.set(marker, "garbage")
	must(t, tr.pollKey("resurs", marker)) // polled now, then every interval
	waitRequests(t, f, marker, n)
}

func (f *fakeResurs) check(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.problems {
		t.Errorf("fake Resurs got a bad request: %s", p)
	}
}

// pollRelay runs the shipped resurs.yaml, with the poll interval shortened,
// against fake Resurs and JWKS servers.
func pollRelay(t *testing.T, f *fakeResurs) (*testRelay, *recorder, resursKey) {
	t.Helper()
	const kid = "1cb06a4a-3465-4f11-ac3d-d8bb2bdb1eb7"
	key := newResursKey(t, kid)
	keys := newJWKSServer(t, key)
	yaml := shippedProvider(t, "resurs")
	const anchor = "  interval: 5m\n"
	if !strings.Contains(yaml, anchor) {
		t.Fatalf("resurs.yaml has no %q line", strings.TrimSpace(anchor))
	}
	yaml = strings.Replace(yaml, anchor, "  interval: "+pollInterval.String()+"\n", 1)
	tr, rec := seedRelay(t, seedProviderCopy(t, map[string]string{"resurs": yaml,
		"nopoll": "paths: [/in/nopoll]\nverify: none\nevent: { key: body.k, type: body.t }\nroutes: [{ to: [broker] }]\n"}), map[string]string{
		"RESURS_JWKS_URL": keys.url, "RESURS_JWKS_APIKEY": resursAPIKey,
		"RESURS_API_URL": f.url, "RESURS_API_USERNAME": fakeResursUser, "RESURS_API_PASSWORD": fakeResursPass,
	})
	return tr, rec, key
}

// resursWebhook posts a signed callback of the given type for key.
func resursWebhook(t *testing.T, tr *testRelay, k resursKey, key, typ string) {
	t.Helper()
	doc := `{"externalApplicationEvent": {"applicationReference": "` + key + `", "applicationEventType": "` + typ +
		`"}, "jwsData": "` + resursPlaceholder + `"}`
	body, _ := resursCallback(t, doc, k, "1cb06a4a-3465-4f11-ac3d-d8bb2bdb1eb7")
	seedAccept(t, tr, "/in/resurs", body, resursHeaders)
}

// polled returns the delivered envelopes with "source": "poll" for key.
func polled(t *testing.T, rec *recorder, key string) []map[string]any {
	var out []map[string]any
	for _, ev := range rec.delivered(t) {
		if ev["source"] == "poll" && ev["key"] == key {
			out = append(out, ev)
		}
	}
	return out
}

func waitPolled(t *testing.T, rec *recorder, key string, n int) []map[string]any {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%d poll events of %s", n, key), func() bool { return len(polled(t, rec, key)) >= n })
	return polled(t, rec, key)
}

// waitRequests waits until the fake has seen n more requests for key than now.
func waitRequests(t *testing.T, f *fakeResurs, key string, n int) {
	t.Helper()
	want := f.requests(key) + n
	waitFor(t, 10*time.Second, fmt.Sprintf("%d polls of %s", want, key), func() bool { return f.requests(key) >= want })
}

var pollIdemRE = regexp.MustCompile(`^resurs:[0-9a-f]{64}$`)

// TestPollResursStatusChanges follows one application from waiting for
// documents to paid out through polling alone: one event per change, in
// order, none for unchanged answers, none repeated after a reload or a
// restart, and no polling once the key is final.
func TestPollResursStatusChanges(t *testing.T) {
	f := newFakeResurs(t)
	tr, rec, k := pollRelay(t, f)
	const app = "14321-21234-445674-434344-345445"
	f.set(app, "waiting")
	// The key becomes known from its webhook.
	resursWebhook(t, tr, k, app, "WAITING_FOR_ADDITION")
	waitPolled(t, rec, app, 1)
	waitRequests(t, f, app, 3) // unchanged answers
	if n := len(polled(t, rec, app)); n != 1 {
		t.Fatalf("%d poll events after unchanged answers, want 1", n)
	}

	f.set(app, "signed")
	waitPolled(t, rec, app, 2)
	must(t, tr.Reload())
	waitRequests(t, f, app, 2)
	tr = tr.restart() // the key and its last result survive
	waitRequests(t, f, app, 3)
	if n := len(polled(t, rec, app)); n != 2 {
		t.Fatalf("%d poll events after reload and restart with the same status, want 2", n)
	}

	f.set(app, "paid")
	waitPolled(t, rec, app, 3)
	// Final: no more polls (one may have been in flight).
	pollRounds(t, tr, f, 2)
	settled := f.requests(app)
	pollRounds(t, tr, f, 5)
	if n := f.requests(app); n > settled {
		t.Errorf("%d polls after the final type, want none", n-settled)
	}
	got := polled(t, rec, app)
	if len(got) != 3 {
		t.Fatalf("%d poll events, want 3", len(got))
	}

	want := []struct {
		typ  string
		data string
	}{
		{"application.waiting_for_documents", `{"paid_out":false,"requested_signing_method":"E_SIGN","signed_with_method":null,"waiting_for_addition":true}`},
		{"application.signed", `{"paid_out":false,"requested_signing_method":"E_SIGN","signed_with_method":"E_SIGN","waiting_for_addition":false}`},
		{"application.paid_out", `{"paid_out":true,"requested_signing_method":"E_SIGN","signed_with_method":"E_SIGN","waiting_for_addition":false}`},
	}
	ids := map[string]bool{}
	for i, ev := range got {
		data, _ := json.Marshal(ev["data"])
		if ev["type"] != want[i].typ || string(data) != want[i].data || ev["provider"] != "resurs" {
			t.Errorf("poll event %d: %s %s, want %s %s", i, ev["type"], data, want[i].typ, want[i].data)
		}
		id, _ := ev["idempotency_id"].(string)
		if !pollIdemRE.MatchString(id) || ids[id] {
			t.Errorf("poll event %d: idempotency id %q", i, id)
		}
		ids[id] = true
		if raw, _ := ev["raw"].(string); !strings.Contains(raw, "<getApplicationStatusResponse>") {
			t.Errorf("poll event %d: raw %q, want the answer as a JSON string", i, raw)
		}
	}
	// The webhook event came first, as a webhook.
	all := rec.delivered(t)
	if len(all) != 4 || all[0]["source"] != "webhook" || all[0]["type"] != "application.waiting_for_documents" {
		t.Errorf("deliveries: %d, first %v %v", len(all), all[0]["source"], all[0]["type"])
	}
	f.check(t)
}

// TestPollKeyAdmin adds keys through pollKey: polled at once, refused for an
// unknown provider, a provider without polling, and a key already final.
func TestPollKeyAdmin(t *testing.T) {
	f := newFakeResurs(t)
	tr, rec, k := pollRelay(t, f)
	f.set("APP-2", "signed")
	// Through the admin listener, as an operator adds a key.
	resp, err := http.Post(tr.Admin.URL+"/admin/providers/resurs/poll", "application/json", strings.NewReader(`{"key":"APP-2"}`))
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /admin/providers/resurs/poll: %d", resp.StatusCode)
	}
	resp, err = http.Post(tr.Admin.URL+"/admin/providers/nobody/poll", "application/json", strings.NewReader(`{"key":"X"}`))
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown provider: %d, want 404", resp.StatusCode)
	}
	// The providers listing sums up the poller's keys.
	var ps struct {
		Items []struct {
			Name string
			Poll *struct {
				Keys, Failing int
				NextAt        time.Time `json:"next_at"`
			}
		}
	}
	tr.do("GET", "/admin/providers", "", 200, &ps)
	for _, p := range ps.Items {
		switch {
		case p.Name == "resurs" && (p.Poll == nil || p.Poll.Keys != 1 || p.Poll.Failing != 0):
			t.Errorf("resurs poll summary %+v, want 1 key, none failing", p.Poll)
		case p.Name == "nopoll" && p.Poll != nil:
			t.Errorf("nopoll has a poll summary %+v", p.Poll)
		}
	}
	start := time.Now()
	got := waitPolled(t, rec, "APP-2", 1)
	if got[0]["type"] != "application.signed" {
		t.Errorf("type %v", got[0]["type"])
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("first poll after %v", d)
	}

	// A key made final by its webhook is never polled.
	resursWebhook(t, tr, k, "APP-3", "PAID_OUT")
	waitFor(t, 5*time.Second, "tracked keys stored", func() bool { return tr.poll.Settled() })
	var ae *admin.Error
	if err := tr.pollKey("resurs", "APP-3"); !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Errorf("pollKey of a final key: %v, want status 409", err)
	}
	for _, c := range []struct {
		provider, key string
		status        int
	}{
		{"nobody", "X", http.StatusNotFound},
		{"nopoll", "X", http.StatusBadRequest}, // no poll block
		{"resurs", "", http.StatusBadRequest},
	} {
		var ae *admin.Error
		if err := tr.pollKey(c.provider, c.key); !errors.As(err, &ae) || ae.Status != c.status {
			t.Errorf("pollKey(%q, %q) = %v, want status %d", c.provider, c.key, err, c.status)
		}
	}
	pollRounds(t, tr, f, 5)
	if n := f.requests("APP-3"); n != 0 {
		t.Errorf("final key polled %d times", n)
	}
	f.check(t)
}

// TestPollBackoff: a failing lender is polled less and less often, an
// unmappable answer makes no event, and the key recovers. On the bubble's
// clock, each wait is checked against the schedule: the interval doubled
// per error (up to 8 times), ±10%.
func TestPollBackoff(t *testing.T) { inBubble(t, testPollBackoff) }

func testPollBackoff(t *testing.T) {
	f := newFakeResurs(t)
	tr, rec, _ := pollRelay(t, f)
	f.set("APP-4", "fail")
	f.set("APP-5", "garbage")
	must(t, tr.pollKey("resurs", "APP-4"))
	must(t, tr.pollKey("resurs", "APP-5"))
	// In 16 intervals: polls at 0, 2, 6, 14 intervals (±10%).
	advance(16 * pollInterval)
	if n := f.requests("APP-4"); n != 4 {
		t.Errorf("failing key polled %d times in 16 intervals, want 4 (backoff)", n)
	}
	for i, g := range f.gaps("APP-4") {
		if want := float64(int(2) << i); g < 0.9*want || g > 1.1*want {
			t.Errorf("failing key: poll %d came %.3f intervals after the one before, want %v ±10%%", i+2, g, want)
		}
	}
	// Unmappable answers are retried every interval, without backoff or event.
	if n := f.requests("APP-5"); n < 15 || n > 18 {
		t.Errorf("unmappable key polled %d times in 16 intervals, want 15 to 18 (every interval ±10%%)", n)
	}
	for i, g := range f.gaps("APP-5") {
		if g < 0.9 || g > 1.1 {
			t.Errorf("unmappable key: poll %d came %.3f intervals after the one before, want 1 ±10%%", i+2, g)
		}
	}
	st := pollState(t, tr, "APP-4")
	if st.Errors != 4 {
		t.Errorf("stored errors %d, want 4", st.Errors)
	}
	f.set("APP-4", "waiting")
	waitPolled(t, rec, "APP-4", 1)
	waitFor(t, 5*time.Second, "errors reset", func() bool { return pollState(t, tr, "APP-4").Errors == 0 })
	if got := polled(t, rec, "APP-5"); len(got) != 0 {
		t.Errorf("unmappable answers made %d events", len(got))
	}
}

// TestPollSOAP: an answer inside a SOAP envelope, with namespace prefixes,
// maps like a bare one.
func TestPollSOAP(t *testing.T) { inBubble(t, testPollSOAP) }

func testPollSOAP(t *testing.T) {
	f := newFakeResurs(t)
	f.soap = true
	tr, rec, _ := pollRelay(t, f)
	f.set("APP-6", "paid")
	must(t, tr.pollKey("resurs", "APP-6"))
	got := waitPolled(t, rec, "APP-6", 1)
	if got[0]["type"] != "application.paid_out" {
		t.Errorf("type %v, want application.paid_out", got[0]["type"])
	}
	advance(time.Hour)
	if n := f.requests("APP-6"); n != 1 {
		t.Errorf("polled %d times in an hour, want 1 (paid out is final)", n)
	}
	f.check(t)
}

func pollState(t *testing.T, tr *testRelay, key string) spool.PollState {
	t.Helper()
	var st spool.PollState
	must(t, tr.spool.PollKeys("resurs", func(k string, s *spool.PollState) error {
		if k == key {
			st = *s
		}
		return nil
	}))
	return st
}

// TestPollConfigErrors: poll block problems name their file, line and path.
func TestPollConfigErrors(t *testing.T) {
	base := "paths: [/in/p]\nverify: none\nevent: { key: body.k, type: body.t }\nroutes: [{ to: [dest] }]\n"
	for _, c := range []struct {
		name, poll string
		want       []string
	}{
		{"missing", "poll:\n  interval: -1s\n  request: { url: '' }\n  event: { data: { a: '1' } }\n", []string{
			"p.yaml:6: poll.interval: must be positive", "p.yaml:7: poll.request.url: required",
			"poll.response: required (json or xml)", "p.yaml:8: poll.event.type: required",
		}},
		{"bad", "poll:\n  response: yaml\n  request:\n    url: 'ftp://x'\n    headers: { X-A: '{{ nope( }}' }\n    body: '{{ key'\n" +
			"  event: { type: response.body.t, data: { a: 'response.(' } }\n  final_types: ['']\n", []string{
			"p.yaml:6: poll.response: must be json or xml, not \"yaml\"", "p.yaml:8: poll.request.url: not an http(s) URL",
			"p.yaml:9: poll.request.headers.X-A: template:", "p.yaml:10: poll.request.body: template: unclosed",
			"p.yaml:11: poll.event.data.a:", "p.yaml:12: poll.final_types[0]: empty type",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeConfig(t, dir, relayYAML("http://127.0.0.1:1/x", ""), map[string]string{"p": base + c.poll})
			_, err := Load(filepath.Join(dir, "relay.yaml"), true)
			if err == nil {
				t.Fatal("loaded")
			}
			got := strings.Join(problems(err), "\n")
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in:\n%s", w, got)
				}
			}
		})
	}
}

// TestPollRequestShape renders the shipped request without a server.
func TestPollRequestShape(t *testing.T) {
	for k, v := range shippedEnv {
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	writeConfig(t, dir, relayYAML("http://127.0.0.1:1/x", "")+"  broker: { url: \"http://127.0.0.1:1/b\" }\nproviders_dir: "+mustAbs(t, "../providers.d")+"\n", nil)
	cfg, err := Load(filepath.Join(dir, "relay.yaml"), true)
	must(t, err)
	p := cfg.Provider("resurs")
	if p == nil || p.poll == nil || p.poll.Interval() != 5*time.Minute || !p.poll.IsFinal("application.paid_out") || !p.poll.IsFinal("application.rejected") {
		t.Fatalf("resurs poll spec: %+v", p)
	}
	req, err := p.poll.Request(context.Background(), "resurs", "ABC-123", time.Now())
	must(t, err)
	body, err := req.BodyBytes()
	must(t, err)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("resurs-user:resurs-password"))
	if req.Method != http.MethodPost || req.URL.String() != "http://127.0.0.1:1/status" || req.Header.Get("Authorization") != auth ||
		!strings.HasPrefix(req.Header.Get("Content-Type"), "text/xml") ||
		!strings.Contains(string(body), "<applicationReference>ABC-123</applicationReference>") {
		t.Errorf("request %s %s %v\n%s", req.Method, req.URL, req.Header, body)
	}
}

// TestEraseKeyStopsPolling: erasing a key (SPEC 11) also stops the poller's
// loop from polling it, which would store its state, and maybe an event,
// again. At most a poll already in flight at the erasure may still arrive.
func TestEraseKeyStopsPolling(t *testing.T) {
	f := newFakeResurs(t)
	tr, _, _ := pollRelay(t, f)
	f.set("APP-9", "garbage") // unmappable: polled every interval, no event
	must(t, tr.pollKey("resurs", "APP-9"))
	waitRequests(t, f, "APP-9", 2)
	if _, err := tr.eraseKey(context.Background(), "resurs", "APP-9"); err != nil {
		t.Fatal(err)
	}
	after := f.requests("APP-9")
	pollRounds(t, tr, f, 6) // at least 5 intervals on the poll loop's clock
	if n := f.requests("APP-9"); n > after+1 {
		t.Errorf("the erased key was polled %d more times", n-after)
	}
}
