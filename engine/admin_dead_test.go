package engine

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// deadLetter is the scenario of a destination that refuses A1 (key k) for
// good while A2 of k waits behind it.
type deadLetter struct {
	tr     *testRelay
	s      *sink
	fixed  *atomic.Bool
	a1, a2 string
}

// newDeadLetter starts a relay whose destination times A1 out once, then
// answers it 400 until fixed; everything else gets 200. It returns once A1
// is dead and holds k, with A2 queued behind it and B1 of key j delivered.
func newDeadLetter(t *testing.T, destExtra string) *deadLetter {
	fixed := new(atomic.Bool)
	var a1Tries atomic.Int32
	s := newSink(t, func(_ int, r *http.Request, body []byte) reply {
		var e struct {
			Key  string
			Data struct{ N int }
		}
		_ = json.Unmarshal(body, &e)
		if e.Key != "k" || e.Data.N != 1 || fixed.Load() {
			return reply{}
		}
		if a1Tries.Add(1) == 1 {
			<-r.Context().Done() // answers only after the relay gave up (timeout)
			return reply{status: http.StatusGatewayTimeout}
		}
		return reply{status: http.StatusBadRequest, body: `{"error":"invalid iban"}`}
	})
	tr := startRelay(t, adminRelayYAML(s.srv.URL,
		"    timeout: 150ms\n    retry: {initial: 1ms, max: 5ms}\n"+destExtra), map[string]string{"plain": plainProvider})
	tr.mustIngest("k", 1)
	tr.mustIngest("k", 2)
	tr.mustIngest("j", 1)
	dl := &deadLetter{tr: tr, s: s, fixed: fixed, a1: tr.eventID("k", 1), a2: tr.eventID("k", 2)}
	waitFor(t, 10*time.Second, "A1 dead and B1 delivered", func() bool {
		return len(tr.events("status=dead").Items) == 1 && len(okHits(t, s)) == 1
	})
	return dl
}

// TestAdminDeadLetter: SPEC 6's dead-letter workflow, from the failure to
// the replay, through the admin listener.
func TestAdminDeadLetter(t *testing.T) {
	// inspect checks what the admin API shows of a held key.
	inspect := func(t *testing.T, dl *deadLetter) {
		tr := dl.tr
		waitFor(t, 5*time.Second, "k held", func() bool { return tr.dest("dest").HeldKeys == 1 })
		if ids := idsOf(tr.events("status=dead").Items); !slices.Equal(ids, []string{dl.a1}) {
			t.Errorf("status=dead lists %v, want A1 %s", ids, dl.a1)
		}
		if ids := idsOf(tr.events("status=held").Items); !slices.Equal(ids, []string{dl.a2}) {
			t.Errorf("status=held lists %v, want A2 %s", ids, dl.a2)
		}
		if st := tr.detail(dl.a2).Event.Status; st != "held" {
			t.Errorf("A2 status %q, want held", st)
		}
		d := tr.detail(dl.a1)
		if d.Event.Status != "dead" || d.Event.ID != dl.a1 || d.Event.Key != "k" || len(d.Deliveries) != 1 {
			t.Fatalf("A1 detail %+v", d)
		}
		dv := d.Deliveries[0]
		if dv.Destination != "dest" || dv.Status != "dead" || len(dv.Attempts) != 2 {
			t.Fatalf("A1 delivery %+v, want dead to dest after 2 attempts", dv)
		}
		for i, a := range dv.Attempts {
			for _, f := range []string{"at", "status", "error", "duration_ms", "response"} {
				if _, ok := a[f]; !ok {
					t.Errorf("attempt %d has no %q: %v", i, f, a)
				}
			}
		}
		first, last := dv.Attempts[0], dv.Attempts[1]
		if first["status"] != 0.0 || first["error"] == "" || first["duration_ms"].(float64) < 100 {
			t.Errorf("first attempt %v, want a timeout with no status after >= 150ms", first)
		}
		if last["status"] != 400.0 || last["response"] != `{"error":"invalid iban"}` {
			t.Errorf("last attempt %v, want 400 with the destination's answer", last)
		}
		dest := tr.dest("dest")
		if dest.Dead != 1 || dest.HeldKeys != 1 || len(dest.Held) != 1 || dest.Held[0].Key != "k" ||
			dest.Held[0].BlockedBy != dl.a1 || dest.Held[0].Waiting != 1 {
			t.Errorf("destination %+v, want dead 1, held [{k %s 1}]", dest, dl.a1)
		}
		mfs := tr.scrape()
		wantMetric(t, mfs, "hookrelay_dead", map[string]string{"destination": "dest"}, 1)
		wantMetric(t, mfs, "hookrelay_held_keys", map[string]string{"destination": "dest"}, 1)
		wantMetric(t, mfs, "hookrelay_deliveries_total", map[string]string{"destination": "dest", "outcome": "dead"}, 1)
	}

	// act POSTs /admin/events/ID/ACTION and returns the answer's counts.
	act := func(tr *testRelay, id, action string) map[string]int {
		var got map[string]int
		tr.do("POST", "/admin/events/"+id+"/"+action, "", 200, &got)
		return got
	}

	for _, tc := range []struct{ name, path, body string }{
		{"event retry", "/admin/events/{A1}/retry", ""},
		{"dead retry by destination", "/admin/dead/retry", `{"destination":"dest"}`},
		{"dead retry by provider and key", "/admin/dead/retry", `{"provider":"plain","key":"k"}`},
		{"dead retry of everything", "/admin/dead/retry", `{}`},
	} {
		t.Run(tc.name, bubbled(func(t *testing.T) {
			dl := newDeadLetter(t, "")
			tr := dl.tr
			inspect(t, dl)
			dl.fixed.Store(true)
			var got map[string]int
			tr.do("POST", strings.ReplaceAll(tc.path, "{A1}", dl.a1), tc.body, 200, &got)
			if got["requeued"] != 1 {
				t.Errorf("answer %v, want requeued 1", got)
			}
			waitFor(t, 5*time.Second, "A1 and A2 delivered", func() bool { return len(okHits(t, dl.s)) == 3 })
			hits := okHits(t, dl.s)
			if hits[1].id != dl.a1 || hits[2].id != dl.a2 {
				t.Errorf("delivered %+v, want A1 then A2", hits[1:])
			}
			if hits[1].attempt != "1" {
				t.Errorf("A1 replayed as attempt %s, want 1", hits[1].attempt)
			}
			d := tr.detail(dl.a1)
			if d.Event.Status != "delivered" || len(d.Deliveries[0].Attempts) != 3 || d.Deliveries[0].AttemptsBeforeRetry != 2 {
				t.Errorf("A1 after the replay %+v", d)
			}
			tr.waitDest("dest", "empty after the replay", func(d destView) bool {
				return d.Dead == 0 && d.HeldKeys == 0 && d.Pending == 0 && len(d.Held) == 0
			})
			if n := len(tr.events("status=dead").Items) + len(tr.events("status=held").Items); n != 0 {
				t.Errorf("%d dead or held events left", n)
			}
		}))
	}

	t.Run("dead retry matching nothing", bubbled(func(t *testing.T) {
		dl := newDeadLetter(t, "")
		tr := dl.tr
		inspect(t, dl)
		dl.fixed.Store(true)
		for _, body := range []string{`{"provider":"nobody"}`, `{"key":"j"}`, `{"destination":"nowhere"}`,
			`{"destination":"dest","provider":"plain","key":"other"}`} {
			var got map[string]int
			tr.do("POST", "/admin/dead/retry", body, 200, &got)
			if got["requeued"] != 0 {
				t.Errorf("%s: %v, want requeued 0", body, got)
			}
		}
		// A dry run counts what a retry would requeue, and requeues nothing.
		for body, want := range map[string]float64{`{"dry_run":true}`: 1, `{"dry_run":true,"key":"k","destination":"dest"}`: 1,
			`{"dry_run":true,"provider":"plain"}`: 1, `{"dry_run":true,"key":"j"}`: 0, `{"dry_run":true,"provider":"nobody"}`: 0} {
			var got map[string]any
			tr.do("POST", "/admin/dead/retry", body, 200, &got)
			if got["matching"] != want || got["dry_run"] != true || got["requeued"] != nil {
				t.Errorf("%s: %v, want matching %v", body, got, want)
			}
		}
		tr.do("POST", "/admin/dead/retry", `{"nonsense":1}`, 400, nil)
		// Retrying an event that is not dead requeues nothing.
		if got := act(tr, dl.a2, "retry"); got["requeued"] != 0 {
			t.Errorf("retry of held A2: %v, want requeued 0", got)
		}
		advance(time.Hour) // on the bubble's clock: an hour in which nothing moves
		if n := len(okHits(t, dl.s)); n != 1 {
			t.Errorf("%d deliveries in an hour, want only B1's", n)
		}
		inspect(t, dl)
	}))

	t.Run("skip the dead event", bubbled(func(t *testing.T) {
		dl := newDeadLetter(t, "")
		tr := dl.tr
		inspect(t, dl)
		if got := act(tr, dl.a1, "skip"); got["skipped"] != 1 {
			t.Errorf("answer %v, want skipped 1", got)
		}
		waitFor(t, 5*time.Second, "A2 delivered", func() bool { return len(okHits(t, dl.s)) == 2 })
		if h := okHits(t, dl.s)[1]; h.id != dl.a2 || h.attempt != "1" {
			t.Errorf("delivered %+v, want A2 at its first attempt", h)
		}
		if d := tr.detail(dl.a1); d.Event.Status != "skipped" || d.Deliveries[0].Status != "skipped" {
			t.Errorf("A1 after skip %+v", d)
		}
		tr.waitDest("dest", "empty after skip", func(d destView) bool {
			return d.Dead == 0 && d.HeldKeys == 0 && d.Pending == 0
		})
		if got := act(tr, dl.a1, "skip"); got["skipped"] != 0 {
			t.Errorf("second skip: %v, want skipped 0", got)
		}
		mfs := tr.scrape()
		wantMetric(t, mfs, "hookrelay_deliveries_total", map[string]string{"destination": "dest", "outcome": "skipped"}, 1)
		wantMetric(t, mfs, "hookrelay_dead", map[string]string{"destination": "dest"}, 0)
	}))

	t.Run("skip the held event", bubbled(func(t *testing.T) {
		dl := newDeadLetter(t, "")
		tr := dl.tr
		inspect(t, dl)
		if got := act(tr, dl.a2, "skip"); got["skipped"] != 1 {
			t.Errorf("answer %v, want skipped 1", got)
		}
		if st := tr.detail(dl.a2).Event.Status; st != "skipped" {
			t.Errorf("A2 status %q, want skipped", st)
		}
		if dest := tr.dest("dest"); dest.Dead != 1 || dest.HeldKeys != 1 || len(dest.Held) != 1 || dest.Held[0].Waiting != 0 {
			t.Errorf("destination after skipping A2 %+v, want k still held by A1 with nothing behind", dest)
		}
		dl.fixed.Store(true)
		act(tr, dl.a1, "retry")
		synctest.Wait()
		advance(time.Hour)
		if hits := okHits(t, dl.s); len(hits) != 2 || hits[1].id != dl.a1 {
			t.Errorf("delivered %+v in an hour, want B1 and A1 only", hits)
		}
	}))
}

func idsOf(es []adminEvent) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

// TestAdminOnExhaustedSkip: with on_exhausted: skip the key moves on, and
// the dead delivery stays listed and can be retried later; several dead
// deliveries of a key are retried in their original order.
func TestAdminOnExhaustedSkip(t *testing.T) {
	var fixed atomic.Bool
	s := newSink(t, func(_ int, _ *http.Request, body []byte) reply {
		var e struct {
			Key  string
			Data struct{ N int }
		}
		_ = json.Unmarshal(body, &e)
		if e.Key == "k" && e.Data.N <= 2 && !fixed.Load() {
			return reply{status: http.StatusUnprocessableEntity}
		}
		return reply{}
	})
	tr := startRelay(t, adminRelayYAML(s.srv.URL, "    on_exhausted: skip\n"), map[string]string{"plain": plainProvider})
	for n := 1; n <= 3; n++ {
		tr.mustIngest("k", n)
	}
	waitFor(t, 5*time.Second, "k/3 delivered past the dead ones", func() bool { return len(okHits(t, s)) == 1 })
	a1, a2 := tr.eventID("k", 1), tr.eventID("k", 2)
	waitFor(t, 5*time.Second, "two dead", func() bool { return len(tr.events("status=dead").Items) == 2 })
	if ids := idsOf(tr.events("status=dead").Items); !slices.Equal(ids, []string{a2, a1}) {
		t.Errorf("status=dead %v, want A2, A1 (newest first)", ids)
	}
	if n := len(tr.events("status=held").Items); n != 0 {
		t.Errorf("%d held events with on_exhausted: skip", n)
	}
	tr.waitDest("dest", "dead 2 and no held key", func(d destView) bool { return d.Dead == 2 && d.HeldKeys == 0 && d.Pending == 0 })

	// Later: fixed; retried while paused, so that both are queued before
	// either is sent, and they must go in their original order.
	fixed.Store(true)
	tr.do("POST", "/admin/destinations/dest/pause", "", 200, nil)
	var got map[string]int
	tr.do("POST", "/admin/dead/retry", `{"destination":"dest"}`, 200, &got)
	if got["requeued"] != 2 {
		t.Errorf("answer %v, want requeued 2", got)
	}
	if d := tr.dest("dest"); d.Dead != 0 || d.Pending != 2 {
		t.Errorf("destination after the retry %+v, want pending 2, dead 0", d)
	}
	tr.do("POST", "/admin/destinations/dest/resume", "", 200, nil)
	waitFor(t, 5*time.Second, "A1 and A2 delivered", func() bool { return len(okHits(t, s)) == 3 })
	hits := okHits(t, s)
	if hits[1].id != a1 || hits[2].id != a2 || hits[1].attempt != "1" || hits[2].attempt != "1" {
		t.Errorf("replayed %+v, want A1 then A2, each at attempt 1", hits[1:])
	}
	tr.waitDest("dest", "empty", func(d destView) bool { return d.Pending == 0 && d.Dead == 0 })
	for _, id := range []string{a1, a2} {
		if st := tr.detail(id).Event.Status; st != "delivered" {
			t.Errorf("%s: status %q after the retry", id, st)
		}
	}
}

// TestAdminPause: a paused destination sends nothing, stays paused across
// a restart, and delivers its queue in order once resumed.
func TestAdminPause(t *testing.T) { inBubble(t, testAdminPause) }

func testAdminPause(t *testing.T) {
	s := newSink(t, nil)
	tr := startRelay(t, adminRelayYAML(s.srv.URL, ""), map[string]string{"plain": plainProvider})
	var got map[string]any
	tr.do("POST", "/admin/destinations/dest/pause", "", 200, &got)
	if got["paused"] != true || got["destination"] != "dest" {
		t.Errorf("pause answered %v", got)
	}
	for n := 1; n <= 3; n++ {
		tr.mustIngest("k", n)
	}
	tr.mustIngest("j", 1)
	advance(time.Hour) // on the bubble's clock: an hour in which nothing may move
	if n := len(s.requests()); n != 0 {
		t.Fatalf("%d requests to a paused destination in an hour", n)
	}
	if d := tr.dest("dest"); !d.Paused || d.Pending != 4 {
		t.Errorf("destination %+v, want paused with 4 pending", d)
	}
	if n := len(tr.events("status=pending").Items); n != 4 {
		t.Errorf("%d pending events, want 4", n)
	}

	tr = tr.restart()
	advance(time.Hour)
	if n := len(s.requests()); n != 0 {
		t.Fatalf("%d requests in an hour after a restart of a paused destination", n)
	}
	if d := tr.dest("dest"); !d.Paused || d.Pending != 4 {
		t.Errorf("destination after restart %+v, want paused with 4 pending", d)
	}
	wantMetric(t, tr.scrape(), "hookrelay_pending", map[string]string{"destination": "dest"}, 4)

	tr.do("POST", "/admin/destinations/dest/resume", "", 200, &got)
	if got["paused"] != false {
		t.Errorf("resume answered %v", got)
	}
	synctest.Wait() // no time passes
	if n := len(okHits(t, s)); n != 4 {
		t.Fatalf("%d deliveries once resumed, want the 4 at once", n)
	}
	var ks []int
	for _, h := range okHits(t, s) {
		if h.key == "k" {
			ks = append(ks, h.n)
		}
	}
	if !slices.Equal(ks, []int{1, 2, 3}) {
		t.Errorf("k delivered as %v, want 1 2 3", ks)
	}
	tr.waitDest("dest", "resumed and empty", func(d destView) bool { return !d.Paused && d.Pending == 0 })

	for _, path := range []string{"/admin/destinations/nowhere/pause", "/admin/destinations/nowhere/resume"} {
		status, body := tr.call("POST", path, "")
		var e struct{ Error string }
		if status != 404 || json.Unmarshal(body, &e) != nil || e.Error == "" {
			t.Errorf("%s: %d %s, want 404 with an error", path, status, body)
		}
	}
}
