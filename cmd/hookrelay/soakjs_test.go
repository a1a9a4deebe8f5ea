package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream"
)

// soakJSParams size a TestSoakJetStream run.
type soakJSParams struct {
	form                  string
	relayKills, natsKills int
	events, keys, clients int
	relays, active        int
	loadLimit, drainLimit time.Duration
	waitMin, waitMax      time.Duration
	replicas, partitions  int
}

// soakJSParamsFromEnv: HOOKRELAY_SOAK_JS=1 the full form (make soak-js),
// =short the CI form (make soak-js-short); HOOKRELAY_SOAK_JS_RELAYS (3),
// HOOKRELAY_SOAK_JS_ACTIVE (3), _KILLS, _NATS_KILLS,
// _EVENTS and _KEYS change the sizes.
func soakJSParamsFromEnv(t *testing.T) soakJSParams {
	t.Helper()
	p := soakJSParams{
		form: "short", relayKills: 8, natsKills: 3, events: 400, keys: 20, clients: 8,
		relays: 3, active: 3, loadLimit: 2 * time.Minute, drainLimit: time.Minute,
		waitMin: 150 * time.Millisecond, waitMax: 600 * time.Millisecond,
		replicas: 3, partitions: 16,
	}
	switch os.Getenv("HOOKRELAY_SOAK_JS") {
	case "short":
	case "1":
		p.form, p.relayKills, p.natsKills, p.events, p.keys, p.clients = "full", 50, 10, 2000, 50, 10
		p.loadLimit, p.drainLimit = 15*time.Minute, 3*time.Minute
	default:
		t.Skip("HOOKRELAY_SOAK_JS=1 (make soak-js) or =short (make soak-js-short) runs it")
	}
	for name, v := range map[string]*int{
		"HOOKRELAY_SOAK_JS_RELAYS": &p.relays, "HOOKRELAY_SOAK_JS_ACTIVE": &p.active,
		"HOOKRELAY_SOAK_JS_KILLS": &p.relayKills, "HOOKRELAY_SOAK_JS_NATS_KILLS": &p.natsKills,
		"HOOKRELAY_SOAK_JS_EVENTS": &p.events, "HOOKRELAY_SOAK_JS_KEYS": &p.keys,
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
	if p.active > p.relays {
		t.Fatalf("HOOKRELAY_SOAK_JS_ACTIVE=%d: more than the %d relays", p.active, p.relays)
	}
	if p.natsKills > p.relayKills {
		t.Fatalf("%d NATS kills: at most one per relay kill (%d)", p.natsKills, p.relayKills)
	}
	p.clients = min(p.clients, p.keys)
	p.events = (p.events + p.keys - 1) / p.keys * p.keys
	return p
}

// TestSoakJetStream is TestSoak on a JetStream spool: a 3-node NATS
// cluster of child processes (R3, sync_interval: always) and `relays`
// relay processes on one stream, of which `active` run at any time. While
// events flow to a destination that fails (15%), hangs past the relay's
// timeout (3%) and resets connections (3%), it SIGKILLs a running relay at
// random and starts a stopped one (a standby taking over) or, with every
// relay active, the killed one again; and every few relay kills it SIGKILLs
// one NATS node, restarting it after the next relay kill, so that at most
// one node is down at a time. Then: every acknowledged event delivered,
// per key in order among first deliveries, duplicates only with the first
// delivery's Idempotency-Key and event id, every event shown as delivered
// by the admin API of every live relay, and nothing pending in the stream.
//
// All three relays run at once, sharing the stream's partitions by lease;
// HOOKRELAY_SOAK_JS_ACTIVE=1 runs one at a time with the others as
// standbys started when it is killed.
func TestSoakJetStream(t *testing.T) {
	p := soakJSParamsFromEnv(t)
	perKey := p.events / p.keys
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0x15a3))
	t.Logf("%s form: %d relays (%d active), %d relay kills, %d NATS node kills, %d events over %d keys; seed %d",
		p.form, p.relays, p.active, p.relayKills, p.natsKills, p.events, p.keys, seed)
	began := time.Now()

	nats := newNATSCluster(t, 3)
	sk := &faultySink{failRate: 0.15, hangRate: 0.03, resetRate: 0.03, hang: 3 * time.Second}
	dest := httptest.NewServer(sk)
	t.Cleanup(dest.Close)
	spoolBlock := jsRelayCfg(nats.urls(), "SOAKJS", p.replicas, p.partitions)
	relays := make([]*relayProc, p.relays)
	for i := range relays {
		relays[i] = newRelayWith(t, dest.URL, map[string]string{"crash": providerYAML}, relayOpts{destTimeout: 500 * time.Millisecond})
		onJetStream(t, relays[i], spoolBlock)
		// A relay started while a NATS node is down waits for the stream's
		// and buckets' leaders to be elected again.
		relays[i].ready = 45 * time.Second
	}
	// live is the set of running relays the clients send to.
	var liveMu sync.Mutex
	live := map[int]bool{}
	for i := range p.active {
		must(t, relays[i].start())
		live[i] = true
	}
	pickLive := func(r *rand.Rand) *relayProc {
		liveMu.Lock()
		defer liveMu.Unlock()
		var ids []int
		for i := range live {
			ids = append(ids, i)
		}
		if len(ids) == 0 {
			return nil
		}
		sort.Ints(ids)
		return relays[ids[r.IntN(len(ids))]]
	}

	var (
		ackMu     sync.Mutex
		acked     = make(map[evKey]bool, p.events)
		ackCount  atomic.Int64
		failedReq atomic.Int64
		gaveUp    atomic.Int64
		killed    atomic.Int64
	)
	loadCtx, cancelLoad := context.WithTimeout(context.Background(), p.loadLimit)
	defer cancelLoad()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: p.clients, IdleConnTimeout: 5 * time.Second}}
	defer client.CloseIdleConnections()
	// send resends one event, each time to a running relay picked at
	// random, until one acknowledges it; bounded in attempts and by loadCtx.
	send := func(r *rand.Rand, ev evKey) bool {
		body := eventBody(ev.key, ev.n)
		for attempt := 0; attempt < 10000 && loadCtx.Err() == nil; attempt++ {
			if rp := pickLive(r); rp != nil {
				switch err := ingestOnce(loadCtx, t, client, rp.ingest, ev, body); {
				case err == nil:
					return true
				case errors.Is(err, errGiveUp):
					return false
				}
			}
			failedReq.Add(1)
			time.Sleep(time.Duration(5+r.IntN(20)) * time.Millisecond)
		}
		return false
	}
	pace := &pacer{total: p.events, kills: p.relayKills, killed: &killed, estCycle: (p.waitMin+p.waitMax)/2 + 500*time.Millisecond, start: time.Now()}
	var wg sync.WaitGroup
	for c := range p.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(c)))
			var mine []string
			for k := c; k < p.keys; k += p.clients {
				mine = append(mine, fmt.Sprintf("key-%02d", k))
			}
			for n := range perKey {
				for _, key := range mine {
					if !pace.wait(loadCtx) {
						gaveUp.Add(1)
						return
					}
					ev := evKey{key, n}
					if !send(r, ev) {
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

	// The killer: a random wait, SIGKILL of a running relay, a relay
	// started; every few kills a NATS node goes down until the next one.
	fail := func(format string, args ...any) {
		cancelLoad()
		wg.Wait()
		t.Fatalf(format, args...)
	}
	natsEvery := max(1, p.relayKills/max(1, p.natsKills))
	natsKilled, natsDown, startFails := 0, -1, 0
	var restarts, natsRestarts []time.Duration
	for killed.Load() < int64(p.relayKills) {
		wait := p.waitMin + time.Duration(rng.Int64N(int64(p.waitMax-p.waitMin)+1))
		select {
		case <-time.After(wait):
		case <-loadCtx.Done():
		}
		if loadCtx.Err() != nil {
			t.Errorf("load limit %s reached after %d relay kills", p.loadLimit, killed.Load())
			break
		}
		if natsDown >= 0 {
			at := time.Now()
			if err := nats.nodes[natsDown].start(); err != nil {
				fail("restart nats %d: %v", natsDown, err)
			}
			if err := nats.nodes[natsDown].waitHealthy(60 * time.Second); err != nil {
				fail("nats node after its restart: %v", err)
			}
			natsRestarts = append(natsRestarts, time.Since(at))
			natsDown = -1
		} else if natsKilled < p.natsKills && int(killed.Load())%natsEvery == natsEvery-1 {
			natsDown = rng.IntN(len(nats.nodes))
			if err := nats.nodes[natsDown].kill(); err != nil {
				fail("%v", err)
			}
			natsKilled++
		}
		liveMu.Lock()
		var running, stopped []int
		for i := range relays {
			if live[i] {
				running = append(running, i)
			} else {
				stopped = append(stopped, i)
			}
		}
		victim := running[rng.IntN(len(running))]
		delete(live, victim)
		liveMu.Unlock()
		if err := relays[victim].kill(); err != nil {
			fail("%v", err)
		}
		k := killed.Add(1)
		next := victim // every relay active: the killed one comes back
		if len(stopped) > 0 {
			next = stopped[rng.IntN(len(stopped))] // a standby takes over
		}
		at := time.Now()
		// Like a supervisor (systemd's Restart=), a relay that exits
		// during start-up is started again, a few times; each is counted.
		var err error
		for try := 0; try < 3; try++ {
			if err = relays[next].start(); err == nil {
				break
			}
			dumpStuck(t, relays[next])
			relays[next].stopHard()
			startFails++
			t.Logf("relay %d, start after kill %d: %v", next, k, err)
		}
		if err != nil {
			fail("start relay %d after kill %d: %v", next, k, err)
		}
		restarts = append(restarts, time.Since(at))
		liveMu.Lock()
		live[next] = true
		liveMu.Unlock()
		if k%10 == 0 {
			t.Logf("relay kill %d, NATS kills %d: %d acknowledged, %d sink requests, %s", k, natsKilled, ackCount.Load(), len(sk.snapshot()), time.Since(began).Round(time.Second))
		}
	}
	if natsDown >= 0 {
		must(t, nats.nodes[natsDown].start())
		must(t, nats.nodes[natsDown].waitHealthy(60*time.Second))
	}
	wg.Wait()
	loadTook := time.Since(began)
	total := int(ackCount.Load())
	if total != p.events {
		t.Errorf("acknowledged %d of %d events (%d clients gave up)", total, p.events, gaveUp.Load())
	}
	if natsKilled < p.natsKills {
		t.Errorf("%d NATS node kills of %d", natsKilled, p.natsKills)
	}

	checkDelivered(t, sk, &ackMu, acked, p.drainLimit)
	liveMu.Lock()
	var running []*relayProc
	for i := range relays {
		if live[i] {
			running = append(running, relays[i])
		}
	}
	liveMu.Unlock()
	settled := waitSettled(t, running, 30*time.Second)
	res := checkSoakArrivals(t, sk, acked)

	// The admin API of every live relay shows every event, delivered; with
	// standbys, one of them is started for it too (nothing is pending any
	// more, so it has nothing to deliver twice).
	if settled && len(running) < len(relays) {
		for i := range relays {
			if !slices.Contains(running, relays[i]) {
				must(t, relays[i].start())
				running = append(running, relays[i])
				break
			}
		}
	}
	for _, r := range running {
		notSeen := 0
		for ev, a := range res.firstSeen {
			if err := adminShowsDelivered(client, r.admin, a.eventID); err != nil {
				notSeen++
				if notSeen <= 3 {
					t.Errorf("admin %s, event %v (%s): %v", r.admin, ev, a.eventID, err)
				}
			}
		}
		if notSeen > 0 {
			t.Errorf("admin %s: %d of %d events not shown as delivered", r.admin, notSeen, len(res.firstSeen))
		}
	}
	for _, r := range running {
		if code, _, err := r.terminate(r.timeout + 5*time.Second); err != nil || code != 0 {
			t.Errorf("SIGTERM: exit %d, %v", code, err)
		}
	}
	sp, err := jetstream.Open(context.Background(), jetstream.Options{URLs: nats.urls(), Stream: "SOAKJS", Replicas: p.replicas, Partitions: p.partitions})
	must(t, err)
	defer func() { _ = sp.Close() }()
	open := 0
	must(t, sp.Pending("sink", func(*spool.QueuedDelivery) error { open++; return nil }))
	if open != 0 && settled {
		t.Errorf("the stream holds %d deliveries not final", open)
	}

	var avg, worst, natsAvg time.Duration
	for _, d := range restarts {
		avg += d
		worst = max(worst, d)
	}
	if len(restarts) > 0 {
		avg /= time.Duration(len(restarts))
	}
	for _, d := range natsRestarts {
		natsAvg += d
	}
	if len(natsRestarts) > 0 {
		natsAvg /= time.Duration(len(natsRestarts))
	}
	t.Logf("soak-js summary: form=%s relays=%d active=%d relay kills=%d NATS kills=%d events=%d keys=%d acknowledged=%d "+
		"(ingest requests refused or failed, each resent: %d) delivered=%d duplicates=%d inversions=%d sink: requests=%d 200=%d 500=%d hangs=%d resets=%d; "+
		"relay start avg %s max %s, start-ups that failed %d; NATS node healthy again avg %s; load %s; elapsed %s",
		p.form, p.relays, p.active, killed.Load(), natsKilled, p.events, p.keys, total, failedReq.Load(), len(res.firstSeen), res.dups, res.inversions,
		len(res.arrivals), res.oks, res.fails, res.hangs, res.resets, avg.Round(time.Millisecond), worst.Round(time.Millisecond), startFails,
		natsAvg.Round(time.Millisecond), loadTook.Round(time.Second), time.Since(began).Round(time.Second))
}

// adminShowsDelivered asks GET /admin/events/{id} and wants its one
// delivery delivered.
func adminShowsDelivered(c *http.Client, admin, id string) error {
	resp, err := c.Get(admin + "/admin/events/" + id)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %.200s", resp.StatusCode, body)
	}
	var v struct {
		Deliveries []struct {
			Status string `json:"status"`
		} `json:"deliveries"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return err
	}
	if len(v.Deliveries) != 1 || !strings.EqualFold(v.Deliveries[0].Status, "delivered") {
		return fmt.Errorf("deliveries %+v, want one delivered", v.Deliveries)
	}
	return nil
}

// dumpStuck sends SIGQUIT to a relay that is running but not ready, so that
// the Go runtime writes every goroutine's stack to its log, and shows the
// hookrelay frames of it: where the start-up waits.
func dumpStuck(t *testing.T, r *relayProc) {
	t.Helper()
	cmd, done := r.current()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return // exited by itself: its log says why
	default:
	}
	if cmd.Process.Signal(syscall.SIGQUIT) != nil {
		return
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	b, err := os.ReadFile(r.log.Name())
	if err != nil {
		return
	}
	var frames []string
	for _, line := range strings.Split(string(tail(b, 256<<10)), "\n") {
		if strings.Contains(line, "hookrelay/hookrelay/") && !strings.HasPrefix(line, "\t") && len(frames) < 60 {
			frames = append(frames, line)
		}
	}
	t.Logf("relay not ready: its goroutines in hookrelay code:\n%s", strings.Join(frames, "\n"))
}
