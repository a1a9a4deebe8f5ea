package dispatch

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hookrelay/hookrelay/engine/config"
)

// TestRecoveryCutsBackoffShort: keys that failed through an outage wait out
// a backoff that has grown to 10 s, but once the destination answers again
// they are sent at once: on the bubble's clock, not a nanosecond later.
func TestRecoveryCutsBackoffShort(t *testing.T) { synctest.Test(t, testRecoveryCutsBackoffShort) }

func testRecoveryCutsBackoffShort(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	// Attempts at 0, 0.1 s, 1.1 s, then 11.1 s.
	rec := recoveryLane(t, config.RetryConfig{Initial: 100 * time.Millisecond, Multiplier: 10, Max: time.Minute, Jitter: "none", MaxAttempts: 10},
		func(http.Header, *http.Request) int {
			if down.Load() {
				return http.StatusServiceUnavailable
			}
			return http.StatusOK
		})

	const keys = 5
	for k := range keys {
		sendPlain(t, rec, fmt.Sprintf("e%d", k), fmt.Sprintf("k%d", k), "t")
	}
	advance(1100 * time.Millisecond)
	if n, w := len(rec.requests()), waiting(rec); n != 3*keys || w != keys {
		t.Fatalf("after 1.1 s: %d attempts, %d keys waiting; want 3 per key, each taken in", n, w)
	}
	advance(time.Second) // the destination is back a second later, 9 s before the next tries
	down.Store(false)
	sendPlain(t, rec, "e-up", "k-up", "t")

	// Without the recovery the next attempts would come 10 s later.
	synctest.Wait() // no time passes
	if n := len(rec.delivered(t)); n != keys+1 {
		t.Errorf("%d delivered once the destination answered, want every key (%d) at once", n, keys+1)
	}
}

// recoveryLane starts a dispatcher delivering to respond with the given
// retry block, counting 200 ms of failures as an outage.
func recoveryLane(t *testing.T, retry config.RetryConfig, respond func(http.Header, *http.Request) int) *testLane {
	tl := startLane(t, retry, nil, respond)
	tl.OutageMin = 200 * time.Millisecond
	return tl
}

// sendPlain spools one event of provider plain's key and type (id names
// it in the test only: the spool gives it a ULID).
func sendPlain(t *testing.T, tl *testLane, _, key, typ string) {
	t.Helper()
	tl.send(t, "plain", key, typ, 0, 1)
}

// waiting counts the keys waiting out a backoff: their failure is taken in.
func waiting(tl *testLane) int {
	return tl.waiting()
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
			synctest.Test(t, func(t *testing.T) {
				var bad atomic.Int64
				rec := recoveryLane(t, config.RetryConfig{Initial: 30 * time.Second, Max: time.Hour, Jitter: "none", MaxAttempts: 10},
					func(h http.Header, r *http.Request) int {
						if tc.header != "" {
							h.Set("Retry-After", tc.header)
						}
						if r.Header.Get("X-Hookrelay-Event-Type") == "bad" {
							bad.Add(1)
							return tc.status
						}
						return http.StatusOK
					})

				start := time.Now()
				sendPlain(t, rec, "poison", "p", "bad")
				const good = 8
				for i := range good {
					advance(300 * time.Millisecond) // further apart than outageMin
					sendPlain(t, rec, fmt.Sprintf("g%d", i), fmt.Sprintf("k%d", i), "t")
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
			})
		})
	}
}

// TestRecoveryTakesLateAnswers: an attempt sent during the outage whose
// failure comes back after the recovery goes again at once, as the keys
// the recovery released do.
func TestRecoveryTakesLateAnswers(t *testing.T) { synctest.Test(t, testRecoveryTakesLateAnswers) }

func testRecoveryTakesLateAnswers(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	rec := recoveryLane(t, config.RetryConfig{Initial: 10 * time.Second, Max: time.Minute, Jitter: "none", MaxAttempts: 10},
		func(_ http.Header, r *http.Request) int {
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

	// Failures from two keys 300 ms apart: an outage.
	sendPlain(t, rec, "e0", "k0", "t")
	synctest.Wait()
	if n := len(rec.requests()); n != 1 {
		t.Fatalf("%d requests after k0's event, want its one failure", n)
	}
	advance(300 * time.Millisecond)
	sendPlain(t, rec, "e1", "k1", "t")
	sendPlain(t, rec, "es", "ks", "slow")
	synctest.Wait()
	if n, w := len(rec.requests()), waiting(rec); n != 2 || w != 2 {
		t.Fatalf("%d answered requests, %d keys waiting; want k0's and k1's failures taken in", n, w)
	}
	select {
	case <-arrived:
	default:
		t.Fatal("the slow key's attempt never came")
	}

	advance(100 * time.Millisecond) // the slow attempt started during the outage, before its end
	down.Store(false)
	sendPlain(t, rec, "e-up", "k-up", "t")
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
