package engine

// Delivery tests (SPEC 5.2): a real relay on loopback listeners with a real
// bbolt file, forwarding to httptest destinations.

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

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
