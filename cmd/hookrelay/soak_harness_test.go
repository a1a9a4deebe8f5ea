package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// Arrival statuses of requests that got no HTTP answer.
const (
	statusReset = -1 // the sink reset the connection
	statusHang  = -2 // the sink did not answer within the relay's timeout
)

// faultySink is a destination that answers 200, fails with 500, hangs past
// the relay's timeout or resets the connection, at random. It records every
// request in arrival order, like sink.
type faultySink struct {
	failRate  float64       // share answered 500
	hangRate  float64       // share left unanswered until the relay gives up (or hang passes)
	resetRate float64       // share whose connection is reset (RST) without an answer
	hang      time.Duration // longest hang; must exceed the relay's timeout

	inflight atomic.Int64 // requests being handled

	mu                   sync.Mutex
	arrivals             []arrival
	bad                  []string
	oks, fails           int
	hangs, resets, lingr int // lingr: resets that could not set SO_LINGER 0
}

func (s *faultySink) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	a, err := readArrival(req)
	if err != nil {
		s.mu.Lock()
		s.bad = append(s.bad, err.Error())
		s.mu.Unlock()
		http.Error(w, "bad envelope", http.StatusBadRequest)
		return
	}
	switch p := rand.Float64(); {
	case p < s.resetRate:
		a.status = statusReset
	case p < s.resetRate+s.hangRate:
		a.status = statusHang
	case p < s.resetRate+s.hangRate+s.failRate:
		a.status = http.StatusInternalServerError
	default:
		a.status = http.StatusOK
	}
	// Recorded before answering: the relay sends a key's next event only
	// after it has this one's outcome, so arrival order is delivery order per
	// key. A 200 recorded here may never reach the relay (it is killed
	// first): then the relay sends the event again, a counted duplicate.
	s.mu.Lock()
	s.arrivals = append(s.arrivals, a)
	switch a.status {
	case statusReset:
		s.resets++
	case statusHang:
		s.hangs++
	case http.StatusOK:
		s.oks++
	default:
		s.fails++
	}
	s.mu.Unlock()

	switch a.status {
	case statusReset:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(fmt.Sprintf("sink: hijack: %v", err)) // httptest's HTTP/1 server always allows it
		}
		// SO_LINGER 0: Close sends RST instead of FIN.
		if tc, ok := conn.(*net.TCPConn); !ok || tc.SetLinger(0) != nil {
			s.mu.Lock()
			s.lingr++
			s.mu.Unlock()
		}
		_ = conn.Close() // the reset is the point; a failed close changes nothing
	case statusHang:
		// Until the relay gives up on the attempt (its timeout closes the
		// connection) or is killed; hang bounds it either way.
		select {
		case <-req.Context().Done():
		case <-time.After(s.hang):
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	default:
		w.WriteHeader(a.status)
	}
}

func (s *faultySink) snapshot() []arrival {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]arrival(nil), s.arrivals...)
}

// checkDelivered waits up to limit for every acknowledged event (acked,
// guarded by ackMu) to reach sk with a 2xx, and reports those that did not.
func checkDelivered(t *testing.T, sk *faultySink, ackMu *sync.Mutex, acked map[evKey]bool, limit time.Duration) {
	t.Helper()
	var missing []evKey
	for deadline := time.Now().Add(limit); ; time.Sleep(50 * time.Millisecond) {
		first := firstDeliveries(sk.snapshot())
		missing = missing[:0]
		ackMu.Lock()
		for ev := range acked {
			if _, ok := first[ev]; !ok {
				missing = append(missing, ev)
			}
		}
		ackMu.Unlock()
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(missing) > 0 {
		sort.Slice(missing, func(i, j int) bool {
			return missing[i].key < missing[j].key || missing[i].key == missing[j].key && missing[i].n < missing[j].n
		})
		t.Errorf("%d acknowledged events not delivered within %s, e.g. %v", len(missing), limit, missing[:min(5, len(missing))])
	}
}

// waitSettled waits up to limit for every relay in rs to report no
// delivery pending for the sink, so that the spool should hold none when
// they stop (redeliveries of events already seen settle after the last
// first delivery). It reports and returns false if one still does.
func waitSettled(t *testing.T, rs []*relayProc, limit time.Duration) bool {
	t.Helper()
	for deadline := time.Now().Add(limit); ; time.Sleep(50 * time.Millisecond) {
		settled := true
		for _, r := range rs {
			if pending(r.admin, "sink") != 0 {
				settled = false
				break
			}
		}
		if settled {
			return true
		}
		if time.Now().After(deadline) {
			t.Errorf("a relay still reports deliveries pending %s after every event was delivered", limit)
			return false
		}
	}
}

// soakResult is what a soak's sink saw, as checkSoakArrivals counted it.
type soakResult struct {
	arrivals                         []arrival
	firstSeen                        map[evKey]arrival // first 2xx delivery of each event
	inversions, dups                 int
	oks, fails, hangs, resets, lingr int
}

// checkSoakArrivals checks what sk saw once every acknowledged event was
// delivered: first deliveries in order per key and duplicates with their
// first's Idempotency-Key (checkArrivals), no event delivered that was never
// acknowledged, and no request the sink could not read.
func checkSoakArrivals(t *testing.T, sk *faultySink, acked map[evKey]bool) soakResult {
	t.Helper()
	res := soakResult{arrivals: sk.snapshot()}
	res.firstSeen, res.inversions, res.dups, _ = checkArrivals(t, res.arrivals)
	if res.inversions > 0 {
		t.Errorf("%d per-key order inversions among first deliveries", res.inversions)
	}
	for ev := range res.firstSeen {
		if !acked[ev] {
			t.Errorf("event %v delivered but never acknowledged", ev)
		}
	}
	sk.mu.Lock()
	bad := sk.bad
	res.oks, res.fails, res.hangs, res.resets, res.lingr = sk.oks, sk.fails, sk.hangs, sk.resets, sk.lingr
	sk.mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("sink got %d unreadable requests, e.g. %s", len(bad), bad[0])
	}
	return res
}

// soakParams size a TestSoak run.
type soakParams struct {
	full       bool
	kills      int
	events     int // rounded up to a multiple of keys
	keys       int
	clients    int
	waitMin    time.Duration // between a restart and the next kill
	waitMax    time.Duration
	loadLimit  time.Duration // for the whole load, kills included
	drainLimit time.Duration // after the load, for every acknowledged event to be delivered
}

// soakParamsFromEnv: the short form unless HOOKRELAY_SOAK=1, each size
// overridable by HOOKRELAY_SOAK_KILLS, HOOKRELAY_SOAK_EVENTS and
// HOOKRELAY_SOAK_KEYS.
func soakParamsFromEnv(t *testing.T) soakParams {
	t.Helper()
	p := soakParams{
		kills: 10, events: 300, keys: 20, clients: 8,
		waitMin: 20 * time.Millisecond, waitMax: 200 * time.Millisecond,
		loadLimit: 3 * time.Minute, drainLimit: time.Minute,
	}
	if os.Getenv("HOOKRELAY_SOAK") == "1" {
		p = soakParams{
			full:  true,
			kills: 200, events: 2000, keys: 50, clients: 10,
			waitMin: 20 * time.Millisecond, waitMax: 200 * time.Millisecond,
			loadLimit: 15 * time.Minute, drainLimit: 3 * time.Minute,
		}
	}
	for name, v := range map[string]*int{
		"HOOKRELAY_SOAK_KILLS": &p.kills, "HOOKRELAY_SOAK_EVENTS": &p.events, "HOOKRELAY_SOAK_KEYS": &p.keys,
	} {
		s := os.Getenv(name)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1_000_000 {
			t.Fatalf("%s=%q: want a whole number from 1 to 1000000", name, s)
		}
		*v = n
	}
	p.clients = min(p.clients, p.keys)
	p.events = (p.events + p.keys - 1) / p.keys * p.keys
	return p
}

// pacer spreads the start of new events over the kill phase, so that kills
// land while events flow rather than after the load is done: it gives out
// start times at an interval of (time left for the kills) / (events left),
// measuring the kill cycle as it goes. Once every kill is done it no longer
// waits.
type pacer struct {
	total, kills int
	killed       *atomic.Int64
	estCycle     time.Duration // before the first kill

	mu      sync.Mutex
	start   time.Time
	next    time.Time
	started int
}

// wait returns when the next new event may start, or false when ctx ends.
func (p *pacer) wait(ctx context.Context) bool {
	p.mu.Lock()
	now := time.Now()
	var interval time.Duration
	killed := int(p.killed.Load())
	if left := p.kills - killed; left > 0 {
		cycle := p.estCycle
		if killed > 0 {
			cycle = now.Sub(p.start) / time.Duration(killed)
		}
		interval = cycle * time.Duration(left) / time.Duration(max(1, p.total-p.started))
		interval = min(interval, 500*time.Millisecond)
	}
	p.started++
	if p.next.Before(now) {
		p.next = now
	}
	at := p.next
	p.next = p.next.Add(interval)
	p.mu.Unlock()
	if d := time.Until(at); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return false
		}
	}
	return ctx.Err() == nil
}

// checkSpoolFile opens the spool at path the way the relay does, runs
// bbolt's consistency check and closes it. A panic inside bbolt (it panics
// on some corrupt pages) is returned as an error.
func checkSpoolFile(path string) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	sp, err := spool.Open(path, spool.Options{})
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	if err := sp.Check(); err != nil {
		_ = sp.Close() // the check's error is the one to report
		return fmt.Errorf("check: %w", err)
	}
	if err := sp.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// keepCopy copies a spool that failed its check out of the test's temp dir,
// for a post-mortem, and returns where it went.
func keepCopy(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(not copied: " + err.Error() + ")"
	}
	f, err := os.CreateTemp("", "hookrelay-soak-failed-*.db")
	if err != nil {
		return "(not copied: " + err.Error() + ")"
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "(not copied: " + err.Error() + ")"
	}
	return f.Name()
}
