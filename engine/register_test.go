package engine

// Registration (SPEC 9) against loopback fakes of the lenders that check the
// exact request shapes of their documents: Resurs' setCallback XML (seed
// 001) and Kompar's JSON {"url": ...} on two endpoints (seed 002).

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Secrets of the tests: none may appear in an error or in output.
var registerSecrets = map[string]string{
	"KOMPAR_API_TOKEN": "kompar-api-token-77", "RESURS_API_USERNAME": "ws-user-88", "RESURS_API_PASSWORD": "ws-password-99",
	"RESURS_CALLBACK_CREDENTIALS": "relay:callback-pass-11",
}

// assertNoSecret fails when text holds a secret of registerSecrets or its base64.
func assertNoSecret(t *testing.T, what, text string) {
	t.Helper()
	for _, s := range registerSecrets {
		if strings.Contains(text, s) || strings.Contains(text, base64.StdEncoding.EncodeToString([]byte(s))) {
			t.Errorf("%s shows the secret %q: %s", what, s, text)
		}
	}
	if b := base64.StdEncoding.EncodeToString([]byte(registerSecrets["RESURS_API_USERNAME"] + ":" + registerSecrets["RESURS_API_PASSWORD"])); strings.Contains(text, b) {
		t.Errorf("%s shows the webservice credentials: %s", what, text)
	}
}

// loadRegisterProvider loads the provider file body as providers.d/name.yaml,
// with the shipped providers' secrets, registerSecrets, then env set.
func loadRegisterProvider(t *testing.T, name, body string, env map[string]string) *Provider {
	t.Helper()
	for _, vars := range []map[string]string{shippedEnv, registerSecrets, env} {
		for k, v := range vars {
			t.Setenv(k, v)
		}
	}
	dir := t.TempDir()
	writeConfig(t, dir, "destinations:\n  broker: { url: \"http://127.0.0.1:1/b\" }\n  dest: { url: \"http://127.0.0.1:1/d\" }\n", map[string]string{name: body})
	cfg, err := Load(filepath.Join(dir, "relay.yaml"), true)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	p := cfg.Provider(name)
	if p.Disabled != "" {
		t.Fatalf("%s disabled: %s", name, p.Disabled)
	}
	return p
}

// lenderCall is one request a fake lender received.
type lenderCall struct {
	method, path string
	header       http.Header
	body         string
}

// fakeLender records requests and answers each with respond.
type fakeLender struct {
	*httptest.Server
	mu      sync.Mutex
	calls   []lenderCall
	respond func(n int, c lenderCall) (int, string) // n counts from 1
}

func newFakeLender(t *testing.T, respond func(n int, c lenderCall) (int, string)) *fakeLender {
	f := &fakeLender{respond: respond}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c := lenderCall{r.Method, r.URL.RequestURI(), r.Header.Clone(), string(b)}
		f.mu.Lock()
		f.calls = append(f.calls, c)
		n := len(f.calls)
		f.mu.Unlock()
		status, body := f.respond(n, c)
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeLender) got() []lenderCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]lenderCall(nil), f.calls...)
}

// setCallback is Resurs' registration request (seed 001).
type setCallback struct {
	XMLName xml.Name `xml:"setCallback"`
	Config  struct {
		URL         string `xml:"callbackUrl"`
		Credentials string `xml:"callbackCredentials"`
		AuthMethod  string `xml:"callbackAuthMethod"`
	} `xml:"callbackConfiguration"`
}

const resursAnswer = `<setCallbackResponse>
    <setCallbackResult>
        <callbackSet>%s</callbackSet>
        <message>Set callback successful</message>
    </setCallbackResult>
</setCallbackResponse>`

func TestRegisterResurs(t *testing.T) {
	set := "true"
	lender := newFakeLender(t, func(int, lenderCall) (int, string) { return 200, fmt.Sprintf(resursAnswer, set) })
	p := loadRegisterProvider(t, "resurs", shippedProvider(t, "resurs"),
		map[string]string{"RESURS_API_URL": lender.URL + "/ws/setCallback", "RELAY_PUBLIC_URL": "https://relay.example/"})

	if err := p.Register(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	calls := lender.got()
	if len(calls) != 1 {
		t.Fatalf("want 1 request, got %d", len(calls))
	}
	c := calls[0]
	if c.method != http.MethodPost || c.path != "/ws/setCallback" {
		t.Errorf("request %s %s", c.method, c.path)
	}
	if got := c.header.Get("Content-Type"); !strings.HasPrefix(got, "text/xml") {
		t.Errorf("Content-Type %q", got)
	}
	if user, pass, ok := (&http.Request{Header: c.header}).BasicAuth(); !ok || user != "ws-user-88" || pass != "ws-password-99" {
		t.Errorf("webservice basic auth %q %q %v", user, pass, ok)
	}
	var sc setCallback
	if err := xml.Unmarshal([]byte(c.body), &sc); err != nil {
		t.Fatalf("setCallback body: %v\n%s", err, c.body)
	}
	if sc.Config.URL != "https://relay.example/in/resurs" {
		t.Errorf("callbackUrl %q", sc.Config.URL)
	}
	if creds, err := base64.StdEncoding.DecodeString(sc.Config.Credentials); err != nil || string(creds) != "relay:callback-pass-11" {
		t.Errorf("callbackCredentials %q decode to %q (%v)", sc.Config.Credentials, creds, err)
	}
	if sc.Config.AuthMethod != "BASIC" {
		t.Errorf("callbackAuthMethod %q", sc.Config.AuthMethod)
	}

	// 200 with callbackSet false is a refusal.
	set = "false"
	err := p.Register(context.Background(), false)
	if err == nil || !strings.Contains(err.Error(), "register resurs: POST <values.api_url>: ") ||
		!strings.Contains(err.Error(), "status 200, success is false") || !strings.Contains(err.Error(), "callbackSet>false") {
		t.Fatalf("callbackSet false: %v", err)
	}
	assertNoSecret(t, "error", err.Error())

	// Resurs documents no removal.
	if err := p.Register(context.Background(), true); err == nil || !strings.Contains(err.Error(), "no unregister request") {
		t.Errorf("unregister: %v", err)
	}
}

func TestRegisterKompar(t *testing.T) {
	answer := `{"success": true}`
	lender := newFakeLender(t, func(int, lenderCall) (int, string) { return 200, answer })
	p := loadRegisterProvider(t, "kompar", shippedProvider(t, "kompar"),
		map[string]string{"KOMPAR_API_URL": lender.URL + "/api/", "RELAY_PUBLIC_URL": "https://relay.example/"})

	if err := p.Register(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if err := p.Register(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	want := []struct{ method, path, url string }{
		{"POST", "/api/webhooks/applications", "https://relay.example/in/kompar/applications"},
		{"POST", "/api/webhooks/decisions", "https://relay.example/in/kompar/decisions"},
		{"DELETE", "/api/webhooks/applications", ""},
		{"DELETE", "/api/webhooks/decisions", ""},
	}
	calls := lender.got()
	if len(calls) != len(want) {
		t.Fatalf("want %d requests, got %d: %+v", len(want), len(calls), calls)
	}
	for i, w := range want {
		c := calls[i]
		if c.method != w.method || c.path != w.path {
			t.Errorf("request %d: %s %s, want %s %s", i, c.method, c.path, w.method, w.path)
		}
		if got := c.header.Get("Authorization"); got != "token kompar-api-token-77" {
			t.Errorf("request %d: Authorization %q", i, got)
		}
		if w.url == "" {
			if c.body != "" {
				t.Errorf("request %d: body %q, want none", i, c.body)
			}
			continue
		}
		if got := c.header.Get("Content-Type"); got != "application/json" {
			t.Errorf("request %d: Content-Type %q", i, got)
		}
		var body map[string]any
		if err := json.Unmarshal([]byte(c.body), &body); err != nil || len(body) != 1 || body["url"] != w.url {
			t.Errorf("request %d: body %s (%v), want {\"url\": %q}", i, c.body, err, w.url)
		}
	}

	// A 200 without success, and a 400 with Kompar's message, are refusals.
	for _, tc := range []struct {
		status     int
		body, want string
	}{
		{200, `{"success": false}`, `POST <values.base_url>/webhooks/applications: status 200, success is false; answer "{\"success\": false}"`},
		{400, `{"message": "url must be HTTPS"}`, "status 400, success is false"},
	} {
		lender.respond = func(int, lenderCall) (int, string) { return tc.status, tc.body }
		err := p.Register(context.Background(), false)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "register kompar: ") {
			t.Errorf("answer %d %s: %v", tc.status, tc.body, err)
		}
		if err != nil {
			assertNoSecret(t, "error", err.Error())
		}
	}
}

// A lender that echoes what it got, and URLs with secrets in the query and
// the host, must still not make an error show a secret.
func TestRegisterErrorsHideSecrets(t *testing.T) {
	lender := newFakeLender(t, func(_ int, c lenderCall) (int, string) {
		return 401, fmt.Sprintf("denied %s %v %s", c.path, c.header, c.body)
	})
	p := loadRegisterProvider(t, "acme", plainProvider+`
register:
  public_url: env:RELAY_PUBLIC_URL
  values:
    url: env:LENDER_URL
    user: env:RESURS_API_USERNAME
    password: env:RESURS_API_PASSWORD
    token: env:KOMPAR_API_TOKEN
  request:
    url: "{{ values.url }}/hooks?key={{ values.token }}"
    headers:
      Authorization: "Basic {{ base64(values.user + ':' + values.password) }}"
      X-Token: "{{ values.token }}"
    body: '{"url": "{{ public_url }}/in/plain", "secret": "{{ values.password }}"}'
`, map[string]string{"LENDER_URL": lender.URL, "RELAY_PUBLIC_URL": "https://relay.example"})
	err := p.Register(context.Background(), false)
	if err == nil || !strings.Contains(err.Error(), "status 401, not 2xx") || !strings.Contains(err.Error(), "POST <values.url>/hooks: ") {
		t.Fatalf("got %v", err)
	}
	assertNoSecret(t, "error", err.Error())

	// Nobody listening: the transport's error would quote the whole URL.
	lender.Close()
	err = p.Register(context.Background(), false)
	if err == nil || !strings.Contains(err.Error(), "no answer") {
		t.Fatalf("closed lender: %v", err)
	}
	assertNoSecret(t, "error", err.Error())
	if strings.Contains(err.Error(), "?key") {
		t.Errorf("error shows the query: %v", err)
	}
}

// A missing registration secret stops registration, not the webhooks.
func TestRegisterDisabledProvider(t *testing.T) {
	t.Setenv("RELAY_PUBLIC_URL", "https://relay.example")
	dir := t.TempDir()
	writeConfig(t, dir, relayYAML("http://127.0.0.1:1/x", ""), map[string]string{"plain": plainProvider + `
register:
  public_url: env:RELAY_PUBLIC_URL
  values: { token: env:REGISTER_TEST_UNSET_TOKEN }
  request: { url: "https://lender.example/hooks", headers: { Authorization: "token {{ values.token }}" } }
`})
	cfg, err := Load(filepath.Join(dir, "relay.yaml"), true)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Provider("plain")
	if p.Disabled != "" {
		t.Errorf("a secret only registration needs disabled the webhooks: %s", p.Disabled)
	}
	err = p.Register(context.Background(), false)
	if err == nil || !strings.Contains(err.Error(), "register plain: cannot register: register.values.token: environment variable REGISTER_TEST_UNSET_TOKEN is not set") {
		t.Errorf("got %v", err)
	}
}

func TestRegisterConfigErrors(t *testing.T) {
	t.Setenv("RELAY_PUBLIC_URL", "https://relay.example")
	for _, tc := range []struct{ name, block, want string }{
		{"both", `
register:
  public_url: https://relay.example
  request: { url: https://l.example/a }
  requests: [{ url: https://l.example/b }]`, "plain.yaml:15: register: request and requests are exclusive"},
		{"neither", `
register:
  public_url: https://relay.example`, "plain.yaml:12: register: one of request or requests is required"},
		{"no public_url", `
register:
  request: { url: https://l.example/a }`, "plain.yaml:12: register.public_url: required"},
		{"public_url not a URL", `
register:
  public_url: relay.example
  request: { url: https://l.example/a }`, `plain.yaml:13: register.public_url: "relay.example" is not an http(s) URL`},
		{"unknown value", `
register:
  public_url: env:RELAY_PUBLIC_URL
  values: { token: t }
  requests:
    - url: https://l.example/a
      headers:
        Authorization: "token {{ values.tokn }}"`, "plain.yaml:18: register.requests[0].headers.Authorization: values.tokn is not in register.values"},
		{"bad template", `
register:
  public_url: https://relay.example
  request: { url: "https://l.example/{{ public_url +  }}" }`, "plain.yaml:14: register.request.url: template:"},
		{"not http", `
register:
  public_url: https://relay.example
  request: { url: "ftp://l.example/a" }`, "plain.yaml:14: register.request.url: not an absolute http or https URL"},
		{"bad method", `
register:
  public_url: https://relay.example
  request: { method: "PO ST", url: "https://l.example/a" }`, `plain.yaml:14: register.request.method: "PO ST" is not an HTTP method`},
		{"unregister without url of its own", `
register:
  public_url: https://relay.example
  requests:
    - url: https://l.example/a
      unregister: { method: DELETE, headers: { X-A: "{{ nope }}" } }`, "plain.yaml:16: register.requests[0].unregister.headers.X-A: template: unknown name nope"},
		{"unregister beside requests", `
register:
  public_url: https://relay.example
  requests: [{ url: https://l.example/a }]
  unregister: { url: https://l.example/a }`, "plain.yaml:15: register.unregister: with requests, each request gives its own unregister"},
		{"success not boolean", `
register:
  public_url: https://relay.example
  request: { url: https://l.example/a }
  success: response.status`, "plain.yaml:15: register.success: expected bool"},
		{"unknown field", `
register:
  public_url: https://relay.example
  request: { url: https://l.example/a, query: x }`, "register.request.query: unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeConfig(t, dir, relayYAML("http://127.0.0.1:1/x", ""), map[string]string{"plain": strings.TrimLeft(plainProvider, "\n") + strings.TrimLeft(tc.block, "\n")})
			_, err := Load(filepath.Join(dir, "relay.yaml"), true)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("want %q, got %v", tc.want, err)
			}
		})
	}
}
