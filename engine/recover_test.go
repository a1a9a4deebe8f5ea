package engine

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestRecoveryCutsBackoffShort: keys that failed through an outage wait out
// a backoff that has grown to 10 s, but once the destination answers again
// they are sent at once.
func TestRecoveryCutsBackoffShort(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	rec := newRecorder(t, func(int, *http.Request) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	// Attempts at 0, 0.1 s, 1.1 s, then 11.1 s.
	tr := startRelay(t, relayYAML(rec.srv.URL, "    retry: {initial: 100ms, multiplier: 10, max: 1m, jitter: none, max_attempts: 10}\n"),
		map[string]string{"plain": plainProvider})
	tr.dispatch.outageMin = 200 * time.Millisecond

	const keys = 5
	for k := range keys {
		must(t, tr.ingestAt("/in/plain", fmt.Sprintf(`{"id":"e%d","key":"k%d","type":"t","n":1}`, k, k)))
	}
	waitFor(t, 5*time.Second, "three failed attempts per key, each taken in", func() bool {
		return len(rec.requests()) >= 3*keys && waiting(tr) == keys
	})
	down.Store(false)
	must(t, tr.ingestAt("/in/plain", `{"id":"e-up","key":"k-up","type":"t","n":1}`))

	// Without the recovery the next attempts would come 10 s later.
	waitFor(t, 5*time.Second, "every key delivered after the recovery", func() bool {
		return len(rec.delivered(t)) == keys+1
	})
}

// waiting counts the keys waiting out a backoff: their failure is taken in.
func waiting(tr *testRelay) int {
	n := 0
	for _, l := range tr.dispatch.allLanes() {
		l.mu.Lock()
		n += len(l.timers)
		l.mu.Unlock()
	}
	return n
}

// TestRecoveryNeedsAnOutage: an event the destination refuses, or paces
// with 429 and Retry-After, keeps its wait while the destination takes the
// other keys' events, even when those come further apart than outageMin.
func TestRecoveryNeedsAnOutage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		header string
	}{
		{"refused with 500", http.StatusInternalServerError, ""},
		{"paced with 429 and Retry-After", http.StatusTooManyRequests, "3600"},
		{"paced with 503 and Retry-After", http.StatusServiceUnavailable, "3600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var bad atomic.Int64
			rec := newRecorder(t, func(_ int, r *http.Request) int {
				if r.Header.Get("X-Hookrelay-Event-Type") == "bad" {
					bad.Add(1)
					return tc.status
				}
				return http.StatusOK
			})
			if tc.header != "" {
				handler := rec.srv.Config.Handler
				rec.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Retry-After", tc.header)
					handler.ServeHTTP(w, r)
				})
			}
			tr := startRelay(t, relayYAML(rec.srv.URL, "    retry: {initial: 30s, max: 1h, jitter: none, max_attempts: 10}\n"),
				map[string]string{"plain": plainProvider})
			tr.dispatch.outageMin = 200 * time.Millisecond

			must(t, tr.ingestAt("/in/plain", `{"id":"poison","key":"p","type":"bad","n":1}`))
			const good = 8
			for i := range good {
				time.Sleep(300 * time.Millisecond) // further apart than outageMin
				must(t, tr.ingestAt("/in/plain", fmt.Sprintf(`{"id":"g%d","key":"k%d","type":"t","n":1}`, i, i)))
			}
			waitFor(t, 5*time.Second, "the good events delivered", func() bool { return len(rec.delivered(t)) == good })
			if n := bad.Load(); n != 1 {
				t.Errorf("the event was tried %d times in %v, want once (it waits 30 s or more)", n, good*300*time.Millisecond)
			}
		})
	}
}

// TestRecoveryTakesLateAnswers: an attempt sent during the outage whose
// failure comes back after the recovery goes again at once, as the keys
// the recovery released do.
func TestRecoveryTakesLateAnswers(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	rec := newRecorder(t, func(_ int, r *http.Request) int {
		if r.Header.Get("X-Hookrelay-Event-Type") == "slow" && down.Load() {
			arrived <- struct{}{}
			<-release // answers only after the recovery
			return http.StatusServiceUnavailable
		}
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	tr := startRelay(t, relayYAML(rec.srv.URL, "    retry: {initial: 10s, max: 1m, jitter: none, max_attempts: 10}\n"),
		map[string]string{"plain": plainProvider})
	tr.dispatch.outageMin = 200 * time.Millisecond

	// Failures from two keys 300 ms apart: an outage.
	must(t, tr.ingestAt("/in/plain", `{"id":"e0","key":"k0","type":"t","n":1}`))
	waitFor(t, 5*time.Second, "k0's failure", func() bool { return len(rec.requests()) == 1 })
	time.Sleep(300 * time.Millisecond)
	must(t, tr.ingestAt("/in/plain", `{"id":"e1","key":"k1","type":"t","n":1}`))
	must(t, tr.ingestAt("/in/plain", `{"id":"es","key":"ks","type":"slow","n":1}`))
	waitFor(t, 5*time.Second, "k1's failure taken in", func() bool { return len(rec.requests()) == 2 && waiting(tr) == 2 })
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow key's attempt never came")
	}

	down.Store(false)
	must(t, tr.ingestAt("/in/plain", `{"id":"e-up","key":"k-up","type":"t","n":1}`))
	waitFor(t, 5*time.Second, "k0, k1 and k-up delivered", func() bool { return len(rec.delivered(t)) == 3 })
	close(release)
	// Without it the slow key would wait out its 10 s backoff.
	waitFor(t, 5*time.Second, "the slow key delivered", func() bool { return len(rec.delivered(t)) == 4 })
}
