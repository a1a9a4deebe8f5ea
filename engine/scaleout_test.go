package engine

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream/natstest"
)

// Several relays on one JetStream stream (README, Scale-out): each
// partition delivered by one relay at a time, per-key order kept across
// a relay's stop or crash.

const sharedParts = 16

// steadyTTL is the lease_ttl of the tests where no relay goes away: long
// enough that a busy machine's late heartbeat moves no partition (which
// would be allowed, but not what they check).
const steadyTTL = 5 * time.Second

// sharedTTL is the relays' lease_ttl: 1s, or HOOKRELAY_TEST_LEASE_TTL, to
// measure failover with another (README, Scale-out).
var sharedTTL = func() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("HOOKRELAY_TEST_LEASE_TTL")); err == nil && d >= time.Second {
		return d
	}
	return time.Second
}()

// sharedNATS is the package's JetStream server, or one of the test's own
// when the package runs on bbolt.
func sharedNATS(t *testing.T) string {
	t.Helper()
	if testNATS != nil {
		return testNATS.ClientURL()
	}
	s, err := natstest.Start("")
	must(t, err)
	t.Cleanup(s.Close)
	return s.ClientURL()
}

var sharedStreams atomic.Int64

// startShared starts n relays on one new stream with lease_ttl ttl;
// relay i sends to url?r=i, so that the destination knows which relay sent
// a request.
func startShared(t *testing.T, n int, ttl time.Duration, url, destExtra string) []*testRelay {
	t.Helper()
	nats := sharedNATS(t)
	stream := fmt.Sprintf("SHARED%d", sharedStreams.Add(1))
	var out []*testRelay
	for i := range n {
		dir := t.TempDir()
		writeConfig(t, dir, adminRelayYAML(fmt.Sprintf("%s/?r=%d", url, i), destExtra), map[string]string{"plain": plainProvider})
		cfg, err := Load(filepath.Join(dir, "relay.yaml"), true)
		must(t, err)
		cfg.Spool.Kind = config.SpoolJetStream
		cfg.Spool.NATS = &config.NATS{URLs: []string{nats}, Stream: stream, Replicas: 1, Partitions: sharedParts, LeaseTTL: ttl}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		if testing.Verbose() {
			log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("relay", i)
		}
		r, err := Open(cfg, log)
		must(t, err)
		must(t, r.Start())
		tr := &testRelay{Relay: r, t: t, dir: dir, Ingest: testServer(t, r.IngestHandler()), Admin: testServer(t, r.AdminHandler())}
		t.Cleanup(tr.stop)
		out = append(out, tr)
	}
	return out
}

func storeOf(tr *testRelay) *jetstream.Store { return tr.spool.(*jetstream.Store) }

// balanced says whether the live relays hold every partition between them,
// none twice, each its share.
func balanced(live []*testRelay) bool {
	seen := map[uint32]bool{}
	most := (sharedParts + len(live) - 1) / len(live)
	for _, tr := range live {
		h := storeOf(tr).Held()
		if len(h) == 0 || len(h) > most {
			return false
		}
		for _, p := range h {
			if seen[p] {
				return false
			}
			seen[p] = true
		}
	}
	return len(seen) == sharedParts
}

// arrival is one request the destination answered 200, with the relay
// that sent it.
type arrival struct {
	relay, key string
	n          int
}

func arrivals(t *testing.T, rec *recorder) []arrival {
	var out []arrival
	for _, r := range rec.requests() {
		if r.Status != http.StatusOK {
			continue
		}
		_, key, n := envelope(t, r.Body)
		out = append(out, arrival{strings.TrimPrefix(r.Query, "r="), key, n})
	}
	return out
}

// checkOrder fails unless each key's first deliveries came in order and
// every one of keys×perKey events was delivered.
func checkOrder(t *testing.T, got []arrival, keys, perKey int) {
	t.Helper()
	next := map[string]int{}
	for _, a := range got {
		switch {
		case a.n <= next[a.key]: // a second delivery (allowed after a takeover)
		case a.n != next[a.key]+1:
			t.Fatalf("key %s: event %d delivered first after %d", a.key, a.n, next[a.key])
		default:
			next[a.key] = a.n
		}
	}
	for k := range keys {
		if n := next[fmt.Sprintf("key-%d", k)]; n != perKey {
			t.Errorf("key-%d: delivered up to %d of %d", k, n, perKey)
		}
	}
}

// ingestSpread posts keys×perKey events, each key's in order, to the
// relays in turn.
func ingestSpread(t *testing.T, relays []*testRelay, keys, perKey int) {
	t.Helper()
	i := 0
	for n := 1; n <= perKey; n++ {
		for k := range keys {
			must(t, relays[i%len(relays)].ingest(eventBody(fmt.Sprintf("key-%d", k), n)))
			i++
		}
	}
}

// TestJetStreamRelaysShareTheWork: three relays on one stream split the
// partitions, take webhooks for any of them, and deliver each partition
// from one relay only, each key in order.
func TestJetStreamRelaysShareTheWork(t *testing.T) {
	const keys, perKey = 24, 8
	rec := newRecorder(t, nil)
	relays := startShared(t, 3, steadyTTL, rec.srv.URL, "")
	waitFor(t, 30*time.Second, "the partitions split between the relays", func() bool { return balanced(relays) })
	ingestSpread(t, relays, keys, perKey)
	waitFor(t, 30*time.Second, "every event delivered", func() bool { return len(rec.delivered(t)) >= keys*perKey })
	for _, tr := range relays {
		waitFor(t, 10*time.Second, "the relays settled", tr.settled)
	}
	got := arrivals(t, rec)
	checkOrder(t, got, keys, perKey)
	if len(got) != keys*perKey {
		t.Errorf("%d deliveries of %d events", len(got), keys*perKey)
	}
	st := storeOf(relays[0])
	by := map[uint32]string{}
	senders := map[string]bool{}
	for _, a := range got {
		p := st.Partition("plain", a.key)
		if r, ok := by[p]; ok && r != a.relay {
			t.Errorf("partition %d delivered by relays %s and %s", p, r, a.relay)
		}
		by[p] = a.relay
		senders[a.relay] = true
	}
	if len(senders) != 3 {
		t.Errorf("deliveries came from relays %v, want all three", senders)
	}
	// Each relay says on /metrics how many partitions it delivers.
	total := 0
	for i, tr := range relays {
		status, body := tr.call("GET", "/metrics", "")
		var n int
		for _, line := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, "hookrelay_partitions_held "); ok {
				_, _ = fmt.Sscan(v, &n)
			}
		}
		if status != http.StatusOK || n != len(storeOf(tr).Held()) {
			t.Errorf("relay %d: /metrics %d says %d partitions held, it holds %v", i, status, n, storeOf(tr).Held())
		}
		total += n
	}
	if total != sharedParts {
		t.Errorf("the relays' hookrelay_partitions_held add up to %d, want %d", total, sharedParts)
	}
	// The admin API of any relay sees every event.
	for i, tr := range relays {
		if n := len(tr.events("limit=1000").Items); n != keys*perKey {
			t.Errorf("relay %d's admin API lists %d events, want %d", i, n, keys*perKey)
		}
	}
}

// TestJetStreamRelayFailover: with deliveries failing, one of three relays
// stops (cleanly, or its connection to NATS dies without a word); the
// other two take its partitions and deliver every event, each key in
// order, the attempts made before carried over.
func TestJetStreamRelayFailover(t *testing.T) {
	for _, kill := range []bool{false, true} {
		name := map[bool]string{false: "stop", true: "kill"}[kill]
		t.Run(name, func(t *testing.T) {
			const keys, perKey = 16, 6
			var down atomic.Bool
			down.Store(true)
			rec := newRecorder(t, func(int, *http.Request) int {
				if down.Load() {
					return http.StatusServiceUnavailable
				}
				return http.StatusOK
			})
			relays := startShared(t, 3, sharedTTL, rec.srv.URL, "    retry: {initial: 1ms, max: 20ms, max_attempts: 1000}\n")
			waitFor(t, 30*time.Second, "the partitions split between the relays", func() bool { return balanced(relays) })
			ingestSpread(t, relays, keys, perKey)
			tried := func(relay string) bool {
				for _, r := range rec.requests() {
					if r.Query == "r="+relay {
						return true
					}
				}
				return false
			}
			waitFor(t, 10*time.Second, "relay 0 trying its keys", func() bool { return tried("0") })
			gone := storeOf(relays[0]).Held()
			at := time.Now()
			if kill {
				storeOf(relays[0]).Kill()
			} else {
				relays[0].stop()
			}
			live := relays[1:]
			waitFor(t, 10*sharedTTL+10*time.Second, "relays 1 and 2 holding every partition", func() bool { return balanced(live) })
			t.Logf("%s: %d partitions taken over in %s (lease_ttl %s)", name, len(gone), time.Since(at).Round(time.Millisecond), sharedTTL)
			down.Store(false)
			waitFor(t, 30*time.Second, "every event delivered", func() bool {
				seen := map[string]bool{}
				for _, a := range arrivals(t, rec) {
					seen[fmt.Sprintf("%s/%d", a.key, a.n)] = true
				}
				return len(seen) == keys*perKey
			})
			for _, tr := range live {
				waitFor(t, 10*time.Second, "the relays settled", tr.settled)
			}
			got := arrivals(t, rec)
			checkOrder(t, got, keys, perKey)
			for _, a := range got {
				if a.relay == "0" {
					t.Errorf("relay 0 delivered %s/%d after it went", a.key, a.n)
				}
			}
			// A head relay 0 tried keeps its attempts: its success is a later one.
			carried := false
			for _, r := range rec.requests() {
				if r.Status == http.StatusOK && r.Query != "r=0" && r.Header.Get("X-Hookrelay-Attempt") != "1" {
					carried = true
				}
			}
			if !carried {
				t.Error("no delivery after the takeover counted the attempts made before it")
			}
		})
	}
}

// TestJetStreamRetryOnNonHolder: an operator's retry of a dead delivery,
// sent to a relay that does not deliver its partition, reaches the relay
// that does: the key held behind it moves on.
func TestJetStreamRetryOnNonHolder(t *testing.T) {
	var fixed atomic.Bool
	rec := newRecorder(t, func(int, *http.Request) int {
		if !fixed.Load() {
			return http.StatusBadRequest
		}
		return http.StatusOK
	})
	relays := startShared(t, 3, steadyTTL, rec.srv.URL, "    retry: {initial: 1ms, max: 5ms, max_attempts: 1}\n")
	waitFor(t, 30*time.Second, "the partitions split between the relays", func() bool { return balanced(relays) })
	relays[0].mustIngest("k", 1)
	relays[0].mustIngest("k", 2)
	waitFor(t, 10*time.Second, "k/1 dead", func() bool { return len(relays[0].events("status=dead").Items) == 1 })
	holder, other := -1, -1
	for i, tr := range relays {
		if storeOf(tr).Holds("plain", "k") {
			holder = i
		} else if other < 0 {
			other = i
		}
	}
	if holder < 0 || other < 0 {
		t.Fatalf("holder %d, a non-holder %d", holder, other)
	}
	waitFor(t, 10*time.Second, "k held on its holder", func() bool { return relays[holder].dest("dest").HeldKeys == 1 })
	fixed.Store(true)
	id := relays[other].eventID("k", 1)
	relays[other].do("POST", "/admin/events/"+id+"/retry", "", http.StatusOK, nil)
	waitFor(t, 10*time.Second, "k/1 and k/2 delivered", func() bool { return len(rec.delivered(t)) == 2 })
	got := arrivals(t, rec)
	if got[0].n != 1 || got[1].n != 2 || got[0].relay != fmt.Sprint(holder) {
		t.Errorf("deliveries %+v, want k/1 then k/2 from relay %d", got, holder)
	}

	// A pause on one relay stops every relay's lane; a resume restarts them.
	relays[other].do("POST", "/admin/destinations/dest/pause", "", http.StatusOK, nil)
	for i, tr := range relays {
		waitFor(t, 10*time.Second, fmt.Sprintf("relay %d paused", i), func() bool { return tr.dest("dest").Paused })
	}
	relays[other].mustIngest("k", 3)
	relays[other].do("POST", "/admin/destinations/dest/resume", "", http.StatusOK, nil)
	for i, tr := range relays {
		waitFor(t, 10*time.Second, fmt.Sprintf("relay %d resumed", i), func() bool { return !tr.dest("dest").Paused })
	}
	waitFor(t, 10*time.Second, "k/3 delivered after the resume", func() bool { return len(rec.delivered(t)) == 3 })
}

// TestJetStreamAdminCountsEveryPartition: three relays share a stream, and
// each relay's GET /admin/destinations counts the queues of every
// partition, the same totals on all three (issue 16: the admin API of any
// live instance sees every event), where each relay's hookrelay_pending
// counts the partitions it delivers, so that the three add up to the
// total as one bbolt relay's does.
func TestJetStreamAdminCountsEveryPartition(t *testing.T) {
	const keys, perKey = 24, 4
	dest := testServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if _, key, _ := envelope(t, body); key == "key-0" {
			w.WriteHeader(http.StatusBadRequest) // dead at once: key-0 is held
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	relays := startShared(t, 3, steadyTTL, dest.URL, "    retry: {initial: 1ms, max: 5ms, max_attempts: 1}\n")
	waitFor(t, 30*time.Second, "the partitions split between the relays", func() bool { return balanced(relays) })
	relays[1].do("POST", "/admin/destinations/dest/pause", "", http.StatusOK, nil)
	for i, tr := range relays {
		waitFor(t, 10*time.Second, fmt.Sprintf("relay %d paused", i), func() bool { return tr.dest("dest").Paused })
	}
	ingestSpread(t, relays, keys, perKey)

	// Paused: every event pending, on every relay's API.
	for i, tr := range relays {
		waitFor(t, 10*time.Second, fmt.Sprintf("relay %d counting %d pending", i, keys*perKey), func() bool {
			d := tr.dest("dest")
			return d.Pending == keys*perKey && d.Dead == 0 && d.HeldKeys == 0
		})
	}
	sum := 0
	for i, tr := range relays {
		v, ok := metricValue(tr.scrape(), "hookrelay_pending", map[string]string{"destination": "dest"})
		if !ok {
			t.Fatalf("relay %d: no hookrelay_pending for dest", i)
		}
		n := int(v)
		if n >= keys*perKey {
			t.Errorf("relay %d: hookrelay_pending %d, want only its partitions' share of %d", i, n, keys*perKey)
		}
		sum += n
	}
	if sum != keys*perKey {
		t.Errorf("the relays' hookrelay_pending add up to %d, want %d", sum, keys*perKey)
	}

	// Resumed: key-0's first event dead, its key held with the rest behind
	// it; every other event delivered.
	relays[2].do("POST", "/admin/destinations/dest/resume", "", http.StatusOK, nil)
	blocker := relays[0].eventID("key-0", 1)
	for i, tr := range relays {
		waitFor(t, 20*time.Second, fmt.Sprintf("relay %d counting key-0 held", i), func() bool {
			d := tr.dest("dest")
			return d.Pending == perKey-1 && d.Dead == 1 && d.HeldKeys == 1 && len(d.Held) == 1
		})
		d := tr.dest("dest")
		if h := d.Held[0]; h.Key != "key-0" || h.BlockedBy != blocker || h.Waiting != perKey-1 {
			t.Errorf("relay %d: held %+v, want key-0 blocked by %s with %d waiting", i, h, blocker, perKey-1)
		}
	}
	var oldest destOldest
	relays[0].get("/admin/destinations", &oldest)
	if len(oldest.Items) != 1 || oldest.Items[0].Oldest <= 0 {
		t.Errorf("oldest_pending_seconds: %+v, want above 0", oldest.Items)
	}
}

// destOldest reads each destination's oldest_pending_seconds.
type destOldest struct {
	Items []struct {
		Oldest float64 `json:"oldest_pending_seconds"`
	}
}
