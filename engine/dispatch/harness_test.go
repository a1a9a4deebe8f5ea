package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/engine/outbound"
	"github.com/hookrelay/hookrelay/engine/spool"
)

// testLane is a dispatcher over a real spool with one destination, dest,
// whose answers come from respond through an in-memory transport: no
// socket, so that it runs in a synctest bubble on the bubble's clock.
type testLane struct {
	*Dispatcher
	bolt *spool.Bolt
	mu   sync.Mutex
	got  []answered
}

// answered is one request dest got and the status it answered.
type answered struct {
	header http.Header
	body   []byte
	status int
}

// handlerTransport serves a request with a handler in its own goroutine,
// as a server would, and gives up when the request's context ends.
type handlerTransport struct{ h http.Handler }

func (ht handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		rec := httptest.NewRecorder()
		ht.h.ServeHTTP(rec, req)
		done <- rec
	}()
	select {
	case rec := <-done:
		return rec.Result(), nil
	case <-req.Context().Done():
		return nil, req.Context().Err()
	}
}

// startLane starts a dispatcher delivering to dest with the retry block
// retry; respond chooses each answer's status and may set its headers.
// reorder is each provider's reorder window.
func startLane(t *testing.T, retry config.RetryConfig, reorder map[string]time.Duration,
	respond func(h http.Header, r *http.Request) int) *testLane {
	t.Helper()
	tl := &testLane{}
	dest, err := NewDestination("dest", &config.DestinationConfig{URL: "http://127.0.0.1:1/in", Retry: retry})
	if err != nil {
		t.Fatal(err)
	}
	tl.bolt, err = spool.Open(filepath.Join(t.TempDir(), "spool.db"), spool.Options{Committed: func(refs []spool.Ref) { tl.Committed(refs) }})
	if err != nil {
		t.Fatal(err)
	}
	client := outbound.NewClient(0)
	client.HTTPClient.Transport = handlerTransport{http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		status := respond(w.Header(), r)
		tl.mu.Lock()
		tl.got = append(tl.got, answered{header: r.Header.Clone(), body: body, status: status})
		tl.mu.Unlock()
		w.WriteHeader(status)
	})}
	tl.Dispatcher = New(tl.bolt, client, slog.New(slog.NewTextHandler(io.Discard, nil)), noMetrics{})
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(func() {
		cancel()
		tl.Wait()
		_ = tl.bolt.Close()
	})
	if err := tl.Start(ctx, map[string]*Destination{"dest": dest}, reorder, nil); err != nil {
		t.Fatal(err)
	}
	return tl
}

// send spools an event of provider's key, routed to dest, as ingest does:
// its deliveries are queued before Append returns. n is its data.n.
func (tl *testLane) send(t *testing.T, provider, key, typ string, seq int64, n int) {
	t.Helper()
	id := ulid.Make().String()
	env, _ := json.Marshal(map[string]any{"id": id, "provider": provider, "type": typ, "key": key, "sequence": seq,
		"data": map[string]any{"n": n}})
	ev := &spool.Event{ID: id, Provider: provider, Type: typ, Key: key, Sequence: seq,
		IdempotencyID: fmt.Sprintf("%s:%s", provider, id), ReceivedAt: time.Now().UTC(), Envelope: env, Raw: []byte(`{}`),
		Destinations: []string{"dest"}}
	if _, err := tl.bolt.Append(t.Context(), ev, 72*time.Hour); err != nil {
		t.Fatal(err)
	}
}

// requests returns a copy of everything dest got so far.
func (tl *testLane) requests() []answered {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return append([]answered(nil), tl.got...)
}

// delivered returns the envelopes of the requests answered with 2xx.
func (tl *testLane) delivered(t *testing.T) []map[string]any {
	var out []map[string]any
	for _, r := range tl.requests() {
		if r.status >= 200 && r.status < 300 {
			var m map[string]any
			if err := json.Unmarshal(r.body, &m); err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
	}
	return out
}
