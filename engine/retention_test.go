package engine

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/ingest"
)

// TestRetentionPerKind is SPEC 11's retention: with tiny retentions for
// dead events, quarantined requests and rejections, a purge deletes the dead
// event (its key released), the quarantined request and the rejection, and
// counts each in hookrelay_purged_total{kind}; a pending event and a
// delivered one within spool.retention stay.
func TestRetentionPerKind(t *testing.T) {
	t.Setenv("HOOKRELAY_TEST_DATA_KEY", newDataKey(t))
	rec := newRecorder(t, func(_ int, r *http.Request) int {
		switch r.URL.Path {
		case "/dead-k":
			return http.StatusBadRequest // permanent: dead
		case "/wait-k":
			return http.StatusServiceUnavailable // retried in an hour: pending
		}
		return http.StatusOK
	})
	tr := startRelay(t, relayYAML(rec.srv.URL+"/{{ event.key }}", "    retry: {schedule: [1h]}\n")+
		"privacy:\n  key: env:HOOKRELAY_TEST_DATA_KEY\n  retention: { dead: 1ms, quarantined: 1ms, rejections: 1ms }\n",
		map[string]string{"plain": keyedQuarantineProvider})
	for _, body := range []string{`{"key":"dead-k","type":"a"}`, `{"key":"wait-k","type":"a"}`, `{"key":"ok-k","type":"a"}`} {
		must(t, tr.ingestAt("/in/plain", body))
	}
	if resp := tr.post("/in/plain", `{"key":"q-k","type":"bad"}`, authPlain); resp.StatusCode != http.StatusOK {
		t.Fatalf("the unmappable request: %d, want 200 (quarantined)", resp.StatusCode)
	}
	if resp := tr.post("/in/plain", `{"key":"r-k","type":"a"}`, map[string]string{"Authorization": "Bearer wrong"}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the wrong token: %d, want 401", resp.StatusCode)
	}
	waitFor(t, seedWait, "dead-k dead, wait-k tried, ok-k delivered", func() bool {
		// The backlog too: ok-k's answer is recorded before its delivery is.
		st := laneStats(tr, "dest")
		p, d := tr.Backlog()
		return st.Dead == 1 && len(rec.requests()) == 3 && p == 2 && d == 1
	})

	tr.purge(time.Now().Add(time.Second)) // every record is older than 1ms then

	var page struct{ Items []map[string]any }
	for key, want := range map[string]int{"dead-k": 0, "wait-k": 1, "ok-k": 1} {
		adminDo(t, tr, http.MethodGet, "/admin/events?key="+key, &page)
		if len(page.Items) != want {
			t.Errorf("events of %s after the purge: %d, want %d", key, len(page.Items), want)
		}
	}
	adminDo(t, tr, http.MethodGet, "/admin/quarantine", &page)
	if len(page.Items) != 0 {
		t.Errorf("quarantine after the purge: %v", page.Items)
	}
	var rejections struct{ Items []ingest.Rejection }
	adminDo(t, tr, http.MethodGet, "/admin/rejections", &rejections)
	if len(rejections.Items) != 0 {
		t.Errorf("rejections after the purge: %v", rejections.Items)
	}
	if p, d := tr.Backlog(); p != 1 || d != 0 {
		t.Errorf("backlog after the purge: %d pending, %d dead; want wait-k's 1 and none", p, d)
	}
	if st := laneStats(tr, "dest"); st.Dead != 0 || st.HeldKeys != 0 {
		t.Errorf("lane after the purge: %+v; want no dead, no held key", st)
	}
	resp, err := http.Get(tr.Admin.URL + "/metrics")
	must(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range []string{`hookrelay_purged_total{kind="dead"} 1`, `hookrelay_purged_total{kind="quarantined"} 1`, `hookrelay_purged_total{kind="rejections"} 1`} {
		if !strings.Contains(string(b), line) {
			t.Errorf("metrics lack %s", line)
		}
	}
	if strings.Contains(string(b), `kind="delivered"`) {
		t.Error("a delivered event within spool.retention was purged")
	}
}

// TestRetentionDefaults: with privacy: the kinds default to 168h (from
// spool.retention), 720h, 720h and 72h; privacy.retention.delivered
// overrides spool.retention; without privacy only delivered events are
// purged; a negative retention is an error at its line.
func TestRetentionDefaults(t *testing.T) {
	t.Setenv("HOOKRELAY_TEST_DATA_KEY", newDataKey(t))
	load := func(extra string) (*Config, error) {
		dir := t.TempDir()
		writeConfig(t, dir, relayYAML("http://127.0.0.1:1/x", "")+extra, nil)
		return Load(dir+"/relay.yaml", true)
	}
	cfg, err := load("privacy: { key: env:HOOKRELAY_TEST_DATA_KEY }\n")
	must(t, err)
	if r := cfg.Retention(); r.Delivered != 168*time.Hour || r.Dead != 720*time.Hour || r.Quarantined != 720*time.Hour || r.Rejections != 72*time.Hour {
		t.Errorf("defaults: %+v", r)
	}
	cfg, err = load("privacy: { key: env:HOOKRELAY_TEST_DATA_KEY, retention: { delivered: 24h } }\n")
	must(t, err)
	if r := cfg.Retention(); r.Delivered != 24*time.Hour {
		t.Errorf("privacy.retention.delivered: %+v", r)
	}
	cfg, err = load("")
	must(t, err)
	if r := cfg.Retention(); r.Delivered != 168*time.Hour || r.Dead != 0 || r.Quarantined != 0 || r.Rejections != 0 {
		t.Errorf("without privacy: %+v", r)
	}
	if _, err := load("privacy:\n  key: env:HOOKRELAY_TEST_DATA_KEY\n  retention: { dead: -1h }\n"); err == nil || !strings.Contains(err.Error(), "relay.yaml:9: privacy.retention.dead") {
		t.Errorf("a negative retention: %v", err)
	}
}
