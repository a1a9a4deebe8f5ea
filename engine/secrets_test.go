package engine

// Secrets that must not leak (issue 12, items 6-8), each through the real
// listeners: destination URLs with credentials in network errors, the
// registration's derived forms, /readyz, the JWS 503, config keys in the
// wrong case, credentials in rejection and quarantine records.

import (
	"bytes"
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
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// ingestUntilDead posts one event to the plain provider and waits until its
// n deliveries are all dead; it returns the event's id.
func ingestUntilDead(t *testing.T, tr *testRelay, n int) string {
	t.Helper()
	if code := tr.post("/in/plain", `{"id":"e1","key":"k1","type":"t"}`, authPlain).StatusCode; code != 200 {
		t.Fatalf("ingest: %d", code)
	}
	var id string
	waitFor(t, 10*time.Second, fmt.Sprintf("all %d deliveries dead", n), func() bool {
		_, body := adminGet(t, tr, "/admin/events?status=dead")
		var l struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
		}
		_ = json.Unmarshal([]byte(body), &l)
		if len(l.Items) == 0 {
			return false
		}
		id = l.Items[0].ID
		ds, _ := tr.spool.Deliveries(id)
		for _, d := range ds {
			if d.Status.String() != "dead" {
				return false
			}
		}
		return len(ds) == n
	})
	return id
}

// syncBuffer is a log sink the relay's goroutines write concurrently.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startRelayLogged is startRelay with a debug-level JSON log kept for the
// test to search.
func startRelayLogged(t *testing.T, relay string, providers map[string]string) (*testRelay, *syncBuffer) {
	t.Helper()
	dir := t.TempDir()
	writeConfig(t, dir, relay, providers)
	cfg, err := Load(filepath.Join(dir, "relay.yaml"), true)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	useTestSpool(t, cfg, dir)
	logs := &syncBuffer{}
	r, err := Open(cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if err := r.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	tr := &testRelay{Relay: r, t: t, dir: dir, Ingest: httptest.NewServer(r.IngestHandler()), Admin: httptest.NewServer(r.AdminHandler())}
	t.Cleanup(tr.stop)
	return tr, logs
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := ln.Addr().String()
	must(t, ln.Close())
	return addr
}

// adminGet answers GET path of the admin listener (no token configured).
func adminGet(t *testing.T, tr *testRelay, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(tr.Admin.URL + path)
	must(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// forms are the ways a secret is written where it may leak.
func forms(secret string) []string {
	return []string{
		secret,
		base64.StdEncoding.EncodeToString([]byte(secret)),
		base64.RawURLEncoding.EncodeToString([]byte(secret)),
		hex.EncodeToString([]byte(secret)),
		url.QueryEscape(secret),
	}
}

// assertHidden fails when text holds a secret in any of its forms.
func assertHidden(t *testing.T, where, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		for _, f := range forms(s) {
			if strings.Contains(text, f) {
				t.Errorf("%s shows %q (as %q):\n%s", where, s, f, text)
			}
		}
	}
}

// Item 6: a destination URL with userinfo and query values, whose every
// attempt fails with a network error (a closed port) or a timeout (a
// destination that never answers): Go's *url.Error quotes the whole URL.
func TestDestinationURLSecretsMasked(t *testing.T) {
	const userPass, queryTok = "dest-userinfo-c4nary", "dest-query-c4nary"
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hang }))
	t.Cleanup(func() { close(hang); slow.Close() })
	slowURL := strings.Replace(slow.URL, "http://", "http://relay:"+userPass+"@", 1) + "/hook?token=" + queryTok
	relay := "listen: 127.0.0.1:18080\nadmin: { listen: 127.0.0.1:19090 }\nspool: { path: ./spool.db }\ndestinations:\n" +
		"  closed:\n    url: \"http://relay:" + userPass + "@" + closedPort(t) + "/hook?token=" + queryTok + "&x=1\"\n" +
		"    retry: { max_attempts: 2, schedule: [10ms] }\n" +
		"  slow:\n    url: \"" + slowURL + "\"\n    timeout: 50ms\n    retry: { max_attempts: 2, schedule: [10ms] }\n"
	provider := strings.Replace(plainProvider, "to: [dest]", "to: [closed, slow]", 1)
	tr, logs := startRelayLogged(t, relay, map[string]string{"plain": provider})
	id := ingestUntilDead(t, tr, 2)
	_, detail := adminGet(t, tr, "/admin/events/"+id)
	for _, want := range []string{`http://***@127.0.0.1:`, `/hook?token=***`, "connection refused", "deadline exceeded"} {
		if !strings.Contains(detail, want) {
			t.Errorf("the attempts do not say %q:\n%s", want, detail)
		}
	}
	_, dests := adminGet(t, tr, "/admin/destinations")
	if !strings.Contains(dests, `"url":"http://***@127.0.0.1:`) {
		t.Errorf("/admin/destinations does not show the masked URL:\n%s", dests)
	}
	tr.stop()
	spoolBytes, err := spoolFile(tr.dir)
	must(t, err)
	for where, text := range map[string]string{"event detail": detail, "destinations": dests, "log": logs.String(), "spool file": string(spoolBytes)} {
		assertHidden(t, where, text, userPass, queryTok)
	}
}

// Item 7: a lender that echoes the Basic credential (base64 of user:pass),
// its hex and its URL escaping back in its refusal; with auto: true the
// same reaches the log, and /readyz says nothing of it.
func TestRegisterMasksDerivedForms(t *testing.T) {
	const user, pass = "broker-user", "reg-password-c4nary/+"
	lender := newFakeLender(t, func(_ int, c lenderCall) (int, string) {
		cred := strings.TrimPrefix(c.header.Get("Authorization"), "Basic ")
		return 401, fmt.Sprintf(`{"error":"bad credential %s","hex":"%x","escaped":"%s","again":"%s"}`,
			cred, cred, url.QueryEscape(pass), base64.URLEncoding.EncodeToString([]byte(":"+pass)))
	})
	t.Setenv("LEAK_REG_USER", user)
	t.Setenv("LEAK_REG_PASS", pass)
	tr, logs := startRelayLogged(t, relayYAML("http://127.0.0.1:1/x", ""), map[string]string{"plain": plainProvider + `
register:
  auto: true
  public_url: https://relay.example
  values: { user: env:LEAK_REG_USER, pass: env:LEAK_REG_PASS }
  request:
    url: "` + lender.URL + `/hooks"
    headers: { Authorization: "Basic {{ base64(values.user + ':' + values.pass) }}" }
`})
	waitFor(t, 10*time.Second, "a failed registration", func() bool {
		return strings.HasPrefix(tr.registrationStatus()["plain"], "failing:")
	})
	err := tr.Config().Provider("plain").Register(t.Context(), false)
	if err == nil || !strings.Contains(err.Error(), "status 401") {
		t.Fatalf("register: %v", err)
	}
	_, providers := adminGet(t, tr, "/admin/providers")
	if !strings.Contains(providers, `"registration":"failing: register plain`) {
		t.Errorf("/admin/providers does not say the registration fails:\n%s", providers)
	}
	code, ready := adminGet(t, tr, "/readyz")
	if code != 200 || strings.TrimSpace(ready) != `{"disabled_providers":[],"ready":true}` {
		t.Errorf("/readyz: %d %s", code, ready)
	}
	credential := user + ":" + pass
	for where, text := range map[string]string{"error": err.Error(), "providers": providers, "log": logs.String()} {
		assertHidden(t, where, text, pass, credential)
		if strings.Contains(text, base64.URLEncoding.EncodeToString([]byte(":"+pass))) {
			t.Errorf("%s shows base64(:password):\n%s", where, text)
		}
	}
}

// Item 7: /readyz names a disabled provider, not the variable it misses.
func TestReadyzNamesOnly(t *testing.T) {
	locked := strings.Replace(plainProvider, "token: t0ken", "token: env:LEAK_MISSING_VARIABLE", 1)
	locked = strings.Replace(locked, "/in/plain", "/in/locked", 1)
	tr, _ := startRelayLogged(t, relayYAML("http://127.0.0.1:1/x", ""), map[string]string{"plain": plainProvider, "locked": locked})
	code, body := adminGet(t, tr, "/readyz")
	if code != 200 || strings.TrimSpace(body) != `{"disabled_providers":["locked"],"ready":true}` {
		t.Errorf("/readyz: %d %s", code, body)
	}
	_, providers := adminGet(t, tr, "/admin/providers")
	if !strings.Contains(providers, "LEAK_MISSING_VARIABLE") {
		t.Errorf("/admin/providers (behind the token) should say why:\n%s", providers)
	}
}

// Item 7: a jws provider whose JWKS cannot be fetched answers 503 without the
// fetch's error; the rejection log and the log have it with the URL masked.
func TestJWSUnavailableBodyQuiet(t *testing.T) {
	const queryKey, headerKey = "jwks-query-c4nary", "jwks-header-c4nary"
	tr, logs := startRelayLogged(t, relayYAML("http://127.0.0.1:1/x", ""), map[string]string{"signed": `
paths: [/in/signed]
verify:
  - kind: jws
    from: body.jwsData
    jwks_url: "http://u:` + queryKey + `@` + closedPort(t) + `/jwks?key=` + queryKey + `"
    jwks_headers: { apikey: ` + headerKey + ` }
event:
  key: body.key
routes:
  - to: [dest]
`})
	b64 := base64.RawURLEncoding.EncodeToString
	jws := b64([]byte(`{"alg":"RS256","kid":"k1"}`)) + "." + b64([]byte(`{"key":"k"}`)) + "." + b64([]byte("signature"))
	req, err := http.NewRequest(http.MethodPost, tr.Ingest.URL+"/in/signed", strings.NewReader(`{"key":"k","jwsData":"`+jws+`"}`))
	must(t, err)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || strings.TrimSpace(string(body)) != `{"error":"verification keys unavailable"}` {
		t.Errorf("POST: %d %s", resp.StatusCode, body)
	}
	_, rejections := adminGet(t, tr, "/admin/rejections")
	if !strings.Contains(rejections, "connection refused") {
		t.Errorf("the rejection log should keep why:\n%s", rejections)
	}
	_, providers := adminGet(t, tr, "/admin/providers")
	for where, text := range map[string]string{"rejections": rejections, "providers": providers, "log": logs.String()} {
		assertHidden(t, where, text, queryKey, headerKey)
	}
}

// Item 8: config keys match case exactly, so that redaction by key name
// cannot be dodged by writing `Token:` or `PASSWORD:`.
func TestConfigKeysCaseStrict(t *testing.T) {
	for name, c := range map[string]struct{ relay, provider, want string }{
		"verifier token":       {relayYAML("http://127.0.0.1:1/x", ""), strings.Replace(plainProvider, "token: t0ken", "Token: t0ken", 1), "verify[0].Token: unknown field"},
		"destination password": {relayYAML("http://127.0.0.1:1/x", "    auth: { kind: basic, username: u, PASSWORD: hunter2 }\n"), plainProvider, "destinations.dest.auth.PASSWORD: unknown field"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeConfig(t, dir, c.relay, map[string]string{"plain": c.provider})
			_, err := Load(filepath.Join(dir, "relay.yaml"), true)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("load: %v, want %q", err, c.want)
			}
		})
	}
}

// Item 8: the header a token verifier reads, whatever it is called, and an
// apikey's query parameter are masked in the rejection log and the
// quarantine, and the spool holds neither; a quarantine reason names the
// field, not the value.
func TestVerifierCredentialsMaskedInRecords(t *testing.T) {
	const token, apiKey, personal = "lender-token-c4nary", "query-apikey-c4nary", "Anna Svensson 19900101-1234"
	tr, logs := startRelayLogged(t, relayYAML("http://127.0.0.1:1/x", ""), map[string]string{"lender": `
paths: [/in/lender]
verify:
  - kind: token
    header: X-Lender-Token
    token: ` + token + `
  - kind: apikey
    in: query
    name: code
    key: ` + apiKey + `
  - kind: hmac
    secret: hmac-secret-c4nary
    signed: "{body}"
    signature: { header: X-Mac, encoding: hex }
event:
  key: body.key
  sequence: body.seq
  data: { born: "body.born != nil ? int(body.born) : 0" }
routes:
  - to: [dest]
`})
	send := func(body, mac string) int {
		req, err := http.NewRequest(http.MethodPost, tr.Ingest.URL+"/in/lender?code="+apiKey, strings.NewReader(body))
		must(t, err)
		req.Header.Set("X-Lender-Token", token)
		req.Header.Set("X-Mac", mac)
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	// Right token and key, wrong MAC: rejected, carrying both credentials.
	if code := send(`{"key":"k"}`, strings.Repeat("0", 64)); code != 401 {
		t.Fatalf("rejected request: %d", code)
	}
	// Verified, but the sequence is no number: quarantined.
	body := `{"key":"k","seq":"` + personal + `"}`
	if code := send(body, hmacHex("hmac-secret-c4nary", body)); code != 200 {
		t.Fatalf("quarantined request: %d", code)
	}
	// An expression's own error quotes the value it failed on.
	body = `{"key":"k","seq":1,"born":"` + personal + `"}`
	if code := send(body, hmacHex("hmac-secret-c4nary", body)); code != 200 {
		t.Fatalf("quarantined request: %d", code)
	}
	_, rejections := adminGet(t, tr, "/admin/rejections")
	if !strings.Contains(rejections, `"X-Lender-Token":"***"`) {
		t.Errorf("rejection headers:\n%s", rejections)
	}
	_, quarantine := adminGet(t, tr, "/admin/quarantine")
	if !strings.Contains(quarantine, `"X-Lender-Token":"***"`) || !strings.Contains(quarantine, "event.sequence") ||
		!strings.Contains(quarantine, "event.data.born") {
		t.Errorf("quarantine:\n%s", quarantine)
	}
	tr.stop()
	spoolBytes, err := spoolFile(tr.dir)
	must(t, err)
	for where, text := range map[string]string{"rejections": rejections, "quarantine": quarantine, "log": logs.String(), "spool file": string(spoolBytes)} {
		assertHidden(t, where, text, token, apiKey)
	}
	for where, text := range map[string]string{"quarantine": quarantine, "log": logs.String()} {
		if strings.Contains(text, "Svensson") || strings.Contains(text, "19900101") {
			t.Errorf("%s quotes the value:\n%s", where, text)
		}
	}
}

// A destination that echoes the credentials it got in its refusal ("invalid
// token: Bearer ..."), as lenders do to registration (item 7): the first
// KiB of the answer is recorded with each attempt, stored in the spool and
// shown by the admin API, so the relay's own credentials to it (auth of
// every kind, the URL's password, credential headers) are masked there in
// every form a server may echo them.
func TestDestinationEchoedCredentialsMasked(t *testing.T) {
	const (
		password = "dest-basic-c4nary-pw"
		token    = "dest-bearer-c4nary-tok"
		apiKey   = "dest-apikey-c4nary-key"
		urlPass  = "dest-urlpass-c4nary"
		hdrKey   = "dest-header-c4nary-val"
	)
	echo := newLoopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusUnauthorized)
		if r.URL.Path == "/padded" { // the token across the 1 KiB kept
			fmt.Fprint(w, "refused POST", strings.Repeat(".", 1024-len("refused POST")-20), r.Header.Get("Authorization"))
			return
		}
		fmt.Fprintf(w, "refused %s %s with %q %q %q", r.Method, r.URL, r.Header.Get("Authorization"),
			r.Header.Get("X-Api-Key"), r.Header.Get("X-Lender-Key"))
	}))
	withPass := strings.Replace(echo, "http://", "http://relay:"+urlPass+"@", 1)
	dest := func(name, url, extra string) string {
		return "  " + name + ":\n    url: \"" + url + "\"\n    retry: { max_attempts: 1 }\n" + extra
	}
	relay := "listen: 127.0.0.1:18080\nadmin: { listen: 127.0.0.1:19090 }\nspool: { path: ./spool.db }\ndestinations:\n" +
		dest("basic", echo+"/h", "    auth: { kind: basic, username: relay, password: "+password+" }\n") +
		dest("bearer", echo+"/h", "    auth: { kind: bearer, token: "+token+" }\n") +
		dest("header", echo+"/h", "    auth: { kind: header, name: X-Api-Key, api_key: "+apiKey+" }\n") +
		dest("query", echo+"/h", "    auth: { kind: query, name: key, api_key: "+apiKey+" }\n") +
		dest("userinfo", withPass+"/h", "") +
		dest("headers", echo+"/h", "    headers: { X-Lender-Key: "+hdrKey+" }\n") +
		dest("padded", echo+"/padded", "    auth: { kind: bearer, token: "+token+" }\n")
	provider := strings.Replace(plainProvider, "to: [dest]", "to: [basic, bearer, header, query, userinfo, headers, padded]", 1)
	tr, logs := startRelayLogged(t, relay, map[string]string{"plain": provider})
	id := ingestUntilDead(t, tr, 7)
	_, detail := adminGet(t, tr, "/admin/events/"+id)
	if strings.Count(detail, "refused POST") != 7 {
		t.Errorf("want the seven refusals recorded:\n%s", detail)
	}
	for _, part := range []string{token[:5], token[len(token)-5:]} { // no part of it across the cut
		if strings.Contains(detail, part) {
			t.Errorf("event detail shows %q of the token", part)
		}
	}
	tr.stop()
	spoolBytes, err := spoolFile(tr.dir)
	must(t, err)
	for where, text := range map[string]string{"event detail": detail, "log": logs.String(), "spool file": string(spoolBytes)} {
		assertHidden(t, where, text, password, token, apiKey, urlPass, hdrKey, "relay:"+password, "relay:"+urlPass)
	}
}

// A poll `values` entry is a named secret (SPEC 9) wherever the request
// puts it: in the URL's path a failing poll's network error quoted it, and
// the URL masking covers only userinfo, query and fragment.
func TestPollValueInURLPathMasked(t *testing.T) {
	const token = "poll-path-c4nary-tok"
	provider := strings.Replace(plainProvider, "/in/plain", "/in/p", 1) + `poll:
  interval: 1h
  final_types: [done]
  values: { token: ` + token + ` }
  request:
    url: "http://` + closedPort(t) + `/api/{{ values.token }}/status/{{ key }}"
  response: json
  event: { type: response.body.t }
`
	tr, logs := startRelayLogged(t, relayYAML("http://127.0.0.1:1/x", ""), map[string]string{"p": provider})
	resp, err := http.Post(tr.Admin.URL+"/admin/providers/p/poll", "application/json", strings.NewReader(`{"key":"k1"}`))
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /admin/providers/p/poll: %d", resp.StatusCode)
	}
	waitFor(t, 10*time.Second, "the poll to fail", func() bool { return strings.Contains(logs.String(), "poll failed") })
	if !strings.Contains(logs.String(), "/status/k1") {
		t.Errorf("the failure does not say which URL:\n%s", logs.String())
	}
	assertHidden(t, "log", logs.String(), token)
}

// A destination URL given as a secret (env:) that carries its credential in
// the path, as Slack's and Teams' incoming webhooks do: every network error
// quotes the URL, and URL masking covers userinfo, query and fragment only.
// The path of such a URL is masked in attempts, the admin API, logs and the
// spool; a URL written in relay.yaml is shown as it is.
func TestSecretDestinationURLPathMasked(t *testing.T) {
	const pathSecret = "T0C4NARY/B0C4NARY/xoxc4naryWebhookSecret"
	t.Setenv("HOOKRELAY_TEST_DEST_URL", "http://"+closedPort(t)+"/services/"+pathSecret)
	relay := "listen: 127.0.0.1:18080\nadmin: { listen: 127.0.0.1:19090 }\nspool: { path: ./spool.db }\ndestinations:\n" +
		"  dest:\n    url: env:HOOKRELAY_TEST_DEST_URL\n    retry: { max_attempts: 1 }\n" +
		"  plain:\n    url: \"http://" + closedPort(t) + "/shown/path\"\n    retry: { max_attempts: 1 }\n"
	provider := strings.Replace(plainProvider, "to: [dest]", "to: [dest, plain]", 1)
	tr, logs := startRelayLogged(t, relay, map[string]string{"plain": provider})
	id := ingestUntilDead(t, tr, 2)
	_, detail := adminGet(t, tr, "/admin/events/"+id)
	if strings.Count(detail, "connection refused") != 2 || !strings.Contains(detail, "/shown/path") {
		t.Errorf("want both network errors, the plain URL's path shown:\n%s", detail)
	}
	_, dests := adminGet(t, tr, "/admin/destinations")
	tr.stop()
	spoolBytes, err := spoolFile(tr.dir)
	must(t, err)
	for where, text := range map[string]string{"event detail": detail, "destinations": dests, "log": logs.String(), "spool file": string(spoolBytes)} {
		for _, part := range []string{pathSecret, "xoxc4naryWebhookSecret"} {
			if strings.Contains(text, part) {
				t.Errorf("%s shows %q", where, part)
			}
		}
	}
}

// ShownURL, what check prints, masks the path of a URL given as a secret.
func TestSecretDestinationShownURL(t *testing.T) {
	t.Setenv("HOOKRELAY_TEST_DEST_URL", "https://hooks.example/services/T0/B0/c4nary?x=1")
	dir := t.TempDir()
	writeConfig(t, dir, "listen: 127.0.0.1:18080\nadmin: { listen: 127.0.0.1:19090 }\ndestinations:\n"+
		"  dest: { url: env:HOOKRELAY_TEST_DEST_URL }\n  plain: { url: \"https://broker.example/in?token=t\" }\n",
		map[string]string{"plain": plainProvider})
	cfg, err := Load(filepath.Join(dir, "relay.yaml"), true)
	must(t, err)
	for name, want := range map[string]string{"dest": "https://hooks.example/***?x=***", "plain": "https://broker.example/in?token=***"} {
		if got := cfg.Destinations[name].ShownURL(); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}
