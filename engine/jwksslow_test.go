package engine

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

// hangingJWKS is a JWKS endpoint that, while hang is set, holds every
// request until release is called (or the test ends); then it serves set.
type hangingJWKS struct {
	url     string
	hits    atomic.Int32
	mu      sync.Mutex
	hang    chan struct{} // nil: answer at once
	set     []byte
	stopped chan struct{}
}

func newHangingJWKS(t *testing.T, keys ...resursKey) *hangingJWKS {
	s := &hangingJWKS{hang: make(chan struct{}), stopped: make(chan struct{})}
	set := jwk.NewSet()
	for _, k := range keys {
		must(t, set.AddKey(k.pub))
	}
	b, err := json.Marshal(set)
	must(t, err)
	s.set = b
	s.url = newLoopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		hang := s.hang
		s.mu.Unlock()
		if hang != nil {
			select {
			case <-hang:
			case <-s.stopped:
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(s.set)
	})) + "/jwks"
	// Runs before the server's Close (cleanups run last first), which
	// waits for the handlers.
	t.Cleanup(func() { close(s.stopped) })
	return s
}

// release answers the held requests and the next ones at once.
func (s *hangingJWKS) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hang != nil {
		close(s.hang)
		s.hang = nil
	}
}

// hangAgain holds the requests from now on.
func (s *hangingJWKS) hangAgain() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hang == nil {
		s.hang = make(chan struct{})
	}
}

// jwsProvider verifies RS256 tokens in body.jwsData against jwksURL.
func jwsProvider(jwksURL string) string {
	return `
paths: [/in/signed]
verify:
  - kind: jws
    from: body.jwsData
    jwks_url: "` + jwksURL + `"
    min_refresh: 1ns # every made-up kid may ask for a refetch: the worst case
    payload: must-match
event:
  key: body.key
  type: '"t"'
routes:
  - to: [dest]
`
}

// TestSlowJWKSHoldsNoSharedPlace: while the JWKS endpoint hangs, a flood of
// unauthenticated requests with made-up kids must not take the max_inflight
// places that every provider shares: another provider's requests are still
// accepted, and the flood is answered at once (503 before any key set was
// had, 401 for an unknown kid after), all but a few waiting per verifier.
func TestSlowJWKSHoldsNoSharedPlace(t *testing.T) {
	const inflight, flood = 6, 40
	key := newResursKey(t, "k1")
	jwks := newHangingJWKS(t, key)
	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL, "")+fmt.Sprintf("max_inflight: %d\n", inflight), map[string]string{
		"plain": plainProvider, "signed": jwsProvider(jwks.url),
	})
	client := &http.Client{Timeout: 30 * time.Second}

	// floodWith sends n requests with random kids at once and returns the
	// statuses of those answered, on a channel closed when all are.
	floodWith := func(n int) (answered *atomic.Int32, statuses chan int) {
		answered, statuses = new(atomic.Int32), make(chan int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Unsigned junk under a new kid each: what anyone can send.
				b64 := base64.RawURLEncoding.EncodeToString
				tok := b64([]byte(fmt.Sprintf(`{"alg":"RS256","kid":"made-up-%d-%d"}`, time.Now().UnixNano(), i))) + "." +
					b64([]byte(`{"key":"x"}`)) + "." + b64([]byte("not a signature"))
				resp, err := client.Post(tr.Ingest.URL+"/in/signed", "application/json",
					strings.NewReader(`{"key":"x","jwsData":"`+tok+`"}`))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				answered.Add(1)
				statuses <- resp.StatusCode
			}()
		}
		go func() { wg.Wait(); close(statuses) }()
		return answered, statuses
	}
	// plainAccepted sends one request to the other provider: it must be
	// taken (not 503 overloaded).
	plainAccepted := func(n int) {
		t.Helper()
		resp := tr.post("/in/plain", fmt.Sprintf(`{"id":"p%d","key":"k","type":"t","n":%d}`, n, n), authPlain)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("the other provider's request %d: %d while the JWKS hangs, want 200", n, resp.StatusCode)
		}
	}

	// No key set yet, and the endpoint hangs.
	answered, statuses := floodWith(flood)
	waitFor(t, 10*time.Second, "the flood to be answered but for the few waiting", func() bool {
		return jwks.hits.Load() > 0 && int(answered.Load()) >= flood-inflight
	})
	for i := range 3 * inflight {
		plainAccepted(i)
	}
	if n := int(answered.Load()); n < flood-4 {
		t.Errorf("%d of %d requests answered while the JWKS hangs; at most 4 should wait", n, flood)
	}
	jwks.release()
	waitFor(t, 10*time.Second, "every request answered", func() bool { return int(answered.Load()) == flood })
	for st := range statuses {
		if st != http.StatusServiceUnavailable && st != http.StatusUnauthorized {
			t.Errorf("a made-up kid answered %d", st)
		}
	}

	// With a key set, a made-up kid is refused at once while its refresh hangs.
	good := key.sign(t, "k1", []byte(`{"key":"g"}`))
	if resp := tr.post("/in/signed", `{"key":"g","jwsData":"`+good+`"}`, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("a good token: %d", resp.StatusCode)
	}
	jwks.hangAgain()
	answered, statuses = floodWith(flood)
	waitFor(t, 10*time.Second, "the second flood to be answered but for the few waiting", func() bool {
		return int(answered.Load()) >= flood-inflight
	})
	for i := range 3 * inflight {
		plainAccepted(100 + i)
	}
	// The same provider's good tokens still pass with the keys at hand.
	good = key.sign(t, "k1", []byte(`{"key":"h"}`))
	if resp := tr.post("/in/signed", `{"key":"h","jwsData":"`+good+`"}`, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("a good token while a refresh hangs: %d", resp.StatusCode)
	}
	jwks.release()
	waitFor(t, 10*time.Second, "every request of the second flood answered", func() bool { return int(answered.Load()) == flood })
	for st := range statuses {
		if st != http.StatusUnauthorized {
			t.Errorf("a made-up kid with a key set loaded answered %d, want 401", st)
		}
	}
}
