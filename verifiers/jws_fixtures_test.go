package verifiers_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

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
