package main

import (
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestRelativePathsFromAnotherDirectory: relative paths are relative to the
// file that names them (SPEC 2), never to the working directory. A relay
// configured in conf/ with relative spool, providers_dir, file: secrets,
// key_file, jwks_file and a relative file:// jwks_url is checked, signs and
// tries requests, and serves when started from / (as systemd does); a
// providers_dir that does not exist is an error, not a relay without
// providers.
func TestRelativePathsFromAnotherDirectory(t *testing.T) {
	sk := &sink{}
	dest := httptest.NewServer(sk)
	t.Cleanup(dest.Close)
	conf := filepath.Join(t.TempDir(), "conf")
	provs := filepath.Join(conf, "providers")
	for _, d := range []string{filepath.Join(provs, "keys"), filepath.Join(conf, "secrets")} {
		must(t, os.MkdirAll(d, 0o755))
	}
	write := func(path, body string) {
		t.Helper()
		must(t, os.WriteFile(path, []byte(body), 0o600))
	}
	for _, f := range []string{"test-key.jwk.json", "jwks.json"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "providers.d", "resurs.tests", f))
		must(t, err)
		write(filepath.Join(provs, "keys", f), string(b))
	}
	write(filepath.Join(conf, "secrets", "broker-token"), "broker-token-1234567890\n")
	write(filepath.Join(conf, "secrets", "admin-token"), "admin-token-1234567890\n")
	write(filepath.Join(provs, "hmac-secret"), "provider-secret-1234567890\n")
	in, adm := freePorts(t)
	write(filepath.Join(conf, "relay.yaml"), fmt.Sprintf(`listen: "127.0.0.1:%d"
admin: { listen: "127.0.0.1:%d", token: file:secrets/admin-token }
spool: { path: ./spool/hookrelay.db }
providers_dir: ./providers
log: { level: warn, format: text }
destinations:
  sink:
    url: "%s/hook"
    auth: { kind: bearer, token: file:secrets/broker-token }
`, in, adm, dest.URL))
	jws := func(name, keys string) string {
		return "paths: [/in/" + name + "]\nverify:\n  - kind: jws\n    from: header.X-JWS\n    " + keys +
			"\nevent:\n  key: body.key\nroutes:\n  - to: [sink]\n"
	}
	write(filepath.Join(provs, "keyfile.yaml"), jws("keyfile", "key_file: keys/test-key.jwk.json"))
	write(filepath.Join(provs, "jwksfile.yaml"), jws("jwksfile", "jwks_file: keys/jwks.json"))
	write(filepath.Join(provs, "jwksurl.yaml"), jws("jwksurl", "jwks_url: file://keys/jwks.json"))
	write(filepath.Join(provs, "secret.yaml"), strings.Replace(strings.Replace(providerYAML, "env:"+secretEnv, "file:hmac-secret", 1),
		"name: crash", "name: secret", 1))
	cfg := filepath.Join(conf, "relay.yaml")
	env := childEnv()

	code, out, errOut := runBin(t, "/", env, "check", "--config", cfg)
	if code != 0 {
		t.Fatalf("check from /: exit %d\n%s%s", code, out, errOut)
	}
	for _, name := range []string{"keyfile", "jwksfile", "jwksurl", "secret"} {
		if !regexp.MustCompile(`(?m)^provider\s+` + name + `\s.*\bok$`).MatchString(out) {
			t.Errorf("check from /: provider %s not ok:\n%s", name, out)
		}
	}
	if !strings.Contains(out, filepath.Join(conf, "spool", "hookrelay.db")) {
		t.Errorf("check from /: spool not under conf/:\n%s", out)
	}

	body := filepath.Join(conf, "body.json")
	write(body, `{"key":"k1"}`)
	for _, name := range []string{"keyfile", "jwksfile", "jwksurl"} {
		code, signed, errOut := runBin(t, "/", env, "sign", name, body, "--key", filepath.Join(provs, "keys", "test-key.jwk.json"), "--config", cfg)
		if code != 0 {
			t.Errorf("sign %s from /: exit %d\n%s%s", name, code, signed, errOut)
			continue
		}
		req := filepath.Join(conf, name+".http")
		write(req, signed)
		if code, out, errOut := runBin(t, "/", env, "try", name, req, "--config", cfg); code != 0 || !strings.Contains(out, `"accepted"`) {
			t.Errorf("try %s from /: exit %d\n%s%s", name, code, out, errOut)
		}
	}

	r := logTo(t, &relayProc{
		dir: "/", timeout: 10 * time.Second, args: []string{"serve", "--config", cfg}, env: env,
		ingest: fmt.Sprintf("http://127.0.0.1:%d", in), admin: fmt.Sprintf("http://127.0.0.1:%d", adm),
	}, filepath.Join(t.TempDir(), "relay.log"))
	must(t, r.start())
	if !fileExists(filepath.Join(conf, "spool", "hookrelay.db")) {
		t.Errorf("serve from /: spool not at conf/spool/hookrelay.db")
	}
	if code, _, err := r.terminate(15 * time.Second); err != nil || code != 0 {
		t.Errorf("SIGTERM: status %d, %v", code, err)
	}

	// A providers_dir that is not there is an error with its line.
	b, err := os.ReadFile(cfg)
	must(t, err)
	write(cfg, strings.Replace(string(b), "providers_dir: ./providers", "providers_dir: ./providerz", 1))
	code, out, errOut = runBin(t, "/", env, "check", "--config", cfg)
	if code != 1 || !regexp.MustCompile(`relay\.yaml:4: providers_dir: .*providerz`).MatchString(errOut) {
		t.Errorf("check with a missing providers_dir: exit %d, want 1 and relay.yaml:4\n%s%s", code, out, errOut)
	}
}
