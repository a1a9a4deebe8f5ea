package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
