package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchJSEnv reads a whole-number environment variable, or def.
func benchJSEnv(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 10_000_000 {
		t.Fatalf("%s=%q: want a whole number from 1 to 10000000", name, s)
	}
	return n
}

// benchSpool is one spool under measurement: bbolt, or JetStream on a
// cluster of natsNodes nodes with replicas.
type benchSpool struct {
	name               string
	natsNodes, replica int
}

// benchLoad sends events [from, from+count) over keys with clients
// concurrent senders (each key in order) to r and returns the wall time and
// every acknowledgement's latency. An event that is not acknowledged fails
// the test.
func benchLoad(t *testing.T, client *http.Client, r *relayProc, from, count, keys, clients int) (time.Duration, []time.Duration) {
	t.Helper()
	var (
		mu   sync.Mutex
		lats = make([]time.Duration, 0, count)
		next atomic.Int64
		bad  atomic.Int64
		wg   sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	// Event i is event i/keys of key i%keys, handed out in order: with
	// fewer senders than keys two events of one key are rarely in flight
	// together, and the figures do not depend on their order.
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= count || ctx.Err() != nil {
					return
				}
				ev := from + i
				body := eventBody(fmt.Sprintf("key-%02d", ev%keys), ev/keys)
				req, err := signedRequest(ctx, r.ingest+providerPath, body)
				if err != nil {
					bad.Add(1)
					return
				}
				at := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					bad.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					bad.Add(1)
					continue
				}
				mu.Lock()
				lats = append(lats, time.Since(at))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if n := bad.Load(); n > 0 {
		t.Fatalf("%d of %d events not acknowledged", n, count)
	}
	return took, lats
}

// quantile is the q-quantile of ds (sorted in place).
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(q*float64(len(ds))))]
}

// medianF is the median of xs.
func medianF(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// countingSink answers 200 at once and counts first deliveries.
type countingSink struct {
	mu    sync.Mutex
	seen  map[string]bool
	first time.Time // first 2xx answered after arm
	armed time.Time
}

func (s *countingSink) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	a, err := readArrival(req)
	if err != nil {
		http.Error(w, "bad envelope", http.StatusBadRequest)
		return
	}
	now := time.Now()
	s.mu.Lock()
	s.seen[a.eventID] = true
	if !s.armed.IsZero() && s.first.IsZero() {
		s.first = now
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (s *countingSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// waitCount waits until the sink saw n events, up to limit.
func (s *countingSink) waitCount(t *testing.T, n int, limit time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(limit); s.count() < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("sink saw %d of %d events after %s", s.count(), n, limit)
		}
	}
}

func adminPost(t *testing.T, admin, path string) {
	t.Helper()
	resp, err := http.Post(admin+path, "application/json", nil)
	must(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST %s: %d", path, resp.StatusCode)
	}
}

// TestBenchJetStream measures the relay binary on a JetStream spool against
// the bbolt spool in the same run (BENCHMARKS.md, "JetStream"): per round
// and spool a fresh relay and fresh NATS servers (child processes,
// sync_interval: always), `events` events over 50 keys from 16 senders
// with the destination paused (ingest: events/s and the acknowledgement's
// p50 and p99), the same number with the destination answering 200 at once
// (end to end: from the first send to the last first delivery). Spools
// alternate within each round; medians over the rounds. Then failover: with
// P events pending (destination paused), SIGKILL the relay, start a standby
// on the same stream (for bbolt: the same relay again on its file), resume
// the destination through it and time from the kill to the next delivery.
// HOOKRELAY_BENCH_JS=1 (make bench-js) runs it; _ROUNDS (3), _EVENTS
// (2000), _PENDING (1000,10000,50000) and _RELAYS (1; 3 once partition
// leases let three relays share a stream) change it.
func TestBenchJetStream(t *testing.T) {
	if os.Getenv("HOOKRELAY_BENCH_JS") != "1" {
		t.Skip("HOOKRELAY_BENCH_JS=1 (make bench-js) runs it")
	}
	rounds := benchJSEnv(t, "HOOKRELAY_BENCH_JS_ROUNDS", 3)
	events := benchJSEnv(t, "HOOKRELAY_BENCH_JS_EVENTS", 2000)
	if n := benchJSEnv(t, "HOOKRELAY_BENCH_JS_RELAYS", 1); n != 1 {
		t.Fatalf("HOOKRELAY_BENCH_JS_RELAYS=%d: several relays on one stream need partition leases (issue 16 item 2)", n)
	}
	var pendings []int
	for _, s := range strings.Split(orDefault(os.Getenv("HOOKRELAY_BENCH_JS_PENDING"), "1000,10000,50000"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			t.Fatalf("HOOKRELAY_BENCH_JS_PENDING: %q", s)
		}
		pendings = append(pendings, n)
	}
	const keys, clients = 50, 16
	spools := []benchSpool{{"bbolt", 0, 0}, {"jetstream R1", 1, 1}, {"jetstream R3", 3, 3}}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	defer client.CloseIdleConnections()

	type figures struct{ ingest, e2e, p50, p99 []float64 }
	res := make([]figures, len(spools))
	for round := range rounds {
		order := make([]int, len(spools))
		for i := range order {
			order[i] = (i + round) % len(spools) // each spool first in turn
		}
		for _, si := range order {
			sp := spools[si]
			sk := &countingSink{seen: map[string]bool{}}
			dest := httptest.NewServer(sk)
			r := newRelayWith(t, dest.URL, map[string]string{"crash": providerYAML}, relayOpts{})
			var nats *natsCluster
			if sp.natsNodes > 0 {
				nats = newNATSCluster(t, sp.natsNodes)
				onJetStream(t, r, jsRelayCfg(nats.urls(), "BENCH", sp.replica, 64))
			}
			must(t, r.start())
			adminPost(t, r.admin, "/admin/destinations/sink/pause")
			took, lats := benchLoad(t, client, r, 0, events, keys, clients)
			res[si].ingest = append(res[si].ingest, float64(events)/took.Seconds())
			res[si].p50 = append(res[si].p50, float64(quantile(lats, 0.5).Microseconds())/1000)
			res[si].p99 = append(res[si].p99, float64(quantile(lats, 0.99).Microseconds())/1000)
			adminPost(t, r.admin, "/admin/destinations/sink/resume")
			sk.waitCount(t, events, 5*time.Minute)
			start := time.Now()
			benchLoad(t, client, r, events, events, keys, clients)
			sk.waitCount(t, 2*events, 5*time.Minute)
			res[si].e2e = append(res[si].e2e, float64(events)/time.Since(start).Seconds())
			t.Logf("round %d %s: ingest %.0f/s (p50 %.1f ms, p99 %.1f ms), end to end %.0f/s", round+1, sp.name,
				res[si].ingest[round], res[si].p50[round], res[si].p99[round], res[si].e2e[len(res[si].e2e)-1])
			r.stopHard()
			dest.Close()
			if nats != nil {
				for _, n := range nats.nodes {
					n.stopHard()
				}
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| spool | ingest events/s | ratio to bbolt | ack p50 ms | ack p99 ms | end to end events/s | ratio to bbolt |\n|---|---|---|---|---|---|---|\n")
	for i, sp := range spools {
		in, e2e := medianF(res[i].ingest), medianF(res[i].e2e)
		fmt.Fprintf(&b, "| %s, 1 relay | %.0f | %.2f | %.1f | %.1f | %.0f | %.2f |\n", sp.name, in, in/medianF(res[0].ingest),
			medianF(res[i].p50), medianF(res[i].p99), e2e, e2e/medianF(res[0].e2e))
	}
	t.Logf("medians of %d rounds, %d events per phase, %d keys, %d senders:%s", rounds, events, keys, clients, b.String())

	// Failover with P pending events.
	var fb strings.Builder
	fmt.Fprintf(&fb, "\n| pending | spool | kill to standby ready s | kill to next delivery s | drain of the rest events/s |\n|---|---|---|---|---|\n")
	for _, pend := range pendings {
		for _, sp := range []benchSpool{spools[0], spools[2]} {
			sk := &countingSink{seen: map[string]bool{}}
			dest := httptest.NewServer(sk)
			a := newRelayWith(t, dest.URL, map[string]string{"crash": providerYAML}, relayOpts{})
			standby := a
			var nats *natsCluster
			if sp.natsNodes > 0 {
				nats = newNATSCluster(t, sp.natsNodes)
				block := jsRelayCfg(nats.urls(), "FAILOVER", sp.replica, 64)
				onJetStream(t, a, block)
				standby = newRelayWith(t, dest.URL, map[string]string{"crash": providerYAML}, relayOpts{})
				onJetStream(t, standby, block)
			}
			must(t, a.start())
			adminPost(t, a.admin, "/admin/destinations/sink/pause")
			benchLoad(t, client, a, 0, pend, keys, 32)
			sk.mu.Lock()
			sk.armed = time.Now()
			sk.mu.Unlock()
			killAt := time.Now()
			must(t, a.kill())
			must(t, standby.start())
			ready := time.Since(killAt)
			adminPost(t, standby.admin, "/admin/destinations/sink/resume")
			for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(time.Millisecond) {
				sk.mu.Lock()
				first := sk.first
				sk.mu.Unlock()
				if !first.IsZero() {
					next := first.Sub(killAt)
					sk.waitCount(t, pend, 10*time.Minute)
					rest := time.Since(first)
					fmt.Fprintf(&fb, "| %d | %s | %.2f | %.2f | %.0f |\n", pend, sp.name, ready.Seconds(), next.Seconds(), float64(pend)/rest.Seconds())
					t.Logf("failover %s, %d pending: ready %s, next delivery %s, drain %s", sp.name, pend, ready, next, rest)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("failover %s, %d pending: no delivery 5m after the kill", sp.name, pend)
				}
			}
			a.stopHard()
			standby.stopHard()
			dest.Close()
			if nats != nil {
				for _, n := range nats.nodes {
					n.stopHard()
				}
			}
		}
	}
	t.Logf("failover (SIGKILL of the delivering relay, standby started):%s", fb.String())
}

// orDefault is s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
