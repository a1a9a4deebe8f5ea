package engine

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	yamlv3 "go.yaml.in/yaml/v3"
)

// maxFuzzInput bounds each fuzzed file or body: larger inputs only slow the
// fuzzer down without reaching new code.
const maxFuzzInput = 16 << 10

// inlineSecret is the secret written into the seed configs as is.
const inlineSecret = "s3cr3t-fuzz"

// fuzzEnvSecrets are the variables the config fuzzer sets, by value: every
// secret the shipped provider files read with env:, plus one of its own.
var fuzzEnvSecrets = map[string]string{
	"FUZZ_ENV_SECRET":             "env-s3cr3t-value",
	"AVIDA_API_KEY":               "env-s3cr3t-avida-key",
	"AVIDA_BASIC_PASSWORD":        "env-s3cr3t-avida-pass",
	"EXAMPLE_WEBHOOK_SECRET":      "env-s3cr3t-example",
	"GITHUB_WEBHOOK_SECRET":       "env-s3cr3t-github",
	"KOMPAR_AES_KEY":              "env-s3cr3t-kompar-aes-key-32byte",
	"KOMPAR_API_TOKEN":            "env-s3cr3t-kompar-api",
	"KOMPAR_WEBHOOK_TOKEN":        "env-s3cr3t-kompar-hook",
	"NORDISKA_AUTH_TOKEN":         "env-s3cr3t-nordiska-auth",
	"NORDISKA_SIGNING_SECRET":     "env-s3cr3t-nordiska-sign",
	"RESURS_API_PASSWORD":         "env-s3cr3t-resurs-pass",
	"RESURS_CALLBACK_CREDENTIALS": "env-s3cr3t-resurs-callback",
	"RESURS_JWKS_APIKEY":          "env-s3cr3t-resurs-jwks",
	"STANDARD_WEBHOOK_SECRET":     "whsec_ZW52LXMzY3IzdC1zdGFuZGFyZA==",
	"STRIPE_WEBHOOK_SECRET":       "whsec_env-s3cr3t-stripe",
}

// secretKeys are the config keys whose values are secrets (verifier,
// decrypt, destination auth, registration and polling credentials). "key"
// is one too, except under event: where it is an expression.
var secretKeys = map[string]bool{
	"token": true, "tokens": true, "secret": true, "secrets": true, "password": true,
	"key": true, "keys": true, "api_key": true, "api_token": true, "apikey": true,
	"callback_credentials": true,
}

// fuzzMinimalRelay is a relay.yaml with the destination the shipped provider
// files route to and an inline admin token.
const fuzzMinimalRelay = `listen: 127.0.0.1:18080
admin: { listen: 127.0.0.1:19090, token: ` + inlineSecret + ` }
spool: { path: ./spool.db }
destinations:
  broker:
    url: http://127.0.0.1:3000/lender-events
    auth: { kind: bearer, token: env:FUZZ_ENV_SECRET }
`

// FuzzLoadConfig loads arbitrary relay.yaml and provider files: Load must
// not panic, and no error may quote a value given as a secret.
func FuzzLoadConfig(f *testing.F) {
	for name, v := range fuzzEnvSecrets {
		f.Setenv(name, v)
	}
	f.Setenv("RELAY_PUBLIC_URL", "https://relay.example")
	f.Setenv("KOMPAR_API_URL", "https://kompar.example")
	f.Setenv("RESURS_API_URL", "https://resurs.example/ws")
	f.Setenv("RESURS_API_USERNAME", "relay")
	f.Setenv("RESURS_JWKS_URL", "https://resurs.example/jwks")

	shipped, err := filepath.Glob("../providers.d/*.yaml")
	if err != nil || len(shipped) == 0 {
		f.Fatalf("no shipped provider files: %v", err)
	}
	for _, file := range shipped {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(fuzzMinimalRelay), b)
	}
	f.Add([]byte(fuzzMinimalRelay), []byte(strings.Replace(plainProvider, "t0ken", inlineSecret, 1)+
		"decrypt: { kind: aes-gcm, key: env:FUZZ_ENV_SECRET, key_encoding: raw, data: body.d, iv: body.iv }\n"))
	f.Add([]byte(relayYAML("http://127.0.0.1:1/x", "    auth: { kind: basic, username: u, password: "+inlineSecret+" }\n")),
		[]byte(strings.Replace(plainProvider, "to: [dest]", "to: [dest]\nverify:\n  - kind: basic\n    users: { u: env:FUZZ_ENV_SECRET }", 1)))
	f.Add([]byte("admin: {token: ["+inlineSecret+"]}\nmax_inflight: env:FUZZ_ENV_SECRET\n"), []byte("verify: [{kind: token, token: {a: "+inlineSecret+"}}]\n"))
	f.Add([]byte(""), []byte(""))

	f.Fuzz(func(t *testing.T, relay, provider []byte) {
		if len(relay) > maxFuzzInput || len(provider) > maxFuzzInput {
			return
		}
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "providers.d"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "relay.yaml"), relay, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "providers.d", "p.yaml"), provider, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(filepath.Join(dir, "relay.yaml"), true)
		if err == nil {
			return
		}
		msg := err.Error()
		for _, file := range [][]byte{relay, provider} {
			for _, s := range givenSecrets(file) {
				if strings.Contains(msg, s) {
					t.Fatalf("error discloses the secret %q:\n%s", s, msg)
				}
			}
		}
	})
}

// givenSecrets returns the watched secret texts (inlineSecret and the
// fuzzEnvSecrets values) that data gives as secrets: written inline, or as
// env:NAME, under a secret key. A text that data also writes anywhere else
// (as another value, a key, a comment) is left out, since an error may
// rightly quote it there; so is everything when data is not YAML or its
// aliases are too many to follow.
func givenSecrets(data []byte) []string {
	var n yamlv3.Node
	if yamlv3.Unmarshal(data, &n) != nil {
		return nil
	}
	var secret, public []string
	budget := 10000 // nodes visited, aliases included
	var walk func(n *yamlv3.Node, key string, inSecret, underEvent bool) bool
	walk = func(n *yamlv3.Node, key string, inSecret, underEvent bool) bool {
		if budget--; budget < 0 {
			return false
		}
		public = append(public, n.HeadComment, n.LineComment, n.FootComment, n.Anchor, n.Tag)
		switch n.Kind {
		case yamlv3.ScalarNode:
			if inSecret {
				secret = append(secret, n.Value)
			} else {
				public = append(public, n.Value)
			}
		case yamlv3.AliasNode:
			// The anchored value appears again here, perhaps not as a secret.
			return n.Alias == nil || walk(n.Alias, key, false, underEvent)
		case yamlv3.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if !walk(k, "", false, underEvent) {
					return false
				}
				sec := inSecret || (secretKeys[k.Value] && (!underEvent || k.Value != "key")) || key == "users"
				if !walk(v, k.Value, sec, underEvent || k.Value == "event") {
					return false
				}
			}
		default:
			for _, c := range n.Content {
				if !walk(c, key, inSecret, underEvent) {
					return false
				}
			}
		}
		return true
	}
	if !walk(&n, "", false, false) {
		return nil
	}
	isPublic := func(s string) bool {
		return slices.ContainsFunc(public, func(p string) bool { return strings.Contains(p, s) })
	}
	var out []string
	watch := map[string]string{inlineSecret: inlineSecret}
	for name, v := range fuzzEnvSecrets {
		watch["env:"+name] = v
	}
	for ref, value := range watch {
		if slices.Contains(secret, ref) && !isPublic(ref) && !isPublic(value) &&
			!slices.ContainsFunc(secret, func(s string) bool { return s != ref && strings.Contains(s, value) }) {
			out = append(out, value)
		}
	}
	return out
}

// fuzzProviders are the providers of the ingest fuzzer's relay: one verifier
// kind each, a path parameter, a method list, a small body limit, a disabled
// one (its secret unset), and one whose mapping fails (quarantine).
var fuzzProviders = map[string]string{
	"plain": plainProvider,
	"hmac": `
paths: ["/in/hmac/{event}"]
methods: [POST, PUT]
max_body: 64B
verify:
  - kind: hmac
    secret: s3cr3t
    signed: "{header.X-Timestamp}.{param.event}.{body}"
    signature: { header: X-Signature, prefix: "sha256=" }
    timestamp: { header: X-Timestamp, format: unix, tolerance: 100000h }
event:
  key: params.event
  type: body.type ?? "t"
routes:
  - to: [dest]
`,
	"basic": `
paths: [/in/basic]
verify:
  - kind: basic
    users: { u: p }
  - kind: apikey
    in: query
    name: k
    key: q
event:
  key: body.a.b.c
  type: '"t"'
routes:
  - when: event.data.x > 1
    to: [dest]
`,
	"off": strings.Replace(strings.Replace(plainProvider, "/in/plain", "/in/off", 1), "token: t0ken", "token: env:HOOKRELAY_FUZZ_UNSET_VAR", 1),
}

// fuzzIngestStatus are the statuses ingest documents (README, "Ingest status codes").
var fuzzIngestStatus = map[int]bool{200: true, 401: true, 404: true, 405: true, 413: true, 503: true}

// startFuzzRelay starts a relay with fuzzProviders whose deliveries go to a
// server that accepts them, and returns its ingest server.
func startFuzzRelay(tb testing.TB) *httptest.Server {
	tb.Helper()
	dest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	tb.Cleanup(dest.Close)
	dir := tb.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "providers.d"), 0o755); err != nil {
		tb.Fatal(err)
	}
	files := map[string]string{"relay.yaml": relayYAML(dest.URL, "")}
	for name, body := range fuzzProviders {
		files[filepath.Join("providers.d", name+".yaml")] = body
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	cfg, err := Load(filepath.Join(dir, "relay.yaml"), true)
	if err != nil {
		tb.Fatalf("load: %v", err)
	}
	r, err := Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	if err := r.Start(); err != nil {
		tb.Fatalf("start: %v", err)
	}
	srv := httptest.NewServer(r.IngestHandler())
	tb.Cleanup(func() {
		srv.Close()
		_ = r.Close(5 * time.Second)
	})
	return srv
}

// FuzzIngest sends arbitrary requests to a running relay: every answer is a
// documented status, and the relay still accepts a good request afterwards.
func FuzzIngest(f *testing.F) {
	srv := startFuzzRelay(f)
	client := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	send := func(method, url string, header http.Header, body []byte) (*http.Response, error) {
		req, err := http.NewRequest(method, url, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		for k, vs := range header {
			req.Header[k] = vs
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, nil
	}

	f.Add("POST", "/in/plain", "Authorization", "Bearer t0ken", "Content-Type", "application/json", []byte(`{"id":"1","key":"k","type":"t","n":1}`))
	f.Add("POST", "/in/plain", "Authorization", "bearer  t0ken", "X-Forwarded-For", "::1", []byte(`{"key":["a"],"type":{}}`))
	f.Add("GET", "/in/plain", "Authorization", "Bearer t0ken", "", "", []byte(nil))
	f.Add("PUT", "/in/hmac/approved", "X-Timestamp", "1700000000", "X-Signature", "sha256=00", []byte(`{"type":"x"}`))
	f.Add("POST", "/in/hmac/a%2Fb", "X-Timestamp", "-1", "X-Signature", "sha256=", bytes.Repeat([]byte("x"), 100))
	f.Add("POST", "/in/basic?k=q", "Authorization", "Basic dTpw", "", "", []byte(`{"a":{"b":{"c":"k"}},"x":2}`))
	f.Add("POST", "/in/basic?k=q&k=r", "Authorization", "Basic dTpw", "", "", []byte(`not json`))
	f.Add("POST", "/in/off", "Authorization", "Bearer t0ken", "", "", []byte(`{}`))
	f.Add("DELETE", "/in/plain?x=1#frag", "Content-Length", "5", "Transfer-Encoding", "chunked", []byte(nil))

	f.Fuzz(func(t *testing.T, method, path, k1, v1, k2, v2 string, body []byte) {
		// Within the server's header limit, so that 431 is not an answer.
		if len(body) > maxFuzzInput || len(method)+len(path)+len(k1)+len(v1)+len(k2)+len(v2) > 8<<10 {
			return
		}
		h := http.Header{}
		for _, kv := range [][2]string{{k1, v1}, {k2, v2}} {
			if kv[0] != "" {
				h[kv[0]] = append(h[kv[0]], kv[1])
			}
		}
		resp, err := send(method, srv.URL+path, h, body)
		if err != nil {
			// The client refused to send it (bad method, URL or header): not a
			// request the relay can see.
			return
		}
		if !fuzzIngestStatus[resp.StatusCode] {
			t.Fatalf("%s %q answered %d, not a documented ingest status", method, path, resp.StatusCode)
		}
		resp, err = send("POST", srv.URL+"/in/plain", http.Header{"Authorization": {"Bearer t0ken"}}, []byte(`{"key":"k","type":"t"}`))
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("relay stopped serving after %s %q: %v %v", method, path, resp, err)
		}
	})
}
