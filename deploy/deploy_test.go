// Package deploy holds no code: its test keeps the example deployment files
// (alert rules, dashboard, Dockerfile, Kubernetes manifests, systemd unit)
// true to the relay they deploy. `make deploy-check` runs it with promtool,
// systemd-analyze and an image build.
package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestFilesParse: every YAML (every document of it) and JSON file in deploy/
// parses.
func TestFilesParse(t *testing.T) {
	n := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch filepath.Ext(path) {
		case ".yaml", ".yml":
			n++
			yamlDocs(t, path)
		case ".json":
			n++
			var v any
			if err := json.Unmarshal(read(t, path), &v); err != nil {
				t.Errorf("%s: %v", path, err)
			}
		}
		return nil
	})
	must(t, err)
	if n < 5 {
		t.Errorf("only %d YAML and JSON files found in deploy/", n)
	}
}

// TestSystemdUnit: the unit runs `serve` unprivileged with its spool in the
// state directory, hardened, and waits longer than shutdown_timeout's default
// for a drain. `make deploy-check` also runs systemd-analyze verify.
func TestSystemdUnit(t *testing.T) {
	service := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(read(t, "systemd/hookrelay.service")))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, _ := strings.Cut(line, "=")
			service[k] = append(service[k], v)
		}
	}
	for k, v := range map[string]string{"DynamicUser": "yes", "StateDirectory": "hookrelay", "ProtectSystem": "strict",
		"NoNewPrivileges": "yes", "ProtectHome": "yes", "PrivateTmp": "yes", "CapabilityBoundingSet": ""} {
		if got := service[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s=%v, want %s", k, got, v)
		}
	}
	if env := service["Environment"]; !slices.Contains(env, "HOOKRELAY_SPOOL__PATH=%S/hookrelay/hookrelay.db") {
		t.Errorf("Environment=%v: want the spool in StateDirectory, the only writable place", env)
	}
	if exec := service["ExecStart"]; len(exec) != 1 || !strings.Contains(exec[0], " serve ") {
		t.Errorf("ExecStart=%v", exec)
	}
	stop, err := time.ParseDuration(strings.Join(service["TimeoutStopSec"], ""))
	if err != nil || stop <= 20*time.Second {
		t.Errorf("TimeoutStopSec=%v: want more than the default shutdown_timeout 20s", service["TimeoutStopSec"])
	}
}

// TestVersionFromLdflags: the -X flag `make build` passes reaches `hookrelay
// version` and hookrelay_build_info alike.
func TestVersionFromLdflags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	mk := string(read(t, "../Makefile"))
	m := regexp.MustCompile(`(?m)^LDFLAGS := (.*\$\(VERSION\).*\$\(REVISION\).*)$`).FindStringSubmatch(mk)
	if m == nil {
		t.Fatal("Makefile sets no LDFLAGS := -X ...=$(VERSION) -X ...=$(REVISION)")
	}
	const version, revision = "v9.8.7-3-gdeadbee-dirty", "deadbee0123456789abcdef0123456789abcdef0"
	ldflags := strings.NewReplacer("$(VERSION)", version, "$(REVISION)", revision).Replace(m[1])
	bin := filepath.Join(t.TempDir(), "hookrelay")
	build := exec.Command(goTool(), "build", "-ldflags", ldflags, "-o", bin, "../cmd/hookrelay")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if want := "hookrelay " + version + " (revision " + revision + ", "; err != nil || !strings.HasPrefix(string(out), want) {
		t.Fatalf("hookrelay version: %q, %v; want it to start with %q", out, err, want)
	}

	// The same binary serving: its /metrics says the same version.
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "providers.d"), 0o755))
	ingestPort, adminPort := freePort(t), freePort(t)
	for adminPort == ingestPort {
		adminPort = freePort(t)
	}
	relay := fmt.Sprintf("listen: 127.0.0.1:%d\nadmin: { listen: 127.0.0.1:%d }\nspool: { path: ./spool.db }\nproviders_dir: ./providers.d\n"+
		"destinations:\n  broker: { url: http://127.0.0.1:9/ }\n", ingestPort, adminPort)
	must(t, os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte(relay), 0o644))
	serve := exec.Command(bin, "serve", "--config", filepath.Join(dir, "relay.yaml"))
	serve.Dir = dir
	var logs bytes.Buffer
	serve.Stdout, serve.Stderr = &logs, &logs
	must(t, serve.Start())
	t.Cleanup(func() {
		_ = serve.Process.Kill()
		_ = serve.Wait()
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay not ready after 15s: %v\n%s", err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := map[string]string{}
	for _, m := range scrape(t, url)["hookrelay_build_info"].GetMetric() {
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
	}
	if got["version"] != version || got["revision"] != revision || got["goversion"] == "" {
		t.Errorf("hookrelay_build_info %v, want version %s, revision %s", got, version, revision)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	must(t, ln.Close()) // the port is free only once closed
	return port
}

// goTool is the go command of the toolchain running the tests.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// yamlDocs parses every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(read(t, path)))
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, d)
	}
}

// yamlInto decodes the keys v names from path and ignores the rest.
func yamlInto(t *testing.T, path string, v any) {
	t.Helper()
	if err := yaml.Unmarshal(read(t, path), v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// walkJSON calls f for every string value in v with the key that holds it.
func walkJSON(v any, f func(key, value string)) {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if s, ok := v[k].(string); ok {
				f(k, s)
			} else {
				walkJSON(v[k], f)
			}
		}
	case []any:
		for _, x := range v {
			walkJSON(x, f)
		}
	}
}

// get walks maps by key.
func get(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any, path ...string) string {
	s, _ := get(v, path...).(string)
	return s
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return b
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
