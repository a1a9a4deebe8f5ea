package jetstream_test

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream/natstest"
)

// TestInProcessBubbles: a Store reaches a server of its synctest bubble in
// process (Options.InProcess, no URLs), in one bubble after another as the
// engine's tests do. Nothing a bubble made is used in the next: nats.go's
// Flush and Request take timers from a process-wide pool, and a pooled
// timer of one bubble panics when the next selects on it (the Store uses
// their context forms). An hour of the bubble's clock passes while the
// client and the server wait on each other (their pings).
func TestInProcessBubbles(t *testing.T) {
	// A pool drops what it holds at a collection: none, so that the next
	// bubble finds the timers of the one before.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	for i := range 3 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ns := natstest.RunInProcess(t)
				ctx := context.Background()
				s, err := jetstream.Open(ctx, jetstream.Options{InProcess: ns, Stream: "INPROC", Partitions: 2})
				if err != nil {
					t.Fatal(err)
				}
				id := ulid.Make().String()
				ev := &spool.Event{ID: id, Provider: "bank", Key: "k", ReceivedAt: time.Now(), Envelope: []byte(`{}`), Destinations: []string{"d"}}
				if _, err := s.Append(ctx, ev, 0); err != nil {
					t.Fatal(err)
				}
				// No instance holds the partition: a forward fails, after its
				// requests to no one. Several at once leave several timers
				// for the pool's next users.
				var wg sync.WaitGroup
				for range 8 {
					wg.Go(func() {
						err := s.Forward(spool.Command{Op: spool.CommandSkip, Destination: "d", EventID: id, Provider: "bank", Key: "k"})
						if err == nil {
							t.Error("a forward with no holder succeeded")
						}
					})
				}
				wg.Wait()
				time.Sleep(time.Hour)
				synctest.Wait()
				if got, err := s.Event(id); err != nil || got.Key != "k" {
					t.Fatalf("event after an hour: %+v, %v", got, err)
				}
				if err := s.Close(); err != nil {
					t.Fatalf("close: %v", err)
				}
			})
		})
	}
}
