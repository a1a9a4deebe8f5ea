package verifiers_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/hookrelay/hookrelay/verifiers"
)

// jwsAPIKey is the apikey header value the test JWKS server requires.
const jwsAPIKey = "jwks-apikey-0123456789"

// resursEvent is a Resurs externalApplicationEvent, written compactly as a
// signer would.
const resursEvent = `{"applicationReference":"abc-123-def-567","applicationEventType":"CREDIT_DECISION_UPDATED",` +
	`"creditDecision":{"creditDecision":"APPROVED","approvedAmount":10000,"interest":12.3,"tenor":12,` +
	`"arrangementFee":599.99,"totalFeesAndInterest":3000.00,"documentTypes":["ID","PAYMENT_SLIP"]}}`

// otherEvent is another application's event.
const otherEvent = `{"applicationReference":"ABC-123","applicationEventType":"SIGNED"}`

// resursPayload is what Resurs signs: the body without jwsData.
func resursPayload(event string) []byte {
	return []byte(`{"externalApplicationEvent":` + event + `}`)
}

// resursBody lays a callback out the way Resurs' documentation shows it:
// indented, the event first, and jwsData with a stray leading space.
func resursBody(event, jwsData string) string {
	// Numbers stay as written, so that a test can tell 1e16 from 1e16+1.
	dec := json.NewDecoder(strings.NewReader(event))
	dec.UseNumber()
	var ev any
	if err := dec.Decode(&ev); err != nil {
		panic(err)
	}
	pretty, _ := json.MarshalIndent(ev, "  ", "    ")
	return "{\n  \"externalApplicationEvent\" : " + string(pretty) + ",\n  \"jwsData\" : \" " + jwsData + "\"\n}\n"
}

var (
	rsaKeysMu sync.Mutex
	rsaKeys   = map[string]*rsa.PrivateKey{}
	// keyMaterial holds fragments of the apikey and of every rsaKeys key that
	// must never show in an error.
	keyMaterial []string
)

// rsaKey returns the RSA 2048 key called name, generated once per test binary.
func rsaKey(t testing.TB, name string) *rsa.PrivateKey {
	t.Helper()
	rsaKeysMu.Lock()
	defer rsaKeysMu.Unlock()
	if k, ok := rsaKeys[name]; ok {
		return k
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaKeys[name] = k
	return k
}

// publicJWK is the public half of key as Resurs publishes it: kid, alg RS256, use sig.
func publicJWK(t testing.TB, key *rsa.PrivateKey, kid string) jwk.Key {
	t.Helper()
	k, err := jwk.FromRaw(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{jwk.KeyIDKey: kid, jwk.AlgorithmKey: jwa.RS256, jwk.KeyUsageKey: "sig"} {
		if err := k.Set(name, v); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

// signJWS signs payload into a compact JWS with alg, key and, unless empty, kid.
func signJWS(t testing.TB, alg jwa.SignatureAlgorithm, key any, kid string, payload []byte) string {
	t.Helper()
	hdr := jws.NewHeaders()
	if kid != "" {
		if err := hdr.Set(jws.KeyIDKey, kid); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(tok)
}

// handmade builds a compact JWS from a raw protected header, a payload and
// a signature, without any library.
func handmade(header string, payload []byte, sig string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc(payload) + "." + sig
}

// pemPublic is key's public half as a PKIX PEM block.
func pemPublic(t testing.TB, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// jwksServer serves a JWK set that requires the apikey header, counting
// requests. mode "down" answers 503 and "garbage" an HTML page. While hold is
// set, requests wait for it to close.
type jwksServer struct {
	*httptest.Server
	fetches atomic.Int32

	mu   sync.Mutex
	keys []jwk.Key
	mode string
	hold chan struct{}
}

func newJWKSServer(t *testing.T, keys ...jwk.Key) *jwksServer {
	s := &jwksServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		hold := s.hold
		s.mu.Unlock()
		if hold != nil {
			<-hold
		}
		if r.Header.Get("apikey") != jwsAPIKey {
			http.Error(w, "no apikey", http.StatusUnauthorized)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		switch s.mode {
		case "down":
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		case "garbage":
			fmt.Fprint(w, "<html>we moved</html>")
			return
		}
		set := jwk.NewSet()
		for _, k := range s.keys {
			if err := set.AddKey(k); err != nil {
				panic(err)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(set); err != nil {
			panic(err)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) publish(keys ...jwk.Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = keys
}

func (s *jwksServer) setMode(mode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = mode
}

// jwsConfig is a Resurs-like config against srv, with extra fields merged in.
func jwsConfig(srv *jwksServer, extra map[string]any) map[string]any {
	cfg := map[string]any{
		"from":         "body.jwsData",
		"jwks_url":     srv.URL + "/api/auth_service/jwks",
		"jwks_headers": map[string]any{"apikey": jwsAPIKey},
	}
	for k, v := range extra {
		cfg[k] = v
	}
	return cfg
}

// payloadOf runs VerifyPayload, failing the test unless v is a PayloadVerifier.
func payloadOf(t *testing.T, v verifiers.Verifier, r *verifiers.Request) (*verifiers.Payload, error) {
	t.Helper()
	pv, ok := v.(verifiers.PayloadVerifier)
	if !ok {
		t.Fatalf("%T is not a PayloadVerifier", v)
	}
	return pv.VerifyPayload(context.Background(), r)
}

// noKeyMaterial fails if err discloses the apikey or any test key.
func noKeyMaterial(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	rsaKeysMu.Lock()
	if len(keyMaterial) != 1+3*len(rsaKeys) {
		keyMaterial = []string{jwsAPIKey}
		for _, k := range rsaKeys {
			n := base64.RawURLEncoding.EncodeToString(k.N.Bytes())
			der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
			keyMaterial = append(keyMaterial, n[:24], base64.StdEncoding.EncodeToString(der)[48:72], k.D.String()[:24])
		}
	}
	secrets := keyMaterial
	rsaKeysMu.Unlock()
	for _, s := range secrets {
		if strings.Contains(msg, s) {
			t.Fatalf("error discloses key material: %v", err)
		}
	}
}

func TestJWSRegistered(t *testing.T) {
	for _, k := range verifiers.Default.Kinds() {
		if k == "jws" {
			return
		}
	}
	t.Fatal("kind jws not registered")
}

func TestJWSResurs(t *testing.T) {
	key := rsaKey(t, "resurs")
	srv := newJWKSServer(t, publicJWK(t, key, "1cb06a4a"), publicJWK(t, rsaKey(t, "resurs-next"), "e434a27b"))
	payload := resursPayload(resursEvent)
	tok := signJWS(t, jwa.RS256, key, "1cb06a4a", payload)
	body := resursBody(resursEvent, tok)

	for _, mode := range []string{"", "verify-only", "replace", "must-match"} {
		t.Run("payload="+mode, func(t *testing.T) {
			extra := map[string]any{}
			if mode != "" {
				extra["payload"] = mode
			}
			v := mustBuild(t, "jws", jwsConfig(srv, extra))
			checkErr(t, v.Verify(context.Background(), req(body)), nil)
			p, err := payloadOf(t, v, req(body))
			checkErr(t, err, nil)
			if string(p.Data) != string(payload) {
				t.Errorf("payload %s, want %s", p.Data, payload)
			}
			if p.Replace != (mode == "replace") {
				t.Errorf("Replace = %v in mode %q", p.Replace, mode)
			}
		})
	}
}

func TestJWSRejections(t *testing.T) {
	key := rsaKey(t, "resurs")
	srv := newJWKSServer(t, publicJWK(t, key, "k1"), publicJWK(t, rsaKey(t, "resurs-next"), "k2"))
	v := mustBuild(t, "jws", jwsConfig(srv, map[string]any{"payload": "must-match"}))

	payload := resursPayload(resursEvent)
	good := signJWS(t, jwa.RS256, key, "k1", payload)
	parts := strings.Split(good, ".")
	// Another valid base64url character: a flip into '.' or '=' would make
	// the token malformed rather than wrongly signed.
	flipped := []byte(parts[2])
	if flipped[10] == 'A' {
		flipped[10] = 'B'
	} else {
		flipped[10] = 'A'
	}
	hmacKey := pemPublic(t, &key.PublicKey)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	claims := func(extra string) []byte {
		return []byte(`{"externalApplicationEvent":` + resursEvent + `,` + extra + `}`)
	}

	for _, c := range []struct {
		name string
		body string
		want error
	}{
		{"no jwsData", `{"externalApplicationEvent":` + resursEvent + `}`, verifiers.ErrMissing},
		{"blank jwsData", resursBody(resursEvent, "  "), verifiers.ErrMissing},
		{"jwsData not a string", `{"externalApplicationEvent":{},"jwsData":42}`, verifiers.ErrMalformed},
		{"body not JSON", "jwsData=" + good, verifiers.ErrMalformed},
		{"body an array", `["` + good + `"]`, verifiers.ErrMissing},
		{"documentation placeholder", resursBody(resursEvent, "eyJOXAiOLADikz.eyJpc3MiJgbDQrm4.djjft4CP-mbW1"), verifiers.ErrMalformed},
		{"two segments", resursBody(resursEvent, parts[0]+"."+parts[1]), verifiers.ErrMalformed},
		{"tampered signature", resursBody(resursEvent, parts[0]+"."+parts[1]+"."+string(flipped)), verifiers.ErrMismatch},
		{"tampered payload", resursBody(otherEvent, parts[0]+"."+base64.RawURLEncoding.EncodeToString(resursPayload(otherEvent))+"."+parts[2]), verifiers.ErrMismatch},
		{"valid jwsData on another event", resursBody(otherEvent, good), verifiers.ErrMismatch},
		{"event changed", resursBody(strings.Replace(resursEvent, "10000", "90000", 1), good), verifiers.ErrMismatch},
		{"extra field in body", strings.Replace(resursBody(resursEvent, good), "{", `{"paidOut":true,`, 1), verifiers.ErrMismatch},
		// Decoded, the last value wins and the body equals the payload; a
		// parser that keeps the first would read SIGNED.
		{"repeated name, the signed value last", strings.Replace(resursBody(resursEvent, good), `"externalApplicationEvent" : {`,
			`"externalApplicationEvent" : {"applicationEventType":"SIGNED",`, 1), verifiers.ErrMismatch},
		{"alg none", resursBody(resursEvent, handmade(`{"alg":"none"}`, payload, "")), verifiers.ErrAlgorithm},
		{"alg none with kid", resursBody(resursEvent, handmade(`{"alg":"none","kid":"k1"}`, payload, "")), verifiers.ErrAlgorithm},
		{"alg None", resursBody(resursEvent, handmade(`{"alg":"None","kid":"k1"}`, payload, parts[2])), verifiers.ErrAlgorithm},
		{"HS256 with the PEM public key as secret", resursBody(resursEvent, signJWS(t, jwa.HS256, hmacKey, "k1", payload)), verifiers.ErrAlgorithm},
		{"HS256 with the DER public key as secret", resursBody(resursEvent, signJWS(t, jwa.HS256, der, "k1", payload)), verifiers.ErrAlgorithm},
		{"RS384 not allowed", resursBody(resursEvent, signJWS(t, jwa.RS384, key, "k1", payload)), verifiers.ErrAlgorithm},
		{"no alg", resursBody(resursEvent, handmade(`{"kid":"k1"}`, payload, parts[2])), verifiers.ErrAlgorithm},
		{"signed with another key under a known kid", resursBody(resursEvent, signJWS(t, jwa.RS256, rsaKey(t, "attacker"), "k1", payload)), verifiers.ErrMismatch},
		{"unknown kid", resursBody(resursEvent, signJWS(t, jwa.RS256, rsaKey(t, "attacker"), "k9", payload)), verifiers.ErrMismatch},
		{"no kid with two keys", resursBody(resursEvent, signJWS(t, jwa.RS256, key, "", payload)), verifiers.ErrMismatch},
		{"crit header", resursBody(resursEvent, handmade(`{"alg":"RS256","kid":"k1","crit":["exp"],"exp":1}`, payload, parts[2])), verifiers.ErrMalformed},
		{"expired", resursBody(resursEvent, signJWS(t, jwa.RS256, key, "k1", claims(fmt.Sprintf(`"exp":%d`, now.Add(-2*time.Minute).Unix())))), verifiers.ErrStale},
		{"not yet valid", resursBody(resursEvent, signJWS(t, jwa.RS256, key, "k1", claims(fmt.Sprintf(`"nbf":%d`, now.Add(2*time.Minute).Unix())))), verifiers.ErrStale},
		{"exp not a number", resursBody(resursEvent, signJWS(t, jwa.RS256, key, "k1", claims(`"exp":"tomorrow"`))), verifiers.ErrMalformed},
		{"number rounding to the same float", resursBody(strings.Replace(resursEvent, "10000", "10000000000000001", 1),
			signJWS(t, jwa.RS256, key, "k1", resursPayload(strings.Replace(resursEvent, "10000", "10000000000000000", 1)))), verifiers.ErrMismatch},
		{"payload not JSON", resursBody(resursEvent, signJWS(t, jwa.RS256, key, "k1", []byte("hello"))), verifiers.ErrMismatch},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := v.Verify(context.Background(), req(c.body))
			t.Log(err)
			checkErr(t, err, c.want)
			if errors.Is(err, verifiers.ErrAlgorithm) && !errors.Is(err, verifiers.ErrMismatch) {
				t.Errorf("ErrAlgorithm without ErrMismatch: %v", err)
			}
			noKeyMaterial(t, err)
		})
	}
}

func TestJWSAccepts(t *testing.T) {
	key := rsaKey(t, "resurs")
	srv := newJWKSServer(t, publicJWK(t, key, "k1"))
	must := mustBuild(t, "jws", jwsConfig(srv, map[string]any{"payload": "must-match"}))
	only := mustBuild(t, "jws", jwsConfig(srv, nil))
	claims := func(extra string) []byte {
		return []byte(`{"externalApplicationEvent":` + resursEvent + `,` + extra + `}`)
	}
	for _, c := range []struct {
		name string
		v    verifiers.Verifier
		body string
	}{
		// Numbers are compared as decimals, objects regardless of order.
		{"numbers written differently", must, `{"jwsData":"` + signJWS(t, jwa.RS256, key, "k1", []byte(`{"a":1e4,"b":-0.50,"c":0,"d":[1.5e-1]}`)) + `","b":-5e-1,"a":10000.0,"c":-0.0,"d":[0.15]}`},
		{"exp ahead", only, resursBody(resursEvent, signJWS(t, jwa.RS256, key, "k1", claims(fmt.Sprintf(`"exp":%d`, now.Add(time.Hour).Unix()))))},
		{"exp within leeway", only, resursBody(resursEvent, signJWS(t, jwa.RS256, key, "k1", claims(fmt.Sprintf(`"exp":%d`, now.Add(-30*time.Second).Unix()))))},
		{"nbf within leeway", only, resursBody(resursEvent, signJWS(t, jwa.RS256, key, "k1", claims(fmt.Sprintf(`"nbf":%d.5`, now.Add(30*time.Second).Unix()))))},
		// A set of one key serves a token without kid.
		{"no kid, one key", must, resursBody(resursEvent, signJWS(t, jwa.RS256, key, "", resursPayload(resursEvent)))},
		{"verify-only, payload not JSON", only, resursBody(otherEvent, signJWS(t, jwa.RS256, key, "k1", []byte("not json")))},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkErr(t, c.v.Verify(context.Background(), req(c.body)), nil)
		})
	}
}

func TestJWSFromHeaderAndNested(t *testing.T) {
	key := rsaKey(t, "resurs")
	srv := newJWKSServer(t, publicJWK(t, key, "k1"))
	ev := `{"id":"evt_1","amount":12.50}`
	tok := signJWS(t, jwa.RS256, key, "k1", []byte(ev))

	hv := mustBuild(t, "jws", jwsConfig(srv, map[string]any{"from": "header.X-Jws-Signature", "payload": "must-match"}))
	checkErr(t, hv.Verify(context.Background(), req(`{"amount": 12.5, "id": "evt_1"}`, "X-JWS-Signature", "  "+tok+" ")), nil)
	checkErr(t, hv.Verify(context.Background(), req(`{"amount": 13, "id": "evt_1"}`, "X-JWS-Signature", tok)), verifiers.ErrMismatch)
	checkErr(t, hv.Verify(context.Background(), req(ev)), verifiers.ErrMissing)

	nv := mustBuild(t, "jws", jwsConfig(srv, map[string]any{"from": "body.meta.sig.jws", "payload": "must-match"}))
	nested := `{"id":"evt_1","meta":{"sig":{"jws":"` + tok + `"}},"amount":12.5}`
	// The signed payload lacks meta.sig.jws, so the body's remaining empty meta.sig differs.
	checkErr(t, nv.Verify(context.Background(), req(nested)), verifiers.ErrMismatch)
	tok2 := signJWS(t, jwa.RS256, key, "k1", []byte(`{"id":"evt_1","meta":{"sig":{}},"amount":12.5}`))
	checkErr(t, nv.Verify(context.Background(), req(strings.Replace(nested, tok, tok2, 1))), nil)
	checkErr(t, nv.Verify(context.Background(), req(`{"meta":{"sig":"x"}}`)), verifiers.ErrMissing)
}

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

func TestJWSKeyFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key, other := rsaKey(t, "resurs"), rsaKey(t, "resurs-next")
	set := jwk.NewSet()
	_ = set.AddKey(publicJWK(t, key, "k1"))
	_ = set.AddKey(publicJWK(t, other, "k2"))
	setJSON, _ := json.Marshal(set)
	single, _ := json.Marshal(publicJWK(t, key, "k1"))
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&key.PublicKey)})

	payload := resursPayload(resursEvent)
	body := func(alg jwa.SignatureAlgorithm, k any, kid string) string {
		return resursBody(resursEvent, signJWS(t, alg, k, kid, payload))
	}
	for _, c := range []struct {
		name string
		cfg  map[string]any
		body string
		want error
	}{
		{"jwks_file", map[string]any{"jwks_file": write("set.json", setJSON)}, body(jwa.RS256, other, "k2"), nil},
		{"jwks_file unknown kid", map[string]any{"jwks_file": write("set.json", setJSON)}, body(jwa.RS256, other, "k3"), verifiers.ErrMismatch},
		{"key_file PEM PKIX, token kid", map[string]any{"key_file": write("pub.pem", pemPublic(t, &key.PublicKey))}, body(jwa.RS256, key, "any"), nil},
		{"key_file PEM PKIX, no kid", map[string]any{"key_file": write("pub.pem", pemPublic(t, &key.PublicKey))}, body(jwa.RS256, key, ""), nil},
		{"key_file PEM, wrong key", map[string]any{"key_file": write("pub.pem", pemPublic(t, &key.PublicKey))}, body(jwa.RS256, other, ""), verifiers.ErrMismatch},
		{"key_file PEM PKCS#1", map[string]any{"key_file": write("pkcs1.pem", pkcs1)}, body(jwa.RS256, key, "k1"), nil},
		{"key_file JWK", map[string]any{"key_file": write("k1.jwk", single)}, body(jwa.RS256, key, "k1"), nil},
		{"key_file JWK, other kid", map[string]any{"key_file": write("k1.jwk", single)}, body(jwa.RS256, key, "k2"), verifiers.ErrMismatch},
		{"key_file EC", map[string]any{"key_file": write("ec.pem", pemPublic(t, &ec.PublicKey)), "algorithms": []string{"ES256"}}, body(jwa.ES256, ec, ""), nil},
		{"key_file EC, RS256 token", map[string]any{"key_file": write("ec.pem", pemPublic(t, &ec.PublicKey)), "algorithms": []string{"ES256"}}, body(jwa.RS256, key, ""), verifiers.ErrAlgorithm},
		{"key_file RSA and EC allowed, ES256 token", map[string]any{"key_file": write("pub.pem", pemPublic(t, &key.PublicKey)), "algorithms": []string{"RS256", "ES256"}}, body(jwa.ES256, ec, ""), verifiers.ErrMismatch},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cfg["from"] = "body.jwsData"
			c.cfg["payload"] = "must-match"
			v := mustBuild(t, "jws", c.cfg)
			err := v.Verify(context.Background(), req(c.body))
			checkErr(t, err, c.want)
			noKeyMaterial(t, err)
		})
	}
}

func TestJWSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	pub := filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(pub, pemPublic(t, &rsaKey(t, "resurs").PublicKey), 0o600); err != nil {
		t.Fatal(err)
	}
	oct := filepath.Join(dir, "oct.jwk")
	if err := os.WriteFile(oct, []byte(`{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQ"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.json")
	if err := os.WriteFile(garbage, []byte(`{"keys":"nope"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	const url = "https://apigw.integration.resurs.com/api/auth_service/jwks"
	for _, c := range []struct {
		name  string
		cfg   map[string]any
		field string
	}{
		{"no from", map[string]any{"jwks_url": url}, "from"},
		{"from without source", map[string]any{"from": "jwsData", "jwks_url": url}, "from"},
		{"from body.", map[string]any{"from": "body.", "jwks_url": url}, "from"},
		{"from empty segment", map[string]any{"from": "body.a..b", "jwks_url": url}, "from"},
		{"from query", map[string]any{"from": "query.jws", "jwks_url": url}, "from"},
		{"no key source", map[string]any{"from": "body.jwsData"}, "jwks_url"},
		{"two key sources", map[string]any{"from": "body.jwsData", "jwks_url": url, "key_file": pub}, "key_file"},
		{"jwks_file and key_file", map[string]any{"from": "body.jwsData", "jwks_file": pub, "key_file": pub}, "key_file"},
		{"alg none", map[string]any{"from": "body.jwsData", "jwks_url": url, "algorithms": []string{"none"}}, "algorithms[0]"},
		{"HS256 with jwks", map[string]any{"from": "body.jwsData", "jwks_url": url, "algorithms": []string{"RS256", "HS256"}}, "algorithms[1]"},
		{"HS512 with key_file", map[string]any{"from": "body.jwsData", "key_file": pub, "algorithms": []string{"HS512"}}, "algorithms[0]"},
		{"unknown alg", map[string]any{"from": "body.jwsData", "jwks_url": url, "algorithms": []string{"RSA256"}}, "algorithms[0]"},
		{"unknown payload mode", map[string]any{"from": "body.jwsData", "jwks_url": url, "payload": "match"}, "payload"},
		{"jwks_url ftp", map[string]any{"from": "body.jwsData", "jwks_url": "ftp://example.com/jwks"}, "jwks_url"},
		{"jwks_url file relative", map[string]any{"from": "body.jwsData", "jwks_url": "file:jwks.json"}, "jwks_url"},
		{"jwks_url file relative path", map[string]any{"from": "body.jwsData", "jwks_url": "file://jwks.json"}, "jwks_url"},
		{"jwks_url file on a host", map[string]any{"from": "body.jwsData", "jwks_url": "file://example.com/jwks.json"}, "jwks_url"},
		{"jwks_url file with query", map[string]any{"from": "body.jwsData", "jwks_url": "file:///etc/jwks.json?x=1"}, "jwks_url"},
		{"jwks_url file without path", map[string]any{"from": "body.jwsData", "jwks_url": "file://"}, "jwks_url"},
		{"jwks_url relative", map[string]any{"from": "body.jwsData", "jwks_url": "/jwks"}, "jwks_url"},
		{"negative refresh", map[string]any{"from": "body.jwsData", "jwks_url": url, "refresh": "-1s"}, "refresh"},
		{"negative min_refresh", map[string]any{"from": "body.jwsData", "jwks_url": url, "min_refresh": "-1s"}, "min_refresh"},
		{"jwks_headers without jwks_url", map[string]any{"from": "body.jwsData", "key_file": pub, "jwks_headers": map[string]any{"apikey": "x"}}, "jwks_headers"},
		{"min_refresh without jwks_url", map[string]any{"from": "body.jwsData", "key_file": pub, "min_refresh": "1s"}, "min_refresh"},
		{"key_file missing", map[string]any{"from": "body.jwsData", "key_file": filepath.Join(dir, "nope.pem")}, "key_file"},
		{"key_file symmetric", map[string]any{"from": "body.jwsData", "key_file": oct}, "key_file"},
		{"key_file garbage", map[string]any{"from": "body.jwsData", "key_file": garbage}, "key_file"},
		{"jwks_file garbage", map[string]any{"from": "body.jwsData", "jwks_file": garbage}, "jwks_file"},
		{"jwks_file of a symmetric key only", map[string]any{"from": "body.jwsData", "jwks_file": oct}, "jwks_file"},
		{"RSA key_file, EC algorithms", map[string]any{"from": "body.jwsData", "key_file": pub, "algorithms": []string{"ES256"}}, "key_file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := build("jws", c.cfg)
			wantFieldError(t, err, c.field)
			if strings.Contains(err.Error(), "c2VjcmV0") {
				t.Errorf("error discloses the key: %v", err)
			}
		})
	}
}

// FuzzJWSVerify feeds arbitrary from values, bodies and headers to jws
// verifiers: each from is a config error for "from" or builds a verifier, and
// verifying never panics and rejects only with a known reason.
func FuzzJWSVerify(f *testing.F) {
	key := rsaKey(f, "resurs")
	pub := filepath.Join(f.TempDir(), "pub.pem")
	if err := os.WriteFile(pub, pemPublic(f, &key.PublicKey), 0o600); err != nil {
		f.Fatal(err)
	}
	payload := resursPayload(resursEvent)
	good := signJWS(f, jwa.RS256, key, "k1", payload)
	f.Add("body.jwsData", []byte(resursBody(resursEvent, good)), good)
	f.Add("header.X-Jws", payload, " "+good)
	f.Add("body.a.b", []byte(`{"a":{"b":"`+good+`"},"externalApplicationEvent":`+resursEvent+`}`), "")
	f.Add("body.jwsData", []byte(resursBody(otherEvent, handmade(`{"alg":"none"}`, payload, ""))), handmade(`{"alg":"RS256","crit":[1]}`, nil, "%%"))
	f.Add("body..x", []byte(`{"jwsData":"a.b.c"}`), "..")
	f.Add("header.", []byte(`{"jwsData":null}`), "e30.e30.")
	f.Add("body.jwsData", []byte(`{"jwsData":"`+handmade(`{"alg":"RS256","kid":"k1"}`, []byte(`{"exp":1e400,"nbf":"x"}`), "AA")+`"}`), "")

	fixed := []verifiers.Verifier{
		mustBuild(f, "jws", map[string]any{"from": "body.jwsData", "key_file": pub, "payload": "must-match"}),
		mustBuild(f, "jws", map[string]any{"from": "header.X-Jws", "key_file": pub, "payload": "must-match"}),
		mustBuild(f, "jws", map[string]any{"from": "body.a.b", "key_file": pub, "payload": "replace", "algorithms": []string{"RS256", "PS256", "ES256"}}),
	}
	f.Fuzz(func(t *testing.T, from string, body []byte, header string) {
		r := req(string(body), "X-Jws", header)
		vs := fixed
		v, err := build("jws", map[string]any{"from": from, "key_file": pub, "payload": "must-match"})
		if err != nil {
			wantFieldError(t, err, "from")
		} else {
			vs = append(vs[:len(vs):len(vs)], v)
		}
		for _, v := range vs {
			err := v.Verify(context.Background(), r)
			reason(t, err)
			noKeyMaterial(t, err)
			if pv, ok := v.(verifiers.PayloadVerifier); ok {
				p, err := pv.VerifyPayload(context.Background(), r)
				if (err == nil) != (p != nil) {
					t.Fatalf("payload %v with error %v", p, err)
				}
			}
		}
	})
}

// fileURL is the file:// URL of an absolute path.
func fileURL(path string) string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(path)}).String()
}

// writeFile writes data to path, failing the test on error.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// jwksJSON is a JWK set of keys, as JSON.
func jwksJSON(t *testing.T, keys ...jwk.Key) []byte {
	t.Helper()
	set := jwk.NewSet()
	for _, k := range keys {
		if err := set.AddKey(k); err != nil {
			t.Fatal(err)
		}
	}
	data, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestJWSFileJWKSURL(t *testing.T) {
	oldKey, newKey := rsaKey(t, "resurs"), rsaKey(t, "resurs-next")
	dir := t.TempDir()
	path := filepath.Join(dir, "jwks.json")
	payload := resursPayload(resursEvent)
	oldBody := resursBody(resursEvent, signJWS(t, jwa.RS256, oldKey, "old", payload))
	newBody := resursBody(resursEvent, signJWS(t, jwa.RS256, newKey, "new", payload))
	cfg := func(extra map[string]any) map[string]any {
		c := map[string]any{"from": "body.jwsData", "jwks_url": fileURL(path), "payload": "must-match"}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	check := func(t *testing.T, v verifiers.Verifier, body string, want error) {
		t.Helper()
		err := v.Verify(context.Background(), req(body))
		checkErr(t, err, want)
		noKeyMaterial(t, err)
		if err != nil && strings.Contains(err.Error(), dir) {
			t.Errorf("error names the path: %v", err)
		}
	}

	t.Run("missing at load, read on use", func(t *testing.T) {
		// A file that is not there yet is no config error: it is read on use.
		v := mustBuild(t, "jws", cfg(map[string]any{"min_refresh": "1ms"}))
		check(t, v, oldBody, verifiers.ErrUnavailable)
		writeFile(t, path, jwksJSON(t, publicJWK(t, oldKey, "old")))
		time.Sleep(2 * time.Millisecond)
		check(t, v, oldBody, nil)
	})

	t.Run("localhost", func(t *testing.T) {
		writeFile(t, path, jwksJSON(t, publicJWK(t, oldKey, "old")))
		v := mustBuild(t, "jws", cfg(map[string]any{"jwks_url": "file://localhost" + filepath.ToSlash(path)}))
		check(t, v, oldBody, nil)
	})

	t.Run("cached, unknown kid rereads once per min_refresh", func(t *testing.T) {
		writeFile(t, path, jwksJSON(t, publicJWK(t, oldKey, "old")))
		v := mustBuild(t, "jws", cfg(map[string]any{"min_refresh": "100ms"}))
		check(t, v, oldBody, nil)
		// Rotation: the new kid is read within min_refresh of the first read.
		writeFile(t, path, jwksJSON(t, publicJWK(t, oldKey, "old"), publicJWK(t, newKey, "new")))
		check(t, v, newBody, verifiers.ErrMismatch)
		time.Sleep(110 * time.Millisecond)
		check(t, v, newBody, nil)
		// The file is cached: removing it changes nothing until a reread.
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		check(t, v, oldBody, nil)
		check(t, v, newBody, nil)
	})

	t.Run("stale set while the file is broken", func(t *testing.T) {
		writeFile(t, path, jwksJSON(t, publicJWK(t, oldKey, "old")))
		v := mustBuild(t, "jws", cfg(map[string]any{"refresh": "1ms", "min_refresh": "1ms"}))
		check(t, v, oldBody, nil)
		for _, broken := range []func(){
			func() { writeFile(t, path, []byte("<html>we moved</html>")) },
			func() { writeFile(t, path, []byte(`{"keys":[]}`)) },
			func() { _ = os.Remove(path) },
			func() { _ = os.Mkdir(path, 0o700) },
		} {
			broken()
			time.Sleep(2 * time.Millisecond)
			check(t, v, oldBody, nil)
		}
		_ = os.Remove(path)
		// The next read after refresh picks up a replaced file.
		writeFile(t, path, jwksJSON(t, publicJWK(t, newKey, "new")))
		time.Sleep(2 * time.Millisecond)
		check(t, v, newBody, nil)
		check(t, v, oldBody, verifiers.ErrMismatch)
	})

	t.Run("unusable files", func(t *testing.T) {
		big := append([]byte(`{"keys":[],"pad":"`), make([]byte, verifiers.JWKSMaxBytes)...)
		for i := 18; i < len(big); i++ {
			big[i] = 'a'
		}
		big = append(big, `"}`...)
		for name, setup := range map[string]func(p string){
			"missing":   func(string) {},
			"directory": func(p string) { _ = os.Mkdir(p, 0o700) },
			"too big":   func(p string) { writeFile(t, p, big) },
			"not JWKS":  func(p string) { writeFile(t, p, []byte("{}")) },
			"symmetric": func(p string) { writeFile(t, p, []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)) },
		} {
			t.Run(name, func(t *testing.T) {
				p := filepath.Join(t.TempDir(), "jwks.json")
				setup(p)
				v := mustBuild(t, "jws", cfg(map[string]any{"jwks_url": fileURL(p)}))
				err := v.Verify(context.Background(), req(oldBody))
				checkErr(t, err, verifiers.ErrUnavailable)
				if strings.Contains(err.Error(), p) || strings.Contains(err.Error(), "c2VjcmV0") {
					t.Errorf("error names the path or the key: %v", err)
				}
			})
		}
	})
}

// pemPrivate is key as a PEM private key block of the given type: "RSA
// PRIVATE KEY" (PKCS#1), "EC PRIVATE KEY" (SEC 1) or "PRIVATE KEY" (PKCS#8).
func pemPrivate(t testing.TB, key any, typ string) []byte {
	t.Helper()
	var (
		der []byte
		err error
	)
	switch typ {
	case "RSA PRIVATE KEY":
		der = x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))
	case "EC PRIVATE KEY":
		der, err = x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	default:
		der, err = x509.MarshalPKCS8PrivateKey(key)
	}
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// keySigner builds a jws verifier from cfg and returns it as a KeySigner.
func keySigner(t *testing.T, cfg map[string]any) (verifiers.Verifier, verifiers.KeySigner) {
	t.Helper()
	v := mustBuild(t, "jws", cfg)
	ks, ok := v.(verifiers.KeySigner)
	if !ok {
		t.Fatalf("%T is not a KeySigner", v)
	}
	return v, ks
}

// ecScalar is k's private scalar in decimal, as an error that leaked it
// might print it (what the D field, deprecated in Go 1.26, printed).
func ecScalar(t *testing.T, k *ecdsa.PrivateKey) string {
	t.Helper()
	b, err := k.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return new(big.Int).SetBytes(b).String()
}

// noPrivateKey fails if err shows any part of the private key in keyPEM
// (each base64 line of it) or its private number d.
func noPrivateKey(t *testing.T, err error, keyPEM []byte, d string) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, line := range strings.Split(string(keyPEM), "\n") {
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") && strings.Contains(msg, line[:16]) {
			t.Fatalf("error discloses the private key: %v", err)
		}
	}
	if len(d) > 12 && strings.Contains(msg, d[:12]) {
		t.Fatalf("error discloses the private key: %v", err)
	}
	noKeyMaterial(t, err)
}

// signedHeader returns the protected header of a compact JWS.
func signedHeader(t *testing.T, tok string) jws.Headers {
	t.Helper()
	msg, err := jws.Parse([]byte(strings.TrimSpace(tok)), jws.WithCompact())
	if err != nil {
		t.Fatalf("not a compact JWS: %v", err)
	}
	return msg.Signatures()[0].ProtectedHeaders()
}

// jsonSame reports whether two JSON documents are equal as JSON.
func jsonSame(t *testing.T, a, b []byte) bool {
	t.Helper()
	var av, bv any
	if err := json.Unmarshal(a, &av); err != nil {
		t.Fatalf("not JSON: %s", a)
	}
	if err := json.Unmarshal(b, &bv); err != nil {
		t.Fatalf("not JSON: %s", b)
	}
	aj, _ := json.Marshal(av)
	bj, _ := json.Marshal(bv)
	return string(aj) == string(bj)
}

func TestJWSSignWithKey(t *testing.T) {
	key := rsaKey(t, "resurs")
	srv := newJWKSServer(t, publicJWK(t, key, "1cb06a4a"), publicJWK(t, rsaKey(t, "resurs-next"), "e434a27b"))
	// A Resurs-shaped body without its jwsData, laid out loosely.
	body := "{\n  \"externalApplicationEvent\" : " + resursEvent + "\n}\n"

	for _, pemType := range []string{"RSA PRIVATE KEY", "PRIVATE KEY"} {
		keyPEM := pemPrivate(t, key, pemType)
		for _, from := range []string{"body.jwsData", "header.X-Signature"} {
			for _, mode := range []string{"", "verify-only", "replace", "must-match"} {
				t.Run(fmt.Sprintf("%s/%s/payload=%s", pemType, from, mode), func(t *testing.T) {
					cfg := jwsConfig(srv, map[string]any{"from": from})
					if mode != "" {
						cfg["payload"] = mode
					}
					v, ks := keySigner(t, cfg)
					r := req(body)
					err := ks.SignWithKey(r, keyPEM, "1cb06a4a")
					noPrivateKey(t, err, keyPEM, key.D.String())
					checkErr(t, err, nil)

					var tok string
					if from == "body.jwsData" {
						var got map[string]any
						if err := json.Unmarshal(r.Body, &got); err != nil {
							t.Fatalf("signed body is not JSON: %s", r.Body)
						}
						tok, _ = got["jwsData"].(string)
						if _, ok := got["externalApplicationEvent"].(map[string]any); !ok || len(got) != 2 || tok == "" {
							t.Fatalf("signed body %s, want externalApplicationEvent and jwsData", r.Body)
						}
						if strings.ContainsAny(string(r.Body), " \n") {
							t.Errorf("body not re-encoded compactly: %s", r.Body)
						}
					} else {
						if string(r.Body) != body {
							t.Errorf("body changed to %s", r.Body)
						}
						tok = r.Header.Get("X-Signature")
					}
					hdr := signedHeader(t, tok)
					if hdr.Algorithm() != jwa.RS256 || hdr.KeyID() != "1cb06a4a" {
						t.Errorf("header alg %q kid %q, want RS256 and 1cb06a4a", hdr.Algorithm(), hdr.KeyID())
					}

					p, err := payloadOf(t, v, r)
					checkErr(t, err, nil)
					if from == "body.jwsData" {
						if !jsonSame(t, p.Data, resursPayload(resursEvent)) || bytes.ContainsAny(p.Data, " \n") {
							t.Errorf("payload %s, want the body without jwsData, compact", p.Data)
						}
					} else if string(p.Data) != body {
						t.Errorf("payload %q, want the body as it was", p.Data)
					}
					if p.Replace != (mode == "replace") {
						t.Errorf("Replace = %v in mode %q", p.Replace, mode)
					}

					// A changed body no longer matches what was signed.
					if mode == "must-match" {
						changed := req(strings.Replace(string(r.Body), "APPROVED", "REJECTED", 1))
						changed.Header = r.Header
						checkErr(t, v.Verify(context.Background(), changed), verifiers.ErrMismatch)
					}
				})
			}
		}
	}

	t.Run("resigning replaces the field", func(t *testing.T) {
		v, ks := keySigner(t, jwsConfig(srv, map[string]any{"payload": "must-match"}))
		r := req(resursBody(resursEvent, "stale.jws.value"))
		checkErr(t, ks.SignWithKey(r, pemPrivate(t, key, "RSA PRIVATE KEY"), "1cb06a4a"), nil)
		checkErr(t, v.Verify(context.Background(), r), nil)
		if strings.Contains(string(r.Body), "stale") {
			t.Errorf("old jwsData kept: %s", r.Body)
		}
	})

	t.Run("wrong kid or key is rejected by Verify", func(t *testing.T) {
		v, ks := keySigner(t, jwsConfig(srv, map[string]any{"payload": "must-match"}))
		r := req(body)
		checkErr(t, ks.SignWithKey(r, pemPrivate(t, key, "RSA PRIVATE KEY"), "e434a27b"), nil)
		checkErr(t, v.Verify(context.Background(), r), verifiers.ErrMismatch)
	})

	t.Run("nested field, objects created", func(t *testing.T) {
		v, ks := keySigner(t, jwsConfig(srv, map[string]any{"from": "body.meta.sig.jws", "payload": "must-match"}))
		r := req(`{"id":"evt_1","amount":12.50,"note":"<a&b>"}`)
		checkErr(t, ks.SignWithKey(r, pemPrivate(t, key, "PRIVATE KEY"), "1cb06a4a"), nil)
		p, err := payloadOf(t, v, r)
		checkErr(t, err, nil)
		// Numbers keep their spelling; nothing is HTML-escaped.
		if want := `{"amount":12.50,"id":"evt_1","meta":{"sig":{}},"note":"<a&b>"}`; string(p.Data) != want {
			t.Errorf("payload %s, want %s", p.Data, want)
		}
	})
}

func TestJWSSignWithKeyKinds(t *testing.T) {
	rsaPriv := rsaKey(t, "resurs")
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecPub, err := jwk.FromRaw(&ec.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	_ = ecPub.Set(jwk.KeyIDKey, "ec-1")
	ecPrivJWK, err := jwk.FromRaw(ec)
	if err != nil {
		t.Fatal(err)
	}
	_ = ecPrivJWK.Set(jwk.KeyIDKey, "ec-1")
	ecJWK, _ := json.Marshal(ecPrivJWK)
	rsaPrivJWK, _ := jwk.FromRaw(rsaPriv)
	_ = rsaPrivJWK.Set(jwk.KeyIDKey, "1cb06a4a")
	rsaJWK, _ := json.Marshal(rsaPrivJWK)

	dir := t.TempDir()
	jwksPath := filepath.Join(dir, "jwks.json")
	writeFile(t, jwksPath, jwksJSON(t, publicJWK(t, rsaPriv, "1cb06a4a"), ecPub))
	cfg := func(algs ...string) map[string]any {
		c := map[string]any{"from": "body.jwsData", "jwks_url": fileURL(jwksPath), "payload": "must-match"}
		if len(algs) > 0 {
			c["algorithms"] = algs
		}
		return c
	}
	body := resursPayload(resursEvent)
	// With EC PARAMETERS first, as `openssl ecparam -genkey` writes it.
	ecParams := append([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"), pemPrivate(t, ec, "EC PRIVATE KEY")...)

	for _, c := range []struct {
		name    string
		algs    []string
		key     []byte
		kid     string
		wantAlg jwa.SignatureAlgorithm
		wantKid string
	}{
		{"EC PEM", []string{"ES256"}, pemPrivate(t, ec, "EC PRIVATE KEY"), "ec-1", jwa.ES256, "ec-1"},
		{"EC PEM after EC PARAMETERS", []string{"ES256"}, ecParams, "ec-1", jwa.ES256, "ec-1"},
		{"EC PKCS#8", []string{"ES256"}, pemPrivate(t, ec, "PRIVATE KEY"), "ec-1", jwa.ES256, "ec-1"},
		{"EC JWK, its kid", []string{"ES256"}, ecJWK, "", jwa.ES256, "ec-1"},
		{"EC, first fitting algorithm", []string{"RS256", "ES384", "ES256"}, pemPrivate(t, ec, "EC PRIVATE KEY"), "ec-1", jwa.ES256, "ec-1"},
		{"RSA JWK, its kid", nil, rsaJWK, "", jwa.RS256, "1cb06a4a"},
		{"RSA JWK, kid argument wins", nil, rsaJWK, "other", jwa.RS256, "other"},
		// (The published key says alg RS256, so PS256 would not verify.)
		{"RSA, first fitting algorithm", []string{"ES256", "RS256", "PS256"}, pemPrivate(t, rsaPriv, "RSA PRIVATE KEY"), "1cb06a4a", jwa.RS256, "1cb06a4a"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, ks := keySigner(t, cfg(c.algs...))
			r := req(string(body))
			checkErr(t, ks.SignWithKey(r, c.key, c.kid), nil)
			var got map[string]any
			_ = json.Unmarshal(r.Body, &got)
			tok, _ := got["jwsData"].(string)
			hdr := signedHeader(t, tok)
			if hdr.Algorithm() != c.wantAlg || hdr.KeyID() != c.wantKid {
				t.Errorf("header alg %q kid %q, want %q and %q", hdr.Algorithm(), hdr.KeyID(), c.wantAlg, c.wantKid)
			}
			want := error(nil)
			if c.wantKid == "other" {
				want = verifiers.ErrMismatch // no such kid in the set
			}
			checkErr(t, v.Verify(context.Background(), r), want)
		})
	}

	encrypted := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"}, Bytes: x509.MarshalPKCS1PrivateKey(rsaPriv)})
	rsaPEM := pemPrivate(t, rsaPriv, "RSA PRIVATE KEY")
	corrupt := bytes.Replace(rsaPEM, []byte("\n"), []byte("\nAAAA"), 3)
	for _, c := range []struct {
		name string
		algs []string
		key  []byte
		d    string
	}{
		{"RSA key, EC algorithms", []string{"ES256", "ES384"}, rsaPEM, rsaPriv.D.String()},
		{"RSA JWK, EC algorithms", []string{"ES256"}, rsaJWK, rsaPriv.D.String()},
		{"EC key, RSA algorithms", []string{"RS256", "PS256"}, pemPrivate(t, ec, "EC PRIVATE KEY"), ecScalar(t, ec)},
		{"P-384 key, ES256", []string{"ES256", "ES512"}, pemPrivate(t, ec384, "EC PRIVATE KEY"), ecScalar(t, ec384)},
		{"EC JWK, RS256", nil, ecJWK, ecScalar(t, ec)},
		{"public PEM", nil, pemPublic(t, &rsaPriv.PublicKey), ""},
		{"public JWK", nil, func() []byte { b, _ := json.Marshal(publicJWK(t, rsaPriv, "k")); return b }(), ""},
		{"symmetric JWK", nil, []byte(`{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQ"}`), "c2VjcmV0LXNlY3JldC1zZWNyZXQ"},
		{"encrypted PEM", nil, encrypted, rsaPriv.D.String()},
		{"corrupt PEM", nil, corrupt, rsaPriv.D.String()},
		{"garbage", nil, []byte("not a key at all, secret-secret-secret"), "secret-secret-secret"},
		{"empty", nil, nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, ks := keySigner(t, cfg(c.algs...))
			r := req(string(body), "X-Keep", "1")
			err := ks.SignWithKey(r, c.key, "kid")
			if err == nil {
				t.Fatal("signed")
			}
			noPrivateKey(t, err, c.key, c.d)
			if string(r.Body) != string(body) || len(r.Header) != 1 {
				t.Errorf("failed SignWithKey changed the request: %s %v", r.Body, r.Header)
			}
		})
	}

	t.Run("body not an object", func(t *testing.T) {
		_, ks := keySigner(t, cfg())
		for _, b := range []string{"", "not json", `["a"]`, `{"a":1} {}`} {
			if err := ks.SignWithKey(req(b), rsaPEM, "1cb06a4a"); err == nil {
				t.Errorf("body %q signed", b)
			}
		}
		_, ks = keySigner(t, map[string]any{"from": "body.a.b", "jwks_url": fileURL(jwksPath)})
		if err := ks.SignWithKey(req(`{"a":"x"}`), rsaPEM, "1cb06a4a"); err == nil {
			t.Error("body whose a is a string signed")
		}
	})

	t.Run("header must-match needs JSON, others do not", func(t *testing.T) {
		_, ks := keySigner(t, map[string]any{"from": "header.X-Jws", "jwks_url": fileURL(jwksPath), "payload": "must-match"})
		r := &verifiers.Request{Body: []byte("a=b")}
		if err := ks.SignWithKey(r, rsaPEM, "1cb06a4a"); err == nil || r.Header != nil {
			t.Errorf("non-JSON body signed for must-match, or request changed: %v", err)
		}
		v, ks := keySigner(t, map[string]any{"from": "header.X-Jws", "jwks_url": fileURL(jwksPath)})
		checkErr(t, ks.SignWithKey(r, rsaPEM, "1cb06a4a"), nil)
		checkErr(t, v.Verify(context.Background(), r), nil)
	})
}

// TestJWSMaxAge: with max_age a token whose iat is older is stale; no iat,
// or no max_age, means no check.
func TestJWSMaxAge(t *testing.T) {
	key := rsaKey(t, "resurs")
	srv := newJWKSServer(t, publicJWK(t, key, "k1"))
	aged := mustBuild(t, "jws", jwsConfig(srv, map[string]any{"max_age": "10m"}))
	plain := mustBuild(t, "jws", jwsConfig(srv, nil))
	iat := func(at time.Time) string {
		return resursBody(resursEvent, signJWS(t, jwa.RS256, key, "k1",
			[]byte(fmt.Sprintf(`{"externalApplicationEvent":%s,"iat":%d}`, resursEvent, at.Unix()))))
	}
	for _, c := range []struct {
		name string
		v    verifiers.Verifier
		body string
		want error
	}{
		{"fresh", aged, iat(now.Add(-time.Minute)), nil},
		{"just within", aged, iat(now.Add(-10 * time.Minute)), nil},
		{"old", aged, iat(now.Add(-11 * time.Minute)), verifiers.ErrStale},
		{"no iat", aged, resursBody(resursEvent, signJWS(t, jwa.RS256, key, "k1", resursPayload(resursEvent))), nil},
		{"old without max_age", plain, iat(now.Add(-48 * time.Hour)), nil},
		{"iat not a number", aged, resursBody(resursEvent, signJWS(t, jwa.RS256, key, "k1",
			[]byte(`{"externalApplicationEvent":`+resursEvent+`,"iat":"yesterday"}`))), verifiers.ErrMalformed},
	} {
		t.Run(c.name, func(t *testing.T) { checkErr(t, c.v.Verify(context.Background(), req(c.body)), c.want) })
	}
	_, err := build("jws", jwsConfig(srv, map[string]any{"max_age": "-1m"}))
	wantFieldError(t, err, "max_age")
}

// TestJWSSignedInput: the payload reports what the signature covers, the
// same for every copy of one token however the body around it is written.
func TestJWSSignedInput(t *testing.T) {
	key := rsaKey(t, "resurs")
	srv := newJWKSServer(t, publicJWK(t, key, "k1"))
	v := mustBuild(t, "jws", jwsConfig(srv, map[string]any{"payload": "must-match"}))
	tok := signJWS(t, jwa.RS256, key, "k1", resursPayload(resursEvent))
	want := tok[:strings.LastIndexByte(tok, '.')]
	for _, body := range []string{
		resursBody(resursEvent, tok),
		"{\n  \"jwsData\": \" " + tok + "\",\n  \"externalApplicationEvent\": " + resursEvent + "\n}",
	} {
		p, err := payloadOf(t, v, req(body))
		checkErr(t, err, nil)
		if string(p.Signed) != want {
			t.Errorf("Signed = %.40q..., want the token's header and payload segments", p.Signed)
		}
	}
}
