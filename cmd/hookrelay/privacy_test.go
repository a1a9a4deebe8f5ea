package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPrivacyCLI runs the binary: check and serve warn when relay.yaml has
// no privacy: block; with one, check names the master key's id (never the
// key), events sent through the real listener reach the sink while the
// spool file holds none of their personal data, status shows encryption at
// rest, and `hookrelay erase PROVIDER KEY` removes the key and says what it
// removed (--json: the API's answer).
func TestPrivacyCLI(t *testing.T) {
	s := &opsSink{}
	dest := httptest.NewServer(s)
	t.Cleanup(dest.Close)
	r := newRelay(t, dest.URL, map[string]string{"crash": providerYAML})
	cfgPath := filepath.Join(r.dir, "relay.yaml")

	code, out, errOut := runBin(t, r.dir, r.env, "check")
	if code != 0 || !strings.Contains(errOut, "warning: privacy: not configured, so nothing is encrypted at rest") {
		t.Errorf("check without privacy: exit %d, want a warning\n%s%s", code, out, errOut)
	}

	raw := make([]byte, 32)
	_, err := rand.Read(raw)
	must(t, err)
	dataKey := base64.StdEncoding.EncodeToString(raw)
	b, err := os.ReadFile(cfgPath)
	must(t, err)
	must(t, os.WriteFile(cfgPath, append(b, "privacy: { key: env:HOOKRELAY_DATA_KEY }\n"...), 0o644))
	r.env = append(r.env, "HOOKRELAY_DATA_KEY="+dataKey)
	code, out, errOut = runBin(t, r.dir, r.env, "check")
	if code != 0 || !regexp.MustCompile(`(?m)^privacy encrypted at rest: master key id [0-9a-f]{16}, 0 previous, keystore \S*keys\.db$`).MatchString(out) ||
		strings.Contains(errOut, "privacy") || strings.Contains(out+errOut, dataKey) {
		t.Errorf("check with privacy: exit %d\n%s%s", code, out, errOut)
	}
	must(t, r.start())
	t.Setenv(secretEnv, testSecret)
	t.Setenv("HOOKRELAY_DATA_KEY", dataKey) // send reads relay.yaml too
	file := func(name, body string) string {
		p := filepath.Join(r.dir, name)
		must(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	const canarySSN, canaryName = "193101017771", "Kanarie Raderasson"
	for i, key := range []string{"gone", "gone", "stays"} {
		body := `{"id":"p` + string(rune('0'+i)) + `","key":"` + key + `","type":"t","ssn":"` + canarySSN + `","name":"` + canaryName + `"}`
		if code, out, errOut := runClient(t, r.admin, "send", "crash", file("ev.json", body), "--url", r.ingest, "--config", cfgPath); code != 0 {
			t.Fatalf("send: exit %d\n%s%s", code, out, errOut)
		}
	}
	waitFor(t, "three events at the sink", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.arrivals) >= 3
	})
	spoolBytes, err := os.ReadFile(r.spool)
	must(t, err)
	for _, c := range []string{canarySSN, canaryName} {
		if bytes.Contains(spoolBytes, []byte(c)) {
			t.Errorf("the spool holds %q in clear", c)
		}
	}

	if code, out, errOut := runClient(t, r.admin, "status"); code != 0 ||
		!regexp.MustCompile(`(?m)^PRIVACY\nencrypted at rest, master key [0-9a-f]{16}, keystore \S*keys\.db$`).MatchString(out) {
		t.Errorf("status: exit %d\n%s%s", code, out, errOut)
	}
	waitFor(t, "deliveries recorded", func() bool {
		_, out, _ := runClient(t, r.admin, "events", "list", "--key", "gone", "--status", "delivered", "--json")
		var l struct{ Items []any }
		return json.Unmarshal([]byte(out), &l) == nil && len(l.Items) == 2
	})
	code, out, errOut = runClient(t, r.admin, "erase", "crash", "gone")
	if want := "erased crash key gone: 2 events, 2 deliveries (0 pending), 0 quarantined requests, 0 poll states, 2 dedup entries; its data key is destroyed\n"; code != 0 || out != want {
		t.Errorf("erase: exit %d, output %q, want %q %s", code, out, want, errOut)
	}
	code, out, errOut = runClient(t, r.admin, "erase", "crash", "gone", "--json")
	var answer map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &answer) != nil || answer["events"] != 0.0 || answer["key"] != "gone" {
		t.Errorf("erase --json again: exit %d\n%s%s", code, out, errOut)
	}
	_, out, _ = runClient(t, r.admin, "events", "list", "--key", "gone", "--json")
	if strings.Contains(out, `"id"`) {
		t.Errorf("events of the erased key remain:\n%s", out)
	}
	_, out, _ = runClient(t, r.admin, "events", "list", "--key", "stays", "--json")
	if !strings.Contains(out, `"id"`) {
		t.Errorf("the other key's event is gone:\n%s", out)
	}
	if code, _, errOut := runClient(t, r.admin, "erase", "crash"); code != 2 || !strings.Contains(errOut, "PROVIDER and KEY") {
		t.Errorf("erase with one argument: exit %d %s", code, errOut)
	}
}
