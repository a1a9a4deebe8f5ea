package engine

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// loadErr writes the configuration and returns Load's error text.
func loadErr(t *testing.T, relay string, providers map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	writeConfig(t, dir, relay, providers)
	_, err := Load(filepath.Join(dir, "relay.yaml"), true)
	if err == nil {
		t.Fatal("Load accepted a bad configuration")
	}
	return strings.ReplaceAll(err.Error(), filepath.ToSlash(dir)+"/", "")
}

func TestConfigErrorsCarryFileAndLine(t *testing.T) {
	base := relayYAML("http://127.0.0.1:1/x", "")
	cases := []struct {
		name      string
		relay     string
		providers map[string]string
		want      string // regexp
	}{
		{"unknown relay field", base + "bogus: 1\n", nil, `^relay\.yaml:7: bogus: unknown field`},
		{"unknown nested relay field", base + "    colour: blue\n", nil, `relay\.yaml:7: destinations\.dest\.colour: unknown field`},
		{"bad duration", base + "shutdown_timeout: soon\n", nil, `relay\.yaml:7: shutdown_timeout: .*invalid duration`},
		{"bad retry_on", base + "    retry: { retry_on: [teapot] }\n", nil, `relay\.yaml:7: destinations\.dest\.retry\.retry_on\[0\]: "teapot"`},
		{"bad auth kind", base + "    auth: { kind: magic }\n", nil, `relay\.yaml:7: destinations\.dest\.auth\.kind: "magic" is not one of`},
		{"open admin off loopback", strings.Replace(base, "127.0.0.1:19090", "0.0.0.0:19090", 1), nil, `relay\.yaml:2: admin\.listen: .* admin\.token must be set`},
		{"missing relay secret", base + "    auth: { kind: bearer, token: env:HOOKRELAY_TEST_UNSET_VAR }\n", nil,
			`relay\.yaml:7: destinations\.dest\.auth\.token: environment variable HOOKRELAY_TEST_UNSET_VAR is not set`},
		{"unknown provider field", base, map[string]string{"p": plainProvider + "colour: blue\n"}, `providers\.d/p\.yaml:13: colour: unknown field`},
		{"unknown verifier kind", base, map[string]string{"p": strings.Replace(plainProvider, "kind: bearer", "kind: telepathy", 1)},
			`providers\.d/p\.yaml:4: verify\[0\]: unknown verifier kind "telepathy"`},
		{"unknown verifier field", base, map[string]string{"p": strings.Replace(plainProvider, "token: t0ken", "token: t0ken\n    tokne: x", 1)},
			`providers\.d/p\.yaml:6: verify\[0\]\.tokne: unknown field`},
		{"verifier config error", base, map[string]string{"p": strings.Replace(plainProvider, "token: t0ken", "tokens: []", 1)},
			`providers\.d/p\.yaml:\d+: verify\[0\]`},
		{"bad expression", base, map[string]string{"p": strings.Replace(plainProvider, "key: body.key", "key: body.key +", 1)},
			`providers\.d/p\.yaml:8: event\.key: `},
		{"missing key", base, map[string]string{"p": strings.Replace(plainProvider, "key: body.key", "", 1)},
			`providers\.d/p\.yaml:\d+: event\.key: required`},
		{"bad data expression", base, map[string]string{"p": strings.Replace(plainProvider, "n: body.n", "n: body.n )", 1)},
			`providers\.d/p\.yaml:10: event\.data\.n: `},
		{"route to unknown destination", base, map[string]string{"p": strings.Replace(plainProvider, "to: [dest]", "to: [nowhere]", 1)},
			`providers\.d/p\.yaml:12: routes\[0\]\.to: unknown destination "nowhere"`},
		{"route when not bool", base, map[string]string{"p": strings.Replace(plainProvider, "- to: [dest]", "- when: event.key\n    to: [dest]", 1)},
			`providers\.d/p\.yaml:12: routes\[0\]\.when: `},
		{"empty verify list", base, map[string]string{"p": strings.Replace(plainProvider, "verify:\n  - kind: bearer\n    token: t0ken", "verify: []", 1)},
			`providers\.d/p\.yaml:3: verify: an empty list must be written`},
		{"duplicate paths", base, map[string]string{"a": plainProvider, "b": plainProvider}, `providers\.d/b\.yaml:2: paths: /in/plain is also a path of`},
		{"required secret", base, map[string]string{"p": strings.Replace(plainProvider, "token: t0ken", "token: env:HOOKRELAY_TEST_UNSET_VAR", 1) + "required: true\n"},
			`providers\.d/p\.yaml:5: verify\[0\]\.token: environment variable HOOKRELAY_TEST_UNSET_VAR is not set`},
		{"bad path", base, map[string]string{"p": strings.Replace(plainProvider, "/in/plain", "in/plain/", 1)}, `providers\.d/p\.yaml:2: paths\[0\]: "in/plain/" must start with /`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := loadErr(t, c.relay, c.providers)
			if !regexp.MustCompile(c.want).MatchString(got) {
				t.Errorf("error\n%s\ndoes not match\n%s", got, c.want)
			}
		})
	}
}

func TestConfigReportsEveryProblem(t *testing.T) {
	bad := strings.Replace(plainProvider, "to: [dest]", "to: [nowhere]", 1) + "colour: blue\n"
	got := loadErr(t, relayYAML("http://127.0.0.1:1/x", "")+"bogus: 1\n", nil)
	if !strings.Contains(got, "bogus") {
		t.Fatal(got)
	}
	got = loadErr(t, relayYAML("http://127.0.0.1:1/x", ""), map[string]string{"p": bad, "q": strings.Replace(plainProvider, "/in/plain", "/in/q", 1) + "x: 1\n"})
	for _, want := range []string{"colour: unknown field", "q.yaml:13: x: unknown field"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
}

func TestConfigSecretsAndOverrides(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "token.txt"), []byte("from-file\n"), 0o600))
	t.Setenv("HOOKRELAY_TEST_TOKEN", "from-env")
	t.Setenv("HOOKRELAY_DESTINATIONS__DEST__URL", "http://127.0.0.1:2/overridden")
	t.Setenv("HOOKRELAY_SPOOL__MAX_BODY", "2KiB")
	t.Setenv("HOOKRELAY_ADMIN_TOKEN", "default-admin-token")
	relay := relayYAML("http://127.0.0.1:1/x", "    auth: { kind: bearer, token: file:token.txt }\n")
	writeConfig(t, dir, relay, map[string]string{
		"p":   strings.Replace(plainProvider, "token: t0ken", "token: env:HOOKRELAY_TEST_TOKEN", 1),
		"off": strings.Replace(strings.Replace(plainProvider, "token: t0ken", "token: env:HOOKRELAY_TEST_UNSET_VAR", 1), "/in/plain", "/in/off", 1),
	})
	cfg, err := Load(filepath.Join(dir, "relay.yaml"), true)
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Destinations["dest"]
	if d.Config.URL != "http://127.0.0.1:2/overridden" {
		t.Errorf("env override of url: got %q", d.Config.URL)
	}
	if d.Config.Auth.Token != "from-file" {
		t.Errorf("file secret: got %q", d.Config.Auth.Token)
	}
	if cfg.Spool.MaxBody != 2048 {
		t.Errorf("max_body override: got %d", cfg.Spool.MaxBody)
	}
	if cfg.Admin.Token != "default-admin-token" {
		t.Errorf("admin.token must default to env:HOOKRELAY_ADMIN_TOKEN (SPEC 2), got %q", cfg.Admin.Token)
	}
	if cfg.Spool.Path != filepath.Join(dir, "spool.db") {
		t.Errorf("spool path not relative to the config: %q", cfg.Spool.Path)
	}
	byName := map[string]*Provider{}
	for _, p := range cfg.Providers {
		byName[p.Name] = p
	}
	if byName["p"].Disabled != "" {
		t.Errorf("p disabled: %s", byName["p"].Disabled)
	}
	if !strings.Contains(byName["off"].Disabled, "HOOKRELAY_TEST_UNSET_VAR") {
		t.Errorf("off should be disabled naming the variable, got %q", byName["off"].Disabled)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "HOOKRELAY_TEST_UNSET_VAR") {
		t.Errorf("warnings: %q", cfg.Warnings)
	}
	// The display copy keeps the reference, never the secret.
	if v := byName["p"].Display["verify"].([]any)[0].(map[string]any)["token"]; v != "env:HOOKRELAY_TEST_TOKEN" {
		t.Errorf("display config holds %q", v)
	}
}

func TestConfigDefaultsWithoutFile(t *testing.T) {
	// Without relay.yaml, ./providers.d is the working directory's, and it
	// must exist (SPEC 2): make run works in the repository.
	dir := t.TempDir()
	t.Chdir(dir)
	if _, err := Load(filepath.Join(dir, "relay.yaml"), false); err == nil || !strings.Contains(err.Error(), "providers_dir: ") {
		t.Errorf("defaults without ./providers.d: %v, want a providers_dir error", err)
	}
	must(t, os.Mkdir("providers.d", 0o755))
	cfg, err := Load(filepath.Join(dir, "relay.yaml"), false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != ":8080" || cfg.Admin.Listen != "127.0.0.1:9090" || cfg.Destinations["broker"] == nil {
		t.Errorf("defaults: listen %q admin %q dests %v", cfg.Listen, cfg.Admin.Listen, cfg.Destinations)
	}
	if _, err := Load(filepath.Join(dir, "relay.yaml"), true); err == nil {
		t.Error("an explicit missing config file must be an error")
	}
}

func TestConfigDottedTypeKeys(t *testing.T) {
	dir := t.TempDir()
	p := strings.Replace(plainProvider, "type: body.type", "type: body.type\n  types: { invoice.paid: billing.paid }", 1)
	writeConfig(t, dir, relayYAML("http://127.0.0.1:1/x", ""), map[string]string{"p": p})
	cfg, err := Load(filepath.Join(dir, "relay.yaml"), true)
	if err != nil {
		t.Fatal(err)
	}
	types, _ := cfg.Providers[0].Display["event"].(map[string]any)["types"].(map[string]any)
	if got := types["invoice.paid"]; got != "billing.paid" {
		t.Errorf("types[invoice.paid] = %q; keys with dots must stay whole", got)
	}
}

// shippedEnv holds a value for every secret the shipped providers.d reads.
var shippedEnv = map[string]string{
	"EXAMPLE_WEBHOOK_SECRET": "example-secret", "AVIDA_BASIC_PASSWORD": "avida-pass", "GITHUB_WEBHOOK_SECRET": "github-secret",
	"KOMPAR_AES_KEY": "0123456789abcdef0123456789abcdef", "KOMPAR_WEBHOOK_TOKEN": "xxxxx-yyyyy-zzzzz",
	"NORDISKA_SIGNING_SECRET": "nordiska-secret", "NORDISKA_AUTH_TOKEN": "nordiska-token",
	"STANDARD_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "STRIPE_WEBHOOK_SECRET": "whsec_stripe",
	"RESURS_JWKS_URL": "http://127.0.0.1:1/jwks", "RESURS_JWKS_APIKEY": "resurs-apikey",
	"RESURS_API_URL": "http://127.0.0.1:1/status", "RESURS_API_USERNAME": "resurs-user", "RESURS_API_PASSWORD": "resurs-password",
}

func TestShippedProvidersLoad(t *testing.T) {
	for k, v := range shippedEnv {
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	relay := relayYAML("http://127.0.0.1:1/x", "") + "  broker: { url: \"http://127.0.0.1:1/b\" }\nproviders_dir: " + mustAbs(t, "../providers.d") + "\n"
	writeConfig(t, dir, relay, nil)
	cfg, err := Load(filepath.Join(dir, "relay.yaml"), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Providers) == 0 {
		t.Fatal("no shipped providers")
	}
	for _, p := range cfg.Providers {
		if p.Disabled != "" {
			t.Errorf("%s disabled: %s", p.Name, p.Disabled)
		}
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	must(t, err)
	return a
}
