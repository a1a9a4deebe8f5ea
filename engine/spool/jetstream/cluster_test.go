package jetstream_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream/natstest"
)

// TestClusterLosesANode: on three servers with replicas 3, the store keeps
// taking and reading events when the server leading the stream is killed,
// without losing an acknowledged one, and a second instance (another
// relay) reads what the first wrote.
func TestClusterLosesANode(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node cluster and a leader election: seconds")
	}
	c := natstest.RunCluster(t, 3)
	if err := c.Ready(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	var s *jetstream.Store
	// A fresh cluster elects the stream's and buckets' leaders first: on a
	// loaded 2-core machine under -race one open took 40 s.
	deadline := time.Now().Add(90 * time.Second)
	for s == nil {
		st, err := tryOpen(c.URLs(), "C", 3)
		if err == nil {
			s = st
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("open on the cluster: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	entropy := ulid.Monotonic(rand.Reader, 0)
	newEvent := func(i int) *spool.Event {
		id := ulid.MustNew(ulid.Now(), entropy).String()
		return &spool.Event{ID: id, Provider: "bank", Key: fmt.Sprint("app-", i%5), IdempotencyID: "cb-" + id,
			Envelope: []byte(`{}`), Destinations: []string{"crm"}}
	}
	var acked []string
	for i := range 20 {
		ev := newEvent(i)
		if _, err := s.Append(ctx, ev, time.Hour); err != nil {
			t.Fatal(err)
		}
		acked = append(acked, ev.ID)
	}

	if direct, err := jetstream.DirectBuckets(s); err != nil || len(direct) != 0 {
		t.Fatalf("buckets read from any replica: %v, %v", direct, err)
	}
	leader, err := jetstream.StreamLeader(s)
	if err != nil {
		t.Fatal(err)
	}
	idx := slices.IndexFunc(c.Servers, func(sv *server.Server) bool { return sv.Name() == leader })
	if idx < 0 {
		t.Fatalf("leader %q is none of the servers", leader)
	}
	t.Logf("killing %s, the stream's leader", leader)
	c.Stop(idx)

	// Appends fail while a new leader is elected, then go on; each one
	// acknowledged is kept.
	deadline = time.Now().Add(60 * time.Second)
	for i := 20; len(acked) < 40; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("only %d events acknowledged a minute after the kill", len(acked))
		}
		ev := newEvent(i)
		dup, err := s.Append(ctx, ev, time.Hour)
		if err != nil {
			// Not acknowledged: a lender would send it again, under the
			// same idempotency id.
			if dup, err = s.Append(ctx, ev, time.Hour); err != nil {
				continue
			}
		}
		if dup == "" {
			acked = append(acked, ev.ID)
		} else {
			acked = append(acked, dup)
		}
	}
	// Reads may fail while the buckets whose leader was killed elect
	// another; each is retried, bounded.
	var queued []string
	eventually(t, "pending deliveries read", func() error {
		queued = queued[:0]
		return s.Pending("crm", func(q *spool.QueuedDelivery) error {
			queued = append(queued, q.EventID.String())
			return nil
		})
	})
	for _, id := range acked {
		if !slices.Contains(queued, id) {
			t.Fatalf("acknowledged event %s is not queued after the kill (%d queued)", id, len(queued))
		}
	}
	// Another instance, connected to the servers left, sees the same.
	var other *jetstream.Store
	eventually(t, "a second instance opened", func() (err error) {
		other, err = tryOpen(c.URLs(), "C", 3)
		return err
	})
	defer func() { _ = other.Close() }()
	last := acked[len(acked)-1]
	eventually(t, "an update by the second instance", func() error {
		d, err := other.Delivery("crm", last)
		if err != nil {
			return err
		}
		d.Status = spool.Delivered
		return other.Update(ctx, d)
	})
	if got, err := s.Delivery("crm", last); err != nil || got.Status != spool.Delivered {
		t.Fatalf("an update by the other instance, read here: %+v, %v", got, err)
	}
	// The killed server comes back on its files and the store reads on.
	c.Restart(idx)
	eventually(t, "an event read after the restart", func() error {
		ev, err := s.Event(acked[0])
		if err == nil && ev.ID != acked[0] {
			err = fmt.Errorf("read %s for %s", ev.ID, acked[0])
		}
		return err
	})
}

// tryOpen opens a store on urls, or says why not (a cluster still
// electing its leaders refuses).
func tryOpen(urls []string, stream string, replicas int) (*jetstream.Store, error) {
	return jetstream.Open(context.Background(), jetstream.Options{URLs: urls, Stream: stream, Replicas: replicas, Partitions: 8})
}

// eventually retries fn until it succeeds, for at most 30 seconds.
func eventually(t *testing.T, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
