package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
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

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
	relays             int // relays sharing the stream (partition leases)
}

// benchLoad sends events [from, from+count) over keys with clients
// concurrent senders (each key in order) to r and returns the wall time and
// every acknowledgement's latency. An event that is not acknowledged fails
// the test.
// Sender c sends to rs[c%len(rs)], spreading the load over several relays.
func benchLoad(t *testing.T, client *http.Client, rs []*relayProc, from, count, keys, clients int) (time.Duration, []time.Duration) {
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
	for c := range clients {
		r := rs[c%len(rs)]
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
	mu       sync.Mutex
	seen     map[string]bool
	first    time.Time // first 2xx answered after arm
	armed    time.Time
	keyFirst map[string]time.Time // per key, its first 2xx after arm
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
	if !s.armed.IsZero() && s.keyFirst != nil {
		if _, ok := s.keyFirst[a.ev.key]; !ok {
			s.keyFirst[a.ev.key] = now
		}
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

// benchParts is the partitions of the benchmark's streams.
const benchParts = 64

// benchGroup starts sp's relays (one, or sp.relays on one stream, each
// holding about benchParts/relays partition leases before it returns) with
// destination destURL, and its NATS servers. leaseTTL, when set, is their
// spool.nats.lease_ttl.
func benchGroup(t *testing.T, sp benchSpool, destURL, stream, leaseTTL string) ([]*relayProc, *natsCluster) {
	t.Helper()
	rs := make([]*relayProc, max(1, sp.relays))
	for i := range rs {
		rs[i] = newRelayWith(t, destURL, map[string]string{"crash": providerYAML}, relayOpts{})
	}
	var nats *natsCluster
	if sp.natsNodes > 0 {
		nats = newNATSCluster(t, sp.natsNodes)
		block := jsRelayCfg(nats.urls(), stream, sp.replica, benchParts)
		if leaseTTL != "" {
			block = strings.Replace(block, " }\n", ", lease_ttl: "+leaseTTL+" }\n", 1)
		}
		for _, r := range rs {
			onJetStream(t, r, block)
			r.ready = 45 * time.Second
		}
	}
	for _, r := range rs {
		must(t, r.start())
	}
	if len(rs) > 1 {
		kv := leaseBucket(t, nats, stream)
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
			per := map[string]int{}
			held := leaseHolders(t, kv)
			for _, id := range held {
				per[id]++
			}
			low := benchParts
			for _, n := range per {
				low = min(low, n)
			}
			// Balanced: every partition held, by as many relays as run,
			// each about its share.
			if len(held) == benchParts && len(per) == len(rs) && low >= benchParts/len(rs)-1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: leases not balanced over %d relays after 2m: %v", sp.name, len(rs), per)
			}
		}
	}
	return rs, nats
}

// stopGroup ends what benchGroup started, and dest.
func stopGroup(rs []*relayProc, nats *natsCluster, dest *httptest.Server) {
	for _, r := range rs {
		r.stopHard()
	}
	dest.Close()
	if nats != nil {
		for _, n := range nats.nodes {
			n.stopHard()
		}
	}
}

// leaseBucket opens the lease bucket of stream (README, "Scale-out") as a
// NATS client of its own; the connection closes at the test's end.
func leaseBucket(t *testing.T, c *natsCluster, stream string) jetstream.KeyValue {
	t.Helper()
	nc, err := natsgo.Connect(strings.Join(c.urls(), ","))
	must(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, stream+"_leases")
	must(t, err)
	return kv
}

// leaseHolders reads partition -> holder from the lease bucket.
func leaseHolders(t *testing.T, kv jetstream.KeyValue) map[uint32]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	held := map[uint32]string{}
	ks, err := kv.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return held
	}
	must(t, err)
	for _, k := range ks {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired between the listing and the read
		}
		must(t, err)
		p, err := strconv.ParseUint(strings.TrimPrefix(k, "p"), 10, 32)
		must(t, err)
		held[uint32(p)] = string(e.Value())
	}
	return held
}

// benchPartition is the partition of the crash provider's key, as the
// JetStream spool hashes it (jetstream.Store.Partition).
func benchPartition(key string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte("crash"))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(key))
	return h.Sum32() % benchParts
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
// (2000), _PENDING (1000,10000,50000) and _RELAYS (1) change it.
// _RELAYS=3 adds three relays on one R3 stream (partition leases, the
// senders spread over their ingest listeners) to the throughput rows, and a
// failover row where one of the three is killed and the others take its
// partitions' leases (lease_ttl 2s).
func TestBenchJetStream(t *testing.T) {
	if os.Getenv("HOOKRELAY_BENCH_JS") != "1" {
		t.Skip("HOOKRELAY_BENCH_JS=1 (make bench-js) runs it")
	}
	rounds := benchJSEnv(t, "HOOKRELAY_BENCH_JS_ROUNDS", 3)
	events := benchJSEnv(t, "HOOKRELAY_BENCH_JS_EVENTS", 2000)
	relays := benchJSEnv(t, "HOOKRELAY_BENCH_JS_RELAYS", 1)
	if relays != 1 && relays != 3 {
		t.Fatalf("HOOKRELAY_BENCH_JS_RELAYS=%d: want 1 or 3", relays)
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
	spools := []benchSpool{{"bbolt", 0, 0, 1}, {"jetstream R1", 1, 1, 1}, {"jetstream R3", 3, 3, 1}}
	if relays == 3 {
		spools = append(spools, benchSpool{"jetstream R3", 3, 3, 3})
	}
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
			rs, nats := benchGroup(t, sp, dest.URL, "BENCH", "")
			// Every relay pauses at once: a pause reaches the others
			// through the spool, not before the first events.
			for _, r := range rs {
				adminPost(t, r.admin, "/admin/destinations/sink/pause")
			}
			took, lats := benchLoad(t, client, rs, 0, events, keys, clients)
			res[si].ingest = append(res[si].ingest, float64(events)/took.Seconds())
			res[si].p50 = append(res[si].p50, float64(quantile(lats, 0.5).Microseconds())/1000)
			res[si].p99 = append(res[si].p99, float64(quantile(lats, 0.99).Microseconds())/1000)
			for _, r := range rs {
				adminPost(t, r.admin, "/admin/destinations/sink/resume")
			}
			sk.waitCount(t, events, 5*time.Minute)
			start := time.Now()
			benchLoad(t, client, rs, events, events, keys, clients)
			sk.waitCount(t, 2*events, 5*time.Minute)
			res[si].e2e = append(res[si].e2e, float64(events)/time.Since(start).Seconds())
			t.Logf("round %d %s, %d relay(s): ingest %.0f/s (p50 %.1f ms, p99 %.1f ms), end to end %.0f/s", round+1, sp.name, len(rs),
				res[si].ingest[round], res[si].p50[round], res[si].p99[round], res[si].e2e[len(res[si].e2e)-1])
			stopGroup(rs, nats, dest)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| spool | ingest events/s | ratio to bbolt | ack p50 ms | ack p99 ms | end to end events/s | ratio to bbolt |\n|---|---|---|---|---|---|---|\n")
	for i, sp := range spools {
		in, e2e := medianF(res[i].ingest), medianF(res[i].e2e)
		fmt.Fprintf(&b, "| %s, %d relay(s) | %.0f | %.2f | %.1f | %.1f | %.0f | %.2f |\n", sp.name, max(1, sp.relays), in, in/medianF(res[0].ingest),
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
				block := jsRelayCfg(nats.urls(), "FAILOVER", sp.replica, benchParts)
				onJetStream(t, a, block)
				standby = newRelayWith(t, dest.URL, map[string]string{"crash": providerYAML}, relayOpts{})
				onJetStream(t, standby, block)
			}
			must(t, a.start())
			adminPost(t, a.admin, "/admin/destinations/sink/pause")
			benchLoad(t, client, []*relayProc{a}, 0, pend, keys, 32)
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
		if relays == 3 {
			benchLeaseTakeover(t, client, spools[3], pend, keys, &fb)
		}
	}
	t.Logf("failover (SIGKILL of the delivering relay, standby started; with 3 relays, lease takeover at lease_ttl %s):%s", benchLeaseTTL, fb.String())
}

// benchLeaseTTL is the lease_ttl of the takeover row: short, so that the
// row shows the takeover's own cost next to the TTL it waits out.
const benchLeaseTTL = "2s"

// benchLeaseTakeover is the failover row of three relays on one stream:
// pend events pending (destination paused on every relay), SIGKILL of one
// relay, the destination resumed through the other two at once; the time
// is from the kill to the first delivery of a key in a partition the killed
// relay held (its leases expire, the others take them). The killed relay's
// partitions are those whose holder in the lease bucket before the kill no
// longer holds any after the drain. Its drain rate counts from the kill.
func benchLeaseTakeover(t *testing.T, client *http.Client, sp benchSpool, pend, keys int, fb *strings.Builder) {
	t.Helper()
	sk := &countingSink{seen: map[string]bool{}, keyFirst: map[string]time.Time{}}
	dest := httptest.NewServer(sk)
	rs, nats := benchGroup(t, sp, dest.URL, "TAKEOVER", benchLeaseTTL)
	defer stopGroup(rs, nats, dest)
	kv := leaseBucket(t, nats, "TAKEOVER")
	for _, r := range rs {
		adminPost(t, r.admin, "/admin/destinations/sink/pause")
	}
	benchLoad(t, client, rs, 0, pend, keys, 32)
	before := leaseHolders(t, kv)
	sk.mu.Lock()
	sk.armed = time.Now()
	sk.mu.Unlock()
	killAt := time.Now()
	must(t, rs[2].kill())
	for _, r := range rs[:2] {
		adminPost(t, r.admin, "/admin/destinations/sink/resume")
	}
	sk.waitCount(t, pend, 10*time.Minute)
	drained := time.Since(killAt)
	live := map[string]bool{}
	for _, id := range leaseHolders(t, kv) {
		live[id] = true
	}
	dead := map[uint32]bool{}
	for p, id := range before {
		if !live[id] {
			dead[p] = true
		}
	}
	sk.mu.Lock()
	defer sk.mu.Unlock()
	var next time.Duration
	for k := range keys {
		key := fmt.Sprintf("key-%02d", k)
		if !dead[benchPartition(key)] {
			continue
		}
		at, ok := sk.keyFirst[key]
		if !ok {
			t.Fatalf("takeover, %d pending: %s (a killed relay's key) never delivered", pend, key)
		}
		if d := at.Sub(killAt); next == 0 || d < next {
			next = d
		}
	}
	if len(dead) == 0 || next == 0 {
		t.Fatalf("takeover, %d pending: no key of the killed relay's %d partitions among the %d keys", pend, len(dead), keys)
	}
	others := sk.first.Sub(killAt)
	fmt.Fprintf(fb, "| %d | %s, 3 relays (lease_ttl %s) | - (others' first delivery %.2f) | %.2f | %.0f |\n",
		pend, sp.name, benchLeaseTTL, others.Seconds(), next.Seconds(), float64(pend)/drained.Seconds())
	t.Logf("takeover %s, 3 relays, %d pending: killed relay held %d partitions; others' first delivery %s, its partitions' next delivery %s, all delivered %s",
		sp.name, pend, len(dead), others, next, drained)
}

// orDefault is s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
