package jetstream_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream/natstest"
)

// TestOpenWhileAServerIsDown: a relay starting (or a standby taking over)
// right after one server of three went away opens the store, reads the
// pending deliveries and the paused destinations in one try each, although
// the streams and buckets that server led have no leader for a few
// seconds: the store asks again in short tries instead of waiting out one
// unanswered request. Each server in turn is the one lost, so that the
// leader of some bucket is hit.
func TestOpenWhileAServerIsDown(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node cluster and leader elections: seconds")
	}
	c := natstest.RunCluster(t, 3)
	if err := c.Ready(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	var s *jetstream.Store
	eventually(t, "open on the cluster", func() error {
		st, err := tryOpen(c.URLs(), "R", 3)
		s = st
		return err
	})
	entropy := ulid.Monotonic(rand.Reader, 0)
	const events = 30
	for i := range events {
		id := ulid.MustNew(ulid.Now(), entropy).String()
		ev := &spool.Event{ID: id, Provider: "bank", Key: fmt.Sprint("app-", i%5), IdempotencyID: "cb-" + id,
			Envelope: []byte(`{}`), Destinations: []string{"crm"}}
		if _, err := s.Append(context.Background(), ev, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		c.Stop(i)
		at := time.Now()
		st, err := tryOpen(c.URLs(), "R", 3)
		if err != nil {
			t.Fatalf("server %d down: open: %v after %s", i, err, time.Since(at))
		}
		n := 0
		if err := st.Pending("crm", func(*spool.QueuedDelivery) error { n++; return nil }); err != nil {
			t.Fatalf("server %d down: pending: %v after %s", i, err, time.Since(at))
		}
		if n != events {
			t.Errorf("server %d down: %d pending, want %d", i, n, events)
		}
		if _, err := st.Paused(); err != nil {
			t.Fatalf("server %d down: paused: %v after %s", i, err, time.Since(at))
		}
		t.Logf("server %d down: open, pending and paused read in %s", i, time.Since(at).Round(time.Millisecond))
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		c.Restart(i)
		if err := c.Ready(30 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
}
