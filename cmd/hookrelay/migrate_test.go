package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream/natstest"
)

// queued is one delivery of a queue as the test compares them.
type queued struct {
	key      string
	status   spool.Status
	attempts int
	tries    int
}

// queueOf reads dest's queue (deliveries not final) in order.
func queueOf(t *testing.T, s spool.Store, dest string) map[string]queued {
	t.Helper()
	out := map[string]queued{}
	must(t, s.Queue(dest, func(d *spool.Delivery) error {
		out[d.EventID] = queued{d.Key, d.Status, len(d.Attempts), d.Tries()}
		return nil
	}))
	return out
}

// TestMigrateBoltJetStream: a stopped relay's bbolt spool holding pending
// deliveries with attempts, a dead one holding its key and a delivered
// event still in its dedup window is copied by `hookrelay migrate --from`
// into a JetStream stream (twice: the second run copies nothing), back by
// `--to` into a new bbolt file with the same queue, and a relay started on
// the stream delivers the pending events in per-key order with their
// attempt counts carried over, the held key once an operator retries it,
// and not the delivered event again; a relay on the bbolt copy does the
// same.
func TestMigrateBoltJetStream(t *testing.T) {
	nats := natstest.Run(t)
	var phase atomic.Int32 // 0: every key but "done" fails; 1: all succeed
	var mu sync.Mutex
	var arrivals []arrival
	dest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		a, err := readArrival(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.status = http.StatusOK
		if phase.Load() == 0 && a.ev.key != "done" {
			a.status = http.StatusInternalServerError
		}
		mu.Lock()
		arrivals = append(arrivals, a)
		mu.Unlock()
		w.WriteHeader(a.status)
	}))
	t.Cleanup(dest.Close)
	seen := func() []arrival {
		mu.Lock()
		defer mu.Unlock()
		return append([]arrival(nil), arrivals...)
	}

	r := newRelay(t, dest.URL, map[string]string{"crash": providerYAML})
	must(t, r.start())
	keys := []string{"k0", "k1", "held"}
	const perKey = 3
	client := &http.Client{Timeout: 5 * time.Second}
	send := func(key string, n int) {
		req, err := signedRequest(context.Background(), r.ingest+providerPath, eventBody(key, n))
		must(t, err)
		resp, err := client.Do(req)
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("ingest %s-%d: %d", key, n, resp.StatusCode)
		}
	}
	for n := 1; n <= perKey; n++ {
		for _, k := range keys {
			send(k, n)
		}
		send("done", n)
	}
	tried := func(a []arrival, key string) int {
		c := 0
		for _, x := range a {
			if x.ev.key == key {
				c++
			}
		}
		return c
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		a := seen()
		if tried(a, "k0") >= 2 && tried(a, "k1") >= 2 && tried(a, "held") >= 2 && tried(a, "done") >= perKey {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the heads were not tried twice: %d arrivals", len(a))
		}
	}
	jsYAML := filepath.Join(r.dir, "js.yaml")
	cfg, err := os.ReadFile(filepath.Join(r.dir, "relay.yaml"))
	must(t, err)
	block := fmt.Sprintf("spool:\n  kind: jetstream\n  nats: { urls: [%s], stream: MOVED, partitions: 4 }\n", nats.ClientURL())
	must(t, os.WriteFile(jsYAML, []byte(strings.Replace(string(cfg), "spool:\n  path: ./spool/hookrelay.db\n", block, 1)), 0o644))
	// While the relay runs on the bbolt file, migrate refuses it.
	code, _, stderr := runBin(t, r.dir, r.env, "migrate", "--config", jsYAML, "--from", r.spool)
	if code != 1 || !strings.Contains(stderr, "stop the relay first") {
		t.Fatalf("migrate from a running relay's spool: exit %d, %s", code, stderr)
	}
	if code, _, err := r.terminate(r.timeout + 5*time.Second); err != nil || code != 0 {
		t.Fatalf("SIGTERM: exit %d, %v", code, err)
	}

	// The held key: its head dead, as on_exhausted: hold (the default)
	// leaves it after its last attempt.
	src, err := spool.Open(r.spool, spool.Options{})
	must(t, err)
	var head *spool.Delivery
	must(t, src.Queue("sink", func(d *spool.Delivery) error {
		if d.Key == "held" && head == nil {
			head = d
		}
		return nil
	}))
	if head == nil || len(head.Attempts) < 2 {
		t.Fatalf("the held key's head: %+v", head)
	}
	head.Status = spool.Dead
	must(t, src.Update(context.Background(), head))
	before := queueOf(t, src, "sink")
	must(t, src.Close())
	if len(before) != len(keys)*perKey {
		t.Fatalf("the bbolt queue holds %d deliveries, want %d", len(before), len(keys)*perKey)
	}

	var stdout string
	var counts struct {
		Events, Pending, Dead, Delivered int
		Present                          int `json:"already_present"`
	}
	code, stdout, stderr = runBin(t, r.dir, r.env, "migrate", "--config", jsYAML, "--from", r.spool, "--json")
	if code != 0 {
		t.Fatalf("migrate --from: exit %d: %s", code, stderr)
	}
	must(t, json.Unmarshal([]byte(stdout), &counts))
	if counts.Events != (len(keys)+1)*perKey || counts.Pending != len(keys)*perKey-1 || counts.Dead != 1 || counts.Delivered != perKey {
		t.Errorf("migrate --from: %s", stdout)
	}
	code, stdout, stderr = runBin(t, r.dir, r.env, "migrate", "--config", jsYAML, "--from", r.spool, "--json")
	if code != 0 {
		t.Fatalf("migrate --from again: exit %d: %s", code, stderr)
	}
	must(t, json.Unmarshal([]byte(stdout), &counts))
	if counts.Events != 0 || counts.Present != (len(keys)+1)*perKey {
		t.Errorf("migrate --from again copied: %s", stdout)
	}

	js, err := jetstream.Open(context.Background(), jetstream.Options{URLs: []string{nats.ClientURL()}, Stream: "MOVED", Partitions: 4})
	must(t, err)
	moved := queueOf(t, js, "sink")
	must(t, js.Close())
	if fmt.Sprint(moved) != fmt.Sprint(before) {
		t.Errorf("the JetStream queue:\n%v\nwant the bbolt one:\n%v", moved, before)
	}

	// And back, into a new bbolt file.
	back := filepath.Join(t.TempDir(), "back.db")
	code, stdout, stderr = runBin(t, r.dir, r.env, "migrate", "--config", jsYAML, "--to", back)
	if code != 0 || !strings.Contains(stdout, "migrated stream MOVED -> "+back) {
		t.Fatalf("migrate --to: exit %d: %s%s", code, stdout, stderr)
	}
	bs, err := spool.Open(back, spool.Options{})
	must(t, err)
	returned := queueOf(t, bs, "sink")
	must(t, bs.Close())
	if fmt.Sprint(returned) != fmt.Sprint(before) {
		t.Errorf("the queue migrated back:\n%v\nwant:\n%v", returned, before)
	}

	// A relay on the stream delivers them.
	headTries := map[string]int{}
	for _, q := range before {
		headTries[q.key] = max(headTries[q.key], q.tries)
	}
	phase.Store(1)
	nBefore := len(seen())
	r.args = []string{"serve", "--config", jsYAML}
	must(t, r.start())
	delivered := func() map[evKey]arrival { return firstDeliveries(seen()[nBefore:]) }
	for deadline := time.Now().Add(20 * time.Second); len(delivered()) < 2*perKey; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("delivered on JetStream: %v", delivered())
		}
	}
	// The held key's dead head counts as dead, the rest of its queue as
	// pending; the lease holder feeds its queues as it reads the stream, so
	// the count gets there rather than being there at once.
	for deadline, n := time.Now().Add(10*time.Second), pending(r.admin, "sink"); n != perKey-1; n = pending(r.admin, "sink") {
		if time.Now().After(deadline) {
			t.Fatalf("pending on JetStream: %d, want the held key's %d behind its dead head", n, perKey-1)
		}
		time.Sleep(20 * time.Millisecond)
	}
	req, err := http.NewRequest(http.MethodPost, r.admin+"/admin/dead/retry", nil)
	must(t, err)
	resp, err := client.Do(req)
	must(t, err)
	resp.Body.Close()
	for deadline := time.Now().Add(20 * time.Second); len(delivered()) < len(keys)*perKey; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after the retry of the held key (%d): delivered %v", resp.StatusCode, delivered())
		}
	}
	after := seen()[nBefore:]
	_, inversions, _, _ := checkArrivals(t, after)
	if inversions > 0 {
		t.Errorf("%d order inversions on JetStream", inversions)
	}
	for _, a := range after {
		if a.ev.key == "done" {
			t.Errorf("a delivered event was sent again: %v", a.ev)
		}
		if a.ev.n == 1 && a.ev.key != "held" {
			if n, _ := strconv.Atoi(a.attempt); n != headTries[a.ev.key]+1 {
				t.Errorf("key %s: its head sent as attempt %s after %d on bbolt", a.ev.key, a.attempt, headTries[a.ev.key])
			}
		}
	}
	for deadline := time.Now().Add(10 * time.Second); pending(r.admin, "sink") != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the relay on JetStream still reports pending deliveries")
		}
	}

	if code, _, err := r.terminate(r.timeout + 5*time.Second); err != nil || code != 0 {
		t.Fatalf("SIGTERM: exit %d, %v", code, err)
	}

	// The copy migrated back delivers as well, on bbolt: the same order,
	// the same attempt counts.
	backYAML := filepath.Join(r.dir, "back.yaml")
	must(t, os.WriteFile(backYAML, []byte(strings.Replace(string(cfg), "./spool/hookrelay.db", back, 1)), 0o644))
	nBack := len(seen())
	r.args = []string{"serve", "--config", backYAML}
	must(t, r.start())
	for deadline := time.Now().Add(20 * time.Second); len(firstDeliveries(seen()[nBack:])) < 2*perKey; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("delivered from the bbolt copy: %v", firstDeliveries(seen()[nBack:]))
		}
	}
	again := seen()[nBack:]
	if _, inversions, _, _ := checkArrivals(t, again); inversions > 0 {
		t.Errorf("%d order inversions from the bbolt copy", inversions)
	}
	for _, a := range again {
		if a.ev.key == "held" || a.ev.key == "done" {
			t.Errorf("sent from the bbolt copy: %v (held, or delivered before)", a.ev)
		}
		if a.ev.n == 1 {
			if n, _ := strconv.Atoi(a.attempt); n != headTries[a.ev.key]+1 {
				t.Errorf("key %s: its head sent from the bbolt copy as attempt %s after %d", a.ev.key, a.attempt, headTries[a.ev.key])
			}
		}
	}
}
