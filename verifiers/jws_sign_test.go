package verifiers_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/hookrelay/hookrelay/verifiers"
)

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
