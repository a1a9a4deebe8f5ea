package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// regProviderYAML is enabled, but its register block lacks public_url.
const regProviderYAML = `name: reg
paths: [/in/reg]
verify:
  - kind: hmac
    secret: env:` + secretEnv + `
    algorithm: sha256
    signed: "{body}"
    signature: { header: X-Signature, encoding: hex }
event:
  id: body.id
  key: body.key
routes:
  - to: [sink]
register:
  public_url: env:HOOKRELAY_CRASHTEST_PUBLIC_URL
  requests:
    - method: POST
      url: "http://127.0.0.1:1/hooks"
      body: '{"url": "{{ public_url }}/in/reg"}'
`

// logLines reads a JSON log, skipping the test's start markers.
func logLines(t *testing.T, file string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(file)
	must(t, err)
	var out []map[string]any
	for _, line := range strings.Split(string(b), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// jsonLog switches a relay's log to JSON at info level.
func jsonLog(t *testing.T, r *relayProc) {
	t.Helper()
	p := filepath.Join(r.dir, "relay.yaml")
	b, err := os.ReadFile(p)
	must(t, err)
	must(t, os.WriteFile(p, []byte(strings.Replace(string(b), "log: { level: warn, format: text }", "log: { level: info, format: json }", 1)), 0o644))
}

// TestStartupSaysWhatItServes: one line per provider at start, with its
// paths and state; a disabled provider's missing variable is named once.
func TestStartupSaysWhatItServes(t *testing.T) {
	r := newRelay(t, "http://127.0.0.1:1", map[string]string{"crash": providerYAML, "locked": lockedProviderYAML, "reg": regProviderYAML})
	jsonLog(t, r)
	must(t, r.start())
	if code, _, err := r.terminate(r.timeout + 5*time.Second); err != nil || code != 0 {
		t.Fatalf("SIGTERM: status %d, %v", code, err)
	}
	byProvider := map[string][]map[string]any{}
	for _, l := range logLines(t, r.log.Name()) {
		if p, ok := l["provider"].(string); ok && strings.HasPrefix(l["msg"].(string), "provider ") {
			byProvider[p] = append(byProvider[p], l)
		}
	}
	for name, want := range map[string]string{"crash": "provider enabled", "locked": "provider disabled", "reg": "provider enabled"} {
		if len(byProvider[name]) != 1 || byProvider[name][0]["msg"] != want {
			t.Errorf("provider %s: start-up lines %v, want one %q", name, byProvider[name], want)
			continue
		}
		if paths := fmt.Sprint(byProvider[name][0]["paths"]); !strings.Contains(paths, "/in/"+name) {
			t.Errorf("provider %s: line without its paths: %v", name, byProvider[name][0])
		}
	}
	if l := byProvider["locked"]; len(l) == 1 && (l[0]["level"] != "WARN" || !strings.Contains(fmt.Sprint(l[0]["reason"]), missingEnv)) {
		t.Errorf("disabled provider's line: %v", l[0])
	}
	if l := byProvider["reg"]; len(l) == 1 && !strings.Contains(fmt.Sprint(l[0]["register"]), "unavailable: register.public_url: environment variable HOOKRELAY_CRASHTEST_PUBLIC_URL") {
		t.Errorf("reg's line does not say why it cannot register: %v", l[0])
	}
	if l := byProvider["crash"]; len(l) == 1 && l[0]["register"] != nil {
		t.Errorf("crash has no register block, but its line says %v", l[0])
	}
	b, _ := os.ReadFile(r.log.Name())
	if n := strings.Count(string(b), missingEnv); n != 1 {
		t.Errorf("the missing variable is named %d times, want once:\n%s", n, b)
	}
	if strings.Contains(string(b), testSecret) {
		t.Errorf("the log holds the secret")
	}
}

// TestPortInUse: a port in use is the first and only error, and nothing
// was opened before it.
func TestPortInUse(t *testing.T) {
	r := newRelay(t, "http://127.0.0.1:1", map[string]string{"crash": providerYAML})
	ln, err := net.Listen("tcp", strings.TrimPrefix(r.admin, "http://"))
	must(t, err)
	defer func() { _ = ln.Close() }() // held only to make the port busy
	code, out, errOut := runBin(t, r.dir, r.env, "serve", "--config", filepath.Join(r.dir, "relay.yaml"))
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	var errors []string
	for _, line := range strings.Split(errOut, "\n") {
		if strings.Contains(line, "level=ERROR") {
			errors = append(errors, line)
		}
	}
	if len(errors) != 1 || !strings.Contains(errors[0], "address already in use") {
		t.Errorf("error lines %q, want one naming the port in use; log:\n%s", errors, errOut)
	}
	if strings.Contains(errOut, "level=WARN") {
		t.Errorf("warnings before the error:\n%s", errOut)
	}
	if fileExists(r.spool) {
		t.Errorf("the spool was opened before the listeners")
	}
}
