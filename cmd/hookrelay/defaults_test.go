package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDisabledProvider: a provider whose secret variable is missing does not
// stop the relay; its path answers 503 and /readyz lists it.
func TestDisabledProvider(t *testing.T) {
	sk := &sink{}
	dest := httptest.NewServer(sk)
	t.Cleanup(dest.Close)
	r := newRelay(t, dest.URL, map[string]string{"crash": providerYAML, "locked": lockedProviderYAML})
	must(t, r.start())
	c := &http.Client{Timeout: 5 * time.Second}

	req, err := signedRequest(context.Background(), r.ingest+"/in/locked", eventBody("k", 0))
	must(t, err)
	resp, err := c.Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("POST /in/locked: status %d, want 503", resp.StatusCode)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Errorf("POST /in/locked: 503 without Retry-After")
	}

	req, err = signedRequest(context.Background(), r.ingest+providerPath, eventBody("k", 0))
	must(t, err)
	resp, err = c.Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("POST %s (enabled provider): status %d, want 200", providerPath, resp.StatusCode)
	}

	resp, err = c.Get(r.admin + "/readyz")
	must(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /readyz: status %d, want 200: %s", resp.StatusCode, body)
	}
	var ready struct {
		Disabled []string `json:"disabled_providers"`
	}
	if err := json.Unmarshal(body, &ready); err != nil {
		t.Fatalf("GET /readyz: %v: %s", err, body)
	}
	// SPEC 6: /readyz names disabled providers and nothing more; the
	// variable's name is in the start-up log and /admin/providers.
	if !slices.Contains(ready.Disabled, "locked") {
		t.Errorf("GET /readyz does not list provider locked: %s", body)
	}
	if bytes.Contains(body, []byte(missingEnv)) {
		t.Errorf("GET /readyz names the variable %s: %s", missingEnv, body)
	}
	if slices.Contains(ready.Disabled, "crash") {
		t.Errorf("GET /readyz lists the enabled provider crash as disabled: %s", body)
	}
	if log, _ := os.ReadFile(r.log.Name()); !bytes.Contains(log, []byte(missingEnv)) {
		t.Errorf("start-up log does not warn about %s:\n%s", missingEnv, log)
	}
	if code, _, err := r.terminate(r.timeout + 5*time.Second); err != nil || code != 0 {
		t.Errorf("SIGTERM: status %d, %v", code, err)
	}
}

// runBin runs the binary in dir and returns its exit code and output.
func runBin(t *testing.T, dir string, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Dir, cmd.Env = dir, env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("hookrelay %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// copyDir copies the regular files of a tree.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	must(t, filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	}))
}

// TestDefaults runs the binary in a directory with the shipped providers.d
// and no relay.yaml: `check` on built-in defaults, config errors, and
// `serve` on the defaults with only the listeners and the broker URL moved.
func TestDefaults(t *testing.T) {
	const secret = "defaults-test-secret-77ab"
	dir := t.TempDir()
	copyDir(t, filepath.Join("..", "..", "providers.d"), filepath.Join(dir, "providers.d"))
	env := childEnv("EXAMPLE_WEBHOOK_SECRET=" + secret)

	t.Run("check", func(t *testing.T) {
		code, out, errOut := runBin(t, dir, env, "check")
		if code != 0 {
			t.Fatalf("check: exit %d\n%s%s", code, out, errOut)
		}
		for _, re := range []string{`(?m)^config built-in defaults`, `(?m)^provider\s+example\s.*\bok$`, `(?m)^destination\s+broker\s+http://127\.0\.0\.1:3000/lender-events$`} {
			if !regexp.MustCompile(re).MatchString(out) {
				t.Errorf("check output does not match %s:\n%s", re, out)
			}
		}
		if strings.Contains(out+errOut, secret) {
			t.Errorf("check printed the secret:\n%s%s", out, errOut)
		}
		if fileExists(filepath.Join(dir, "data")) {
			t.Errorf("check created the spool directory")
		}
	})

	t.Run("check without the secret", func(t *testing.T) {
		code, out, errOut := runBin(t, dir, childEnv(), "check")
		if code != 0 {
			t.Fatalf("check: exit %d, want 0 (the provider loads disabled)\n%s%s", code, out, errOut)
		}
		if !regexp.MustCompile(`(?m)^provider\s+example\s.*EXAMPLE_WEBHOOK_SECRET`).MatchString(out + errOut) {
			t.Errorf("check does not warn that example lacks EXAMPLE_WEBHOOK_SECRET:\n%s%s", out, errOut)
		}
	})

	t.Run("missing config", func(t *testing.T) {
		code, out, errOut := runBin(t, dir, env, "check", "--config", "missing.yaml")
		if code != 1 {
			t.Errorf("check --config missing.yaml: exit %d, want 1\n%s%s", code, out, errOut)
		}
		if !strings.Contains(errOut, "missing.yaml") {
			t.Errorf("check --config missing.yaml: error does not name the file: %q", errOut)
		}
	})

	t.Run("unknown field", func(t *testing.T) {
		for _, tc := range []struct {
			name, yaml, line, field string
		}{
			{"top level", "listen: \"127.0.0.1:1\"\nadmin:\n  listen: \"127.0.0.1:2\"\ncolour: blue\n",
				"relay.yaml:4: ", "colour"},
			{"nested", "listen: \"127.0.0.1:1\"\nspool:\n  path: ./x.db\n  colour: blue\n",
				"relay.yaml:4: ", "spool.colour"},
			{"in a destination", "listen: \"127.0.0.1:1\"\ndestinations:\n  broker:\n    url: http://127.0.0.1:1/x\n    colour: blue\n",
				"relay.yaml:5: ", "colour"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				sub := t.TempDir()
				copyDir(t, filepath.Join(dir, "providers.d"), filepath.Join(sub, "providers.d"))
				must(t, os.WriteFile(filepath.Join(sub, "relay.yaml"), []byte(tc.yaml), 0o644))
				code, out, errOut := runBin(t, sub, env, "check")
				if code != 1 {
					t.Errorf("exit %d, want 1\n%s%s", code, out, errOut)
				}
				if !strings.HasPrefix(errOut, tc.line) || !strings.Contains(errOut, tc.field) {
					t.Errorf("stderr %q: want %q naming %s", errOut, tc.line+"...", tc.field)
				}
				if strings.Contains(out, "provider") {
					t.Errorf("check listed providers despite the error:\n%s", out)
				}
			})
		}
	})

	t.Run("serve", func(t *testing.T) {
		// No relay.yaml: built-in defaults, with the listeners and the broker
		// moved by environment overrides so that nothing uses the fixed ports.
		sk := &sink{}
		dest := httptest.NewServer(sk)
		t.Cleanup(dest.Close)
		sub := t.TempDir()
		copyDir(t, filepath.Join(dir, "providers.d"), filepath.Join(sub, "providers.d"))
		in, adm := freePorts(t)
		r := logTo(t, &relayProc{
			dir: sub, timeout: 20 * time.Second, args: []string{"serve"},
			ingest: fmt.Sprintf("http://127.0.0.1:%d", in), admin: fmt.Sprintf("http://127.0.0.1:%d", adm),
			env: append(childEnv("EXAMPLE_WEBHOOK_SECRET="+secret),
				fmt.Sprintf("HOOKRELAY_LISTEN=127.0.0.1:%d", in), fmt.Sprintf("HOOKRELAY_ADMIN__LISTEN=127.0.0.1:%d", adm),
				"HOOKRELAY_DESTINATIONS__BROKER__URL="+dest.URL+"/lender-events", "HOOKRELAY_LOG__LEVEL=warn"),
		}, filepath.Join(t.TempDir(), "relay.log"))
		must(t, r.start())
		if !fileExists(filepath.Join(sub, "data", "hookrelay.db")) {
			t.Errorf("spool not at ./data/hookrelay.db")
		}

		// The example provider's own scheme: "sha256=" + hex over "ts.body".
		body := []byte(`{"id":"evt-1","key":"order-42","type":"order.paid","data":{"amount":100}}`)
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(ts + "."))
		mac.Write(body)
		req, err := http.NewRequest(http.MethodPost, r.ingest+"/in/example", bytes.NewReader(body))
		must(t, err)
		req.Header.Set("X-Timestamp", ts)
		req.Header.Set("X-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /in/example: status %d", resp.StatusCode)
		}
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if a, _ := sk.snapshot(); len(a) > 0 {
				break
			}
		}
		if a, _ := sk.snapshot(); len(a) != 1 || a[0].ev.key != "order-42" {
			t.Errorf("broker got %+v, want the one event", a)
		} else if a[0].idem != "example:evt-1" {
			t.Errorf("Idempotency-Key %q, want example:evt-1", a[0].idem)
		}
		if code, _, err := r.terminate(25 * time.Second); err != nil || code != 0 {
			t.Errorf("SIGTERM: status %d, %v", code, err)
		}
	})
}
