package verifiers_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/hookrelay/hookrelay/verifiers"
)

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
