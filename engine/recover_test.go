package engine

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestRecoveryCutsBackoffShort: keys that failed during an outage wait out
// a 30 s backoff, but once the destination answers again they are sent at
// once rather than half a minute later.
func TestRecoveryCutsBackoffShort(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	rec := newRecorder(t, func(int, *http.Request) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	tr := startRelay(t, relayYAML(rec.srv.URL, "    retry: {initial: 30s, max: 1m, jitter: none, max_attempts: 10}\n"),
		map[string]string{"plain": plainProvider})
	tr.dispatch.outageMin = 200 * time.Millisecond

	const keys = 5
	for k := range keys {
		must(t, tr.ingestAt("/in/plain", fmt.Sprintf(`{"id":"e%d","key":"k%d","type":"t","n":1}`, k, k)))
	}
	waitFor(t, 5*time.Second, "one failed attempt per key", func() bool { return len(rec.requests()) >= keys })
	time.Sleep(300 * time.Millisecond) // the outage outlasts outageMin
	down.Store(false)
	must(t, tr.ingestAt("/in/plain", `{"id":"e-up","key":"k-up","type":"t","n":1}`))

	// Without the recovery the first retry would come 30 s after each failure.
	waitFor(t, 5*time.Second, "every key delivered after the recovery", func() bool {
		return len(rec.delivered(t)) == keys+1
	})
	if got := len(rec.requests()); got != 2*keys+1 {
		t.Errorf("%d requests, want %d: one failure and one success per key, one success for k-up", got, 2*keys+1)
	}
}

// TestRecoveryNeedsAnOutage: an event the destination always refuses keeps
// its backoff while the destination takes the other keys' events; it is
// not retried at the pace of their traffic.
func TestRecoveryNeedsAnOutage(t *testing.T) {
	rec := newRecorder(t, func(_ int, r *http.Request) int {
		if r.Header.Get("X-Hookrelay-Event-Type") == "bad" {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	tr := startRelay(t, relayYAML(rec.srv.URL, "    retry: {initial: 30s, max: 1m, jitter: none, max_attempts: 10}\n"),
		map[string]string{"plain": plainProvider})
	tr.dispatch.outageMin = 200 * time.Millisecond

	must(t, tr.ingestAt("/in/plain", `{"id":"poison","key":"p","type":"bad","n":1}`))
	const good = 30
	for i := range good {
		must(t, tr.ingestAt("/in/plain", fmt.Sprintf(`{"id":"g%d","key":"k%d","type":"t","n":1}`, i, i)))
		time.Sleep(50 * time.Millisecond)
	}
	waitFor(t, 5*time.Second, "the good events delivered", func() bool { return len(rec.delivered(t)) == good })
	bad := 0
	for _, r := range rec.requests() {
		if r.Header.Get("X-Hookrelay-Event-Type") == "bad" {
			bad++
		}
	}
	if bad != 1 {
		t.Errorf("the refused event was tried %d times in %v, want once (its backoff is 30 s)", bad, good*50*time.Millisecond)
	}
}
