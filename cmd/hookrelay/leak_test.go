package main

// The leak test of issue 12: every kind of secret gets a canary value, real
// traffic goes through the real listeners (accepted, rejected with the
// credentials, quarantined; deliveries failing on a closed port; a failing
// registration; a JWKS that cannot be fetched), and then no canary, in any
// of its encodings, may be found in the debug log, any admin GET answer,
// /metrics, the output of check, try, test, register and events, or the raw
// bytes of the spool file.

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine"
)

// leakCanaries are the secrets, by what they are. Each is unique text, so
// that finding it anywhere is a leak.
var leakCanaries = map[string]string{
	"hmac secret":            "c4n-hmac-secret-0001",
	"token":                  "c4n-token-value-0002",
	"bearer":                 "c4n-bearer-value-0003",
	"basic password":         "c4n-basic-pass-0004",
	"apikey":                 "c4n-apikey-value-0005",
	"destination password":   "c4n-dest-password-0006",
	"destination token":      "c4n-dest-token-0007",
	"destination api_key":    "c4n-dest-apikey-0008",
	"destination sign key":   "c4n-sign-secret-key-0009",
	"URL userinfo":           "c4n-url-userinfo-0010",
	"URL query":              "c4n-url-query-0011",
	"register value":         "c4n-register-value-0012",
	"JWKS header":            "c4n-jwks-header-0013",
	"JWKS URL query":         "c4n-jwks-query-0014",
	"admin token":            "c4n-admin-token-0015",
	"destination header key": "c4n-dest-header-key-0016",
}

// leakForms are the ways a secret can be written: as is, base64 (both
// alphabets, padded or not, alone or as user:secret), hex, URL-escaped.
func leakForms(secret string) []string {
	out := []string{secret, hex.EncodeToString([]byte(secret)), url.QueryEscape(secret), url.PathEscape(secret)}
	for _, s := range []string{secret, "lender:" + secret, "relay:" + secret} {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			out = append(out, enc.EncodeToString([]byte(s)))
		}
	}
	return out
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestNoSecretLeaks(t *testing.T) {
	c := leakCanaries
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		addr := ln.Addr().String()
		must(t, ln.Close())
		return addr
	}
	// The lender refuses the registration, echoing the credential it got
	// in several encodings.
	lender := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred := r.Header.Get("Authorization")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error":"refused %s","b64":"%s","hex":"%x","q":"%s"}`, cred,
			base64.StdEncoding.EncodeToString([]byte(cred)), cred, url.QueryEscape(cred))
	}))
	t.Cleanup(lender.Close)
	var okGot lockedBuffer
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // drained so the connection is reused
		fmt.Fprint(&okGot, r.URL.String(), "\n")
	}))
	t.Cleanup(ok.Close)

	env := map[string]string{
		"LEAK_TOKEN": c["token"], "LEAK_BEARER": c["bearer"], "LEAK_BASIC": c["basic password"], "LEAK_APIKEY": c["apikey"],
		"LEAK_DEST_PASSWORD": c["destination password"], "LEAK_DEST_TOKEN": c["destination token"],
		"LEAK_SIGN":     "whsec_" + base64.StdEncoding.EncodeToString([]byte(c["destination sign key"])),
		"LEAK_REGISTER": c["register value"], "LEAK_JWKS_HEADER": c["JWKS header"], "HOOKRELAY_ADMIN_TOKEN": c["admin token"],
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	retry := "    retry: { max_attempts: 2, schedule: [10ms] }\n"
	relay := `listen: 127.0.0.1:0
admin: { listen: 127.0.0.1:19090, token: env:HOOKRELAY_ADMIN_TOKEN }
spool: { path: ./spool.db }
log: { level: debug, format: json }
destinations:
  closed:
    url: "http://relay:` + c["URL userinfo"] + `@` + closed() + `/hook?secret=` + c["URL query"] + `&plain=1"
    auth: { kind: basic, username: relay, password: env:LEAK_DEST_PASSWORD }
    sign: { secret: env:LEAK_SIGN }
` + retry + `  bearer:
    url: "http://` + closed() + `/hook"
    auth: { kind: bearer, token: env:LEAK_DEST_TOKEN }
` + retry + `  query:
    url: "http://` + closed() + `/hook?x=1"
    auth: { kind: query, name: key, api_key: ` + c["destination api_key"] + ` }
` + retry + `  ok:
    url: "` + ok.URL + `/ok"
    auth: { kind: header, name: X-Key, api_key: ` + c["destination header key"] + ` }
    headers: { X-Source: hookrelay }
`
	routes := "routes:\n  - to: [closed, bearer, query, ok]\n"
	event := "event:\n  id: body.id\n  key: body.key\n  type: body.type\n  sequence: body.seq ?? 0\n  data: { n: \"body.n ?? 0\" }\n"
	providers := map[string]string{
		"hm": `paths: [/in/hm]
verify:
  - kind: hmac
    secret: ` + c["hmac secret"] + `
    signed: "{body}"
    signature: { header: X-Mac, encoding: hex }
  - kind: token
    header: X-Lender-Token
    token: env:LEAK_TOKEN
register:
  auto: true
  public_url: https://relay.example
  values: { token: env:LEAK_REGISTER }
  request:
    url: "` + lender.URL + `/hooks"
    headers: { Authorization: "token {{ values.token }}" }
poll:
  interval: 1h
  final_types: [done]
  request:
    url: "http://` + closed() + `/status?token={{ values.token }}&key={{ key }}"
    headers: { Authorization: "token {{ values.token }}" }
  response: json
  event: { type: response.body.t }
` + event + routes,
		"bs": `paths: [/in/bs]
verify:
  - kind: basic
    users: { lender: env:LEAK_BASIC }
  - kind: hmac
    secret: ` + c["hmac secret"] + `
    signed: "{body}"
    signature: { header: X-Mac, encoding: hex }
` + event + routes,
		"ak": `paths: [/in/ak]
verify:
  - kind: apikey
    in: query
    name: code
    key: env:LEAK_APIKEY
  - kind: bearer
    token: env:LEAK_BEARER
` + event + routes,
		"jw": `paths: [/in/jw]
verify:
  - kind: jws
    from: body.jwsData
    jwks_url: "http://` + closed() + `/jwks?key=` + c["JWKS URL query"] + `"
    jwks_headers: { apikey: env:LEAK_JWKS_HEADER }
` + event + routes,
	}
	must(t, os.MkdirAll(filepath.Join(dir, "providers.d", "hm.tests"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte(relay), 0o644))
	for name, body := range providers {
		must(t, os.WriteFile(filepath.Join(dir, "providers.d", name+".yaml"), []byte(body), 0o644))
	}
	// A passing and a failing recorded case, both signed with the secrets.
	must(t, os.WriteFile(filepath.Join(dir, "providers.d", "hm.tests", "good.yaml"), []byte(
		"request: { path: /in/hm, body: '{\"id\":\"c1\",\"key\":\"k\",\"type\":\"t\"}', sign: true }\nexpect: { status: 200 }\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "providers.d", "hm.tests", "bad.yaml"), []byte(
		"request: { path: /in/hm, body: '{\"id\":\"c2\",\"key\":\"k\",\"type\":\"t\"}', sign: true }\nexpect: { status: 401, event: { type: x } }\n"), 0o644))

	cfgPath := filepath.Join(dir, "relay.yaml")
	cfg, err := engine.Load(cfgPath, true)
	must(t, err)
	logs := &lockedBuffer{}
	relayObj, err := engine.Open(cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	must(t, err)
	must(t, relayObj.Start())
	ingest := httptest.NewServer(relayObj.IngestHandler())
	admin := httptest.NewServer(relayObj.AdminHandler())
	closedDown := false
	shutdown := func() {
		if !closedDown {
			closedDown = true
			ingest.Close()
			admin.Close()
			_ = relayObj.Close(5 * time.Second)
		}
	}
	t.Cleanup(shutdown)

	mac := func(body string) string {
		m := hmac.New(sha256.New, []byte(c["hmac secret"]))
		m.Write([]byte(body))
		return hex.EncodeToString(m.Sum(nil))
	}
	post := func(path, body string, h map[string]string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, ingest.URL+path, strings.NewReader(body))
		must(t, err)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("lender:"+c["basic password"]))
	quarantined := `{"id":"q%d","key":"kq","type":"t","seq":"not a number"}`
	for i, s := range []struct {
		path, body string
		headers    map[string]string
		want       int
	}{
		// accepted
		{"/in/hm", `{"id":"a1","key":"k1","type":"t"}`, map[string]string{"X-Lender-Token": c["token"]}, 200},
		{"/in/bs", `{"id":"a2","key":"k2","type":"t"}`, map[string]string{"Authorization": basic}, 200},
		{"/in/ak?code=" + c["apikey"], `{"id":"a3","key":"k3","type":"t"}`, map[string]string{"Authorization": "Bearer " + c["bearer"]}, 200},
		// rejected, carrying the right credential of another check
		{"/in/hm", `{"id":"r1","key":"k1","type":"t"}`, map[string]string{"X-Lender-Token": c["token"], "X-Mac": strings.Repeat("0", 64)}, 401},
		{"/in/bs", `{"id":"r2","key":"k2","type":"t"}`, map[string]string{"Authorization": basic, "X-Mac": strings.Repeat("0", 64)}, 401},
		{"/in/ak?code=" + c["apikey"], `{"id":"r3","key":"k3","type":"t"}`, map[string]string{"Authorization": "Bearer wrong"}, 401},
		{"/in/ak?code=wrong", `{"id":"r4","key":"k3","type":"t"}`, map[string]string{"Authorization": "Bearer " + c["bearer"]}, 401},
		// verified but not mappable: quarantined
		{"/in/hm", fmt.Sprintf(quarantined, 1), map[string]string{"X-Lender-Token": c["token"]}, 200},
		{"/in/bs", fmt.Sprintf(quarantined, 2), map[string]string{"Authorization": basic}, 200},
		{"/in/ak?code=" + c["apikey"], fmt.Sprintf(quarantined, 3), map[string]string{"Authorization": "Bearer " + c["bearer"]}, 200},
		// the JWKS cannot be fetched
		{"/in/jw", `{"key":"k4","jwsData":"eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.e30.c2ln"}`, nil, 503},
	} {
		if s.headers != nil && s.headers["X-Mac"] == "" && s.path != "/in/ak?code="+c["apikey"] && !strings.HasPrefix(s.path, "/in/jw") {
			s.headers["X-Mac"] = mac(s.body)
		}
		if got := post(s.path, s.body, s.headers); got != s.want {
			t.Fatalf("request %d to %s: status %d, want %d", i, s.path, got, s.want)
		}
	}

	token := c["admin token"]
	// The poller asks the lender at once for a key the operator names; the
	// lender's port is closed.
	pollReq, err := http.NewRequest(http.MethodPost, admin.URL+"/admin/providers/hm/poll", strings.NewReader(`{"key":"k1"}`))
	must(t, err)
	pollReq.Header.Set("Authorization", "Bearer "+token)
	pollReq.Header.Set("Content-Type", "application/json")
	pollResp, err := http.DefaultClient.Do(pollReq)
	must(t, err)
	pollResp.Body.Close()
	if pollResp.StatusCode != 200 {
		t.Fatalf("POST /admin/providers/hm/poll: %d", pollResp.StatusCode)
	}
	get := func(path string) string {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, admin.URL+path, nil)
		must(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	type item struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	var events []item
	deadline := time.Now().Add(20 * time.Second)
	for {
		var l struct{ Items []item }
		must(t, json.Unmarshal([]byte(get("/admin/events?limit=100")), &l))
		dead := 0
		for _, it := range l.Items {
			if it.Status == "dead" {
				dead++
			}
		}
		if dead == 3 && strings.Count(logs.String(), "registration failed") >= 2 && strings.Contains(logs.String(), "poll failed") {
			events = l.Items
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deliveries never all died, the registration never failed twice or the poll never failed: %+v", l.Items)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(okGot.String(), "/ok") {
		t.Errorf("the working destination got nothing")
	}

	shown := map[string]string{}
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/admin/providers", "/admin/destinations", "/admin/events",
		"/admin/events?status=dead", "/admin/events?status=quarantined", "/admin/rejections", "/admin/quarantine"} {
		shown["GET "+p] = get(p)
	}
	for _, ev := range events {
		shown["GET /admin/events/"+ev.ID] = get("/admin/events/" + ev.ID)
	}
	// The stored network errors are there, masked.
	if d := shown["GET /admin/events?status=dead"]; !strings.Contains(d, "dead") {
		t.Fatalf("no dead events: %s", d)
	}
	all := strings.Join(func() []string {
		var s []string
		for _, v := range shown {
			s = append(s, v)
		}
		return s
	}(), "\n")
	for _, want := range []string{"http://***@127.0.0.1:", "connection refused", `"X-Lender-Token":"***"`, "failing: register hm"} {
		if !strings.Contains(all, want) {
			t.Errorf("the admin API never says %q", want)
		}
	}

	// The commands, in-process, against the same files and admin API.
	cli := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		run(args, &out, &errOut)
		return out.String() + errOut.String()
	}
	reqFile := filepath.Join(dir, "req.json")
	reqBody := `{"id":"t1","key":"kt","type":"t"}`
	must(t, os.WriteFile(reqFile, []byte(fmt.Sprintf(`{"method":"POST","path":"/in/hm","headers":{"X-Lender-Token":%q,"X-Mac":%q},"body":%s}`,
		c["token"], mac(reqBody), reqBody)), 0o644))
	quarantineFile := filepath.Join(dir, "q.json")
	must(t, os.WriteFile(quarantineFile, []byte(fmt.Sprintf(`{"method":"POST","path":"/in/hm","headers":{"X-Lender-Token":%q,"X-Mac":%q},"body":%s}`,
		c["token"], mac(fmt.Sprintf(quarantined, 9)), fmt.Sprintf(quarantined, 9))), 0o644))
	outputs := map[string]string{
		"check":               cli("check", "--config", cfgPath),
		"try":                 cli("try", "hm", reqFile, "--config", cfgPath),
		"try quarantined":     cli("try", "hm", quarantineFile, "--config", cfgPath),
		"test":                cli("test", "--config", cfgPath),
		"register":            cli("register", "hm", "--config", cfgPath),
		"events list":         cli("events", "list", "--admin", admin.URL),
		"events list --json":  cli("events", "list", "--json", "--admin", admin.URL),
		"events list dead":    cli("events", "list", "--status", "dead", "--admin", admin.URL),
		"events quarantined":  cli("events", "list", "--status", "quarantined", "--json", "--admin", admin.URL),
		"dead retry":          cli("dead", "retry", "--destination", "none", "--admin", admin.URL),
		"reload":              cli("reload", "--admin", admin.URL),
		"events show (first)": cli("events", "show", events[0].ID, "--admin", admin.URL),
	}
	for _, ev := range events {
		outputs["events show "+ev.ID] = cli("events", "show", ev.ID, "--admin", admin.URL)
		outputs["events show --json "+ev.ID] = cli("events", "show", ev.ID, "--json", "--admin", admin.URL)
	}
	if !strings.Contains(outputs["check"], "http://***@127.0.0.1:") || !strings.Contains(outputs["register"], "status 401") {
		t.Errorf("check or register did not run as expected:\n%s\n%s", outputs["check"], outputs["register"])
	}
	if !strings.Contains(outputs["test"], "1 passed, 1 failed") {
		t.Errorf("test did not run both cases:\n%s", outputs["test"])
	}

	shutdown()
	spoolBytes, err := os.ReadFile(filepath.Join(dir, "spool.db"))
	must(t, err)

	places := map[string]string{"debug log": logs.String(), "spool file": string(spoolBytes)}
	for k, v := range shown {
		places[k] = v
	}
	for k, v := range outputs {
		places["hookrelay "+k] = v
	}
	if !strings.Contains(logs.String(), `"level":"DEBUG"`) && !strings.Contains(logs.String(), `"level":"INFO"`) {
		t.Errorf("the log is empty:\n%s", logs.String())
	}
	for what, secret := range c {
		for _, form := range leakForms(secret) {
			for where, text := range places {
				if i := strings.Index(text, form); i >= 0 {
					from, to := max(0, i-120), min(len(text), i+len(form)+40)
					t.Errorf("%s: the %s (as %q) leaks: ...%q...", where, what, form, text[from:to])
				}
			}
		}
	}
}
