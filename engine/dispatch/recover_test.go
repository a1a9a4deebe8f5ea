package engine

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestRecoveryCutsBackoffShort: keys that failed through an outage wait out
// a backoff that has grown to 10 s, but once the destination answers again
// they are sent at once: on the bubble's clock, not a nanosecond later.
func TestRecoveryCutsBackoffShort(t *testing.T) { inBubble(t, testRecoveryCutsBackoffShort) }

func testRecoveryCutsBackoffShort(t *testing.T) {
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
	advance(1100 * time.Millisecond)
	if n, w := len(rec.requests()), waiting(tr); n != 3*keys || w != keys {
		t.Fatalf("after 1.1 s: %d attempts, %d keys waiting; want 3 per key, each taken in", n, w)
	}
	advance(time.Second) // the destination is back a second later, 9 s before the next tries
	down.Store(false)
	sendPlain(t, tr, "e-up", "k-up", "t")

	// Without the recovery the next attempts would come 10 s later.
	synctest.Wait() // no time passes
	if n := len(rec.delivered(t)); n != keys+1 {
		t.Errorf("%d delivered once the destination answered, want every key (%d) at once", n, keys+1)
	}
}

// recoveryRelay starts a relay on plainProvider delivering to rec with the
// given retry block, counting 200 ms of failures as an outage.
func recoveryRelay(t *testing.T, rec *recorder, retry string) *testRelay {
	tr := startRelay(t, relayYAML(rec.srv.URL, "    retry: "+retry+"\n"), map[string]string{"plain": plainProvider})
	tr.dispatch.OutageMin = 200 * time.Millisecond
	return tr
}

// sendPlain ingests one event of key and type through plainProvider.
func sendPlain(t *testing.T, tr *testRelay, id, key, typ string) {
	t.Helper()
	must(t, tr.ingestAt("/in/plain", fmt.Sprintf(`{"id":%q,"key":%q,"type":%q,"n":1}`, id, key, typ)))
}

// waiting counts the keys waiting out a backoff: their failure is taken in.
func waiting(tr *testRelay) int {
	return tr.dispatch.Waiting()
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
		t.Run(tc.name, bubbled(func(t *testing.T) {
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

			start := time.Now()
			sendPlain(t, tr, "poison", "p", "bad")
			const good = 8
			for i := range good {
				advance(300 * time.Millisecond) // further apart than outageMin
				sendPlain(t, tr, fmt.Sprintf("g%d", i), fmt.Sprintf("k%d", i), "t")
			}
			synctest.Wait()
			if n := len(rec.delivered(t)); n != good {
				t.Fatalf("%d good events delivered, want %d", n, good)
			}
			if n := bad.Load(); n != 1 {
				t.Errorf("the event was tried %d times in %v, want once (it waits 30 s or more)", n, good*300*time.Millisecond)
			}
			// Its wait stands whole: the second try comes when it is due,
			// not a nanosecond before.
			wait := 30 * time.Second
			if tc.header != "" {
				wait = time.Hour
			}
			advance(wait - time.Since(start) - time.Nanosecond)
			if n := bad.Load(); n != 1 {
				t.Errorf("tried %d times before its wait of %v ended, want once", n, wait)
			}
			advance(time.Nanosecond)
			if n := bad.Load(); n != 2 {
				t.Errorf("tried %d times when its wait of %v ended, want twice", n, wait)
			}
		}))
	}
}

// TestRecoveryTakesLateAnswers: an attempt sent during the outage whose
// failure comes back after the recovery goes again at once, as the keys
// the recovery released do.
func TestRecoveryTakesLateAnswers(t *testing.T) { inBubble(t, testRecoveryTakesLateAnswers) }

func testRecoveryTakesLateAnswers(t *testing.T) {
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
	synctest.Wait()
	if n := len(rec.requests()); n != 1 {
		t.Fatalf("%d requests after k0's event, want its one failure", n)
	}
	advance(300 * time.Millisecond)
	sendPlain(t, tr, "e1", "k1", "t")
	sendPlain(t, tr, "es", "ks", "slow")
	synctest.Wait()
	if n, w := len(rec.requests()), waiting(tr); n != 2 || w != 2 {
		t.Fatalf("%d answered requests, %d keys waiting; want k0's and k1's failures taken in", n, w)
	}
	select {
	case <-arrived:
	default:
		t.Fatal("the slow key's attempt never came")
	}

	advance(100 * time.Millisecond) // the slow attempt started during the outage, before its end
	down.Store(false)
	sendPlain(t, tr, "e-up", "k-up", "t")
	synctest.Wait() // no time passes
	if n := len(rec.delivered(t)); n != 3 {
		t.Fatalf("%d delivered once the destination answered, want k0, k1 and k-up at once", n)
	}
	close(release)
	// Without it the slow key would wait out its 10 s backoff.
	synctest.Wait()
	if n := len(rec.delivered(t)); n != 4 {
		t.Errorf("%d delivered once the slow answer came, want the slow key too, at once", n)
	}
}
