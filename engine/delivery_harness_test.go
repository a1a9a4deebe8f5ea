package engine

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/dispatch"
	"github.com/hookrelay/hookrelay/engine/spool"
)

// sink is a destination that, unlike recorder, lets a test set response
// headers and body, and records when each request came.
type sink struct {
	srv   *httptest.Server
	reply func(n int, r *http.Request, body []byte) reply

	mu   sync.Mutex
	n    int
	hits []hit
}

// reply is what a sink answers; status 0 means 200.
type reply struct {
	status int
	header map[string]string
	body   string
}

// hit is one request a sink received.
type hit struct {
	at     time.Time
	header http.Header
	body   []byte
	status int
}

func newSink(t *testing.T, f func(n int, r *http.Request, body []byte) reply) *sink {
	s := &sink{reply: f}
	s.srv = testServer(t, s.handler())
	return s
}

func (s *sink) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.n++
		n := s.n
		s.mu.Unlock()
		rep := reply{status: http.StatusOK}
		if s.reply != nil {
			rep = s.reply(n, r, body)
		}
		if rep.status == 0 {
			rep.status = http.StatusOK
		}
		s.mu.Lock()
		s.hits = append(s.hits, hit{at: at, header: r.Header.Clone(), body: body, status: rep.status})
		s.mu.Unlock()
		for k, v := range rep.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(rep.status)
		_, _ = io.WriteString(w, rep.body)
	})
}

func (s *sink) requests() []hit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]hit(nil), s.hits...)
}

// statuses answers the n-th request with seq[n-1], and 200 after the end.
func statuses(seq ...int) func(int, *http.Request, []byte) reply {
	return func(n int, _ *http.Request, _ []byte) reply {
		if n <= len(seq) {
			return reply{status: seq[n-1]}
		}
		return reply{}
	}
}

// eventBody is a plainProvider request body.
func eventBody(key string, n int) string {
	return fmt.Sprintf(`{"id":"%s-%d","key":%q,"type":"loan.updated","n":%d}`, key, n, key, n)
}

// ingest posts one event; unlike tr.post it may run outside the test goroutine.
func (tr *testRelay) ingest(body string) error { return tr.ingestAt("/in/plain", body) }

func (tr *testRelay) mustIngest(key string, n int) {
	tr.t.Helper()
	must(tr.t, tr.ingest(eventBody(key, n)))
}

// queued returns the deliveries to dest that are not final, in commit order.
func (tr *testRelay) queued(dest string) []*spool.Delivery {
	tr.t.Helper()
	var out []*spool.Delivery
	must(tr.t, tr.spool.Queue(dest, func(d *spool.Delivery) error {
		out = append(out, d)
		return nil
	}))
	return out
}

// delivery reads one delivery to "dest" from the spool.
func (tr *testRelay) delivery(eventID string) *spool.Delivery {
	tr.t.Helper()
	d, err := tr.spool.Delivery("dest", eventID)
	must(tr.t, err)
	return d
}

// heldKeys is the dispatcher's count of keys held behind a dead event.
func (tr *testRelay) heldKeys(dest string) int {
	st, _ := tr.dispatch.Stats(dest)
	return st.HeldKeys
}

// laneStats is the state of dest's lane; a test that asks has one.
func laneStats(tr *testRelay, dest string) dispatch.Stats {
	st, ok := tr.dispatch.Stats(dest)
	if !ok {
		tr.t.Fatalf("no lane %s", dest)
	}
	return st
}

// envelope decodes a delivered envelope's key and data.n.
func envelope(t *testing.T, body []byte) (id, key string, n int) {
	t.Helper()
	var e struct {
		ID   string         `json:"id"`
		Key  string         `json:"key"`
		Data map[string]any `json:"data"`
	}
	must(t, json.Unmarshal(body, &e))
	f, _ := e.Data["n"].(float64)
	return e.ID, e.Key, int(f)
}

// gate returns a channel that blocking handlers wait on and the function
// that closes it, safe to call twice. Tests register release with t.Cleanup
// after starting the relay, so that it runs before the relay's own cleanup
// and the relay's drain does not wait on a hung destination.
func gate() (ch chan struct{}, release func()) {
	ch = make(chan struct{})
	var once sync.Once
	return ch, func() { once.Do(func() { close(ch) }) }
}
