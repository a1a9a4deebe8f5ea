package engine

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// TestDeliverOnExhausted: a dead event holds its key (hold) or lets it move
// on (skip), whether it died of a permanent response or of used-up attempts;
// other keys go on either way.
func TestDeliverOnExhausted(t *testing.T) {
	for _, tc := range []struct {
		name     string
		status   int // the answer to event A, always
		extra    string
		attempts int // A's attempts before it is dead
		hold     bool
	}{
		{"hold after permanent 400", 400, "", 1, true},
		{"hold after max_attempts", 500, "    retry: {initial: 1ms, max: 5ms, max_attempts: 3}\n", 3, true},
		{"skip after permanent 400", 400, "    on_exhausted: skip\n", 1, false},
		{"skip after max_attempts", 503, "    on_exhausted: skip\n    retry: {initial: 1ms, max: 5ms, max_attempts: 3}\n", 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(t, func(_ int, r *http.Request) int {
				if r.Header.Get("X-Key") == "k" && r.Header.Get("X-N") == "1" {
					return tc.status
				}
				return http.StatusOK
			})
			tr := startRelay(t, relayYAML(rec.srv.URL, tc.extra+
				"    headers: {X-Key: \"{{ event.key }}\", X-N: \"{{ event.data.n }}\"}\n"), map[string]string{"plain": plainProvider})
			tr.mustIngest("k", 1)  // A
			tr.mustIngest("k", 2)  // B
			tr.mustIngest("k2", 1) // C

			sent := func(key string, n int) (count int, delivered bool) {
				for _, r := range rec.requests() {
					if r.Header.Get("X-Key") == key && r.Header.Get("X-N") == strconv.Itoa(n) {
						count++
						delivered = delivered || r.Status == http.StatusOK
					}
				}
				return count, delivered
			}
			aID := func() string {
				for _, r := range rec.requests() {
					if r.Header.Get("X-Key") == "k" && r.Header.Get("X-N") == "1" {
						return r.Header.Get("X-Hookrelay-Event-Id")
					}
				}
				return ""
			}
			waitFor(t, 10*time.Second, "event A dead", func() bool {
				id := aID()
				return id != "" && tr.delivery(id).Status == spool.Dead
			})
			dead := tr.delivery(aID())
			if len(dead.Attempts) != tc.attempts {
				t.Errorf("A: %d attempts, want %d", len(dead.Attempts), tc.attempts)
			}
			if n, _ := sent("k", 1); n != tc.attempts {
				t.Errorf("A sent %d times, want %d", n, tc.attempts)
			}
			waitFor(t, 10*time.Second, "key k2 delivered", func() bool { _, ok := sent("k2", 1); return ok })

			if !tc.hold {
				waitFor(t, 10*time.Second, "B delivered after A was skipped", func() bool { _, ok := sent("k", 2); return ok })
				if h := tr.heldKeys("dest"); h != 0 {
					t.Errorf("held keys %d, want 0", h)
				}
				// A stays dead and visible; B leaves the queue.
				waitFor(t, 10*time.Second, "B's outcome stored", func() bool { return len(tr.queued("dest")) == 1 })
				if q := tr.queued("dest"); len(q) != 1 || q[0].EventID != dead.EventID || q[0].Status != spool.Dead {
					t.Errorf("queue %+v, want only A, dead", q)
				}
				return
			}

			check := func(tr *testRelay, when string, n int) {
				t.Helper()
				waitFor(t, 10*time.Second, when+": key k held", func() bool { return tr.heldKeys("dest") == 1 })
				// One more event of k2, after A died: the lane is alive.
				tr.mustIngest("k2", n)
				waitFor(t, 10*time.Second, when+": key k2 still delivered", func() bool { _, ok := sent("k2", n); return ok })
				if n, _ := sent("k", 2); n != 0 {
					t.Fatalf("%s: B sent %d times while A is dead and held", when, n)
				}
				// The recorder sees k2's event before its outcome is stored.
				waitFor(t, 10*time.Second, when+": k2's event leaves the queue", func() bool { return len(tr.queued("dest")) == 2 })
				q := tr.queued("dest")
				if len(q) != 2 || q[0].EventID != dead.EventID || q[0].Status != spool.Dead ||
					q[1].Key != "k" || q[1].Status != spool.Pending || len(q[1].Attempts) != 0 {
					t.Fatalf("%s: queue %+v, want A dead then B pending without attempts", when, q)
				}
			}
			check(tr, "before restart", 2)
			// The hold survives a restart: the rebuilt queue starts held.
			tr = tr.restart()
			check(tr, "after restart", 3)
			if n, _ := sent("k", 1); n != tc.attempts {
				t.Errorf("A sent %d times after restart, want still %d", n, tc.attempts)
			}
		})
	}
}

// TestDeliverRetryOn: which responses are retried, and when.
func TestDeliverRetryOn(t *testing.T) {
	retryAfter := func(status int, after string) func(int, *http.Request, []byte) reply {
		return func(n int, _ *http.Request, _ []byte) reply {
			if n == 1 {
				return reply{status: status, header: map[string]string{"Retry-After": after}}
			}
			return reply{}
		}
	}
	for _, tc := range []struct {
		name     string
		extra    string
		reply    func(int, *http.Request, []byte) reply
		attempts int
		want     spool.Status
		minGaps  []time.Duration // lower bounds between consecutive attempts
	}{
		{"400 is permanent", "", statuses(400), 1, spool.Dead, nil},
		{"404 is permanent", "", statuses(404), 1, spool.Dead, nil},
		{"408 is retried by default", "    retry: {initial: 1ms}\n", statuses(408), 2, spool.Delivered, nil},
		{"500 not in retry_on is permanent", "    retry: {retry_on: [429]}\n", statuses(500), 1, spool.Dead, nil},
		{"4xx class retries 404", "    retry: {initial: 1ms, retry_on: [\"4xx\"]}\n", statuses(404, 404), 3, spool.Delivered, nil},
		{"429 honours Retry-After", "    retry: {initial: 1ms, max: 10s, jitter: none}\n",
			retryAfter(429, "1"), 2, spool.Delivered, []time.Duration{900 * time.Millisecond}},
		{"503 honours Retry-After", "    retry: {initial: 1ms, max: 10s, jitter: none}\n",
			retryAfter(503, "1"), 2, spool.Delivered, []time.Duration{900 * time.Millisecond}},
		// Without the cap the retry would come in an hour, after waitFor gives up.
		{"Retry-After capped by retry.max", "    retry: {initial: 1ms, max: 200ms}\n",
			retryAfter(503, "3600"), 2, spool.Delivered, nil},
		{"Retry-After as an HTTP date", "    retry: {initial: 1ms, max: 10s, jitter: none}\n",
			func(n int, _ *http.Request, _ []byte) reply {
				if n == 1 {
					return reply{status: 503, header: map[string]string{"Retry-After": time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat)}}
				}
				return reply{}
			}, 2, spool.Delivered, []time.Duration{900 * time.Millisecond}},
		// A redirect is not a 2xx: following it would turn the POST into a
		// GET without the event and count its 200 as delivered.
		{"302 is not followed and is permanent", "",
			func(n int, r *http.Request, _ []byte) reply {
				if r.URL.Path == "/elsewhere" {
					return reply{}
				}
				return reply{status: http.StatusFound, header: map[string]string{"Location": "/elsewhere"}}
			}, 1, spool.Dead, nil},
		{"schedule overrides the backoff, last delay repeats", "    retry: {initial: 1ms, schedule: [300ms, 600ms]}\n",
			statuses(500, 502, 503), 4, spool.Delivered, []time.Duration{280 * time.Millisecond, 580 * time.Millisecond, 580 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSink(t, tc.reply)
			tr := startRelay(t, relayYAML(s.srv.URL, tc.extra), map[string]string{"plain": plainProvider})
			tr.mustIngest("k", 1)
			var d *spool.Delivery
			waitFor(t, 10*time.Second, "delivery settled", func() bool {
				h := s.requests()
				if len(h) == 0 {
					return false
				}
				d = tr.delivery(h[0].header.Get("X-Hookrelay-Event-Id"))
				return d.Status == spool.Delivered || d.Status == spool.Dead
			})
			h := s.requests()
			if d.Status != tc.want || len(d.Attempts) != tc.attempts || len(h) != tc.attempts {
				t.Fatalf("status %s after %d attempts (%d requests), want %s after %d", d.Status, len(d.Attempts), len(h), tc.want, tc.attempts)
			}
			for i, a := range d.Attempts {
				if a.Status != h[i].status {
					t.Errorf("attempt %d recorded status %d, destination answered %d", i+1, a.Status, h[i].status)
				}
			}
			for i, least := range tc.minGaps {
				if gap := h[i+1].at.Sub(h[i].at); gap < least {
					t.Errorf("attempt %d came %v after attempt %d, want at least %v", i+2, gap, i+1, least)
				}
			}
		})
	}
}

// TestDeliverNetworkError: no response at all is retried when retry_on
// lists network (the default), and recorded with its error.
func TestDeliverNetworkError(t *testing.T) {
	closedAddr := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		addr := ln.Addr().String()
		_ = ln.Close()
		return addr
	}
	t.Run("retried until the destination is up", func(t *testing.T) {
		addr := closedAddr(t)
		tr := startRelay(t, relayYAML("http://"+addr+"/hook", "    retry: {schedule: [50ms], max_attempts: 1000}\n"),
			map[string]string{"plain": plainProvider})
		tr.mustIngest("k", 1)
		var d *spool.Delivery
		waitFor(t, 10*time.Second, "two failed attempts", func() bool {
			q := tr.queued("dest")
			if len(q) != 1 {
				return false
			}
			d = q[0]
			return len(d.Attempts) >= 2
		})
		for i, a := range d.Attempts {
			if a.Status != 0 || a.Error == "" || a.At.IsZero() {
				t.Fatalf("attempt %d: %+v, want status 0 with an error", i+1, a)
			}
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("cannot listen on %s again: %v", addr, err)
		}
		s := &sink{}
		s.srv = httptest.NewUnstartedServer(s.handler())
		_ = s.srv.Listener.Close()
		s.srv.Listener = ln
		s.srv.Start()
		t.Cleanup(s.srv.Close)
		waitFor(t, 10*time.Second, "delivered once the destination listens", func() bool {
			return tr.delivery(d.EventID).Status == spool.Delivered
		})
		h := s.requests()
		if a, _ := strconv.Atoi(h[0].header.Get("X-Hookrelay-Attempt")); len(h) != 1 || a < 3 {
			t.Fatalf("%d requests, attempt %q; want one request, attempt 3 or later", len(h), h[0].header.Get("X-Hookrelay-Attempt"))
		}
	})
	t.Run("timeout is a network error", func(t *testing.T) {
		s := newSink(t, func(n int, r *http.Request, _ []byte) reply {
			if n == 1 {
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			}
			return reply{}
		})
		tr := startRelay(t, relayYAML(s.srv.URL, "    timeout: 200ms\n    retry: {initial: 1ms}\n"),
			map[string]string{"plain": plainProvider})
		tr.mustIngest("k", 1)
		waitFor(t, 10*time.Second, "delivered on the second attempt", func() bool {
			h := s.requests()
			return len(h) == 2 && tr.delivery(h[0].header.Get("X-Hookrelay-Event-Id")).Status == spool.Delivered
		})
		d := tr.delivery(s.requests()[0].header.Get("X-Hookrelay-Event-Id"))
		if a := d.Attempts[0]; len(d.Attempts) != 2 || a.Status != 0 || a.Error == "" || a.DurationMS < 150 {
			t.Fatalf("attempts %+v, want a timed-out first attempt", d.Attempts)
		}
	})
	t.Run("permanent when network is not in retry_on", func(t *testing.T) {
		tr := startRelay(t, relayYAML("http://"+closedAddr(t)+"/hook", "    retry: {initial: 1ms, retry_on: [\"5xx\"]}\n"),
			map[string]string{"plain": plainProvider})
		tr.mustIngest("k", 1)
		waitFor(t, 10*time.Second, "dead", func() bool {
			q := tr.queued("dest")
			return len(q) == 1 && q[0].Status == spool.Dead
		})
		if q := tr.queued("dest"); len(q[0].Attempts) != 1 {
			t.Fatalf("%d attempts, want 1", len(q[0].Attempts))
		}
	})
}

// TestDeliverRenderError: an event our own configuration cannot render
// (here a URL template whose path placeholder gives "..", which would not stay
// one segment) is dead at once: no request was made, and another attempt
// would render it the same way. (A template that picks the scheme, as this
// test used before, is now refused at load: SPEC 2.)
func TestDeliverRenderError(t *testing.T) {
	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL+"/{{ event.key == 'bad' ? '..' : 'ok' }}",
		"    retry: {initial: 1ms}\n    on_exhausted: skip\n"), map[string]string{"plain": plainProvider})
	tr.mustIngest("bad", 1)
	tr.mustIngest("good", 1)
	waitFor(t, 10*time.Second, "the good event delivered", func() bool { return len(rec.delivered(t)) == 1 })
	waitFor(t, 10*time.Second, "the bad event dead", func() bool {
		q := tr.queued("dest")
		return len(q) == 1 && q[0].Status == spool.Dead
	})
	d := tr.queued("dest")[0]
	if len(d.Attempts) != 1 || d.Attempts[0].Status != 0 || !strings.Contains(d.Attempts[0].Error, "url") {
		t.Fatalf("attempts %+v, want one, with the url error", d.Attempts)
	}
}

// TestDeliverAttemptsRecorded: every attempt is in the spool with its status,
// duration and the first KiB of the response.
func TestDeliverAttemptsRecorded(t *testing.T) { inBubble(t, testDeliverAttemptsRecorded) }

func testDeliverAttemptsRecorded(t *testing.T) {
	body := strings.Repeat("0123456789abcdef", 320) // 5 KiB
	s := newSink(t, func(n int, _ *http.Request, _ []byte) reply {
		time.Sleep(30 * time.Millisecond)
		if n <= 2 {
			return reply{status: 500 + n, body: body}
		}
		return reply{status: http.StatusCreated, body: body}
	})
	tr := startRelay(t, relayYAML(s.srv.URL, "    retry: {initial: 1ms, max: 5ms}\n"), map[string]string{"plain": plainProvider})
	start := time.Now()
	tr.mustIngest("k", 1)
	var d *spool.Delivery
	waitFor(t, 10*time.Second, "delivered", func() bool {
		h := s.requests()
		if len(h) == 0 {
			return false
		}
		d = tr.delivery(h[0].header.Get("X-Hookrelay-Event-Id"))
		return d.Status == spool.Delivered
	})
	if len(d.Attempts) != 3 {
		t.Fatalf("%d attempts recorded, want 3", len(d.Attempts))
	}
	prev := start.Add(-time.Second)
	for i, a := range d.Attempts {
		want := []int{501, 502, 201}[i]
		if a.Status != want || a.Error != "" {
			t.Errorf("attempt %d: status %d error %q, want %d", i+1, a.Status, a.Error, want)
		}
		if a.DurationMS != 30 {
			t.Errorf("attempt %d: duration_ms %d, want the 30ms the destination took", i+1, a.DurationMS)
		}
		if a.Response != body[:1024] {
			t.Errorf("attempt %d: response of %d bytes, want the first 1024 of the body", i+1, len(a.Response))
		}
		if !a.At.After(prev) {
			t.Errorf("attempt %d: at %v, not after %v", i+1, a.At, prev)
		}
		prev = a.At
	}
}

// TestDeliverRetrySurvivesRestart: a retry scheduled before a restart is made
// after it, with the attempt count kept.
func TestDeliverRetrySurvivesRestart(t *testing.T) { inBubble(t, testDeliverRetrySurvivesRestart) }

func testDeliverRetrySurvivesRestart(t *testing.T) {
	s := newSink(t, statuses(500))
	tr := startRelay(t, relayYAML(s.srv.URL, "    retry: {initial: 2s, jitter: none}\n"), map[string]string{"plain": plainProvider})
	tr.mustIngest("k", 1)
	waitFor(t, 10*time.Second, "first attempt", func() bool { return len(s.requests()) == 1 })
	id := s.requests()[0].header.Get("X-Hookrelay-Event-Id")
	waitFor(t, 5*time.Second, "first attempt recorded", func() bool { return len(tr.delivery(id).Attempts) == 1 })
	tr = tr.restart()
	if d := tr.delivery(id); d.Status != spool.Pending || d.NextAt.IsZero() {
		t.Fatalf("after restart: %+v, want pending with a next attempt time", d)
	}
	waitFor(t, 10*time.Second, "second attempt after restart", func() bool { return len(s.requests()) == 2 })
	h := s.requests()
	if a := h[1].header.Get("X-Hookrelay-Attempt"); a != "2" {
		t.Errorf("X-Hookrelay-Attempt %q after restart, want 2", a)
	}
	if gap := h[1].at.Sub(h[0].at); gap != 2*time.Second {
		t.Errorf("retry came %v after the first attempt, want the 2s delay kept across the restart", gap)
	}
	synctest.Wait()
	if st := tr.delivery(id).Status; st != spool.Delivered {
		t.Errorf("after the second attempt the delivery is %s, want delivered", st)
	}
	if d := tr.delivery(id); len(d.Attempts) != 2 {
		t.Errorf("%d attempts, want 2", len(d.Attempts))
	}
}
