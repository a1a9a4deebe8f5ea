package engine

import (
	"net/http"
	"testing"
	"testing/synctest"
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

// TestRetryDefaultsKeepRetrying: through the relay's listeners, a
// destination that keeps failing does not kill the event with the default
// limits. With the old default of 10 attempts the event was dead after the
// tenth; the delays are shortened here so that many more than 10 fit in the
// test. It runs on the bubble's clock, so the defaults themselves are then
// followed for three days: every wait within its doubling bound, and the
// last attempt at max_age.
func TestRetryDefaultsKeepRetrying(t *testing.T) { inBubble(t, testRetryDefaultsKeepRetrying) }

func testRetryDefaultsKeepRetrying(t *testing.T) {
	rec := failing(t, http.StatusServiceUnavailable)
	tr := startRelay(t, relayYAML(rec.srv.URL, "    retry: {initial: 1ms, max: 5ms}\n"), map[string]string{"plain": plainProvider})
	tr.mustIngest("k", 1)
	id := tr.onlyEventID(rec)
	waitFor(t, 10*time.Second, "25 attempts", func() bool { return len(rec.requests()) >= 25 })
	waitFor(t, 5*time.Second, "the 25th attempt recorded", func() bool { return len(tr.delivery(id).Attempts) >= 25 })
	if d := tr.delivery(id); d.Status != spool.Pending {
		t.Fatalf("after %d attempts the delivery is %s, want pending", len(d.Attempts), d.Status)
	}
	tr.stop()

	// With nothing written at all, each try comes within 1s doubled
	// after each attempt (full jitter), at most 1h after the last, and
	// the event is pending until it is 72h old.
	rec2 := failing(t, http.StatusServiceUnavailable)
	tr2 := startRelay(t, relayYAML(rec2.srv.URL, ""), map[string]string{"plain": plainProvider})
	tr2.mustIngest("k", 1)
	synctest.Wait()
	id2 := tr2.onlyEventID(rec2)
	ev, err := tr2.spool.Event(id2)
	must(t, err)
	advance(72*time.Hour - time.Nanosecond)
	d := tr2.delivery(id2)
	if d.Status != spool.Pending || d.NextAt.IsZero() {
		t.Fatalf("default policy: after 72h less 1ns, delivery %s, next attempt %v; want pending with a next attempt", d.Status, d.NextAt)
	}
	if n := len(d.Attempts); n < 60 {
		t.Errorf("%d attempts in 72h, want one at least every hour", n)
	}
	for i := 1; i < len(d.Attempts); i++ {
		// After i attempts the wait is at most 1s doubled i-1 times, and 1h.
		if wait, most := d.Attempts[i].At.Sub(d.Attempts[i-1].At), min(time.Second<<min(i-1, 20), time.Hour); wait > most {
			t.Errorf("attempt %d came %v after the one before, want at most %v", i+1, wait, most)
		}
	}
	advance(time.Nanosecond)
	d = tr2.delivery(id2)
	if last := d.Attempts[len(d.Attempts)-1].At; d.Status != spool.Dead || !last.Equal(ev.ReceivedAt.Add(72*time.Hour)) {
		t.Errorf("at 72h: delivery %s, last attempt %v after receipt; want dead, the last attempt at 72h",
			d.Status, last.Sub(ev.ReceivedAt))
	}
	if n := len(rec2.requests()); n != len(d.Attempts) {
		t.Errorf("destination saw %d requests, %d recorded", n, len(d.Attempts))
	}
}

// TestRetryMaxAge: a delivery that keeps failing with 503 goes dead once it
// is max_age old, after however many attempts fit, not after 10; the last
// attempt is made at max_age, exactly, on the bubble's clock. An operator's
// retry starts its age again.
func TestRetryMaxAge(t *testing.T) { inBubble(t, testRetryMaxAge) }

func testRetryMaxAge(t *testing.T) {
	const maxAge = time.Second
	rec := failing(t, http.StatusServiceUnavailable)
	tr := startRelay(t, adminRelayYAML(rec.srv.URL, "    retry: {max_age: 1s, initial: 5ms, max: 40ms}\n"), map[string]string{"plain": plainProvider})
	tr.mustIngest("k", 1)
	synctest.Wait()
	id := tr.onlyEventID(rec)
	ev, err := tr.spool.Event(id)
	must(t, err)
	deadline := ev.ReceivedAt.Add(maxAge)
	advance(time.Until(deadline) - time.Nanosecond)
	if d := tr.delivery(id); d.Status != spool.Pending {
		t.Fatalf("1ns before max_age the delivery is %s, want pending", d.Status)
	}
	advance(time.Nanosecond)

	d := tr.delivery(id)
	n := len(d.Attempts)
	if d.Status != spool.Dead {
		t.Fatalf("at max_age the delivery is %s after %d attempts, want dead", d.Status, n)
	}
	if n <= 10 {
		t.Errorf("dead after %d attempts; want more than 10 within max_age", n)
	}
	for i, a := range d.Attempts[:n-1] {
		if !a.At.Before(deadline) {
			t.Errorf("attempt %d at %v, after max_age (%v), and the delivery was not dead", i+1, a.At, deadline)
		}
	}
	// The last attempt was made at max_age: the wait before it was cut
	// to end there.
	if last := d.Attempts[n-1].At; !last.Equal(deadline) {
		t.Errorf("last attempt at %v, want at max_age (%v)", last, deadline)
	}

	// The operator retries: the age starts again, so it is not dead after
	// one more failure, and dies max_age after the first attempt since.
	tr.do(http.MethodPost, "/admin/events/"+id+"/retry", "", http.StatusOK, nil)
	synctest.Wait()
	retried := tr.delivery(id)
	if len(retried.Attempts) <= n {
		t.Fatalf("no attempt after the operator's retry")
	}
	again := retried.Attempts[n].At.Add(maxAge)
	advance(time.Until(again))
	d = tr.delivery(id)
	if d.Status != spool.Dead || !d.Attempts[len(d.Attempts)-1].At.Equal(again) {
		t.Errorf("after the operator's retry: %s, last attempt at %v; want dead at %v", d.Status, d.Attempts[len(d.Attempts)-1].At, again)
	}
	if after := len(d.Attempts) - n; after < 3 {
		t.Errorf("after the operator's retry: dead after %d attempts, want max_age to count from the retry", after)
	}
}

// TestRetryMaxAgeFromSpool: a delivery's age comes from what the spool
// stored (its event's received_at), so a delivery that has been failing
// since before a restart is dead at its first failure after the restart when
// the new configuration's max_age has passed, and its earlier attempts are
// kept.
func TestRetryMaxAgeFromSpool(t *testing.T) { inBubble(t, testRetryMaxAgeFromSpool) }

func testRetryMaxAgeFromSpool(t *testing.T) {
	rec := failing(t, http.StatusBadGateway)
	tr := startRelay(t, relayYAML(rec.srv.URL, "    retry: {max_age: 0, initial: 5ms, max: 20ms}\n"), map[string]string{"plain": plainProvider})
	tr.mustIngest("k", 1)
	id := tr.onlyEventID(rec)
	ev, err := tr.spool.Event(id)
	must(t, err)
	advance(600*time.Millisecond - time.Since(ev.ReceivedAt))
	if n := len(tr.delivery(id).Attempts); n < 12 {
		t.Fatalf("%d attempts in 600ms, want at least 12", n)
	}
	next := tr.delivery(id).NextAt // nothing moves before time does
	tr.stop()
	before := len(rec.requests())

	writeConfig(t, tr.dir, relayYAML(rec.srv.URL, "    retry: {max_age: 500ms, initial: 5ms, max: 20ms}\n"), map[string]string{"plain": plainProvider})
	tr = tr.restart()
	synctest.Wait()
	if after := len(rec.requests()) - before; time.Now().Before(next) && after != 0 {
		t.Errorf("%d attempts after the restart, before the stored next attempt", after)
	}
	advance(time.Until(next))
	if d := tr.delivery(id); d.Status != spool.Dead {
		t.Fatalf("at its next attempt after the restart the delivery is %s, want dead at its first failure", d.Status)
	}
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
