package main

// Crash and shutdown tests against the real `hookrelay serve` binary: it is
// built once in TestMain, run as a child process on loopback ports, killed
// with SIGKILL mid-load and restarted on the same spool, and stopped with
// SIGTERM. Traffic only ever goes to 127.0.0.1; the only processes signalled
// are the ones these tests start, by their PID.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// TestCrashKillResume runs 1,000 events through the real binary while it is
// SIGKILLed two or three times, and checks at-least-once delivery, per-key
// order, idempotency keys, and the spool's integrity afterwards.
func TestCrashKillResume(t *testing.T) {
	const (
		keys      = 20
		perKey    = 50
		clients   = 8
		loadLimit = 40 * time.Second // for all clients to get every event acknowledged
	)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	t.Logf("seed %d", seed)

	sk := &sink{failRate: 0.2, slowRate: 0.1, slow: 50 * time.Millisecond}
	dest := httptest.NewServer(sk)
	t.Cleanup(dest.Close)
	r := newRelay(t, dest.URL, map[string]string{"crash": providerYAML})
	must(t, r.start())

	// Kill points, in acknowledged events: the first after some hundreds,
	// then one or two more while load still flows.
	kills := 2 + rng.IntN(2)
	var at []int
	next := 150 + rng.IntN(200)
	for range kills {
		at = append(at, next)
		next += 120 + rng.IntN(130)
	}
	t.Logf("kills after %v acknowledged events", at)

	var (
		ackMu     sync.Mutex
		acked     = map[evKey]bool{}
		ackCount  atomic.Int64
		failedReq atomic.Int64
		gaveUp    atomic.Int64
	)
	loadCtx, cancelLoad := context.WithTimeout(context.Background(), loadLimit)
	defer cancelLoad()
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: clients, IdleConnTimeout: 5 * time.Second},
	}
	// send retries one event until the relay acknowledges it, bounded in
	// attempts and by loadCtx.
	send := func(ev evKey) bool {
		body := eventBody(ev.key, ev.n)
		for attempt := 0; attempt < 5000 && loadCtx.Err() == nil; attempt++ {
			switch err := ingestOnce(loadCtx, t, client, r.ingest, ev, body); {
			case err == nil:
				return true
			case errors.Is(err, errGiveUp):
				return false
			}
			failedReq.Add(1)
			time.Sleep(time.Duration(5+rand.IntN(20)) * time.Millisecond)
		}
		return false
	}

	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []string
			for k := c; k < keys; k += clients {
				mine = append(mine, fmt.Sprintf("key-%02d", k))
			}
			// Round-robin over this client's keys; each key strictly in order.
			for n := range perKey {
				for _, key := range mine {
					ev := evKey{key, n}
					if !send(ev) {
						gaveUp.Add(1)
						return // later events of these keys would overtake this one
					}
					ackMu.Lock()
					acked[ev] = true
					ackMu.Unlock()
					ackCount.Add(1)
				}
			}
		}()
	}

	// The killer: SIGKILL at each kill point, then restart at once on the
	// same spool and config.
	killed := 0
	for _, point := range at {
		for ackCount.Load() < int64(point) && loadCtx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		if loadCtx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
		if err := r.kill(); err != nil {
			t.Fatal(err)
		}
		killed++
		t.Logf("kill %d after %d acknowledged", killed, ackCount.Load())
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		if err := r.start(); err != nil {
			cancelLoad()
			wg.Wait()
			t.Fatalf("restart %d: %v", killed, err)
		}
	}
	wg.Wait()
	if killed != kills {
		t.Errorf("killed %d times, planned %d", killed, kills)
	}
	total := int(ackCount.Load())
	if total != keys*perKey {
		t.Errorf("acknowledged %d of %d events (%d clients gave up)", total, keys*perKey, gaveUp.Load())
	}

	// Every acknowledged event must reach the sink with a 2xx.
	var first map[evKey]arrival
	var arrivals []arrival
	var missing []evKey
	deadline := time.Now().Add(60 * time.Second)
	for {
		arrivals, _ = sk.snapshot()
		first = firstDeliveries(arrivals)
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
		time.Sleep(50 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Errorf("%d acknowledged events never delivered, e.g. %v", len(missing), missing[:min(5, len(missing))])
	}
	// Let redeliveries of events already seen settle, so that the spool
	// should hold no pending delivery when the relay stops.
	settled := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if pending(r.admin, "sink") == 0 {
			settled = true
			break
		}
	}
	arrivals, _ = sk.snapshot()

	firstSeen, inversions, dups, fails := checkArrivals(t, arrivals)
	if inversions > 0 {
		t.Errorf("%d order inversions", inversions)
	}
	sk.mu.Lock()
	if len(sk.bad) > 0 {
		t.Errorf("sink got %d unreadable requests, e.g. %s", len(sk.bad), sk.bad[0])
	}
	sk.mu.Unlock()
	t.Logf("events: %d acknowledged, %d delivered; %d kills; ingest requests refused or failed: %d; "+
		"sink: %d requests, %d answered 500, %d duplicate 2xx deliveries; settled: %v",
		total, len(firstSeen), killed, failedReq.Load(), len(arrivals), fails, dups, settled)

	code, took, err := r.terminate(r.timeout + 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Errorf("SIGTERM: exit status %d, want 0", code)
	}
	t.Logf("SIGTERM: exited in %s", took.Round(time.Millisecond))

	sp, err := spool.Open(r.spool, spool.Options{})
	if err != nil {
		t.Fatalf("open spool after the run: %v", err)
	}
	defer func() { must(t, sp.Close()) }()
	if err := sp.Check(); err != nil {
		t.Errorf("spool check: %v", err)
	}
	open := 0
	must(t, sp.Queue("sink", func(d *spool.Delivery) error {
		open++
		return nil
	}))
	if settled && open > 0 {
		t.Errorf("spool holds %d deliveries not final, though the relay reported none pending", open)
	}
	for ev, a := range firstSeen {
		dl, err := sp.Delivery("sink", a.eventID)
		if err != nil {
			t.Errorf("event %v (%s): %v", ev, a.eventID, err)
			continue
		}
		if settled && dl.Status != spool.Delivered {
			t.Errorf("event %v (%s): spool status %s, want delivered", ev, a.eventID, dl.Status)
		}
	}
}

// TestSigtermDrains checks that SIGTERM finishes the deliveries in flight,
// exits 0 within shutdown_timeout, and that a restart delivers the rest,
// each event once.
func TestSigtermDrains(t *testing.T) {
	sk := &sink{always: 300 * time.Millisecond}
	dest := httptest.NewServer(sk)
	t.Cleanup(dest.Close)
	r := newRelay(t, dest.URL, map[string]string{"crash": providerYAML})
	must(t, r.start())

	// Five keys, two events each: the first of each key is in flight when
	// SIGTERM comes, the second waits behind it.
	const keys = 5
	var sent []evKey
	c := &http.Client{Timeout: 5 * time.Second}
	for n := range 2 {
		for k := range keys {
			ev := evKey{fmt.Sprintf("drain-%d", k), n}
			req, err := signedRequest(context.Background(), r.ingest+providerPath, eventBody(ev.key, ev.n))
			must(t, err)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("send %v: %v", ev, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("send %v: status %d", ev, resp.StatusCode)
			}
			sent = append(sent, ev)
		}
	}
	// SIGTERM once the head of every key is in flight.
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if a, _ := sk.snapshot(); len(a) >= keys {
			break
		}
	}
	inFlight, _ := sk.snapshot()
	if len(inFlight) == 0 {
		t.Fatal("no delivery started within 3s of the events being acknowledged")
	}
	code, took, err := r.terminate(r.timeout + 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	before, finished := sk.snapshot()
	if code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	if took > r.timeout {
		t.Errorf("exit took %s, more than shutdown_timeout %s", took, r.timeout)
	}
	// The relay waited for the answers: every request it had made was
	// answered before it exited.
	if finished != len(before) {
		t.Errorf("%d requests reached the sink before exit but only %d were answered", len(before), finished)
	}
	// ... and it started none after SIGTERM: the second event of each key
	// waits for the restart.
	if len(inFlight) == keys {
		for _, a := range before {
			if a.ev.n > 0 {
				t.Errorf("event %v was sent after SIGTERM: the relay kept sending its backlog", a.ev)
			}
		}
	}
	if took < 100*time.Millisecond {
		t.Errorf("exit took %s: the deliveries in flight (300ms each) were not waited for", took)
	}
	t.Logf("SIGTERM with %d deliveries in flight: exited in %s, %d delivered before exit",
		len(inFlight), took.Round(time.Millisecond), len(before))

	must(t, r.start())
	var arrivals []arrival
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		arrivals, _ = sk.snapshot()
		if len(firstDeliveries(arrivals)) == len(sent) {
			break
		}
	}
	// Give a wrongly repeated delivery a moment to show up.
	time.Sleep(400 * time.Millisecond)
	arrivals, _ = sk.snapshot()
	count := map[evKey]int{}
	for _, a := range arrivals {
		count[a.ev]++
	}
	for _, ev := range sent {
		switch count[ev] {
		case 1:
		case 0:
			t.Errorf("event %v lost: never delivered", ev)
		default:
			t.Errorf("event %v delivered %d times: the delivery in flight at SIGTERM was not recorded", ev, count[ev])
		}
	}
	for _, a := range before {
		if count[a.ev] != 1 {
			t.Errorf("in-flight event %v was sent again after restart", a.ev)
		}
	}
	t.Logf("after restart: %d requests in all for %d events", len(arrivals), len(sent))
	if code, _, err := r.terminate(r.timeout + 5*time.Second); err != nil || code != 0 {
		t.Errorf("second SIGTERM: status %d, %v", code, err)
	}
}
