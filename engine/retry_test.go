package engine

import (
	"net/http"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// failing is a destination that answers every request with status, without
// Retry-After (a destination that is down).
func failing(t *testing.T, status int) *recorder {
	return newRecorder(t, func(int, *http.Request) int { return status })
}

// onlyEventID waits for the first attempt of the single event and
// returns the event id it carried.
func (tr *testRelay) onlyEventID(rec *recorder) string {
	tr.t.Helper()
	waitFor(tr.t, 10*time.Second, "the first attempt", func() bool { return len(rec.requests()) > 0 })
	return rec.requests()[0].Header.Get("X-Hookrelay-Event-Id")
}

// TestRetryDefaultsKeepRetrying: through the real listener, a destination
// that keeps failing does not kill the event with the default limits. With
// the old default of 10 attempts the event was dead after the tenth; the
// delays are shortened here so that many more than 10 fit in the test.
func TestRetryDefaultsKeepRetrying(t *testing.T) {
	rec := failing(t, http.StatusServiceUnavailable)
	tr := startRelay(t, relayYAML(rec.srv.URL, "    retry: {initial: 1ms, max: 5ms}\n"), map[string]string{"plain": plainProvider})
	tr.mustIngest("k", 1)
	id := tr.onlyEventID(rec)
	waitFor(t, 10*time.Second, "25 attempts", func() bool { return len(rec.requests()) >= 25 })
	waitFor(t, 5*time.Second, "the 25th attempt recorded", func() bool { return len(tr.delivery(id).Attempts) >= 25 })
	if d := tr.delivery(id); d.Status != spool.Pending {
		t.Fatalf("after %d attempts the delivery is %s, want pending", len(d.Attempts), d.Status)
	}

	// With nothing written at all, the second try comes within 1s (full
	// jitter over the 1s initial delay), the next ones within 1s doubled,
	// and the event is still pending.
	rec2 := failing(t, http.StatusServiceUnavailable)
	tr2 := startRelay(t, relayYAML(rec2.srv.URL, ""), map[string]string{"plain": plainProvider})
	tr2.mustIngest("k", 1)
	id2 := tr2.onlyEventID(rec2)
	waitFor(t, 5*time.Second, "the second attempt recorded", func() bool { return len(tr2.delivery(id2).Attempts) >= 2 })
	d := tr2.delivery(id2)
	if d.Status != spool.Pending || d.NextAt.IsZero() {
		t.Fatalf("default policy: delivery %s, next attempt %v; want pending with a next attempt", d.Status, d.NextAt)
	}
	// After n attempts the wait is at most 1s doubled n-1 times.
	if n, wait := len(d.Attempts), time.Until(d.NextAt); wait > time.Second<<(n-1) {
		t.Errorf("attempt %d in %v, want at most %v", n+1, wait, time.Second<<(n-1))
	}
}

// TestRetryMaxAge: a delivery that keeps failing with 503 goes dead once it
// is max_age old, after however many attempts fit, not after 10; the last
// attempt is made at max_age. An operator's retry starts its age again.
func TestRetryMaxAge(t *testing.T) {
	const maxAge = time.Second
	rec := failing(t, http.StatusServiceUnavailable)
	tr := startRelay(t, adminRelayYAML(rec.srv.URL, "    retry: {max_age: 1s, initial: 5ms, max: 40ms}\n"), map[string]string{"plain": plainProvider})
	tr.mustIngest("k", 1)
	id := tr.onlyEventID(rec)
	waitFor(t, 10*time.Second, "the delivery dead", func() bool { return tr.delivery(id).Status == spool.Dead })

	ev, err := tr.spool.Event(id)
	must(t, err)
	deadline := ev.ReceivedAt.Add(maxAge)
	d := tr.delivery(id)
	n := len(d.Attempts)
	if n <= 10 {
		t.Errorf("dead after %d attempts; want more than 10 within max_age", n)
	}
	for i, a := range d.Attempts[:n-1] {
		if !a.At.Before(deadline) {
			t.Errorf("attempt %d at %v, after max_age (%v), and the delivery was not dead", i+1, a.At, deadline)
		}
	}
	// The last attempt failed at or after max_age: it started at max_age (the
	// wait before it was cut to end there) or, when it started just before,
	// within the longest wait (40ms) of it.
	if last := d.Attempts[n-1].At; last.Before(deadline.Add(-100*time.Millisecond)) || last.After(deadline.Add(time.Second)) {
		t.Errorf("last attempt at %v, want at max_age (%v)", last, deadline)
	}

	// The operator retries: the age starts again, so it is not dead after
	// one more failure.
	tr.do(http.MethodPost, "/admin/events/"+id+"/retry", "", http.StatusOK, nil)
	waitFor(t, 10*time.Second, "dead again", func() bool {
		d := tr.delivery(id)
		return d.Status == spool.Dead && len(d.Attempts) > n
	})
	if after := len(tr.delivery(id).Attempts) - n; after < 3 {
		t.Errorf("after the operator's retry: dead after %d attempts, want max_age to count from the retry", after)
	}
}

// TestRetryMaxAgeFromSpool: a delivery's age comes from what the spool
// stored (its event's received_at), so a delivery that has been failing
// since before a restart is dead at its first failure after the restart when
// the new configuration's max_age has passed, and its earlier attempts are
// kept.
func TestRetryMaxAgeFromSpool(t *testing.T) {
	rec := failing(t, http.StatusBadGateway)
	tr := startRelay(t, relayYAML(rec.srv.URL, "    retry: {max_age: 0, initial: 5ms, max: 20ms}\n"), map[string]string{"plain": plainProvider})
	tr.mustIngest("k", 1)
	id := tr.onlyEventID(rec)
	ev, err := tr.spool.Event(id)
	must(t, err)
	waitFor(t, 10*time.Second, "the delivery older than 600ms with 12 attempts", func() bool {
		return time.Since(ev.ReceivedAt) > 600*time.Millisecond && len(tr.delivery(id).Attempts) >= 12
	})
	tr.stop()
	before := len(rec.requests())

	writeConfig(t, tr.dir, relayYAML(rec.srv.URL, "    retry: {max_age: 500ms, initial: 5ms, max: 20ms}\n"), map[string]string{"plain": plainProvider})
	tr = tr.restart()
	waitFor(t, 10*time.Second, "the delivery dead", func() bool { return tr.delivery(id).Status == spool.Dead })
	if after := len(rec.requests()) - before; after != 1 {
		t.Errorf("%d attempts after the restart, want 1: the age counts from received_at", after)
	}
	if d := tr.delivery(id); len(d.Attempts) != before+1 {
		t.Errorf("%d attempts recorded, want %d", len(d.Attempts), before+1)
	}
}

// TestRetryMaxAttemptsWithMaxAge: with both limits set, whichever is used up
// first makes the delivery dead.
func TestRetryMaxAttemptsWithMaxAge(t *testing.T) {
	for _, tc := range []struct {
		name, retry string
		attempts    int // exactly, or 0 for "more than 4"
	}{
		{"max_attempts first", "{max_attempts: 4, max_age: 1h, initial: 1ms, max: 5ms}", 4},
		{"max_attempts alone", "{max_attempts: 4, max_age: 0, initial: 1ms, max: 5ms}", 4},
		{"max_age first", "{max_attempts: 1000, max_age: 300ms, initial: 5ms, max: 10ms}", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := failing(t, http.StatusInternalServerError)
			tr := startRelay(t, relayYAML(rec.srv.URL, "    retry: "+tc.retry+"\n"), map[string]string{"plain": plainProvider})
			tr.mustIngest("k", 1)
			id := tr.onlyEventID(rec)
			waitFor(t, 10*time.Second, "the delivery dead", func() bool { return tr.delivery(id).Status == spool.Dead })
			n := len(tr.delivery(id).Attempts)
			if (tc.attempts > 0 && n != tc.attempts) || (tc.attempts == 0 && n <= 4) {
				t.Errorf("dead after %d attempts, want %d (0: more than 4)", n, tc.attempts)
			}
			if got := len(rec.requests()); got != n {
				t.Errorf("destination saw %d requests, %d recorded", got, n)
			}
		})
	}
}
