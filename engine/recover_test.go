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
	tr := recoveryRelay(t, rec, "{initial: 100ms, multiplier: 10, max: 1m, jitter: none, max_attempts: 10}")

	const keys = 5
	for k := range keys {
		sendPlain(t, tr, fmt.Sprintf("e%d", k), fmt.Sprintf("k%d", k), "t")
	}
	waitFor(t, 5*time.Second, "three failed attempts per key, each taken in", func() bool {
		return len(rec.requests()) >= 3*keys && waiting(tr) == keys
	})
	down.Store(false)
	sendPlain(t, tr, "e-up", "k-up", "t")

	// Without the recovery the next attempts would come 10 s later.
	waitFor(t, 5*time.Second, "every key delivered after the recovery", func() bool {
		return len(rec.delivered(t)) == keys+1
	})
}

// recoveryRelay starts a relay on plainProvider delivering to rec with the
// given retry block, counting 200 ms of failures as an outage.
func recoveryRelay(t *testing.T, rec *recorder, retry string) *testRelay {
	tr := startRelay(t, relayYAML(rec.srv.URL, "    retry: "+retry+"\n"), map[string]string{"plain": plainProvider})
	tr.dispatch.outageMin = 200 * time.Millisecond
	return tr
}

// sendPlain ingests one event of key and type through plainProvider.
func sendPlain(t *testing.T, tr *testRelay, id, key, typ string) {
	t.Helper()
	must(t, tr.ingestAt("/in/plain", fmt.Sprintf(`{"id":%q,"key":%q,"type":%q,"n":1}`, id, key, typ)))
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
			tr := recoveryRelay(t, rec, "{initial: 30s, max: 1h, jitter: none, max_attempts: 10}")

			sendPlain(t, tr, "poison", "p", "bad")
			const good = 8
			for i := range good {
				time.Sleep(300 * time.Millisecond) // further apart than outageMin
				sendPlain(t, tr, fmt.Sprintf("g%d", i), fmt.Sprintf("k%d", i), "t")
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
	tr := recoveryRelay(t, rec, "{initial: 10s, max: 1m, jitter: none, max_attempts: 10}")

	// Failures from two keys 300 ms apart: an outage.
	sendPlain(t, tr, "e0", "k0", "t")
	waitFor(t, 5*time.Second, "k0's failure", func() bool { return len(rec.requests()) == 1 })
	time.Sleep(300 * time.Millisecond)
	sendPlain(t, tr, "e1", "k1", "t")
	sendPlain(t, tr, "es", "ks", "slow")
	waitFor(t, 5*time.Second, "k1's failure taken in", func() bool { return len(rec.requests()) == 2 && waiting(tr) == 2 })
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow key's attempt never came")
	}

	down.Store(false)
	sendPlain(t, tr, "e-up", "k-up", "t")
	waitFor(t, 5*time.Second, "k0, k1 and k-up delivered", func() bool { return len(rec.delivered(t)) == 3 })
	close(release)
	// Without it the slow key would wait out its 10 s backoff.
	waitFor(t, 5*time.Second, "the slow key delivered", func() bool { return len(rec.delivered(t)) == 4 })
}
