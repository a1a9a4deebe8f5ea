package engine

import (
	"net/http"
	"testing"
)

// TestPendingLeavesDeadOut: a destination's pending count, on
// /admin/destinations and hookrelay_pending, is its deliveries not final and
// not dead: a dead delivery that holds its key is counted under dead only,
// the one waiting behind it under pending, before and after a restart.
func TestPendingLeavesDeadOut(t *testing.T) {
	rec := newRecorder(t, func(_ int, r *http.Request) int {
		if r.URL.Path == "/dead-k" {
			return http.StatusBadRequest // permanent: dead, and the key held
		}
		return http.StatusOK
	})
	tr := startRelay(t, relayYAML(rec.srv.URL+"/{{ event.key }}", ""), map[string]string{"plain": plainProvider})
	for _, body := range []string{`{"key":"dead-k","type":"a"}`, `{"key":"dead-k","type":"b"}`} {
		must(t, tr.ingestAt("/in/plain", body))
	}
	for _, when := range []string{"running", "after a restart"} {
		if when != "running" {
			tr = tr.restart()
		}
		tr.waitDest("dest", "holding dead-k", func(d destView) bool { return d.Dead == 1 && d.HeldKeys == 1 })
		if d := tr.dest("dest"); d.Pending != 1 {
			t.Errorf("%s: GET /admin/destinations pending %d, want 1 (the delivery behind the dead one)", when, d.Pending)
		}
		if v, ok := metricValue(tr.scrape(), "hookrelay_pending", map[string]string{"destination": "dest"}); !ok || v != 1 {
			t.Errorf("%s: hookrelay_pending %v (%v), want 1", when, v, ok)
		}
	}
}
