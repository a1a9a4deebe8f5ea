package main

// Soak and fault tests against the real `hookrelay serve` binary (built by
// TestMain in crash_test.go):
//
//   - TestSoak SIGKILLs the relay many times at random moments while events
//     flow to a destination that fails, hangs and resets connections, and
//     restarts it on the same spool each time. `make test` runs a short form;
//     HOOKRELAY_SOAK=1 (make soak) runs the full one.
//   - TestSpoolUnwritable fills the spool's file system mid-run: ingest must
//     answer 503 with Retry-After and acknowledge nothing, and recover once
//     there is room again.
//
// Traffic only ever goes to 127.0.0.1; the only processes signalled are the
// ones these tests start, by their PID.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// TestSoak SIGKILLs the real relay at random moments while events flow to a
// destination that fails (~15%), hangs past the relay's 500ms timeout (~3%)
// and resets connections (~3%), and restarts it on the same spool each
// time. After every kill the spool must open and pass bbolt's check. At the
// end every acknowledged event must have been delivered, the first 2xx
// deliveries of each key must be in order, and every duplicate must carry
// its first delivery's Idempotency-Key and event id.
func TestSoak(t *testing.T) {
	p := soakParamsFromEnv(t)
	perKey := p.events / p.keys
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0x50a4))
	form := "short"
	if p.full {
		form = "full"
	}
	t.Logf("%s form: %d kills, %d events over %d keys, %d clients; seed %d", form, p.kills, p.events, p.keys, p.clients, seed)
	began := time.Now()

	sk := &faultySink{failRate: 0.15, hangRate: 0.03, resetRate: 0.03, hang: 3 * time.Second}
	dest := httptest.NewServer(sk)
	t.Cleanup(dest.Close)
	r := newRelayWith(t, dest.URL, map[string]string{"crash": providerYAML}, relayOpts{destTimeout: 500 * time.Millisecond})
	must(t, r.start())

	var (
		ackMu      sync.Mutex
		acked      = make(map[evKey]bool, p.events)
		ackCount   atomic.Int64
		failedReq  atomic.Int64 // ingest requests refused or failed, each retried
		gaveUp     atomic.Int64
		inflight   atomic.Int64 // ingest requests under way
		killed     atomic.Int64
		sendErrors sync.Map // error text (trimmed) -> count, for the summary
	)
	loadCtx, cancelLoad := context.WithTimeout(context.Background(), p.loadLimit)
	defer cancelLoad()
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: p.clients, IdleConnTimeout: 5 * time.Second},
	}
	defer client.CloseIdleConnections()
	// send resends one event until the relay acknowledges it, bounded in
	// attempts and by loadCtx.
	send := func(ev evKey) bool {
		body := eventBody(ev.key, ev.n)
		for attempt := 0; attempt < 10000 && loadCtx.Err() == nil; attempt++ {
			inflight.Add(1)
			err := ingestOnce(loadCtx, t, client, r.ingest, ev, body)
			inflight.Add(-1)
			switch {
			case err == nil:
				return true
			case errors.Is(err, errGiveUp):
				return false
			}
			failedReq.Add(1)
			msg := err.Error()
			if i := strings.LastIndex(msg, ": "); i >= 0 {
				msg = msg[i+2:]
			}
			n, _ := sendErrors.LoadOrStore(msg, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
			time.Sleep(time.Duration(5+rand.IntN(20)) * time.Millisecond)
		}
		return false
	}

	pace := &pacer{
		total: p.events, kills: p.kills, killed: &killed,
		estCycle: (p.waitMin+p.waitMax)/2 + 100*time.Millisecond, start: time.Now(),
	}
	var wg sync.WaitGroup
	for c := range p.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []string
			for k := c; k < p.keys; k += p.clients {
				mine = append(mine, fmt.Sprintf("key-%02d", k))
			}
			// Round-robin over this client's keys; each key strictly in
			// order, the next event only once the last one is acknowledged.
			for n := range perKey {
				for _, key := range mine {
					if !pace.wait(loadCtx) {
						gaveUp.Add(1)
						return
					}
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

	// The killer: a random wait, SIGKILL, the spool's check, a restart.
	var (
		killsIngest, killsDelivery int // kills with requests under way
		restarts                   []time.Duration
		checkFails                 int
	)
	for killed.Load() < int64(p.kills) {
		wait := p.waitMin + time.Duration(rng.Int64N(int64(p.waitMax-p.waitMin)+1))
		select {
		case <-time.After(wait):
		case <-loadCtx.Done():
		}
		if loadCtx.Err() != nil {
			t.Errorf("load limit %s reached after %d kills", p.loadLimit, killed.Load())
			break
		}
		if inflight.Load() > 0 {
			killsIngest++
		}
		if sk.inflight.Load() > 0 {
			killsDelivery++
		}
		if err := r.kill(); err != nil {
			cancelLoad()
			wg.Wait()
			t.Fatal(err)
		}
		k := killed.Add(1)
		if err := checkSpoolFile(r.spool); err != nil {
			checkFails++
			t.Errorf("kill %d: spool after SIGKILL: %v; copy kept at %s", k, err, keepCopy(r.spool))
			if checkFails >= 3 {
				cancelLoad()
				wg.Wait()
				t.FailNow()
			}
		}
		restartAt := time.Now()
		if err := r.start(); err != nil {
			cancelLoad()
			wg.Wait()
			t.Fatalf("restart after kill %d: %v", k, err)
		}
		restarts = append(restarts, time.Since(restartAt))
		if k%25 == 0 {
			t.Logf("kill %d: %d acknowledged, %d sink requests, %s", k, ackCount.Load(), len(sk.snapshot()), time.Since(began).Round(time.Second))
		}
	}
	ingestDone := ackCount.Load()
	wg.Wait()
	loadTook := time.Since(began)
	total := int(ackCount.Load())
	if total != p.events {
		t.Errorf("acknowledged %d of %d events (%d clients gave up)", total, p.events, gaveUp.Load())
	}

	// Every acknowledged event must reach the sink with a 2xx.
	checkDelivered(t, sk, &ackMu, acked, p.drainLimit)
	settled := waitSettled(t, []*relayProc{r}, 20*time.Second)
	res := checkSoakArrivals(t, sk, acked)
	if res.lingr > 0 {
		t.Logf("%d of %d resets closed without SO_LINGER 0 (FIN, not RST)", res.lingr, res.resets)
	}
	// Idempotency keys of duplicates: checkArrivals compared each with its
	// first delivery; count how many events were delivered more than once.
	perEvent := map[evKey]int{}
	for _, a := range res.arrivals {
		if a.status/100 == 2 {
			perEvent[a.ev]++
		}
	}
	dupEvents := 0
	for _, n := range perEvent {
		if n > 1 {
			dupEvents++
		}
	}

	code, _, err := r.terminate(r.timeout + 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Errorf("SIGTERM: exit status %d, want 0", code)
	}
	if err := checkSpoolFile(r.spool); err != nil {
		t.Errorf("spool after the run: %v", err)
	}
	sp, err := spool.Open(r.spool, spool.Options{})
	if err != nil {
		t.Fatalf("open spool after the run: %v", err)
	}
	defer func() { must(t, sp.Close()) }()
	notDelivered := 0
	for ev, a := range res.firstSeen {
		dl, err := sp.Delivery("sink", a.eventID)
		if err != nil {
			t.Errorf("event %v (%s): %v", ev, a.eventID, err)
			continue
		}
		if settled && dl.Status != spool.Delivered {
			notDelivered++
			if notDelivered <= 5 {
				t.Errorf("event %v (%s): spool status %s, want delivered", ev, a.eventID, dl.Status)
			}
		}
	}
	fi, _ := os.Stat(r.spool)

	var avgRestart, maxRestart time.Duration
	for _, d := range restarts {
		avgRestart += d
		maxRestart = max(maxRestart, d)
	}
	if len(restarts) > 0 {
		avgRestart /= time.Duration(len(restarts))
	}
	var errs []string
	sendErrors.Range(func(k, v any) bool {
		errs = append(errs, fmt.Sprintf("%s x%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	sort.Strings(errs)
	t.Logf("ingest requests refused or failed (each resent): %d: %s", failedReq.Load(), strings.Join(errs, "; "))
	t.Logf("soak summary: form=%s kills=%d (with ingest in flight %d, with deliveries in flight %d, spool check failures %d) "+
		"events=%d keys=%d acknowledged=%d (%d by the last restart) delivered=%d duplicates=%d (events delivered twice or more: %d) "+
		"inversions=%d sink: requests=%d 200=%d 500=%d hangs=%d resets=%d; restart avg %s max %s; spool %d KiB; load %s; elapsed %s",
		form, killed.Load(), killsIngest, killsDelivery, checkFails,
		p.events, p.keys, total, ingestDone, len(res.firstSeen), res.dups, dupEvents,
		res.inversions, len(res.arrivals), res.oks, res.fails, res.hangs, res.resets,
		avgRestart.Round(time.Millisecond), maxRestart.Round(time.Millisecond), fi.Size()>>10,
		loadTook.Round(time.Second), time.Since(began).Round(time.Second))
}
