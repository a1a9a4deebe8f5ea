package dispatch

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/engine/outbound"
	"github.com/hookrelay/hookrelay/engine/spool"
)

// countingSpool counts the events read from a real spool.
type countingSpool struct {
	*spool.Bolt
	reads atomic.Int32
}

func (s *countingSpool) Event(id string) (*spool.Event, error) {
	s.reads.Add(1)
	return s.Bolt.Event(id)
}

type noMetrics struct{}

func (noMetrics) Delivered(string, string, time.Duration) {}
func (noMetrics) Skipped(string)                          {}
func (noMetrics) SequenceGap(string)                      {}

// TestEventReadOnceForItsDeliveries: an event routed to two destinations
// whose header templates read it, one of which fails once, is read from the
// spool and parsed once for its three attempts when the spool hands over
// only its id (as after a restart), and not at all when the spool hands over
// the event as appended; each request still carries the event's own type.
func TestEventReadOnceForItsDeliveries(t *testing.T) {
	t.Run("read back", func(t *testing.T) { testEventReads(t, false, 1) })
	t.Run("as appended", func(t *testing.T) { testEventReads(t, true, 0) })
}

func testEventReads(t *testing.T, handed bool, reads int32) {
	var failed atomic.Bool
	var types [2]atomic.Value
	dests := map[string]*Destination{}
	for i, name := range []string{"a", "b"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			types[i].Store(r.Header.Get("X-Type"))
			if name == "b" && !failed.Swap(true) {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusOK)
		}))
		t.Cleanup(srv.Close)
		d, err := NewDestination(name, &config.DestinationConfig{
			URL: srv.URL, Headers: map[string]string{"X-Type": "{{ event.type }}"},
			Retry: config.RetryConfig{Initial: time.Millisecond, Max: time.Millisecond, Jitter: "none"},
		})
		if err != nil {
			t.Fatal(err)
		}
		dests[name] = d
	}
	var d *Dispatcher
	bolt, err := spool.Open(filepath.Join(t.TempDir(), "spool.db"), spool.Options{Committed: func(refs []spool.Ref) {
		for i := range refs {
			if !handed {
				refs[i].Event = nil
			}
		}
		d.Committed(refs)
	}})
	if err != nil {
		t.Fatal(err)
	}
	sp := &countingSpool{Bolt: bolt}
	d = New(sp, outbound.NewClient(0), slog.New(slog.NewTextHandler(io.Discard, nil)), noMetrics{})
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(func() {
		cancel()
		d.Wait()
		_ = bolt.Close()
	})
	if err := d.Start(ctx, dests, nil, nil); err != nil {
		t.Fatal(err)
	}
	id := ulid.Make().String()
	ev := &spool.Event{ID: id, Provider: "p", Type: "order.paid", Key: "k", IdempotencyID: "p:1", ReceivedAt: time.Now().UTC(),
		Envelope: []byte(`{"id":"` + id + `","provider":"p","type":"order.paid","key":"k","data":{}}`), Raw: []byte(`{}`),
		Destinations: []string{"a", "b"}}
	if _, err := bolt.Append(ctx, ev, 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, name := range []string{"a", "b"} {
		for {
			dl, err := bolt.Delivery(name, id)
			if err == nil && dl.Status == spool.Delivered {
				if name == "b" && len(dl.Attempts) != 2 {
					t.Errorf("b: %d attempts, want 2", len(dl.Attempts))
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not delivered: %+v %v", name, dl, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if n := sp.reads.Load(); n != reads {
		t.Errorf("the event was read %d times for its 3 attempts, want %d", n, reads)
	}
	for i := range types {
		if got, _ := types[i].Load().(string); got != "order.paid" {
			t.Errorf("destination %d got X-Type %q, want order.paid", i, got)
		}
	}
}

// TestEventCacheBoundsAndForgets: the cache keeps at most its bytes, the
// least recently used going first, an erasure's forget drops every event
// of the key at once, and an event read before a forget is not kept.
func TestEventCacheBoundsAndForgets(t *testing.T) {
	c := newEventCache(25)
	put := func(id, key string) {
		ev := &spool.Event{ID: id, Provider: "p", Key: key, Envelope: []byte("0123456789")}
		c.put(ev, &outbound.Message{ID: id}, c.forgets())
	}
	has := func(id string) bool { _, _, ok := c.get(id); return ok }
	put("e1", "k1")
	put("e2", "k2")
	has("e1") // e2 is now the least recently used
	put("e3", "k1")
	if !has("e1") || has("e2") || !has("e3") || c.size != 20 {
		t.Fatalf("after a third event: e1 %v e2 %v e3 %v, %d bytes; want e2 gone, 20 bytes", has("e1"), has("e2"), has("e3"), c.size)
	}
	c.forget("p", "k1")
	if has("e1") || has("e3") || c.size != 0 || len(c.byID) != 0 {
		t.Errorf("after forgetting k1: e1 %v e3 %v, %d bytes, %d entries; want none", has("e1"), has("e3"), c.size, len(c.byID))
	}
	put("big", "k3")
	c.put(&spool.Event{ID: "huge", Envelope: make([]byte, 26)}, &outbound.Message{}, c.forgets())
	if has("huge") || !has("big") {
		t.Errorf("an event larger than the cache was kept, or evicted the others")
	}
	// A worker read e4 from the spool, then the key was erased and
	// forgotten before the worker kept it: it must not come back.
	since := c.forgets()
	c.forget("p", "k4")
	e4 := &spool.Event{ID: "e4", Provider: "p", Key: "k4", Envelope: []byte("x")}
	if got, _ := c.put(e4, &outbound.Message{ID: "e4"}, since); got != e4 || has("e4") {
		t.Errorf("an event read before its key was forgotten was kept (or not handed back)")
	}
}
