package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSighupReloadAndLogs: SIGHUP reloads a changed provider file; a refused
// reload is logged with file:line and changes nothing; the JSON log has one
// line per ingest outcome and per final delivery, with ids and names, and
// never a secret or a body.
func TestSighupReloadAndLogs(t *testing.T) {
	s := &sink{}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	r := newRelay(t, srv.URL, map[string]string{"crash": providerYAML})
	cfgPath := filepath.Join(r.dir, "relay.yaml")
	cfg, err := os.ReadFile(cfgPath)
	must(t, err)
	must(t, os.WriteFile(cfgPath, []byte(strings.Replace(string(cfg), "log: { level: warn, format: text }", "log: { level: info, format: json }", 1)), 0o644))
	must(t, r.start())
	t.Cleanup(func() { _, _, _ = r.terminate(10 * time.Second) }) // a relay that does not stop is killed by stopHard

	post := func(body []byte, secretOK bool) int {
		t.Helper()
		req, err := signedRequest(context.Background(), r.ingest+providerPath, body)
		must(t, err)
		if !secretOK {
			req.Header.Set("X-Signature", strings.Repeat("0", 64))
		}
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	eventType := func(key string) string {
		resp, err := http.Get(r.admin + "/admin/events?key=" + key)
		must(t, err)
		defer resp.Body.Close()
		var l struct {
			Items []struct {
				Type string `json:"type"`
			} `json:"items"`
		}
		must(t, json.NewDecoder(resp.Body).Decode(&l))
		if len(l.Items) == 0 {
			return ""
		}
		return l.Items[0].Type
	}
	hup := func() {
		cmd, _ := r.current()
		must(t, cmd.Process.Signal(syscall.SIGHUP))
	}
	waitLog := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if b, _ := os.ReadFile(r.log.Name()); strings.Contains(string(b), what) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("the log never said %q", what)
	}

	if code := post(eventBody("before", 1), true); code != 200 {
		t.Fatalf("status %d", code)
	}
	if code := post(eventBody("refused", 1), false); code != 401 {
		t.Fatalf("a bad signature got %d", code)
	}

	provider := filepath.Join(r.dir, "providers.d", "crash.yaml")
	must(t, os.WriteFile(provider, []byte(strings.Replace(providerYAML, "type: body.type", `type: '"reloaded." + body.type'`, 1)), 0o644))
	hup()
	waitLog(`"msg":"configuration reloaded"`)
	if code := post(eventBody("after", 1), true); code != 200 {
		t.Fatalf("status %d after the reload", code)
	}
	if got := eventType("after"); got != "reloaded.test.event" {
		t.Errorf("type after the reload %q", got)
	}

	must(t, os.WriteFile(provider, []byte(strings.Replace(providerYAML, "key: body.key", "key: body.key +", 1)), 0o644))
	hup()
	waitLog(`"msg":"reload refused"`)
	if code := post(eventBody("still", 1), true); code != 200 {
		t.Fatalf("status %d after a refused reload", code)
	}
	if got := eventType("still"); got != "reloaded.test.event" {
		t.Errorf("a refused reload changed the configuration: type %q", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for arrivals, _ := s.snapshot(); len(arrivals) < 3 && time.Now().Before(deadline); arrivals, _ = s.snapshot() {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the last delivery's log line

	f, err := os.Open(r.log.Name())
	must(t, err)
	defer func() { _ = f.Close() }() // read only
	seen := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, testSecret) || strings.Contains(line, string(eventBody("before", 1))) {
			t.Errorf("a log line holds the secret or a body: %s", line)
		}
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) != nil {
			continue // the test's own start markers
		}
		msg, _ := l["msg"].(string)
		seen[msg]++
		switch msg {
		case "ingest accepted", "delivery delivered":
			for _, k := range []string{"event_id", "provider", "key"} {
				if l[k] == nil || l[k] == "" {
					t.Errorf("%s without %s: %s", msg, k, line)
				}
			}
			if msg == "delivery delivered" && l["destination"] != "sink" {
				t.Errorf("delivery line without its destination: %s", line)
			}
		case "ingest rejected":
			if l["reason"] == nil || l["provider"] != "crash" {
				t.Errorf("rejection line: %s", line)
			}
		case "reload refused":
			if !strings.Contains(line, "crash.yaml:") {
				t.Errorf("a refused reload without file:line: %s", line)
			}
		}
	}
	if seen["ingest accepted"] != 3 || seen["ingest rejected"] != 1 || seen["delivery delivered"] != 3 {
		t.Errorf("log lines by message: %v", seen)
	}
}
