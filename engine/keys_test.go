package engine

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// hmacProvider is a generic hmac provider whose secret line the cases replace.
const hmacProvider = `
paths: [/in/h]
verify:
  - kind: hmac
    secret: SECRET
    signature: { header: X-Sig }
event:
  key: body.key
  type: body.type
routes:
  - to: [dest]
`

// standardProvider is a Standard Webhooks provider whose secret line the cases replace.
const standardProvider = `
paths: [/in/std]
verify:
  - kind: hmac
    secret: SECRET
    signature: { format: standard }
event:
  key: body.key
  type: body.type
routes:
  - to: [dest]
`

// TestZeroLengthKeysRefused: a key that is empty, or decodes to nothing
// (whsec_ alone), is a configuration error for every verifier and signer:
// anyone could sign or present it. An empty variable, an empty file and ""
// count as missing secrets.
func TestZeroLengthKeysRefused(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.secret")
	must(t, os.WriteFile(empty, []byte("\n"), 0o600))
	t.Setenv("HOOKRELAY_TEST_EMPTY_VAR", "")
	good := "whsec_" + base64.StdEncoding.EncodeToString([]byte("a good thirty-two byte long key."))
	base := relayYAML("http://127.0.0.1:1/x", "")
	with := func(tmpl, secret string) map[string]string {
		return map[string]string{"p": strings.Replace(tmpl, "secret: SECRET", secret, 1)}
	}
	cases := []struct {
		name      string
		relay     string
		providers map[string]string
		want      string // regexp
	}{
		{"standard whsec_ alone", base, with(standardProvider, "secret: whsec_"),
			`providers\.d/p\.yaml:5: verify\[0\]\.secret: the key is empty`},
		{"standard whsec_ among secrets", base, with(standardProvider, "secrets: ["+good+", whsec_]"),
			`providers\.d/p\.yaml:5: verify\[0\]\.secrets\[1\]: the key is empty`},
		{"standard whsec_ from a variable", base, with(standardProvider, "secret: env:HOOKRELAY_TEST_WHSEC"),
			`verify\[0\]\.secret: the key is empty`},
		{"hmac empty", base, with(hmacProvider, `secret: ""`), `verify\[0\]\.secret: `},
		{"stripe empty in secrets", base, with(strings.Replace(standardProvider, "standard", "stripe", 1), `secrets: ["whsec_x", ""]`),
			`verify\[0\]\.secrets\[1\]: must not be empty`},
		{"token empty", base, map[string]string{"p": strings.Replace(plainProvider, "kind: bearer\n    token: t0ken", "kind: token\n    token: \"\"", 1)},
			`verify\[0\]\.token: `},
		{"bearer empty", base, map[string]string{"p": strings.Replace(plainProvider, "token: t0ken", `tokens: [t0ken, ""]`, 1)},
			`verify\[0\]\.tokens\[1\]: must not be empty`},
		{"basic empty password", base, map[string]string{"p": strings.Replace(plainProvider, "kind: bearer\n    token: t0ken", "kind: basic\n    users: { relay: \"\" }", 1)},
			`verify\[0\]\.users\.relay: password must not be empty`},
		{"apikey empty", base, map[string]string{"p": strings.Replace(plainProvider, "kind: bearer\n    token: t0ken", "kind: apikey\n    key: \"\"", 1)},
			`verify\[0\]\.key: `},
		{"required empty variable", base, map[string]string{"p": strings.Replace(plainProvider, "token: t0ken", "token: env:HOOKRELAY_TEST_EMPTY_VAR", 1) + "required: true\n"},
			`providers\.d/p\.yaml:5: verify\[0\]\.token: environment variable HOOKRELAY_TEST_EMPTY_VAR is empty`},
		{"required empty file", base, map[string]string{"p": strings.Replace(plainProvider, "token: t0ken", "token: file:"+empty, 1) + "required: true\n"},
			`providers\.d/p\.yaml:5: verify\[0\]\.token: secret file .*empty\.secret is empty`},
		{"sign whsec_ alone", relayYAML("http://127.0.0.1:1/x", "    sign: { secret: whsec_ }\n"), nil,
			`relay\.yaml:7: destinations\.dest\.sign\.secret: `},
		{"sign secret empty variable", relayYAML("http://127.0.0.1:1/x", "    sign: { secret: env:HOOKRELAY_TEST_EMPTY_VAR }\n"), nil,
			`relay\.yaml:7: destinations\.dest\.sign\.secret: environment variable HOOKRELAY_TEST_EMPTY_VAR is empty`},
		{"admin token empty file", strings.Replace(base, "admin: { listen: 127.0.0.1:19090 }", "admin: { listen: 127.0.0.1:19090, token: file:"+empty+" }", 1), nil,
			`relay\.yaml:2: admin\.token: secret file .*empty\.secret is empty`},
		{"admin token empty variable", strings.Replace(base, "admin: { listen: 127.0.0.1:19090 }", "admin: { listen: 127.0.0.1:19090, token: env:HOOKRELAY_TEST_EMPTY_VAR }", 1), nil,
			`relay\.yaml:2: admin\.token: environment variable HOOKRELAY_TEST_EMPTY_VAR is empty`},
		{"admin token written empty", strings.Replace(base, "admin: { listen: 127.0.0.1:19090 }", `admin: { listen: 127.0.0.1:19090, token: "" }`, 1), nil,
			`relay\.yaml:2: admin\.token: empty`},
	}
	t.Setenv("HOOKRELAY_TEST_WHSEC", "whsec_")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := loadErr(t, c.relay, c.providers)
			if !regexp.MustCompile(c.want).MatchString(got) {
				t.Errorf("error\n%s\ndoes not match\n%s", got, c.want)
			}
		})
	}

	// An empty variable disables a provider (it is missing), as an unset one does.
	writeConfig(t, dir, base, map[string]string{"p": strings.Replace(plainProvider, "token: t0ken", "token: env:HOOKRELAY_TEST_EMPTY_VAR", 1)})
	cfg, err := Load(filepath.Join(dir, "relay.yaml"), true)
	must(t, err)
	if !strings.Contains(cfg.Providers[0].Disabled, "HOOKRELAY_TEST_EMPTY_VAR is empty") {
		t.Errorf("provider with an empty secret variable: disabled %q", cfg.Providers[0].Disabled)
	}
}

// TestShortHMACKeyWarns: keys under 16 bytes load, with a warning naming the
// field (never the key), for verifiers and for a destination's sign secret.
func TestShortHMACKeyWarns(t *testing.T) {
	dir := t.TempDir()
	short := "whsec_" + base64.StdEncoding.EncodeToString([]byte("fifteen bytes.."))
	long := "whsec_" + base64.StdEncoding.EncodeToString([]byte("sixteen bytes..."))
	writeConfig(t, dir, relayYAML("http://127.0.0.1:1/x", "    sign: { secret: "+short+" }\n"), map[string]string{
		"p": strings.Replace(hmacProvider, "secret: SECRET", "secrets: [a-long-enough-secret, short-secret]", 1),
		"q": strings.Replace(strings.Replace(standardProvider, "secret: SECRET", "secret: "+long, 1), "/in/std", "/in/q", 1),
	})
	cfg, err := Load(filepath.Join(dir, "relay.yaml"), true)
	must(t, err)
	got := strings.ReplaceAll(strings.Join(cfg.Warnings, "\n"), filepath.ToSlash(dir)+"/", "")
	for _, re := range []string{
		`(?m)^relay\.yaml:7: destinations\.dest\.sign\.secret: the key is shorter than 16 bytes`,
		`(?m)^providers\.d/p\.yaml:5: verify\[0\]\.secrets\[1\]: the key is shorter than 16 bytes`,
	} {
		if !regexp.MustCompile(re).MatchString(got) {
			t.Errorf("warnings\n%s\ndo not match %s", got, re)
		}
	}
	if n := strings.Count(got, "shorter than"); n != 2 {
		t.Errorf("%d short-key warnings, want 2 (q's key is 16 bytes, p's first is long):\n%s", n, got)
	}
	if strings.Contains(got, "short-secret") || strings.Contains(got, short) {
		t.Errorf("a warning quotes the secret:\n%s", got)
	}
}
