package engine

// Delivery tests (SPEC 5.2): a real relay on loopback listeners with a real
// bbolt file, forwarding to httptest destinations.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hookrelay/hookrelay/engine/dispatch"
	"github.com/hookrelay/hookrelay/engine/spool"
)

// sink is a destination that, unlike recorder, lets a test set response
// headers and body, and records when each request came.
type sink struct {
	srv   *httptest.Server
	reply func(n int, r *http.Request, body []byte) reply

	mu   sync.Mutex
	n    int
	hits []hit
}

// reply is what a sink answers; status 0 means 200.
type reply struct {
	status int
	header map[string]string
	body   string
}

// hit is one request a sink received.
type hit struct {
	at     time.Time
	header http.Header
	body   []byte
	status int
}

func newSink(t *testing.T, f func(n int, r *http.Request, body []byte) reply) *sink {
	s := &sink{reply: f}
	s.srv = testServer(t, s.handler())
	return s
}

func (s *sink) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.n++
		n := s.n
		s.mu.Unlock()
		rep := reply{status: http.StatusOK}
		if s.reply != nil {
			rep = s.reply(n, r, body)
		}
		if rep.status == 0 {
			rep.status = http.StatusOK
		}
		s.mu.Lock()
		s.hits = append(s.hits, hit{at: at, header: r.Header.Clone(), body: body, status: rep.status})
		s.mu.Unlock()
		for k, v := range rep.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(rep.status)
		_, _ = io.WriteString(w, rep.body)
	})
}

func (s *sink) requests() []hit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]hit(nil), s.hits...)
}

// statuses answers the n-th request with seq[n-1], and 200 after the end.
func statuses(seq ...int) func(int, *http.Request, []byte) reply {
	return func(n int, _ *http.Request, _ []byte) reply {
		if n <= len(seq) {
			return reply{status: seq[n-1]}
		}
		return reply{}
	}
}

// eventBody is a plainProvider request body.
func eventBody(key string, n int) string {
	return fmt.Sprintf(`{"id":"%s-%d","key":%q,"type":"loan.updated","n":%d}`, key, n, key, n)
}

// ingest posts one event; unlike tr.post it may run outside the test goroutine.
func (tr *testRelay) ingest(body string) error { return tr.ingestAt("/in/plain", body) }

func (tr *testRelay) mustIngest(key string, n int) {
	tr.t.Helper()
	must(tr.t, tr.ingest(eventBody(key, n)))
}

// queued returns the deliveries to dest that are not final, in commit order.
func (tr *testRelay) queued(dest string) []*spool.Delivery {
	tr.t.Helper()
	var out []*spool.Delivery
	must(tr.t, tr.spool.Queue(dest, func(d *spool.Delivery) error {
		out = append(out, d)
		return nil
	}))
	return out
}

// delivery reads one delivery to "dest" from the spool.
func (tr *testRelay) delivery(eventID string) *spool.Delivery {
	tr.t.Helper()
	d, err := tr.spool.Delivery("dest", eventID)
	must(tr.t, err)
	return d
}

// heldKeys is the dispatcher's count of keys held behind a dead event.
func (tr *testRelay) heldKeys(dest string) int {
	st, _ := tr.dispatch.Stats(dest)
	return st.HeldKeys
}

// laneStats is the state of dest's lane; a test that asks has one.
func laneStats(tr *testRelay, dest string) dispatch.Stats {
	st, ok := tr.dispatch.Stats(dest)
	if !ok {
		tr.t.Fatalf("no lane %s", dest)
	}
	return st
}

// envelope decodes a delivered envelope's key and data.n.
func envelope(t *testing.T, body []byte) (id, key string, n int) {
	t.Helper()
	var e struct {
		ID   string         `json:"id"`
		Key  string         `json:"key"`
		Data map[string]any `json:"data"`
	}
	must(t, json.Unmarshal(body, &e))
	f, _ := e.Data["n"].(float64)
	return e.ID, e.Key, int(f)
}

// gate returns a channel that blocking handlers wait on and the function
// that closes it, safe to call twice. Tests register release with t.Cleanup
// after starting the relay, so that it runs before the relay's own cleanup
// and the relay's drain does not wait on a hung destination.
func gate() (ch chan struct{}, release func()) {
	ch = make(chan struct{})
	var once sync.Once
	return ch, func() { once.Do(func() { close(ch) }) }
}

// TestDeliverOrderUnderFailure: with a destination failing 30% of requests,
// every key's events are delivered once each, in ingest order, and the next
// event of a key is not sent before the previous one succeeded.
func TestDeliverOrderUnderFailure(t *testing.T) {
	const keys, perKey, posters = 20, 25, 5
	var rmu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	rec := newRecorder(t, func(int, *http.Request) int {
		rmu.Lock()
		defer rmu.Unlock()
		if rng.Float64() < 0.3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	tr := startRelay(t, relayYAML(rec.srv.URL,
		"    retry: {initial: 1ms, max: 20ms, max_attempts: 50}\n"), map[string]string{"plain": plainProvider})

	// Each poster owns keys/posters keys and sends each key's events in
	// order, interleaving its keys; the posters run concurrently.
	errc := make(chan error, posters)
	for p := range posters {
		go func() {
			for n := 1; n <= perKey; n++ {
				for k := p; k < keys; k += posters {
					if err := tr.ingest(eventBody(fmt.Sprintf("key-%02d", k), n)); err != nil {
						errc <- err
						return
					}
				}
			}
			errc <- nil
		}()
	}
	for range posters {
		must(t, <-errc)
	}
	// A restart midway: the rebuilt queues keep the order and the attempt counts.
	waitFor(t, 30*time.Second, "a third delivered", func() bool { return len(rec.delivered(t)) >= keys*perKey/3 })
	tr = tr.restart()
	waitFor(t, 45*time.Second, "all events delivered", func() bool { return len(rec.delivered(t)) >= keys*perKey })

	got := rec.requests()
	next := map[string]int{}       // key -> the n whose requests we expect now
	attempts := map[string][]int{} // event id -> X-Hookrelay-Attempt of each request
	statusOf := map[string][]int{} // event id -> status of each request
	failed := 0
	for i, r := range got {
		id, key, n := envelope(t, r.Body)
		if next[key] == 0 {
			next[key] = 1
		}
		if n != next[key] {
			t.Fatalf("request %d: key %s event %d sent while event %d had not succeeded", i, key, n, next[key])
		}
		if r.Status == http.StatusOK {
			next[key]++
		} else {
			failed++
		}
		a, err := strconv.Atoi(r.Header.Get("X-Hookrelay-Attempt"))
		must(t, err)
		attempts[id] = append(attempts[id], a)
		statusOf[id] = append(statusOf[id], r.Status)
	}
	if len(next) != keys {
		t.Fatalf("%d keys delivered, want %d", len(next), keys)
	}
	for key, n := range next {
		if n != perKey+1 {
			t.Errorf("key %s: %d events delivered, want %d", key, n-1, perKey)
		}
	}
	if len(attempts) != keys*perKey {
		t.Fatalf("%d distinct events sent, want %d", len(attempts), keys*perKey)
	}
	for id, as := range attempts {
		for i, a := range as {
			if a != i+1 {
				t.Fatalf("event %s: attempts %v, want 1, 2, 3, ...", id, as)
			}
		}
		for i, s := range statusOf[id] {
			if (s == http.StatusOK) != (i == len(as)-1) {
				t.Fatalf("event %s: statuses %v: want failures then exactly one 200", id, statusOf[id])
			}
		}
	}
	if failed == 0 {
		t.Fatal("the destination never failed: the test proves nothing")
	}
	// The destination answers before the relay records the answer: give the
	// last outcomes their moment to reach the spool.
	waitFor(t, 5*time.Second, "the spool queue to drain", func() bool { return len(tr.queued("dest")) == 0 })
	t.Logf("%d requests, %d failed", len(got), failed)
}

// TestDeliverKeysInParallel: a key whose destination hangs does not stop the
// other keys.
func TestDeliverKeysInParallel(t *testing.T) {
	block, release := gate()
	entered := make(chan struct{}, 1)
	rec := newRecorder(t, func(_ int, r *http.Request) int {
		if r.Header.Get("X-Key") == "slow" {
			entered <- struct{}{}
			<-block
		}
		return http.StatusOK
	})
	tr := startRelay(t, relayYAML(rec.srv.URL, "    concurrency: 4\n    timeout: 30s\n"+
		"    headers: {X-Key: \"{{ event.key }}\"}\n"), map[string]string{"plain": plainProvider})
	t.Cleanup(release)

	tr.mustIngest("slow", 1)
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow key was never sent")
	}
	for n := 1; n <= 3; n++ {
		for k := range 6 {
			tr.mustIngest(fmt.Sprintf("fast-%d", k), n)
		}
	}
	waitFor(t, 10*time.Second, "the fast keys delivered while the slow one hangs", func() bool {
		return len(rec.delivered(t)) == 18
	})
	release()
	waitFor(t, 10*time.Second, "the slow key delivered", func() bool { return len(rec.delivered(t)) == 19 })
}

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

// TestDeliverHeaders: the headers every delivery carries (SPEC 4.2).
func TestDeliverHeaders(t *testing.T) {
	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL, "    headers: {X-Source: hookrelay-test}\n"), map[string]string{"plain": plainProvider})
	tr.mustIngest("k7", 1)
	waitFor(t, 10*time.Second, "delivery", func() bool { return len(rec.requests()) == 1 })
	r := rec.requests()[0]
	var env map[string]any
	must(t, json.Unmarshal(r.Body, &env))
	for name, want := range map[string]string{
		"Idempotency-Key":        "plain:k7-1",
		"X-Hookrelay-Event-Id":   env["id"].(string),
		"X-Hookrelay-Provider":   "plain",
		"X-Hookrelay-Event-Type": "loan.updated",
		"X-Hookrelay-Attempt":    "1",
		"Content-Type":           "application/json",
		"X-Source":               "hookrelay-test",
	} {
		if got := r.Header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if env["idempotency_id"] != "plain:k7-1" || env["provider"] != "plain" || env["key"] != "k7" || env["source"] != "webhook" {
		t.Errorf("envelope %v", env)
	}
}

// TestDeliverAuth: the four ways we authenticate to a destination.
func TestDeliverAuth(t *testing.T) {
	for _, tc := range []struct {
		name, path, auth string
		check            func(r received) string // "" when fine
	}{
		{"basic", "/hook", "{kind: basic, username: relay, password: s3cret}", func(r received) string {
			req := &http.Request{Header: r.Header}
			if u, p, ok := req.BasicAuth(); !ok || u != "relay" || p != "s3cret" {
				return fmt.Sprintf("basic auth %q %q %v", u, p, ok)
			}
			return ""
		}},
		{"bearer default scheme", "/hook", "{kind: bearer, token: tok}", authIs("Bearer tok")},
		{"bearer custom scheme", "/hook", "{kind: bearer, token: tok, scheme: Token}", authIs("Token tok")},
		{"bearer bare token", "/hook", `{kind: bearer, token: tok, scheme: ""}`, authIs("tok")},
		{"header default name", "/hook", "{kind: header, api_key: k3y}", headerIs("API-KEY", "k3y")},
		{"header custom name", "/hook", "{kind: header, api_key: k3y, name: X-Api-Token}", headerIs("X-Api-Token", "k3y")},
		{"query default name, own query kept", "/hook?tenant=a%20b&x=1", "{kind: query, api_key: k3y}", func(r received) string {
			q, err := url.ParseQuery(r.Query)
			if err != nil || q.Get("API-KEY") != "k3y" || q.Get("tenant") != "a b" || q.Get("x") != "1" || r.Path != "/hook" {
				return fmt.Sprintf("path %q query %q", r.Path, r.Query)
			}
			return ""
		}},
		{"query custom name", "/hook", "{kind: query, api_key: k3y, name: token}", func(r received) string {
			if r.Query != "token=k3y" {
				return fmt.Sprintf("query %q", r.Query)
			}
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(t, nil)
			tr := startRelay(t, relayYAML(rec.srv.URL+tc.path, "    auth: "+tc.auth+"\n"), map[string]string{"plain": plainProvider})
			tr.mustIngest("k", 1)
			waitFor(t, 10*time.Second, "delivery", func() bool { return len(rec.requests()) == 1 })
			if msg := tc.check(rec.requests()[0]); msg != "" {
				t.Error(msg)
			}
		})
	}
}

func authIs(want string) func(received) string { return headerIs("Authorization", want) }

func headerIs(name, want string) func(received) string {
	return func(r received) string {
		if got := r.Header.Values(name); len(got) != 1 || got[0] != want {
			return fmt.Sprintf("%s: %q, want %q", name, got, want)
		}
		return ""
	}
}

// TestDeliverSigned: with sign:, the Standard Webhooks headers verify.
func TestDeliverSigned(t *testing.T) {
	key := []byte("a signing key of some thirty-two bytes")
	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL, "    sign: {secret: whsec_"+base64.StdEncoding.EncodeToString(key)+"}\n"),
		map[string]string{"plain": plainProvider})
	tr.mustIngest("k", 1)
	waitFor(t, 10*time.Second, "delivery", func() bool { return len(rec.requests()) == 1 })
	r := rec.requests()[0]
	id, ts, sig := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
	if id == "" || id != r.Header.Get("X-Hookrelay-Event-Id") {
		t.Errorf("webhook-id %q, want the event id %q", id, r.Header.Get("X-Hookrelay-Event-Id"))
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Minute {
		t.Errorf("webhook-timestamp %q, want unix seconds of now", ts)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(r.Body)
	if want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)); sig != want {
		t.Errorf("webhook-signature %q, want %q", sig, want)
	}
}

// TestDeliverTemplatesAndBody: {{ }} in URL and headers, and the body modes.
func TestDeliverTemplatesAndBody(t *testing.T) {
	const raw = `{ "id": "r-1",  "key": "k/1", "type": "loan.paid", "n": 3 }` // spacing kept in raw mode
	for _, tc := range []struct {
		name, body string
		check      func(t *testing.T, body []byte)
	}{
		{"envelope", "", func(t *testing.T, body []byte) {
			var e map[string]any
			must(t, json.Unmarshal(body, &e))
			if e["key"] != "k/1" || e["type"] != "loan.paid" || e["idempotency_id"] != "plain:r-1" {
				t.Errorf("envelope %s", body)
			}
			var rawField map[string]any
			must(t, json.Unmarshal([]byte(raw), &rawField))
			if fmt.Sprint(e["raw"]) != fmt.Sprint(rawField) {
				t.Errorf("envelope raw %v, want %v", e["raw"], rawField)
			}
		}},
		{"raw", "raw", func(t *testing.T, body []byte) {
			if string(body) != raw {
				t.Errorf("body %q, want the provider's bytes %q", body, raw)
			}
		}},
		{"expression", `'{"t": event.type, "k": event.key, "n": event.data.n, "lender": body.id}'`, func(t *testing.T, body []byte) {
			var e map[string]any
			must(t, json.Unmarshal(body, &e))
			if len(e) != 4 || e["t"] != "loan.paid" || e["k"] != "k/1" || e["n"] != 3.0 || e["lender"] != "r-1" {
				t.Errorf("body %s", body)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(t, nil)
			extra := "    headers: {X-Key: \"{{ event.key }}\", X-Static: plain}\n"
			if tc.body != "" {
				extra += "    body: " + tc.body + "\n"
			}
			tr := startRelay(t, relayYAML(rec.srv.URL+"/events/{{ event.type }}", extra), map[string]string{"plain": plainProvider})
			resp := tr.post("/in/plain", raw, authPlain)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("ingest status %d", resp.StatusCode)
			}
			waitFor(t, 10*time.Second, "delivery", func() bool { return len(rec.requests()) == 1 })
			r := rec.requests()[0]
			if r.Path != "/events/loan.paid" || r.Header.Get("X-Key") != "k/1" || r.Header.Get("X-Static") != "plain" {
				t.Errorf("path %q, X-Key %q, X-Static %q", r.Path, r.Header.Get("X-Key"), r.Header.Get("X-Static"))
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			tc.check(t, r.Body)
		})
	}
}

// TestDeliverRate: rate caps requests per second over all keys.
func TestDeliverRate(t *testing.T) { inBubble(t, testDeliverRate) }

func testDeliverRate(t *testing.T) {
	var mu sync.Mutex
	var times []time.Time
	rec := newRecorder(t, func(int, *http.Request) int {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		return http.StatusOK
	})
	tr := startRelay(t, relayYAML(rec.srv.URL, "    rate: 20\n"), map[string]string{"plain": plainProvider})
	for i := range 30 {
		tr.mustIngest(fmt.Sprintf("k%d", i), 1)
	}
	waitFor(t, 20*time.Second, "30 deliveries", func() bool { return len(rec.delivered(t)) == 30 })
	mu.Lock()
	defer mu.Unlock()
	// At 20/s with a burst of 1, 30 requests come 50ms apart: 1.45 s.
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < 50*time.Millisecond-time.Microsecond || gap > 50*time.Millisecond+time.Microsecond {
			t.Errorf("request %d came %v after the one before, want 50ms at rate 20/s", i+1, gap)
		}
	}
}

// TestDeliverOrderingNone: with ordering: none, events of one key go in
// parallel.
func TestDeliverOrderingNone(t *testing.T) {
	block, release := gate()
	rec := newRecorder(t, func(_ int, r *http.Request) int {
		if r.Header.Get("X-N") == "1" {
			<-block
		}
		return http.StatusOK
	})
	tr := startRelay(t, relayYAML(rec.srv.URL, "    ordering: none\n    timeout: 30s\n"+
		"    headers: {X-N: \"{{ event.data.n }}\"}\n"), map[string]string{"plain": plainProvider})
	t.Cleanup(release)
	tr.mustIngest("k", 1)
	tr.mustIngest("k", 2)
	waitFor(t, 10*time.Second, "the second event delivered while the first hangs", func() bool {
		d := rec.delivered(t)
		return len(d) == 1 && d[0]["data"].(map[string]any)["n"] == 2.0
	})
	release()
	waitFor(t, 10*time.Second, "the first event delivered", func() bool { return len(rec.delivered(t)) == 2 })
}

// TestDeliverShutdown: stopping the relay finishes the attempt in flight but
// starts no new ones; the rest go after a restart, each once.
func TestDeliverShutdown(t *testing.T) { inBubble(t, testDeliverShutdown) }

func testDeliverShutdown(t *testing.T) {
	const events = 20
	s := newSink(t, func(int, *http.Request, []byte) reply {
		time.Sleep(100 * time.Millisecond)
		return reply{}
	})
	tr := startRelay(t, relayYAML(s.srv.URL, "    concurrency: 1\n"), map[string]string{"plain": plainProvider})
	for i := range events {
		tr.mustIngest(fmt.Sprintf("k%d", i), 1)
	}
	synctest.Wait() // the first request is in flight: its answer takes 100ms
	before := len(s.requests())
	tr.stop()
	if n := len(s.requests()); n != before+1 {
		t.Errorf("%d requests by the time the relay stopped, %d when it was told to: want the one in flight finished, and no other", n, before)
	}
	tr = tr.restart()
	waitFor(t, 20*time.Second, "every event delivered after the restart", func() bool { return len(tr.queued("dest")) == 0 })
	seen := map[string]bool{}
	for _, h := range s.requests() {
		id := h.header.Get("X-Hookrelay-Event-Id")
		if seen[id] {
			t.Errorf("event %s sent twice", id)
		}
		seen[id] = true
	}
	if len(seen) != events {
		t.Errorf("%d events sent, want %d", len(seen), events)
	}
}

// TestDeliverConcurrencyBoundsRequests: `concurrency` is the bound on
// requests in flight to a destination, however many workers wait on the spool.
func TestDeliverConcurrencyBoundsRequests(t *testing.T) {
	inBubble(t, testDeliverConcurrencyBoundsRequests)
}

func testDeliverConcurrencyBoundsRequests(t *testing.T) {
	var mu sync.Mutex
	inflight, peak := 0, 0
	rec := newRecorder(t, func(int, *http.Request) int {
		mu.Lock()
		inflight++
		peak = max(peak, inflight)
		mu.Unlock()
		time.Sleep(30 * time.Millisecond)
		mu.Lock()
		inflight--
		mu.Unlock()
		return http.StatusOK
	})
	tr := startRelay(t, relayYAML(rec.srv.URL, "    concurrency: 2\n"), map[string]string{"plain": plainProvider})
	for i := range 12 {
		tr.mustIngest(fmt.Sprintf("k%d", i), 1)
	}
	// Two at a time, never fewer: six rounds of 30ms.
	advance(180 * time.Millisecond)
	if n := len(rec.delivered(t)); n != 12 {
		t.Errorf("%d of 12 requests of 30ms delivered in 180ms, want all with 2 always in flight", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if peak != 2 {
		t.Errorf("%d requests in flight at once, want 2 (concurrency)", peak)
	}
}
