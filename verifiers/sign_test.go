package verifiers_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/hookrelay/hookrelay/verifiers"
)

// mustSigner builds a verifier of kind from cfg and fails unless it signs.
func mustSigner(t *testing.T, kind string, cfg map[string]any) (verifiers.Verifier, verifiers.Signer) {
	t.Helper()
	v := mustBuild(t, kind, cfg)
	s, ok := v.(verifiers.Signer)
	if !ok {
		t.Fatalf("%s (%T) does not implement Signer", kind, v)
	}
	return v, s
}

// TestSignVerifies signs a request with every signable kind and format, then
// checks that Verify accepts it, and for the kinds that cover the body, that
// Verify rejects it once the body changes.
func TestSignVerifies(t *testing.T) {
	type tc struct {
		name string
		kind string
		cfg  map[string]any
		prep func(r *verifiers.Request) // fills what a template names
		// coversBody: a changed body must be rejected. Credential kinds do
		// not cover the body; for them a verifier holding another secret
		// must reject instead.
		coversBody bool
		other      map[string]any // cfg with another secret, for credential kinds
	}
	var cases []tc
	for _, alg := range []string{"sha1", "sha256", "sha512"} {
		for _, enc := range []string{"hex", "base64"} {
			for _, prefix := range []string{"", alg + "="} {
				cases = append(cases, tc{
					name: fmt.Sprintf("hmac %s %s prefix=%q", alg, enc, prefix), kind: "hmac",
					cfg: map[string]any{"secret": secret, "algorithm": alg,
						"signature": map[string]any{"header": "X-Signature", "encoding": enc, "prefix": prefix}},
					coversBody: true,
				})
			}
		}
	}
	for _, format := range []string{"", "unix", "unix_ms", "rfc3339"} {
		cases = append(cases, tc{
			name: "hmac timestamp " + format, kind: "hmac",
			cfg: map[string]any{"secret": secret, "signed": "{header.X-Timestamp}.{body}",
				"signature": map[string]any{"header": "X-Signature"},
				"timestamp": map[string]any{"header": "X-Timestamp", "format": format}},
			coversBody: true,
		})
	}
	cases = append(cases,
		tc{name: "hmac timestamp not in template", kind: "hmac",
			cfg: map[string]any{"secret": secret, "signature": map[string]any{"header": "X-Signature"},
				"timestamp": map[string]any{"header": "X-Timestamp", "format": "unix_ms"}},
			coversBody: true},
		tc{name: "hmac header, query and param", kind: "hmac",
			cfg: map[string]any{"secret": secret, "signed": "{param.event}/{query.id}/{header.x-request-id}/{header.X-Ts}/{body}",
				"signature": map[string]any{"header": "X-Signature", "encoding": "base64", "prefix": "v1="},
				"timestamp": map[string]any{"header": "X-Ts", "format": "rfc3339", "tolerance": "1m"}},
			prep: func(r *verifiers.Request) {
				r.Params["event"] = "approved"
				r.Query.Set("id", "42")
				r.Header.Set("X-Request-Id", "r-1")
			},
			coversBody: true},
		tc{name: "hmac rotation", kind: "hmac",
			cfg:        map[string]any{"secrets": []string{"new-key", "old-key"}, "signature": map[string]any{"header": "X-Signature"}},
			coversBody: true},
		tc{name: "stripe", kind: "hmac", cfg: map[string]any{"secret": "whsec_test", "signature": map[string]any{"format": "stripe"}},
			coversBody: true},
		tc{name: "stripe rotation", kind: "hmac",
			cfg:        map[string]any{"secrets": []string{"whsec_new", "whsec_old"}, "signature": map[string]any{"format": "stripe"}},
			coversBody: true},
		tc{name: "standard", kind: "hmac",
			cfg:        map[string]any{"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "signature": map[string]any{"format": "standard"}},
			coversBody: true},
		tc{name: "standard without whsec_", kind: "hmac",
			cfg:        map[string]any{"secret": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "signature": map[string]any{"format": "standard"}},
			coversBody: true},
		tc{name: "github", kind: "hmac", cfg: map[string]any{"secret": secret, "signature": map[string]any{"format": "github"}},
			coversBody: true},
		tc{name: "stripe header named", kind: "hmac", cfg: map[string]any{"secret": "whsec_test",
			"signature": map[string]any{"format": "stripe", "header": "X-Stripe-Signature"}}, coversBody: true},
		tc{name: "standard svix", kind: "hmac", cfg: map[string]any{"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
			"signature": map[string]any{"format": "standard", "header": "svix-signature"}}, coversBody: true},

		tc{name: "token", kind: "token", cfg: map[string]any{"token": "tok-1"},
			other: map[string]any{"token": "tok-2"}},
		tc{name: "token header and prefix", kind: "token",
			cfg:   map[string]any{"header": "X-Auth", "prefix": "token ", "tokens": []string{"tok-1", "tok-2"}},
			other: map[string]any{"header": "X-Auth", "prefix": "token ", "token": "tok-2"}},
		tc{name: "bearer", kind: "bearer", cfg: map[string]any{"tokens": []string{"tok-1", "tok-2"}},
			other: map[string]any{"token": "tok-2"}},
		tc{name: "basic", kind: "basic", cfg: map[string]any{"users": map[string]any{"zed": "pw-z", "alice": "pw-a", "bob": "pw-b"}},
			other: map[string]any{"users": map[string]any{"zed": "pw-z", "bob": "pw-b"}}},
		tc{name: "apikey header", kind: "apikey", cfg: map[string]any{"keys": []string{"key-1", "key-2"}},
			other: map[string]any{"key": "key-2"}},
		tc{name: "apikey named header", kind: "apikey", cfg: map[string]any{"in": "header", "name": "X-Api-Key", "key": "key-1"},
			other: map[string]any{"in": "header", "name": "X-Api-Key", "key": "key-2"}},
		tc{name: "apikey query", kind: "apikey", cfg: map[string]any{"in": "query", "name": "apiKey", "key": "key-1"},
			other: map[string]any{"in": "query", "name": "apiKey", "key": "key-2"}},
	)

	ctx := context.Background()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			v, s := mustSigner(t, tt.kind, tt.cfg)
			r := req(body)
			if tt.prep != nil {
				tt.prep(r)
			}
			if err := s.Sign(r); err != nil {
				t.Fatalf("sign: %v", err)
			}
			if string(r.Body) != body {
				t.Fatalf("sign changed the body to %q", r.Body)
			}
			checkErr(t, v.Verify(ctx, r), nil)

			if tt.coversBody {
				r.Body = []byte(body + " ")
				checkErr(t, v.Verify(ctx, r), verifiers.ErrMismatch)
				return
			}
			checkErr(t, mustBuild(t, tt.kind, tt.other).Verify(ctx, r), verifiers.ErrMismatch)
		})
		t.Run(tt.name+"/nil maps", func(t *testing.T) {
			if tt.prep != nil {
				t.Skip("the template needs request values")
			}
			v, s := mustSigner(t, tt.kind, tt.cfg)
			r := &verifiers.Request{Method: "POST", Path: "/in/test", Body: []byte(body), Received: now}
			if err := s.Sign(r); err != nil {
				t.Fatalf("sign: %v", err)
			}
			checkErr(t, v.Verify(ctx, r), nil)
		})
	}
}

// TestSignHMACValues checks the headers Sign writes against independent
// computations and published vectors.
func TestSignHMACValues(t *testing.T) {
	sign := func(t *testing.T, cfg map[string]any, r *verifiers.Request) *verifiers.Request {
		t.Helper()
		v, s := mustSigner(t, "hmac", cfg)
		if err := s.Sign(r); err != nil {
			t.Fatalf("sign: %v", err)
		}
		checkErr(t, v.Verify(context.Background(), r), nil)
		return r
	}
	header := func(t *testing.T, r *verifiers.Request, name, want string) {
		t.Helper()
		if got := r.Header.Get(name); got != want {
			t.Fatalf("%s = %q, want %q", name, got, want)
		}
	}
	tsCfg := func(format string) map[string]any {
		return map[string]any{"secret": secret, "signed": "{header.X-Timestamp}.{body}",
			"signature": map[string]any{"header": "X-Signature"},
			"timestamp": map[string]any{"header": "X-Timestamp", "format": format}}
	}

	t.Run("github documented example", func(t *testing.T) {
		r := sign(t, map[string]any{"secret": "It's a Secret to Everybody", "signature": map[string]any{"format": "github"}},
			req("Hello, World!"))
		header(t, r, "X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
	})
	t.Run("generic hex is lower case", func(t *testing.T) {
		r := sign(t, map[string]any{"secret": secret, "signature": map[string]any{"header": "X-Signature", "prefix": "sha256="}}, req(body))
		header(t, r, "X-Signature", "sha256="+mac(sha256.New, secret, body))
	})
	t.Run("generic base64 is padded", func(t *testing.T) {
		r := sign(t, map[string]any{"secret": secret, "signature": map[string]any{"header": "X-Signature", "encoding": "base64"}}, req(body))
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(body))
		header(t, r, "X-Signature", base64.StdEncoding.EncodeToString(m.Sum(nil)))
	})
	t.Run("rotation signs with the first secret", func(t *testing.T) {
		r := sign(t, map[string]any{"secrets": []string{"new-key", "old-key"}, "signature": map[string]any{"header": "X-Signature"}}, req(body))
		header(t, r, "X-Signature", mac(sha256.New, "new-key", body))
	})
	for _, tt := range []struct{ format, want string }{
		{"unix", strconv.FormatInt(now.Unix(), 10)},
		{"unix_ms", strconv.FormatInt(now.UnixMilli(), 10)},
		{"rfc3339", "2024-01-15T10:35:00Z"},
	} {
		t.Run("timestamp "+tt.format, func(t *testing.T) {
			r := req(body)
			r.Received = now.In(time.FixedZone("CET", 3600)).Add(300 * time.Millisecond)
			r = sign(t, tsCfg(tt.format), r)
			want := tt.want
			if tt.format == "unix_ms" {
				want = strconv.FormatInt(now.UnixMilli()+300, 10)
			}
			header(t, r, "X-Timestamp", want)
			header(t, r, "X-Signature", mac(sha256.New, secret, want+"."+body))
		})
	}
	t.Run("existing timestamp is kept", func(t *testing.T) {
		ts := strconv.FormatInt(now.Add(-time.Minute).Unix(), 10)
		r := sign(t, tsCfg("unix"), req(body, "X-Timestamp", ts))
		header(t, r, "X-Timestamp", ts)
		header(t, r, "X-Signature", mac(sha256.New, secret, ts+"."+body))
	})
	t.Run("zero received means now", func(t *testing.T) {
		r := req(body)
		r.Received = time.Time{}
		before := time.Now().Unix()
		r = sign(t, tsCfg("unix"), r)
		got, _ := strconv.ParseInt(r.Header.Get("X-Timestamp"), 10, 64)
		if got < before || got > time.Now().Unix() {
			t.Fatalf("timestamp %d is not now", got)
		}
	})
	t.Run("existing signature is replaced", func(t *testing.T) {
		r := sign(t, map[string]any{"secret": secret, "signature": map[string]any{"header": "X-Signature"}},
			req(body, "X-Signature", "stale"))
		if got := r.Header.Values("X-Signature"); len(got) != 1 || got[0] != mac(sha256.New, secret, body) {
			t.Fatalf("X-Signature = %q", got)
		}
	})
}

// TestSignStripe checks our Stripe signature with Stripe's own library.
func TestSignStripe(t *testing.T) {
	const whsec = "whsec_test_secret"
	v, s := mustSigner(t, "hmac", map[string]any{"secrets": []string{whsec, "whsec_old"}, "signature": map[string]any{"format": "stripe"}})

	t.Run("received now", func(t *testing.T) {
		r := req(body)
		r.Received = time.Time{} // now, so stripe-go's own 5m tolerance holds
		if err := s.Sign(r); err != nil {
			t.Fatal(err)
		}
		sig := r.Header.Get("Stripe-Signature")
		if err := webhook.ValidatePayload([]byte(body), sig, whsec); err != nil {
			t.Fatalf("stripe-go rejects %q: %v", sig, err)
		}
		if err := webhook.ValidatePayload([]byte(body+" "), sig, whsec); err == nil {
			t.Fatal("stripe-go accepts a changed body")
		}
		checkErr(t, v.Verify(context.Background(), r), nil)
	})
	t.Run("fixed clock", func(t *testing.T) {
		r := req(body)
		if err := s.Sign(r); err != nil {
			t.Fatal(err)
		}
		sig := r.Header.Get("Stripe-Signature")
		want := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{
			Payload: []byte(body), Secret: whsec, Timestamp: now,
		}).Header
		if sig != want {
			t.Fatalf("Stripe-Signature = %q, stripe-go makes %q", sig, want)
		}
		if err := webhook.ValidatePayloadIgnoringTolerance([]byte(body), sig, whsec); err != nil {
			t.Fatalf("stripe-go rejects %q: %v", sig, err)
		}
	})
}

// TestSignStandardWebhooks checks our Standard Webhooks headers against the
// reference libraries' vector and an independent computation.
func TestSignStandardWebhooks(t *testing.T) {
	const (
		vecSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		vecID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
		vecTS     = "1614265330"
		vecBody   = `{"test": 2432232314}`
		vecSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	)
	cfg := map[string]any{"secret": vecSecret, "signature": map[string]any{"format": "standard"}}
	v, s := mustSigner(t, "hmac", cfg)
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(vecSecret, "whsec_"))
	independent := func(id, ts, b string) string {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(id + "." + ts + "." + b))
		return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	}

	t.Run("official vector", func(t *testing.T) {
		r := req(vecBody, "webhook-id", vecID)
		r.Received = time.Unix(1614265330, 0)
		if err := s.Sign(r); err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]string{"webhook-id": vecID, "webhook-timestamp": vecTS, "webhook-signature": vecSig} {
			if got := r.Header.Get(name); got != want {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}
		checkErr(t, v.Verify(context.Background(), r), nil)
	})
	t.Run("generated id", func(t *testing.T) {
		ids := map[string]bool{}
		for range 3 {
			r := req(body)
			if err := s.Sign(r); err != nil {
				t.Fatal(err)
			}
			id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
			if !strings.HasPrefix(id, "msg_") || len(id) < len("msg_")+16 {
				t.Fatalf("webhook-id %q is not a random msg_ id", id)
			}
			if ts != strconv.FormatInt(now.Unix(), 10) {
				t.Fatalf("webhook-timestamp %q, want the time received", ts)
			}
			if got, want := r.Header.Get("webhook-signature"), independent(id, ts, body); got != want {
				t.Fatalf("webhook-signature %q, computed %q", got, want)
			}
			checkErr(t, v.Verify(context.Background(), r), nil)
			ids[id] = true
		}
		if len(ids) != 3 {
			t.Fatalf("ids repeat: %v", ids)
		}
	})
}

// TestSignCredentials checks what the credential kinds send.
func TestSignCredentials(t *testing.T) {
	sign := func(t *testing.T, kind string, cfg map[string]any) *verifiers.Request {
		t.Helper()
		_, s := mustSigner(t, kind, cfg)
		r := req(body)
		if err := s.Sign(r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	tests := []struct {
		name  string
		kind  string
		cfg   map[string]any
		where string // header name, or "?" + query name
		want  string
	}{
		{"token default header", "token", map[string]any{"tokens": []string{"t1", "t2"}}, "Authorization", "t1"},
		{"token prefix", "token", map[string]any{"header": "X-Token", "prefix": "token ", "token": "t1"}, "X-Token", "token t1"},
		{"bearer", "bearer", map[string]any{"tokens": []string{"t1", "t2"}}, "Authorization", "Bearer t1"},
		{"basic first sorted user", "basic", map[string]any{"users": map[string]any{"zed": "pz", "alice": "pa", "bob": "pb"}},
			"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:pa"))},
		{"apikey header", "apikey", map[string]any{"keys": []string{"k1", "k2"}}, "API-KEY", "k1"},
		{"apikey query", "apikey", map[string]any{"in": "query", "name": "apiKey", "keys": []string{"k1", "k2"}}, "?apiKey", "k1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Several builds, since a map's order differs between them.
			for range 10 {
				r := sign(t, tt.kind, tt.cfg)
				got := r.Header.Get(tt.where)
				if q, ok := strings.CutPrefix(tt.where, "?"); ok {
					got = r.Query.Get(q)
					if len(r.Header) != 0 {
						t.Fatalf("a query key also set headers %v", r.Header)
					}
				}
				if got != tt.want {
					t.Fatalf("%s = %q, want %q", tt.where, got, tt.want)
				}
			}
		})
	}
}

// TestSignErrors checks that Sign refuses what it cannot sign, naming the
// missing part and never the secret.
func TestSignErrors(t *testing.T) {
	const key = "leak-canary-secret"
	tests := []struct {
		name string
		cfg  map[string]any
		r    *verifiers.Request
		want error
	}{
		{"missing header value", map[string]any{"secret": key, "signed": "{header.X-Request-Id}|{body}",
			"signature": map[string]any{"header": "X-Sig"}}, req(body), verifiers.ErrMissing},
		{"missing query value", map[string]any{"secret": key, "signed": "{query.id}|{body}",
			"signature": map[string]any{"header": "X-Sig"}}, req(body), verifiers.ErrMissing},
		{"missing param", map[string]any{"secret": key, "signed": "{param.event}|{body}",
			"signature": map[string]any{"header": "X-Sig"}}, req(body), verifiers.ErrMissing},
		{"missing value with a timestamp", map[string]any{"secret": key, "signed": "{header.T}.{query.id}.{body}",
			"signature": map[string]any{"header": "X-Sig"}, "timestamp": map[string]any{"header": "T"}}, req(body), verifiers.ErrMissing},
		{"malformed existing timestamp", map[string]any{"secret": key, "signed": "{header.T}.{body}",
			"signature": map[string]any{"header": "X-Sig"}, "timestamp": map[string]any{"header": "T"}},
			req(body, "T", "yesterday"), verifiers.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, s := mustSigner(t, "hmac", tt.cfg)
			err := s.Sign(tt.r)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), key) {
				t.Fatalf("error %q contains the secret", err)
			}
			if tt.r.Header.Get("X-Sig") != "" {
				t.Fatal("a failed Sign set the signature header")
			}
			if tt.r.Header.Get("T") != "" && tt.r.Header.Get("T") != "yesterday" {
				t.Fatal("a failed Sign left a timestamp header behind")
			}
		})
	}
}

// TestIPDoesNotSign: an address cannot be produced by signing.
func TestIPDoesNotSign(t *testing.T) {
	if _, ok := mustBuild(t, "ip", map[string]any{"allow": []string{"10.0.0.0/8"}}).(verifiers.Signer); ok {
		t.Fatal("ip implements Signer")
	}
}
