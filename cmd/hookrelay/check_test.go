package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestCheckValidatesDisabledProvider: a provider whose secret is missing
// loads disabled, but `check` still reports every other error in it (SPEC
// 3), here an unknown algorithm, format or key length that used to pass
// until the secret was set in production; with a valid verifier it is only
// a warning.
func TestCheckValidatesDisabledProvider(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "providers.d"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte("listen: \"127.0.0.1:1\"\nadmin: { listen: \"127.0.0.1:2\" }\n"+
		"destinations:\n  sink:\n    url: http://127.0.0.1:3/x\n"), 0o644))
	write := func(name, body string) {
		must(t, os.WriteFile(filepath.Join(dir, "providers.d", name+".yaml"), []byte(body), 0o644))
	}
	write("locked", lockedProviderYAML)
	code, out, errOut := runBin(t, dir, childEnv(), "check")
	if code != 0 || !regexp.MustCompile(`(?m)^provider\s+locked\s.*DISABLED.*`+missingEnv).MatchString(out) {
		t.Fatalf("check with a valid disabled provider: exit %d\n%s%s", code, out, errOut)
	}

	bad := strings.Replace(lockedProviderYAML, "algorithm: sha256", "algorithm: sha-512", 1)
	write("locked", bad)
	code, out, errOut = runBin(t, dir, childEnv(), "check")
	if code != 1 || !regexp.MustCompile(`locked\.yaml:\d+: verify\[0\]\.algorithm: .*sha-512`).MatchString(errOut) {
		t.Errorf("check with a disabled provider's bad algorithm: exit %d, want 1 naming verify[0].algorithm\n%s%s", code, out, errOut)
	}

	// Every entry keeps its checks: a basic user's missing password is
	// fine, a Standard Webhooks verifier with an unknown format is not, and
	// neither is a decrypt key that is set but has a wrong length.
	write("locked", `name: locked
paths: [/in/locked]
verify:
  - kind: basic
    users: { lender: env:`+missingEnv+` }
  - kind: hmac
    secret: env:`+missingEnv+`
    signature: { format: standrd }
decrypt:
  kind: aes-cbc
  key: c2hvcnQ=
  data: body.data
  iv: body.iv
event:
  key: body.key
routes:
  - to: [sink]
`)
	code, out, errOut = runBin(t, dir, childEnv(), "check")
	if code != 1 || !regexp.MustCompile(`locked\.yaml:\d+: verify\[1\]\.signature\.format: .*standrd`).MatchString(errOut) ||
		!regexp.MustCompile(`locked\.yaml:\d+: decrypt\.key`).MatchString(errOut) || strings.Contains(errOut, "verify[0]") {
		t.Errorf("check: exit %d, want 1 naming verify[1].signature.format and decrypt.key only\n%s%s", code, out, errOut)
	}

	// A decrypt block whose key is the missing secret is checked too: its
	// key_encoding would otherwise fail only once the key is set.
	write("locked", `name: locked
paths: [/in/locked]
verify:
  - kind: bearer
    token: t0ken-t0ken-t0ken
decrypt:
  kind: aes-cbc
  key: env:`+missingEnv+`
  key_encoding: base65
  data: body.data
  iv: body.iv
event:
  key: body.key
routes:
  - to: [sink]
`)
	code, out, errOut = runBin(t, dir, childEnv(), "check")
	if code != 1 || !regexp.MustCompile(`locked\.yaml:\d+: decrypt\.key_encoding: .*base65`).MatchString(errOut) {
		t.Errorf("check with a disabled provider's bad decrypt.key_encoding: exit %d, want 1 naming it\n%s%s", code, out, errOut)
	}

	// A basic user name that can never log in, its password missing.
	write("locked", `name: locked
paths: [/in/locked]
verify:
  - kind: basic
    users: { "lender:1": env:`+missingEnv+` }
event:
  key: body.key
routes:
  - to: [sink]
`)
	code, out, errOut = runBin(t, dir, childEnv(), "check")
	if code != 1 || !regexp.MustCompile(`locked\.yaml:\d+: verify\[0\]\.users: user name "lender:1"`).MatchString(errOut) {
		t.Errorf("check with a disabled provider's basic user name holding ':': exit %d, want 1 naming it\n%s%s", code, out, errOut)
	}
}

// TestCheckRefusesPasswordThatEndsTheHost: a destination password written
// with a "/", "?" or "#" ends the URL's authority early, so what follows
// reads as the path, query or fragment, where masking does not look for a
// password: check printed "http://relay:PA/SS...@host". It is a
// configuration error now, whose message does not quote the URL.
func TestCheckRefusesPasswordThatEndsTheHost(t *testing.T) {
	for _, pass := range []string{"pa/ssCANARY", "pa?ssCANARY", "pa#ssCANARY"} {
		dir := t.TempDir()
		must(t, os.MkdirAll(filepath.Join(dir, "providers.d"), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte("listen: \"127.0.0.1:1\"\nadmin: { listen: \"127.0.0.1:2\" }\n"+
			"destinations:\n  sink:\n    url: \"http://relay:"+pass+"@127.0.0.1:3/x\"\n"), 0o644))
		code, out, errOut := runBin(t, dir, childEnv(), "check")
		if code != 1 || !strings.Contains(errOut, "relay.yaml:5: destinations.sink.url: the host and port do not parse") ||
			strings.Contains(out+errOut, "CANARY") {
			t.Errorf("check with password %q: exit %d, want 1 naming destinations.sink.url without the password\n%s%s", pass, code, out, errOut)
		}
	}
}

// TestCheckMasksSecretURLPath: a destination URL given as a secret (a
// Slack-style URL whose path is the credential) is shown by check with its
// path masked, as the admin API and attempt records show it.
func TestCheckMasksSecretURLPath(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "providers.d"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte("listen: \"127.0.0.1:1\"\nadmin: { listen: \"127.0.0.1:2\" }\n"+
		"destinations:\n  sink:\n    url: env:SINK_URL\n"), 0o644))
	env := append(childEnv(), "SINK_URL=http://127.0.0.1:3/services/T0/B0/CANARYpathSecret")
	code, out, errOut := runBin(t, dir, env, "check")
	if code != 0 || strings.Contains(out+errOut, "CANARY") || !strings.Contains(out, "http://127.0.0.1:3/") {
		t.Errorf("check: exit %d, want 0 and the URL's host without its secret path\n%s%s", code, out, errOut)
	}
}
