package engine

// Hostile input (issue "Proof", parts 2 and 4): every case of
// testdata/hostile/cases.yaml goes through a real ingest listener, built as
// Serve builds it (newServer with ingestLimits), in front of the
// shipped nordiska.yaml (HMAC + bearer + timestamp) and resurs.yaml (JWS,
// keys from a loopback JWKS) and a plain bearer provider. Each must get its
// status, keep nothing it should not (no event, no quarantine entry), forward
// nothing, be recorded when a verifier refused it, and leave the server
// serving: a good request right after it is answered 200 and delivered.
// Slow senders and a hanging destination have tests of their own.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hookrelay/hookrelay/engine/spool"
)

func TestHostileCorpus(t *testing.T) {
	cases := loadHostileCases(t)
	e := newHostileEnv(t)
	e.probe(t)
	delivered := 1
	for i := range cases {
		c := &cases[i]
		t.Run(c.Name, func(t *testing.T) {
			before := e.counts(t)
			start := time.Now()
			got := e.send(t, c)
			took := time.Since(start)
			// A bound against a hang or work on the scale of an expanded
			// body, not a speed target (that is the benchmarks'): 0.7 s is
			// usual for the slowest case under -race, and it took 4.2 s on
			// a CI machine busy with other tests.
			if took > 10*time.Second {
				t.Errorf("took %v", took)
			}
			if got.status != c.Want {
				t.Errorf("status %d %q, want %d", got.status, clipBody(got.body), c.Want)
			}
			if c.Reason != "" {
				var ans struct{ Error string }
				_ = json.Unmarshal([]byte(got.body), &ans)
				if !strings.Contains(ans.Error, c.Reason) {
					t.Errorf("reason %q, want it to contain %q", ans.Error, c.Reason)
				}
			}
			after := e.counts(t)
			want := before
			switch c.Outcome {
			case outRejected:
				want.rejections++
			case outQuarantined:
				want.quarantined++
			case outAccepted:
				want.events++
				delivered++
			}
			if after != want {
				t.Errorf("kept %+v, want %+v (before %+v)", after, want, before)
			}
			if c.Outcome == outRejected {
				rj := e.tr.rejections.List("", 1)[0]
				if rj.Provider != c.Provider || rj.Reason == "" || !strings.Contains(got.body, jsonString(rj.Reason)) {
					t.Errorf("rejection recorded as %+v; answer %s", rj, clipBody(got.body))
				}
			}
			if c.Outcome == outQuarantined {
				q, err := e.tr.spool.QuarantineList("", 1)
				must(t, err)
				sent, _ := c.body(t)
				if len(q) != 1 || q[0].Provider != c.Provider {
					t.Fatalf("quarantine %+v", q)
				}
				// Kept as sent: a compressed body is never expanded.
				if !bytes.Equal(q[0].Body, sent) {
					t.Errorf("quarantined body of %d bytes, sent %d", len(q[0].Body), len(sent))
				}
				t.Logf("quarantined: %s", q[0].Reason)
			}
			e.probe(t)
		})
	}
	// Everything delivered was a probe or an accepted case, once: nothing
	// is left to come.
	waitFor(t, 5*time.Second, "nothing queued", e.tr.settled)
	if got, want := len(e.rec.requests()), e.probes+delivered-1; got != want {
		for _, r := range e.rec.requests() {
			t.Logf("delivered: %s", clipBody(string(r.Body)))
		}
		t.Errorf("%d deliveries, want %d (%d probes, %d accepted cases)", got, want, e.probes, delivered-1)
	}
	for _, r := range e.rec.requests() {
		switch {
		case !json.Valid(r.Body):
			t.Errorf("delivered a body that is not JSON: %q", clipBody(string(r.Body)))
		case !utf8.Valid(r.Body):
			t.Errorf("delivered a body that is not UTF-8 (RFC 8259 8.1): %q", clipBody(string(r.Body)))
		}
	}
	// The rejections, with their invalid bytes, still render in the admin API.
	status, body := e.tr.call(http.MethodGet, "/admin/rejections", "")
	if status != http.StatusOK || !json.Valid(body) {
		t.Errorf("GET /admin/rejections: %d %s", status, clipBody(string(body)))
	}
}

// ---------------------------------------------------------------- slow senders

// TestHostileServeLimits: Serve's ingest listener has every limit set.
func TestHostileServeLimits(t *testing.T) {
	srv := newServer(http.NotFoundHandler(), ingestLimits)
	if srv.ReadHeaderTimeout != 10*time.Second || srv.ReadTimeout != 30*time.Second || srv.WriteTimeout != 30*time.Second ||
		srv.IdleTimeout != 2*time.Minute || srv.MaxHeaderBytes != 64<<10 {
		t.Errorf("ingest server limits %v %v %v %v %d", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout,
			srv.IdleTimeout, srv.MaxHeaderBytes)
	}
}

// TestHostileSlowLoris: connections that trickle their headers one byte per
// 100ms, or their body, are cut at the listener's ReadHeader and Read
// timeouts (shortened here from 10s and 30s), keep nothing, and other
// clients are served all the while.
func TestHostileSlowLoris(t *testing.T) {
	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL, ""), map[string]string{"plain": plainProvider})
	limits := ingestLimits
	limits.ReadHeader, limits.Read = 300*time.Millisecond, time.Second
	useServeListener(tr, limits)
	addr := tr.Ingest.Listener.Addr().String()

	const slow = 40
	head := "POST /in/plain HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer t0ken\r\nContent-Type: application/json\r\n" +
		"X-Slow: " + strings.Repeat("s", 200) + "\r\n"
	body := `{"id":"slow-body","key":"k","type":"t"}`
	var wg sync.WaitGroup
	var cut atomic.Int64
	errs := make(chan string, 2*slow)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 2 * slow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer func() { _ = conn.Close() }()
			msg := head
			if i%2 == 1 { // headers at once, then the body one byte at a time
				if _, err := io.WriteString(conn, head+"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"); err != nil {
					errs <- err.Error()
					return
				}
				msg = body
			}
			closed := make(chan time.Time, 1)
			go func() {
				_, _ = io.Copy(io.Discard, conn) // until the server closes it
				closed <- time.Now()
			}()
			start := time.Now()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for j := 0; ; j++ {
				select {
				case at := <-closed:
					if d := at.Sub(start); d > 3*time.Second {
						errs <- fmt.Sprintf("slow sender %d cut only after %v", i, d)
					}
					cut.Add(1)
					return
				case <-ctx.Done():
					errs <- fmt.Sprintf("slow sender %d never cut", i)
					return
				case <-tick.C:
					if j < len(msg)-1 { // never the last byte
						_, _ = conn.Write([]byte{msg[j]})
					}
				}
			}
		}()
	}
	// Meanwhile, good requests are answered at once.
	deadline := time.Now().Add(1500 * time.Millisecond)
	n := 0
	for ; time.Now().Before(deadline); n++ {
		start := time.Now()
		status, resp := seedPost(t, tr, "/in/plain", fmt.Sprintf(`{"id":"good-%d","key":"good","type":"t"}`, n), authPlain)
		if status != http.StatusOK {
			t.Fatalf("good request during the slow senders: %d %s", status, resp)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("good request took %v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop := time.AfterFunc(8*time.Second, cancel) // a slow sender never cut fails, not hangs
	defer stop.Stop()
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if cut.Load() != 2*slow {
		t.Errorf("%d of %d slow senders cut", cut.Load(), 2*slow)
	}
	waitFor(t, 5*time.Second, "the good requests delivered and nothing queued", func() bool { return len(rec.requests()) >= n && tr.settled() })
	if got := len(rec.requests()); got != n {
		t.Errorf("%d deliveries, want the %d good ones", got, n)
	}
}

// ---------------------------------------------------------------- a hanging destination

// TestHostileHangingDestination: a destination that never answers (timeout
// 30s) holds up neither its other keys nor another destination.
func TestHostileHangingDestination(t *testing.T) {
	hang := make(chan struct{})
	var hangMu sync.Mutex
	hangGot := map[string]time.Time{}
	hangSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hangMu.Lock()
		hangGot[r.Header.Get("X-Key")] = time.Now()
		hangMu.Unlock()
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hangSrv.Close)
	rec := newRecorder(t, nil)
	relay := relayYAML(rec.srv.URL, "") +
		"  hang:\n    url: \"" + hangSrv.URL + "\"\n    timeout: 30s\n    headers: {X-Key: \"{{ event.key }}\"}\n"
	provider := strings.Replace(plainProvider, "to: [dest]", "to: [dest, hang]", 1)
	tr := startRelay(t, relay, map[string]string{"plain": provider})
	t.Cleanup(func() { close(hang) }) // before the relay stops (cleanups run last first)

	post := func(id, key string) time.Time {
		t.Helper()
		status, resp := seedPost(t, tr, "/in/plain", `{"id":"`+id+`","key":"`+key+`","type":"t"}`, authPlain)
		if status != http.StatusOK {
			t.Fatalf("POST %s: %d %s", id, status, resp)
		}
		return time.Now()
	}
	hangs := func(key string) bool {
		hangMu.Lock()
		defer hangMu.Unlock()
		_, ok := hangGot[key]
		return ok
	}
	delivered := func(id string) bool {
		for _, r := range rec.requests() {
			if bytes.Contains(r.Body, []byte(`"plain:`+id+`"`)) {
				return true
			}
		}
		return false
	}

	post("a1", "a")
	waitFor(t, 2*time.Second, "the hanging destination to hold key a", func() bool { return hangs("a") })
	start := post("a2", "a") // same key: waits at hang, not at dest
	post("b1", "b")
	post("c1", "c")
	waitFor(t, time.Second, "dest to get every event while hang hangs", func() bool {
		return delivered("a1") && delivered("a2") && delivered("b1") && delivered("c1")
	})
	waitFor(t, time.Second, "hang to get keys b and c while key a hangs", func() bool { return hangs("b") && hangs("c") })
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v", d)
	}
	if n := tr.queued("hang"); len(n) != 4 {
		t.Errorf("%d deliveries pending at hang, want 4", len(n))
	}
}

// TestHostileHeaderInjectionIntoDestination: a verified body whose mapped key
// holds CR-LF, rendered into a destination header, never splits the request
// to the destination: net/http refuses the value, nothing is sent, and the
// delivery ends dead (KNOWN ISSUE: as a network error, retried up to
// max_attempts, rather than dead at once as a render error).
func TestHostileHeaderInjectionIntoDestination(t *testing.T) {
	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL, "    headers: {X-Key: \"{{ event.key }}\"}\n"+
		"    retry: {max_attempts: 2, initial: 10ms, max: 10ms}\n"), map[string]string{"plain": plainProvider})
	useServeListener(tr, ingestLimits)
	status, resp := seedPost(t, tr, "/in/plain", `{"id":"inj","key":"a\r\nX-Injected: 1","type":"t"}`, authPlain)
	if status != http.StatusOK {
		t.Fatalf("ingest: %d %s", status, resp)
	}
	var d *spool.Delivery
	waitFor(t, 5*time.Second, "the delivery dead", func() bool {
		q := tr.queued("dest")
		if len(q) == 1 && q[0].Status == spool.Dead {
			d = q[0]
		}
		return d != nil
	})
	for _, a := range d.Attempts {
		if a.Status != 0 || !strings.Contains(a.Error, "X-Key") {
			t.Errorf("attempt %+v, want no request made", a)
		}
	}
	t.Logf("%d attempts: %s", len(d.Attempts), d.Attempts[0].Error)
	if n := len(rec.requests()); n != 0 {
		t.Errorf("the destination got %d requests", n)
	}
}
