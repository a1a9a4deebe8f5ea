package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDecodeIsTheWrittenPart: Decode reads relay.yaml alone (no provider
// file, no providers_dir, no compiled destination), fills the defaults
// written once here, and names a problem's file and line.
func TestDecodeIsTheWrittenPart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.yaml")
	yaml := "listen: 127.0.0.1:18080\nproviders_dir: ./nowhere\ndestinations:\n  d:\n    url: \"{{ not compiled here\"\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Decode(path, true)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if cfg.MaxInflight != DefaultMaxInflight || cfg.ProvidersDir != filepath.Join(dir, "nowhere") {
		t.Errorf("max_inflight %d, providers_dir %q", cfg.MaxInflight, cfg.ProvidersDir)
	}
	if cfg.Destinations["d"].URL != "{{ not compiled here" || cfg.AsWritten()["listen"] != "127.0.0.1:18080" {
		t.Errorf("destination %+v, as written %v", cfg.Destinations["d"], cfg.AsWritten())
	}

	t.Setenv("HOOKRELAY_TEST_UNSET_SECRET", "")
	_ = os.Unsetenv("HOOKRELAY_TEST_UNSET_SECRET")
	yaml = "listen: 127.0.0.1:18080\ndestinations:\n  d:\n    url: env:HOOKRELAY_TEST_UNSET_SECRET\n    retry: { often: true }\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Decode(path, true)
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Decode: %v, want *Errors", err)
	}
	got := strings.Join(errs.Problems(), "\n")
	for _, want := range []string{
		filepath.ToSlash(path) + ":4: destinations.d.url: environment variable HOOKRELAY_TEST_UNSET_SECRET is not set",
		filepath.ToSlash(path) + ":5: destinations.d.retry.often: unknown field",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems do not say %q:\n%s", want, got)
		}
	}
}

// TestReadProviderDecodesOnce: a provider file is decoded once, with its
// secrets resolved, and that decode's error is the answer: a value a
// secret gives that does not fit its field is refused at its line, quoting
// the file as written, never the secret; one that fits is taken.
func TestReadProviderDecodesOnce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.yaml")
	yaml := "name: p\npaths: [/in]\ndedup: env:HOOKRELAY_TEST_DEDUP\nregister:\n  public_url: env:HOOKRELAY_TEST_URL\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOOKRELAY_TEST_URL", "https://relay.example")
	t.Setenv("HOOKRELAY_TEST_DEDUP", "not-a-duration-s3cret")
	_, err := ReadProvider(path)
	if err == nil || !strings.Contains(err.Error(), ":3: ") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("a secret that is no duration: %v; want an error at line 3 that does not quote it", err)
	}
	t.Setenv("HOOKRELAY_TEST_DEDUP", "90m")
	pf, err := ReadProvider(path)
	if err != nil {
		t.Fatal(err)
	}
	if pf.Resolved.Dedup != 90*time.Minute || pf.Resolved.Register.PublicURL != "https://relay.example" {
		t.Errorf("resolved: dedup %v, public_url %q", pf.Resolved.Dedup, pf.Resolved.Register.PublicURL)
	}
	if got := pf.WrittenString("register", "public_url"); got != "env:HOOKRELAY_TEST_URL" {
		t.Errorf("public_url as written: %q", got)
	}
}

// TestMaxInflightDefault: max_inflight unset or 0 is DefaultMaxInflight,
// applied here once; ingest reads the number as decoded.
func TestMaxInflightDefault(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want int
	}{{"", DefaultMaxInflight}, {"max_inflight: 0\n", DefaultMaxInflight}, {"max_inflight: 7\n", 7}} {
		dir := t.TempDir()
		path := filepath.Join(dir, "relay.yaml")
		if err := os.WriteFile(path, []byte("providers_dir: ./nowhere\n"+tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Decode(path, true)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.MaxInflight != tc.want {
			t.Errorf("%q: max_inflight %d, want %d", tc.yaml, cfg.MaxInflight, tc.want)
		}
	}
}
