package verifiers_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/hookrelay/hookrelay/verifiers"
)

// TestJWSFetchOutside: after FetchOutside, Verify never fetches nor waits
// for a fetch; FetchKeys does, with at most JWKSMaxWaiting callers waiting
// while the JWKS hangs, the others returning at once.
func TestJWSFetchOutside(t *testing.T) {
	key := rsaKey(t, "resurs")
	srv := newJWKSServer(t, publicJWK(t, key, "k1"))
	hold := make(chan struct{})
	srv.mu.Lock()
	srv.hold = hold
	srv.mu.Unlock()
	v := mustBuild(t, "jws", jwsConfig(srv, nil)).(verifiers.KeyFetcher)
	v.FetchOutside()
	body := resursBody(resursEvent, signJWS(t, jwa.RS256, key, "k1", resursPayload(resursEvent)))

	// No set yet: refused at once as unavailable, and nothing fetched.
	checkErr(t, v.Verify(context.Background(), req(body)), verifiers.ErrUnavailable)
	if n := srv.fetches.Load(); n != 0 {
		t.Fatalf("Verify fetched %d times", n)
	}

	const callers = 3 * verifiers.JWKSMaxWaiting
	var returned atomic.Int32
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v.FetchKeys(context.Background(), req(body))
			returned.Add(1)
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.fetches.Load() == 0 || returned.Load() < callers-verifiers.JWKSMaxWaiting {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d FetchKeys returned while the JWKS hangs (%d fetches); want all but %d",
				returned.Load(), callers, srv.fetches.Load(), verifiers.JWKSMaxWaiting)
		}
		time.Sleep(time.Millisecond)
	}
	checkErr(t, v.Verify(context.Background(), req(body)), verifiers.ErrUnavailable) // still at once
	close(hold)
	wg.Wait()
	if n := srv.fetches.Load(); n != 1 {
		t.Errorf("%d fetches for one missing set, want 1", n)
	}
	checkErr(t, v.Verify(context.Background(), req(body)), nil)
	// An unknown kid is refused from the keys at hand.
	other := resursBody(resursEvent, signJWS(t, jwa.RS256, key, "k2", resursPayload(resursEvent)))
	checkErr(t, v.Verify(context.Background(), req(other)), verifiers.ErrMismatch)
	if n := srv.fetches.Load(); n != 1 {
		t.Errorf("Verify fetched for an unknown kid (%d fetches)", n)
	}
}
