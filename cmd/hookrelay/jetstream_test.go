package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream/natstest"
)

// TestJetStreamKillResume runs the real binary on a JetStream spool (an
// embedded server, sync_interval: always) and SIGKILLs it three times
// while events flow to a failing destination: every acknowledged event is
// delivered, per key in order, duplicates only with the same
// Idempotency-Key, and the stream holds nothing pending at the end.
func TestJetStreamKillResume(t *testing.T) {
	const keys, perKey, clients, kills = 10, 20, 5, 3
	nats := natstest.Run(t)
	sk := &sink{failRate: 0.2}
	dest := httptest.NewServer(sk)
	t.Cleanup(dest.Close)
	r := newRelay(t, dest.URL, map[string]string{"crash": providerYAML})
	cfgPath := filepath.Join(r.dir, "relay.yaml")
	cfg, err := os.ReadFile(cfgPath)
	must(t, err)
	js := fmt.Sprintf("spool:\n  kind: jetstream\n  nats: { urls: [%s], stream: KILLS, partitions: 8 }\n", nats.ClientURL())
	must(t, os.WriteFile(cfgPath, []byte(strings.Replace(string(cfg), "spool:\n  path: ./spool/hookrelay.db\n", js, 1)), 0o644))
	must(t, r.start())
	if fileExists(r.spool) {
		t.Fatalf("a bbolt file was made at %s: the relay is not on JetStream", r.spool)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 5 * time.Second}
	var acked sync.Map // evKey -> true
	var ackCount atomic.Int64
	send := func(ev evKey) bool {
		body := eventBody(ev.key, ev.n)
		for attempt := 0; attempt < 2000 && ctx.Err() == nil; attempt++ {
			switch err := ingestOnce(ctx, t, client, r.ingest, ev, body); {
			case err == nil:
				return true
			case errors.Is(err, errGiveUp):
				return false
			}
			time.Sleep(10 * time.Millisecond)
		}
		return false
	}
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range perKey {
				for k := c; k < keys; k += clients {
					ev := evKey{fmt.Sprintf("key-%02d", k), n}
					if !send(ev) {
						return // a later event of the key would overtake this one
					}
					acked.Store(ev, true)
					ackCount.Add(1)
				}
			}
		}()
	}
	for i := range kills {
		point := int64((i + 1) * keys * perKey / (kills + 1))
		for ackCount.Load() < point && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		must(t, r.kill())
		if err := r.start(); err != nil {
			cancel()
			wg.Wait()
			t.Fatalf("restart %d: %v", i+1, err)
		}
	}
	wg.Wait()
	if n := ackCount.Load(); n != keys*perKey {
		t.Fatalf("acknowledged %d of %d events", n, keys*perKey)
	}
	var missing []evKey
	for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		arrivals, _ := sk.snapshot()
		first := firstDeliveries(arrivals)
		missing = missing[:0]
		acked.Range(func(k, _ any) bool {
			if _, ok := first[k.(evKey)]; !ok {
				missing = append(missing, k.(evKey))
			}
			return true
		})
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d acknowledged events never delivered, e.g. %v", len(missing), missing[:min(5, len(missing))])
	}
	for deadline := time.Now().Add(10 * time.Second); pending(r.admin, "sink") != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the relay still reports pending deliveries")
		}
	}
	arrivals, _ := sk.snapshot()
	firstSeen, inversions, dups, fails := checkArrivals(t, arrivals)
	if inversions > 0 {
		t.Errorf("%d order inversions", inversions)
	}
	t.Logf("%d events, %d kills: %d requests, %d answered 500, %d duplicate 2xx", len(firstSeen), kills, len(arrivals), fails, dups)
	if code, _, err := r.terminate(r.timeout + 5*time.Second); err != nil || code != 0 {
		t.Fatalf("SIGTERM: exit %d, %v", code, err)
	}

	sp, err := jetstream.Open(context.Background(), jetstream.Options{URLs: []string{nats.ClientURL()}, Stream: "KILLS", Partitions: 8})
	must(t, err)
	defer func() { _ = sp.Close() }()
	open := 0
	must(t, sp.Pending("sink", func(*spool.QueuedDelivery) error { open++; return nil }))
	if open != 0 {
		t.Errorf("the stream holds %d deliveries not final", open)
	}
	for ev, a := range firstSeen {
		if d, err := sp.Delivery("sink", a.eventID); err != nil || d.Status != spool.Delivered {
			t.Errorf("event %v (%s): %+v, %v; want delivered", ev, a.eventID, d, err)
		}
	}
}
