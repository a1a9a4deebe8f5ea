package engine

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// resursClaimsVariant switches the shipped resurs.yaml to its variant (b):
// payload verify-only and the commented require block, as its comments say.
func resursClaimsVariant(t *testing.T) string {
	t.Helper()
	y := shippedProvider(t, "resurs")
	for _, s := range []string{"    payload: must-match\n", "    #payload: verify-only\n", "\n#require:\n"} {
		if !strings.Contains(y, s) {
			t.Fatalf("resurs.yaml has no %q: the variant (b) instructions no longer apply", s)
		}
	}
	y = strings.Replace(y, "    payload: must-match\n", "", 1)
	y = strings.Replace(y, "    #payload: verify-only\n", "    payload: verify-only\n", 1)
	return regexp.MustCompile(`(?m)^#(require:|  - .*)$`).ReplaceAllString(y, "$1")
}

// TestResursClaimsSetVariant runs resurs.yaml's variant (b) through the real
// listener: a claims-set token binds the callback through require, one
// whose ref differs from the body is refused (401, recorded), and the
// recorded cases of resurs.tests/claims-set pass against it.
func TestResursClaimsSetVariant(t *testing.T) {
	variant := resursClaimsVariant(t)
	if !strings.Contains(variant, "\nrequire:\n  - 'jws.iss == \"resurs\"'\n") {
		t.Fatalf("variant (b) has no active require block:\n%s", variant)
	}
	shipped := mustAbs(t, "../providers.d/resurs.tests")
	cases, err := filepath.Glob(filepath.Join(shipped, "claims-set", "*.yaml"))
	must(t, err)
	if len(cases) < 3 {
		t.Fatalf("%d claims-set cases, want at least 3", len(cases))
	}

	t.Run("listener", func(t *testing.T) {
		tr, rec := seedRelay(t, seedProviderCopy(t, map[string]string{"resurs": variant}), map[string]string{
			"RESURS_JWKS_URL": "file://" + filepath.ToSlash(filepath.Join(shipped, "jwks.json")),
		})
		body := func(name string) string {
			c, err := loadCase(filepath.Join(shipped, "claims-set", name))
			must(t, err)
			return c.Request.Body
		}
		seedAccept(t, tr, "/in/resurs", body("accepted.yaml"), resursHeaders)
		for name, n := range map[string]int{"ref-differs.yaml": 1, "other-issuer.yaml": 0} {
			status, resp := seedPost(t, tr, "/in/resurs", body(name), resursHeaders)
			if want := `{"error":"requirement ` + strconv.Itoa(n) + ` failed"}`; status != 401 || strings.TrimSpace(resp) != want {
				t.Errorf("%s: %d %s, want 401 %s", name, status, resp, want)
			}
			seedRefuse(t, tr, "resurs", "/in/resurs", body(name), resursHeaders)
		}
		waitFor(t, seedWait, "the accepted callback", func() bool { return len(rec.delivered(t)) >= 1 })
		if got := rec.delivered(t); len(got) != 1 || got[0]["key"] != "ABC-123" {
			t.Errorf("delivered %v, want the one ABC-123 callback", got)
		}
	})

	t.Run("cases", func(t *testing.T) {
		for k, v := range shippedEnv {
			t.Setenv(k, v)
		}
		dir := t.TempDir()
		tests := filepath.Join(dir, "providers.d", "resurs.tests")
		must(t, os.MkdirAll(tests, 0o755))
		must(t, os.WriteFile(filepath.Join(dir, "providers.d", "resurs.yaml"), []byte(variant), 0o644))
		// The cases read {{dir}}/../jwks.json.
		jwks, err := os.ReadFile(filepath.Join(shipped, "jwks.json"))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(dir, "providers.d", "jwks.json"), jwks, 0o644))
		for _, c := range cases {
			b, err := os.ReadFile(c)
			must(t, err)
			must(t, os.WriteFile(filepath.Join(tests, filepath.Base(c)), b, 0o644))
		}
		must(t, os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte("providers_dir: ./providers.d\n"+
			"destinations:\n  broker:\n    url: http://127.0.0.1:1/lender-events\n"), 0o644))
		var out bytes.Buffer
		failed, err := RunCases(filepath.Join(dir, "relay.yaml"), true, []string{"resurs"}, &out)
		if err != nil || failed != 0 || !strings.Contains(out.String(), strconv.Itoa(len(cases))+" passed") {
			t.Errorf("claims-set cases against variant (b): %d failed, %v\n%s", failed, err, out.String())
		}
	})
}

// TestRequireConfig: a require that cannot yield a boolean is an error at
// load, named by its place in the file; a runtime failure refuses.
func TestRequireConfig(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, relayYAML("http://127.0.0.1:1/", ""), map[string]string{
		"plain": strings.Replace(plainProvider, "event:\n", "require:\n  - body.key != nil\n  - 1 + 1\nevent:\n", 1),
	})
	_, err := Load(filepath.Join(dir, "relay.yaml"), true)
	if err == nil || !strings.Contains(err.Error(), "require[1]") || strings.Contains(err.Error(), "require[0]") {
		t.Fatalf("load: %v; want an error for require[1] only", err)
	}

	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL, ""), map[string]string{
		"plain": strings.Replace(plainProvider, "event:\n", "require:\n  - body.key != nil\n  - body.n > 1\nevent:\n", 1),
	})
	for body, want := range map[string]int{
		`{"key":"a","type":"t","n":2}`: 200,
		`{"type":"t","n":2}`:           401, // require[0] false
		`{"key":"a","type":"t","n":1}`: 401, // require[1] false
		`{"key":"a","type":"t"}`:       401, // require[1] fails: nil > 1
	} {
		if resp := tr.post("/in/plain", body, authPlain); resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", body, resp.StatusCode, want)
		}
	}
	if n := len(tr.rejections.List("plain", 100)); n != 3 {
		t.Errorf("%d rejections recorded, want 3", n)
	}
}
