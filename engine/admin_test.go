package engine

// Admin API tests (SPEC 6, 7, 8): every endpoint through a real admin
// listener over a relay with a real bbolt spool, forwarding to httptest
// destinations.

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"
)

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
