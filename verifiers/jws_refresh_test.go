package verifiers_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/hookrelay/hookrelay/verifiers"
)

func TestJWSUnknownKidRefetchesOncePerMinRefresh(t *testing.T) {
	key := rsaKey(t, "resurs")
	srv := newJWKSServer(t, publicJWK(t, key, "k1"))
	v, err := build("jws", jwsConfig(srv, map[string]any{"min_refresh": "100ms"}))
	checkErr(t, err, nil)
	if n := srv.fetches.Load(); n != 0 {
		t.Fatalf("%d fetches at construction, want none", n)
	}
	payload := resursPayload(resursEvent)
	checkErr(t, v.Verify(context.Background(), req(resursBody(resursEvent, signJWS(t, jwa.RS256, key, "k1", payload)))), nil)
	unknown := func(round int) {
		for i := range 5 {
			tok := signJWS(t, jwa.RS256, key, fmt.Sprintf("made-up-%d-%d", round, i), payload)
			err := v.Verify(context.Background(), req(resursBody(resursEvent, tok)))
			checkErr(t, err, verifiers.ErrMismatch)
			noKeyMaterial(t, err)
		}
	}
	// Within min_refresh of the first fetch: no refetch at all.
	unknown(1)
	if n := srv.fetches.Load(); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
	// After it: one refetch for five unknown kids.
	time.Sleep(110 * time.Millisecond)
	unknown(2)
	if n := srv.fetches.Load(); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}
}

func TestJWSRotation(t *testing.T) {
	oldKey, newKey := rsaKey(t, "resurs"), rsaKey(t, "resurs-next")
	srv := newJWKSServer(t, publicJWK(t, oldKey, "old"))
	v := mustBuild(t, "jws", jwsConfig(srv, map[string]any{"min_refresh": "50ms", "payload": "must-match"}))
	payload := resursPayload(resursEvent)
	oldBody := resursBody(resursEvent, signJWS(t, jwa.RS256, oldKey, "old", payload))
	newBody := resursBody(resursEvent, signJWS(t, jwa.RS256, newKey, "new", payload))

	checkErr(t, v.Verify(context.Background(), req(oldBody)), nil)
	srv.publish(publicJWK(t, oldKey, "old"), publicJWK(t, newKey, "new"))
	// Within min_refresh of the first fetch, the new kid is not fetched yet.
	checkErr(t, v.Verify(context.Background(), req(newBody)), verifiers.ErrMismatch)
	time.Sleep(60 * time.Millisecond)
	checkErr(t, v.Verify(context.Background(), req(newBody)), nil)
	checkErr(t, v.Verify(context.Background(), req(oldBody)), nil)
	if n := srv.fetches.Load(); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}
	// The old key retires: the cached set serves it until the next fetch,
	// here prompted by another unknown kid.
	srv.publish(publicJWK(t, newKey, "new"))
	time.Sleep(60 * time.Millisecond)
	checkErr(t, v.Verify(context.Background(), req(oldBody)), nil)
	checkErr(t, v.Verify(context.Background(), req(resursBody(resursEvent, signJWS(t, jwa.RS256, newKey, "newer", payload)))), verifiers.ErrMismatch)
	checkErr(t, v.Verify(context.Background(), req(oldBody)), verifiers.ErrMismatch)
	checkErr(t, v.Verify(context.Background(), req(newBody)), nil)
}

func TestJWSStaleCacheWhileURLFails(t *testing.T) {
	key := rsaKey(t, "resurs")
	srv := newJWKSServer(t, publicJWK(t, key, "k1"))
	v := mustBuild(t, "jws", jwsConfig(srv, map[string]any{"refresh": "1ms", "min_refresh": "1ms"}))
	body := resursBody(resursEvent, signJWS(t, jwa.RS256, key, "k1", resursPayload(resursEvent)))
	checkErr(t, v.Verify(context.Background(), req(body)), nil)

	for _, mode := range []string{"down", "garbage"} {
		srv.setMode(mode)
		before := srv.fetches.Load()
		time.Sleep(5 * time.Millisecond)
		checkErr(t, v.Verify(context.Background(), req(body)), nil)
		if srv.fetches.Load() == before {
			t.Errorf("%s: no refresh was attempted", mode)
		}
	}
	srv.Close()
	time.Sleep(5 * time.Millisecond)
	checkErr(t, v.Verify(context.Background(), req(body)), nil)
}

func TestJWSStaleSetServesDuringSlowRefresh(t *testing.T) {
	key := rsaKey(t, "resurs")
	srv := newJWKSServer(t, publicJWK(t, key, "k1"))
	v := mustBuild(t, "jws", jwsConfig(srv, map[string]any{"refresh": "1ms", "min_refresh": "1ms"}))
	body := resursBody(resursEvent, signJWS(t, jwa.RS256, key, "k1", resursPayload(resursEvent)))
	checkErr(t, v.Verify(context.Background(), req(body)), nil)

	hold := make(chan struct{})
	srv.mu.Lock()
	srv.hold = hold
	srv.mu.Unlock()
	time.Sleep(5 * time.Millisecond)
	slow := make(chan error, 1)
	go func() { slow <- v.Verify(context.Background(), req(body)) }()
	for srv.fetches.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	// The refresh is in flight and stuck; a known kid does not wait for it.
	done := make(chan error, 1)
	go func() { done <- v.Verify(context.Background(), req(body)) }()
	select {
	case err := <-done:
		checkErr(t, err, nil)
	case <-time.After(2 * time.Second):
		t.Error("verification waited for the refresh in flight")
	}
	close(hold)
	checkErr(t, <-slow, nil)
}

func TestJWSUnavailable(t *testing.T) {
	key := rsaKey(t, "resurs")
	body := resursBody(resursEvent, signJWS(t, jwa.RS256, key, "k1", resursPayload(resursEvent)))

	srv := newJWKSServer(t, publicJWK(t, key, "k1"))
	noKey := mustBuild(t, "jws", map[string]any{"from": "body.jwsData", "jwks_url": srv.URL})
	err := noKey.Verify(context.Background(), req(body))
	checkErr(t, err, verifiers.ErrUnavailable)
	if !strings.Contains(err.Error(), "401") {
		t.Errorf("error does not say why: %v", err)
	}

	srv.setMode("garbage")
	v := mustBuild(t, "jws", jwsConfig(srv, map[string]any{"min_refresh": "1ms"}))
	checkErr(t, v.Verify(context.Background(), req(body)), verifiers.ErrUnavailable)
	srv.setMode("")
	time.Sleep(2 * time.Millisecond)
	checkErr(t, v.Verify(context.Background(), req(body)), nil)

	// Construction never touches the network.
	dead := mustBuild(t, "jws", map[string]any{
		"from": "body.jwsData", "jwks_url": "http://127.0.0.1:1/jwks?apikey=" + jwsAPIKey,
		"jwks_headers": map[string]any{"apikey": jwsAPIKey},
	})
	err = dead.Verify(context.Background(), req(body))
	checkErr(t, err, verifiers.ErrUnavailable)
	noKeyMaterial(t, err)
}

func TestJWSConcurrentFirstUse(t *testing.T) {
	key := rsaKey(t, "resurs")
	srv := newJWKSServer(t, publicJWK(t, key, "k1"))
	v := mustBuild(t, "jws", jwsConfig(srv, map[string]any{"payload": "must-match"}))
	body := resursBody(resursEvent, signJWS(t, jwa.RS256, key, "k1", resursPayload(resursEvent)))
	unknown := resursBody(resursEvent, signJWS(t, jwa.RS256, key, "k7", resursPayload(resursEvent)))
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		wg.Go(func() {
			if i%4 == 3 {
				if err := v.Verify(context.Background(), req(unknown)); !errors.Is(err, verifiers.ErrMismatch) {
					errs <- fmt.Errorf("unknown kid: %w", err)
				}
				return
			}
			if err := v.Verify(context.Background(), req(body)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := srv.fetches.Load(); n > 2 {
		t.Errorf("%d fetches, want at most 2", n)
	}
}
