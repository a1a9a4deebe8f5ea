package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	encKeyEnv = "HOOKRELAY_CRASHTEST_ENC_KEY"
	encKey    = "0123456789abcdef0123456789abcdef" // AES-256, raw
)

// encProviderYAML verifies an HMAC over the body, then decrypts it (AES-GCM,
// the lender's JSON {"payload": ..., "nonce": ...}).
const encProviderYAML = `name: enc
paths: [/in/enc]
verify:
  - kind: hmac
    secret: env:` + secretEnv + `
    algorithm: sha256
    signed: "{body}"
    signature: { header: X-Signature, encoding: hex }
decrypt:
  kind: aes-gcm
  key: env:` + encKeyEnv + `
  key_encoding: raw
  data: body.payload
  iv: body.nonce
event:
  id: body.id
  key: body.key
  type: body.type
routes:
  - to: [sink]
`

// opsSink answers 500 to events of key "bad" and 200 to the others, and
// records each request's key and X-Hookrelay-Attempt.
type opsSink struct {
	mu       sync.Mutex
	arrivals []string // "key attempt"
}

func (s *opsSink) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var env struct {
		Raw struct {
			Key string `json:"key"`
		} `json:"raw"`
	}
	b, _ := io.ReadAll(req.Body)
	_ = json.Unmarshal(b, &env)
	s.mu.Lock()
	s.arrivals = append(s.arrivals, env.Raw.Key+" "+req.Header.Get("X-Hookrelay-Attempt"))
	s.mu.Unlock()
	if env.Raw.Key == "bad" {
		http.Error(w, "broker says no", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *opsSink) has(arrival string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.arrivals {
		if a == arrival {
			return true
		}
	}
	return false
}

// waitFor polls cond until it holds or 10 s passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestOperateCommands drives a real relay (the built binary) with the CLI
// in-process: send (signed, and encrypted for a decrypt: provider), sign
// --curl, status, destinations, providers, quarantine, rejections, events
// show of a quarantined id and of a pending delivery's next attempt, and the
// log lines of a resume and of an attempt after an operator's retry.
func TestOperateCommands(t *testing.T) {
	s := &opsSink{}
	dest := httptest.NewServer(s)
	t.Cleanup(dest.Close)
	ltYAML := strings.NewReplacer("name: crash", "name: lt", "[/in/crash]", "[/in/lt]", "to: [sink]", "to: [later]").Replace(providerYAML)
	r := newRelay(t, dest.URL, map[string]string{"crash": providerYAML, "locked": lockedProviderYAML, "lt": ltYAML, "enc": encProviderYAML})
	cfgPath := filepath.Join(r.dir, "relay.yaml")
	b, err := os.ReadFile(cfgPath)
	must(t, err)
	cfg := strings.Replace(string(b), "max_attempts: 200", "max_attempts: 2", 1)
	cfg = strings.Replace(cfg, "log: { level: warn, format: text }", "log: { level: info, format: json }", 1)
	// later fails (nothing listens on port 1) and waits an hour to try again.
	cfg += "  later:\n    url: \"http://127.0.0.1:1/x\"\n    retry: { max_attempts: 5, initial: 1h, max: 2h, jitter: none }\n"
	must(t, os.WriteFile(cfgPath, []byte(cfg), 0o644))
	r.env = append(r.env, encKeyEnv+"="+encKey)
	must(t, r.start())
	t.Setenv(secretEnv, testSecret)
	t.Setenv(encKeyEnv, encKey)
	cli := func(args ...string) (int, string, string) {
		t.Helper()
		return runClient(t, r.admin, append(args, "--config", cfgPath)...)
	}
	admin := func(args ...string) (int, string, string) {
		t.Helper()
		return runClient(t, r.admin, args...)
	}
	file := func(name, body string) string {
		p := filepath.Join(r.dir, name)
		must(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}

	// send: signed, then signed and encrypted.
	code, out, errOut := cli("send", "crash", file("good.json", string(eventBody("good", 1))), "--url", r.ingest)
	if code != 0 || !strings.Contains(out, "POST /in/crash: 200 OK") {
		t.Fatalf("send: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = cli("send", "enc", file("plain.json", `{"id":"e1","key":"secretive","type":"t"}`), "--url", r.ingest)
	if code != 0 || !strings.Contains(out, "200 OK") {
		t.Fatalf("send enc: exit %d\n%s%s", code, out, errOut)
	}
	waitFor(t, "both events at the sink", func() bool { return s.has("good 1") && s.has("secretive 1") })
	if strings.Contains(out+errOut, encKey) || strings.Contains(out+errOut, testSecret) {
		t.Errorf("send printed a secret")
	}

	// sign --curl: the command line curl runs is accepted by the relay.
	code, out, errOut = cli("sign", "crash", file("curl.json", "{\"id\":\"c1\",\n \"key\":\"curl's\",\"type\":\"t\",\"n\":1}"), "--curl")
	if code != 0 || !strings.HasPrefix(out, "curl -sS -X POST ") || !strings.Contains(out, r.ingest+"/in/crash") {
		t.Fatalf("sign --curl: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := exec.LookPath("curl"); err == nil {
		res, err := exec.Command("sh", "-c", out).CombinedOutput()
		if err != nil {
			t.Fatalf("running sign --curl's command: %v\n%s", err, res)
		}
		waitFor(t, "the curl event at the sink", func() bool { return s.has("curl's 1") })
	} else {
		t.Log("no curl here: the command was not run")
	}

	// A rejection, a quarantined request and a dead delivery.
	req, err := signedRequest(t.Context(), r.ingest+"/in/crash", eventBody("x", 1))
	must(t, err)
	req.Header.Set("X-Signature", strings.Repeat("0", 64))
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	resp.Body.Close()
	if code, out, errOut := cli("send", "crash", file("nokey.json", `{"id":"q1","type":"t"}`), "--url", r.ingest); code != 0 {
		t.Fatalf("send nokey: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := cli("send", "crash", file("bad.json", string(eventBody("bad", 1))), "--url", r.ingest); code != 0 {
		t.Fatalf("send bad: exit %d\n%s%s", code, out, errOut)
	}
	var deadID string
	waitFor(t, "the dead delivery", func() bool {
		_, out, _ := admin("events", "list", "--status", "dead", "--json")
		var l struct{ Items []struct{ ID string } }
		_ = json.Unmarshal([]byte(out), &l)
		if len(l.Items) == 1 {
			deadID = l.Items[0].ID
		}
		return deadID != ""
	})

	// events show of a quarantined id, from events list.
	_, out, _ = admin("events", "list", "--status", "quarantined", "--json")
	var ql struct{ Items []struct{ ID string } }
	must(t, json.Unmarshal([]byte(out), &ql))
	if len(ql.Items) != 1 {
		t.Fatalf("quarantined: %s", out)
	}
	qid := ql.Items[0].ID
	code, out, errOut = admin("events", "show", qid)
	if code != 0 || !strings.Contains(out, "status       quarantined") || !strings.Contains(out, "quarantine reprocess "+qid) {
		t.Errorf("events show of a quarantined id: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := admin("events", "show", qid, "--json"); code != 0 || !strings.Contains(out, `"body_sha256"`) {
		t.Errorf("events show --json of a quarantined id: exit %d\n%s", code, out)
	}
	if code, _, errOut := admin("events", "show", "01JD6X1S0Y8Z0F6C1A6R5K0ZQH"); code != 1 || !strings.Contains(errOut, "no event 01JD6X1S0Y8Z0F6C1A6R5K0ZQH") {
		t.Errorf("events show of an unknown id: exit %d, %s", code, errOut)
	}
	code, out, errOut = admin("quarantine", "list")
	if code != 0 || !strings.Contains(out, qid) || !strings.Contains(out, "/in/crash") {
		t.Errorf("quarantine list: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = admin("quarantine", "reprocess", qid)
	if code != 1 || !strings.Contains(out, "reprocessed 0 requests") || !strings.Contains(out, "failed "+qid) {
		t.Errorf("quarantine reprocess of a request that still cannot map: exit %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = admin("rejections", "list", "--provider", "crash", "--limit", "5")
	if code != 0 || !regexp.MustCompile(`(?m)^\S+\s+crash\s+/in/crash\s+127\.0\.0\.1:\d+\s+\S`).MatchString(out) {
		t.Errorf("rejections list: exit %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = admin("providers", "list")
	if code != 0 || !regexp.MustCompile(`(?m)^crash\s+/in/crash\s+enabled$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^locked\s+/in/locked\s+DISABLED: .*`+missingEnv).MatchString(out) {
		t.Errorf("providers list: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := admin("providers", "poll", "crash", "k1"); code != 1 || errOut == "" {
		t.Errorf("providers poll of a provider that does not poll: exit %d, %s", code, errOut)
	}

	// A pending delivery's next attempt: lt's events go to later, which
	// failed once and waits an hour.
	if code, out, errOut := cli("send", "lt", file("lt.json", string(eventBody("lt", 1))), "--path", "/in/lt", "--url", r.ingest); code != 0 {
		t.Fatalf("send lt: exit %d\n%s%s", code, out, errOut)
	}
	var ltID string
	waitFor(t, "lt's first attempt", func() bool {
		_, out, _ := admin("events", "list", "--provider", "lt", "--json")
		var l struct{ Items []struct{ ID string } }
		_ = json.Unmarshal([]byte(out), &l)
		if len(l.Items) == 1 {
			ltID = l.Items[0].ID
			_, out, _ = admin("events", "show", ltID)
			return strings.Contains(out, "1 attempt")
		}
		return false
	})
	_, out, _ = admin("events", "show", ltID)
	if !regexp.MustCompile(`delivery later: pending, 1 attempt, next attempt at \d{4}-\d\d-\d\dT[0-9:.]+Z \(in (59m\d+s|1h0m0s)\)`).MatchString(out) {
		t.Errorf("events show of a pending delivery lacks its next attempt:\n%s", out)
	}

	// status: one screen.
	code, out, errOut = admin("status")
	for _, re := range []string{
		`(?m)^PROVIDERS$`, `(?m)^locked\s+/in/locked\s+DISABLED: .*` + missingEnv,
		`(?m)^DESTINATIONS$`, `(?m)^sink\s+active\s+\d+\s+1\s+1\s+\S+$`, `(?m)^later\s+active\s+1\s+0\s+0\s+(<1s|\d+s)$`,
		`(?m)^LAST ERRORS$`, `(?m)dead\s+sink event ` + deadID + ` \(key bad\): 500 broker says no`, `(?m)rejected\s+crash /in/crash: `,
		`(?m)failed\s+later event ` + ltID + `: .*connection refused`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("status does not match %s:\n%s%s", re, out, errOut)
		}
	}
	if code != 0 {
		t.Errorf("status: exit %d", code)
	}
	code, out, _ = admin("status", "--json")
	var st struct {
		Providers    []any `json:"providers"`
		Destinations []any `json:"destinations"`
		LastErrors   []any `json:"last_errors"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st.LastErrors) != 3 || len(st.Providers) != 4 || len(st.Destinations) != 2 {
		t.Errorf("status --json: exit %d\n%s", code, out)
	}

	// pause, resume, and the log of each.
	if code, out, _ := admin("destinations", "pause", "sink"); code != 0 || out != "destination sink paused\n" {
		t.Errorf("pause: exit %d, %q", code, out)
	}
	if _, out, _ := admin("destinations", "list"); !regexp.MustCompile(`(?m)^sink\s+PAUSED\s+\d+\s+1\s+1\s+\S+\s+http://127\.0\.0\.1:\d+/hook$`).MatchString(out) {
		t.Errorf("destinations list after the pause:\n%s", out)
	}
	if code, out, _ := admin("destinations", "resume", "sink"); code != 0 || out != "destination sink resumed\n" {
		t.Errorf("resume: exit %d, %q", code, out)
	}
	// An operator's retry: the attempts count again from 1, in the header
	// and in the log.
	if code, out, _ := admin("events", "retry", deadID); code != 0 || out != "requeued 1 delivery\n" {
		t.Fatalf("retry: exit %d, %q", code, out)
	}
	var deadLines []map[string]any
	waitFor(t, "the retried delivery to die again", func() bool {
		deadLines = nil
		for _, l := range logLines(t, r.log.Name()) {
			if l["msg"] == "delivery dead" && l["event_id"] == deadID {
				deadLines = append(deadLines, l)
			}
		}
		return len(deadLines) == 2
	})
	if a := deadLines[1]; a["attempt"] != 2.0 || a["attempts_before_retry"] != 2.0 {
		t.Errorf("after a retry the log says %v; want attempt 2 (as the header), 2 before the retry", a)
	}
	if !s.has("bad 1") || !s.has("bad 2") {
		t.Errorf("the sink's attempt headers: %v", s.arrivals)
	}
	var paused, resumed int
	for _, l := range logLines(t, r.log.Name()) {
		switch l["msg"] {
		case "destination paused by operator":
			paused++
		case "destination resumed by operator":
			resumed++
		}
	}
	if paused != 1 || resumed != 1 {
		t.Errorf("log: %d pauses and %d resumes, want 1 and 1", paused, resumed)
	}
	if code, _, err := r.terminate(r.timeout + 5*time.Second); err != nil || code != 0 {
		t.Errorf("SIGTERM: status %d, %v", code, err)
	}
}
