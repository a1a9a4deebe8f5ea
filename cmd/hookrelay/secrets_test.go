package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestEmptyKeysRefusedAtLoad runs the binary: a Standard Webhooks secret of
// just "whsec_" (an empty key anyone can sign with) and an admin token read
// from an empty file (which used to leave the admin API open) stop `check`
// and `serve` with file:line errors; a short HMAC key is a warning.
func TestEmptyKeysRefusedAtLoad(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "providers.d"), 0o755))
	shipped, err := os.ReadFile(filepath.Join("..", "..", "providers.d", "standard-webhooks.yaml"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "providers.d", "standard-webhooks.yaml"), shipped, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "admin.token"), nil, 0o600))
	in, adm := freePorts(t)
	relay := func(admin string) string {
		return fmt.Sprintf("listen: \"127.0.0.1:%d\"\nadmin: { listen: \"127.0.0.1:%d\"%s }\nspool: { path: ./spool.db }\n"+
			"destinations:\n  broker: { url: \"http://127.0.0.1:1/x\" }\n", in, adm, admin)
	}
	run := func(t *testing.T, secret string, args ...string) (int, string, string) {
		t.Helper()
		return runBin(t, dir, childEnv("STANDARD_WEBHOOK_SECRET="+secret), args...)
	}
	good := "whsec_" + base64.StdEncoding.EncodeToString([]byte("a key of thirty-two bytes, good."))

	t.Run("whsec_ alone", func(t *testing.T) {
		must(t, os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte(relay("")), 0o644))
		for _, cmd := range []string{"check", "serve"} {
			code, out, errOut := run(t, "whsec_", cmd)
			if code != 1 {
				t.Errorf("%s: exit %d, want 1\n%s%s", cmd, code, out, errOut)
			}
			if !regexp.MustCompile(`providers\.d/standard-webhooks\.yaml:\d+: verify\[0\]\.secret: the key is empty`).MatchString(errOut) {
				t.Errorf("%s: stderr does not name the empty key:\n%s", cmd, errOut)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "spool.db")); err == nil {
			t.Error("serve opened the spool with a refused configuration")
		}
	})

	t.Run("admin token from an empty file", func(t *testing.T) {
		must(t, os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte(relay(", token: file:admin.token")), 0o644))
		for _, cmd := range []string{"check", "serve"} {
			code, out, errOut := run(t, good, cmd)
			if code != 1 {
				t.Errorf("%s: exit %d, want 1\n%s%s", cmd, code, out, errOut)
			}
			if !regexp.MustCompile(`relay\.yaml:2: admin\.token: secret file \S*admin\.token is empty`).MatchString(errOut) {
				t.Errorf("%s: stderr does not name the empty admin token file:\n%s", cmd, errOut)
			}
		}
	})

	t.Run("short key warns", func(t *testing.T) {
		must(t, os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte(relay("")), 0o644))
		short := "whsec_" + base64.StdEncoding.EncodeToString([]byte("8 bytes!"))
		code, out, errOut := run(t, short, "check")
		if code != 0 {
			t.Fatalf("check: exit %d, want 0\n%s%s", code, out, errOut)
		}
		if !regexp.MustCompile(`(?m)^warning: providers\.d/standard-webhooks\.yaml:\d+: verify\[0\]\.secret: the key is shorter than 16 bytes`).MatchString(errOut) {
			t.Errorf("check does not warn about the short key:\n%s", errOut)
		}
		if strings.Contains(out+errOut, short) || strings.Contains(out+errOut, "8 bytes!") {
			t.Errorf("check printed the key:\n%s%s", out, errOut)
		}
		code, out, errOut = run(t, good, "check")
		// (Not "warning:" at all: a relay.yaml without privacy: is warned
		// about too.)
		if code != 0 || strings.Contains(errOut, "shorter than") {
			t.Errorf("check with a 32-byte key: exit %d, warnings:\n%s%s", code, out, errOut)
		}
	})
}
