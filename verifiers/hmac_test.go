package verifiers_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/hookrelay/hookrelay/verifiers"
)

const (
	secret = "s3cr3t-signing-key"
	body   = `{"id":"evt_1","type":"application.approved"}`
)

func TestHMACGeneric(t *testing.T) {
	good := mac(sha256.New, secret, body)
	raw, _ := hex.DecodeString(good)
	b64 := base64.StdEncoding.EncodeToString(raw)
	sig := map[string]any{"header": "X-Signature"}
	base := map[string]any{"secret": secret, "signature": sig}
	with := func(extra map[string]any) map[string]any {
		m := map[string]any{"secret": secret, "signature": sig}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	unix := strconv.FormatInt(now.Unix(), 10)
	tsCfg := with(map[string]any{
		"signed":    "{header.X-Timestamp}.{body}",
		"timestamp": map[string]any{"header": "X-Timestamp"},
	})
	tsReq := func(ts, b string) *verifiers.Request {
		return req(b, "X-Timestamp", ts, "X-Signature", mac(sha256.New, secret, ts+"."+b))
	}

	tests := []struct {
		name string
		cfg  map[string]any
		req  *verifiers.Request
		want error
	}{
		{"good", base, req(body, "X-Signature", good), nil},
		{"lower-case header name", base, req(body, "x-signature", good), nil},
		{"upper-case hex", base, req(body, "X-Signature", strings.ToUpper(good)), nil},
		{"tampered body", base, req(body+" ", "X-Signature", good), verifiers.ErrMismatch},
		{"empty body", base, req("", "X-Signature", good), verifiers.ErrMismatch},
		{"wrong secret", base, req(body, "X-Signature", mac(sha256.New, "other", body)), verifiers.ErrMismatch},
		{"missing header", base, req(body), verifiers.ErrMissing},
		{"signature in another header", base, req(body, "X-Other", good), verifiers.ErrMissing},
		{"not hex", base, req(body, "X-Signature", "zz"+good[2:]), verifiers.ErrMalformed},
		{"truncated", base, req(body, "X-Signature", good[:40]), verifiers.ErrMismatch},
		{"odd hex", base, req(body, "X-Signature", good[1:]), verifiers.ErrMalformed},

		{"prefix", with(map[string]any{"signature": map[string]any{"header": "X-Signature", "prefix": "sha256="}}),
			req(body, "X-Signature", "sha256="+good), nil},
		{"prefix missing", with(map[string]any{"signature": map[string]any{"header": "X-Signature", "prefix": "sha256="}}),
			req(body, "X-Signature", good), verifiers.ErrMalformed},

		{"base64", with(map[string]any{"signature": map[string]any{"header": "X-Signature", "encoding": "base64"}}),
			req(body, "X-Signature", b64), nil},
		{"base64 unpadded", with(map[string]any{"signature": map[string]any{"header": "X-Signature", "encoding": "base64"}}),
			req(body, "X-Signature", strings.TrimRight(b64, "=")), nil},
		{"base64 given hex", with(map[string]any{"signature": map[string]any{"header": "X-Signature", "encoding": "base64"}}),
			req(body, "X-Signature", good), verifiers.ErrMismatch},
		{"base64 garbage", with(map[string]any{"signature": map[string]any{"header": "X-Signature", "encoding": "base64"}}),
			req(body, "X-Signature", "!!!"), verifiers.ErrMalformed},

		{"sha1", with(map[string]any{"algorithm": "sha1"}), req(body, "X-Signature", mac(sha1.New, secret, body)), nil},
		{"sha1 given sha256", with(map[string]any{"algorithm": "sha1"}), req(body, "X-Signature", good), verifiers.ErrMismatch},
		{"sha512", with(map[string]any{"algorithm": "sha512"}), req(body, "X-Signature", mac(sha512.New, secret, body)), nil},

		{"rotation old", map[string]any{"secrets": []any{"old-key", "new-key"}, "signature": sig},
			req(body, "X-Signature", mac(sha256.New, "old-key", body)), nil},
		{"rotation new", map[string]any{"secrets": []string{"old-key", "new-key"}, "signature": sig},
			req(body, "X-Signature", mac(sha256.New, "new-key", body)), nil},
		{"rotation neither", map[string]any{"secrets": []string{"old-key", "new-key"}, "signature": sig},
			req(body, "X-Signature", mac(sha256.New, "retired-key", body)), verifiers.ErrMismatch},

		{"unix timestamp", tsCfg, tsReq(unix, body), nil},
		{"unix timestamp at tolerance", tsCfg, tsReq(strconv.FormatInt(now.Add(-5*time.Minute).Unix(), 10), body), nil},
		{"stale timestamp", tsCfg, tsReq(strconv.FormatInt(now.Add(-6*time.Minute).Unix(), 10), body), verifiers.ErrStale},
		{"future timestamp", tsCfg, tsReq(strconv.FormatInt(now.Add(6*time.Minute).Unix(), 10), body), verifiers.ErrStale},
		{"missing timestamp", tsCfg, req(body, "X-Signature", mac(sha256.New, secret, unix+"."+body)), verifiers.ErrMissing},
		{"malformed timestamp", tsCfg, tsReq("yesterday", body), verifiers.ErrMalformed},
		{"timestamp swapped after signing", tsCfg,
			req(body, "X-Timestamp", strconv.FormatInt(now.Unix()+1, 10), "X-Signature", mac(sha256.New, secret, unix+"."+body)),
			verifiers.ErrMismatch},
		{"stale and tampered is a mismatch", tsCfg,
			req(body+"x", "X-Timestamp", "1000", "X-Signature", mac(sha256.New, secret, "1000."+body)), verifiers.ErrMismatch},
		{"tolerance 1m", with(map[string]any{
			"signed":    "{header.X-Timestamp}.{body}",
			"timestamp": map[string]any{"header": "X-Timestamp", "tolerance": "1m"},
		}), tsReq(strconv.FormatInt(now.Add(-2*time.Minute).Unix(), 10), body), verifiers.ErrStale},
		{"unix_ms", with(map[string]any{
			"signed":    "{header.X-Timestamp}.{body}",
			"timestamp": map[string]any{"header": "X-Timestamp", "format": "unix_ms"},
		}), tsReq(strconv.FormatInt(now.UnixMilli()-1500, 10), body), nil},
		{"unix_ms given seconds", with(map[string]any{
			"signed":    "{header.X-Timestamp}.{body}",
			"timestamp": map[string]any{"header": "X-Timestamp", "format": "unix_ms"},
		}), tsReq(unix, body), verifiers.ErrStale},
		{"rfc3339", with(map[string]any{
			"signed":    "{header.X-Timestamp}:{body}",
			"timestamp": map[string]any{"header": "X-Timestamp", "format": "rfc3339"},
		}), req(body, "X-Timestamp", "2024-01-15T12:34:56+02:00", "X-Signature",
			mac(sha256.New, secret, "2024-01-15T12:34:56+02:00:"+body)), nil},
		{"rfc3339 given unix", with(map[string]any{
			"signed":    "{header.X-Timestamp}:{body}",
			"timestamp": map[string]any{"header": "X-Timestamp", "format": "rfc3339"},
		}), req(body, "X-Timestamp", unix, "X-Signature", mac(sha256.New, secret, unix+":"+body)), verifiers.ErrMalformed},

		{"header placeholder is case-insensitive", with(map[string]any{"signed": "{header.x-request-id}|{body}"}),
			req(body, "X-Request-ID", "r-1", "X-Signature", mac(sha256.New, secret, "r-1|"+body)), nil},
		{"header placeholder absent", with(map[string]any{"signed": "{header.X-Request-Id}|{body}"}),
			req(body, "X-Signature", mac(sha256.New, secret, "|"+body)), verifiers.ErrMissing},
		{"literal only around body", with(map[string]any{"signed": "v0:{body}:end"}),
			req(body, "X-Signature", mac(sha256.New, secret, "v0:"+body+":end")), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := mustBuild(t, "hmac", tt.cfg)
			checkErr(t, v.Verify(context.Background(), tt.req), tt.want)
		})
	}
}

func TestHMACTemplateQueryAndParam(t *testing.T) {
	v := mustBuild(t, "hmac", map[string]any{
		"secret":    secret,
		"signed":    "{param.event}/{query.id}/{body}",
		"signature": map[string]any{"header": "X-Signature"},
	})
	tests := []struct {
		name  string
		event string
		query string
		sig   string
		want  error
	}{
		{"good", "approved", "42", mac(sha256.New, secret, "approved/42/"+body), nil},
		{"other param", "declined", "42", mac(sha256.New, secret, "approved/42/"+body), verifiers.ErrMismatch},
		{"other query", "approved", "43", mac(sha256.New, secret, "approved/42/"+body), verifiers.ErrMismatch},
		{"missing query", "approved", "", mac(sha256.New, secret, "approved//"+body), verifiers.ErrMissing},
		{"missing param", "", "42", mac(sha256.New, secret, "/42/"+body), verifiers.ErrMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := req(body, "X-Signature", tt.sig)
			if tt.event != "" {
				r.Params["event"] = tt.event
			}
			if tt.query != "" {
				r.Query.Set("id", tt.query)
			}
			checkErr(t, v.Verify(context.Background(), r), tt.want)
		})
	}
}

// TestNordiska is Nordiska's documented scheme: HMAC-SHA256 hex over
// "<X-Card-Onboarding-Timestamp>:<body>" with an RFC 3339 timestamp, plus a
// bearer token, as two verifiers that must both pass. The signature was
// computed outside Go (Python's hmac module).
func TestNordiska(t *testing.T) {
	const (
		body = `{"eventType":"SIGNING_SESSION_CREATED","onboardingId":"ob_7f3a","sequence":1}`
		ts   = "2024-01-15T10:35:00Z"
		sig  = "781d522139cfe47f43d31953532c2b62ede227b88e448403aee61bf9d8af6ebc"
	)
	chain := []verifiers.Verifier{
		mustBuild(t, "hmac", map[string]any{
			"secret":    "nordiska-test-signing-secret",
			"algorithm": "sha256",
			"signed":    "{header.X-Card-Onboarding-Timestamp}:{body}",
			"signature": map[string]any{"header": "X-Card-Onboarding-Signature", "encoding": "hex"},
			"timestamp": map[string]any{"header": "X-Card-Onboarding-Timestamp", "format": "rfc3339", "tolerance": "5m"},
		}),
		mustBuild(t, "bearer", map[string]any{"token": "nordiska-auth-token"}),
	}
	verify := func(r *verifiers.Request) error {
		for _, v := range chain {
			if err := v.Verify(context.Background(), r); err != nil {
				return err
			}
		}
		return nil
	}
	tests := []struct {
		name string
		req  *verifiers.Request
		want error
	}{
		{"documented request", req(body, "X-Card-Onboarding-Signature", sig, "X-Card-Onboarding-Timestamp", ts,
			"Authorization", "Bearer nordiska-auth-token", "Content-Type", "application/json"), nil},
		{"no bearer", req(body, "X-Card-Onboarding-Signature", sig, "X-Card-Onboarding-Timestamp", ts), verifiers.ErrMissing},
		{"wrong bearer", req(body, "X-Card-Onboarding-Signature", sig, "X-Card-Onboarding-Timestamp", ts,
			"Authorization", "Bearer guess"), verifiers.ErrMismatch},
		{"replayed with a new timestamp", req(body, "X-Card-Onboarding-Signature", sig,
			"X-Card-Onboarding-Timestamp", "2024-01-15T10:36:00Z", "Authorization", "Bearer nordiska-auth-token"), verifiers.ErrMismatch},
		{"tampered body", req(strings.Replace(body, "ob_7f3a", "ob_0000", 1), "X-Card-Onboarding-Signature", sig,
			"X-Card-Onboarding-Timestamp", ts, "Authorization", "Bearer nordiska-auth-token"), verifiers.ErrMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkErr(t, verify(tt.req), tt.want) })
	}
	t.Run("replayed an hour later", func(t *testing.T) {
		r := req(body, "X-Card-Onboarding-Signature", sig, "X-Card-Onboarding-Timestamp", ts,
			"Authorization", "Bearer nordiska-auth-token")
		r.Received = now.Add(time.Hour)
		checkErr(t, verify(r), verifiers.ErrStale)
	})
}

func TestHMACStripe(t *testing.T) {
	const whsec = "whsec_test_secret"
	cfg := map[string]any{"secret": whsec, "signature": map[string]any{"format": "stripe"}}
	signed := func(payload, key string, at time.Time) string {
		return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{
			Payload: []byte(payload), Secret: key, Timestamp: at,
		}).Header
	}
	good := signed(body, whsec, now)
	t1 := strconv.FormatInt(now.Unix(), 10)
	v1 := mac(sha256.New, whsec, t1+"."+body)
	tests := []struct {
		name string
		cfg  map[string]any
		req  *verifiers.Request
		want error
	}{
		{"stripe-go signed", cfg, req(body, "Stripe-Signature", good), nil},
		{"two v1, second valid", cfg, req(body, "Stripe-Signature", "t="+t1+",v1="+strings.Repeat("ab", 32)+",v1="+v1), nil},
		{"v0 alongside", cfg, req(body, "Stripe-Signature", "t="+t1+",v0="+v1+",v1="+v1), nil},
		{"v0 only", cfg, req(body, "Stripe-Signature", "t="+t1+",v0="+v1), verifiers.ErrMalformed},
		{"no timestamp", cfg, req(body, "Stripe-Signature", "v1="+v1), verifiers.ErrMalformed},
		{"bad timestamp", cfg, req(body, "Stripe-Signature", "t=soon,v1="+v1), verifiers.ErrMalformed},
		{"missing header", cfg, req(body), verifiers.ErrMissing},
		{"tampered body", cfg, req(body+"\n", "Stripe-Signature", good), verifiers.ErrMismatch},
		{"wrong secret", cfg, req(body, "Stripe-Signature", signed(body, "whsec_other", now)), verifiers.ErrMismatch},
		{"stale", cfg, req(body, "Stripe-Signature", signed(body, whsec, now.Add(-6*time.Minute))), verifiers.ErrStale},
		{"future", cfg, req(body, "Stripe-Signature", signed(body, whsec, now.Add(6*time.Minute))), verifiers.ErrStale},
		{"tolerance 10m", map[string]any{"secret": whsec, "signature": map[string]any{"format": "stripe"},
			"timestamp": map[string]any{"tolerance": "10m"}},
			req(body, "Stripe-Signature", signed(body, whsec, now.Add(-6*time.Minute))), nil},
		{"rotation", map[string]any{"secrets": []string{"whsec_next", whsec}, "signature": map[string]any{"format": "stripe"}},
			req(body, "Stripe-Signature", good), nil},
		// SPEC 3: signature.header may be written with a format.
		{"header named as the default", map[string]any{"secret": whsec, "signature": map[string]any{"header": "Stripe-Signature", "format": "stripe"}},
			req(body, "Stripe-Signature", good), nil},
		{"header named otherwise", map[string]any{"secret": whsec, "signature": map[string]any{"header": "X-Proxy-Stripe-Signature", "format": "stripe"}},
			req(body, "X-Proxy-Stripe-Signature", good), nil},
		{"header named otherwise, default sent", map[string]any{"secret": whsec, "signature": map[string]any{"header": "X-Proxy-Stripe-Signature", "format": "stripe"}},
			req(body, "Stripe-Signature", good), verifiers.ErrMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, mustBuild(t, "hmac", tt.cfg).Verify(context.Background(), tt.req), tt.want)
		})
	}
	t.Run("stripe-go agrees", func(t *testing.T) {
		// Cross-check the vector with Stripe's own verifier.
		if err := webhook.ValidatePayloadWithTolerance([]byte(body), good, whsec, 100*365*24*time.Hour); err != nil {
			t.Fatal(err)
		}
	})
}

func TestHMACStandardWebhooks(t *testing.T) {
	// The test vector of the Standard Webhooks reference libraries.
	const (
		vecSecret  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		vecID      = "msg_p5jXN8AQM9LWM0D4loKWxJek"
		vecTS      = "1614265330"
		vecBody    = `{"test": 2432232314}`
		vecSig     = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
		vecSigOnly = "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	)
	vecAt := time.Unix(1614265330, 0)
	cfg := map[string]any{"secret": vecSecret, "signature": map[string]any{"format": "standard"}}
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(vecSecret, "whsec_"))
	sign := func(id, ts, b string) string {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(id + "." + ts + "." + b))
		return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	}
	std := func(b string, received time.Time, headers ...string) *verifiers.Request {
		r := req(b, headers...)
		r.Received = received
		return r
	}
	nowTS := strconv.FormatInt(now.Unix(), 10)
	tests := []struct {
		name string
		cfg  map[string]any
		req  *verifiers.Request
		want error
	}{
		{"official vector", cfg, std(vecBody, vecAt, "webhook-id", vecID, "webhook-timestamp", vecTS, "webhook-signature", vecSig), nil},
		{"secret without whsec_", map[string]any{"secret": strings.TrimPrefix(vecSecret, "whsec_"), "signature": map[string]any{"format": "standard"}},
			std(vecBody, vecAt, "webhook-id", vecID, "webhook-timestamp", vecTS, "webhook-signature", vecSig), nil},
		{"several signatures", cfg, std(vecBody, vecAt, "webhook-id", vecID, "webhook-timestamp", vecTS,
			"webhook-signature", "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,abc "+vecSig), nil},
		{"computed now", cfg, req(body, "webhook-id", "msg_1", "webhook-timestamp", nowTS,
			"webhook-signature", sign("msg_1", nowTS, body)), nil},
		{"other version only", cfg, std(vecBody, vecAt, "webhook-id", vecID, "webhook-timestamp", vecTS,
			"webhook-signature", "v1a,"+vecSigOnly), verifiers.ErrMalformed},
		{"bare base64", cfg, std(vecBody, vecAt, "webhook-id", vecID, "webhook-timestamp", vecTS,
			"webhook-signature", vecSigOnly), verifiers.ErrMalformed},
		{"other id", cfg, std(vecBody, vecAt, "webhook-id", "msg_other", "webhook-timestamp", vecTS, "webhook-signature", vecSig), verifiers.ErrMismatch},
		{"tampered body", cfg, std(vecBody+" ", vecAt, "webhook-id", vecID, "webhook-timestamp", vecTS, "webhook-signature", vecSig), verifiers.ErrMismatch},
		{"wrong secret", map[string]any{"secret": "whsec_" + base64.StdEncoding.EncodeToString([]byte("another key")),
			"signature": map[string]any{"format": "standard"}},
			std(vecBody, vecAt, "webhook-id", vecID, "webhook-timestamp", vecTS, "webhook-signature", vecSig), verifiers.ErrMismatch},
		{"missing id", cfg, std(vecBody, vecAt, "webhook-timestamp", vecTS, "webhook-signature", vecSig), verifiers.ErrMissing},
		{"missing timestamp", cfg, std(vecBody, vecAt, "webhook-id", vecID, "webhook-signature", vecSig), verifiers.ErrMissing},
		{"missing signature", cfg, std(vecBody, vecAt, "webhook-id", vecID, "webhook-timestamp", vecTS), verifiers.ErrMissing},
		{"malformed timestamp", cfg, std(vecBody, vecAt, "webhook-id", vecID, "webhook-timestamp", "2021-02-25", "webhook-signature", vecSig), verifiers.ErrMalformed},
		{"stale", cfg, std(vecBody, vecAt.Add(5*time.Minute+time.Second), "webhook-id", vecID, "webhook-timestamp", vecTS, "webhook-signature", vecSig), verifiers.ErrStale},
		{"future", cfg, std(vecBody, vecAt.Add(-6*time.Minute), "webhook-id", vecID, "webhook-timestamp", vecTS, "webhook-signature", vecSig), verifiers.ErrStale},

		// Svix sends the same scheme under svix-* names: read when no webhook-* header is there.
		{"svix headers", cfg, std(vecBody, vecAt, "svix-id", vecID, "svix-timestamp", vecTS, "svix-signature", vecSig), nil},
		{"svix rotation", cfg, std(vecBody, vecAt, "svix-id", vecID, "svix-timestamp", vecTS,
			"svix-signature", "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= "+vecSig), nil},
		{"svix stale", cfg, std(vecBody, vecAt.Add(6*time.Minute), "svix-id", vecID, "svix-timestamp", vecTS, "svix-signature", vecSig), verifiers.ErrStale},
		{"svix other id", cfg, std(vecBody, vecAt, "svix-id", "msg_other", "svix-timestamp", vecTS, "svix-signature", vecSig), verifiers.ErrMismatch},
		// Never a mix: a webhook-* header present means the webhook-* family, whole.
		{"mixed families", cfg, std(vecBody, vecAt, "webhook-id", vecID, "svix-timestamp", vecTS, "svix-signature", vecSig), verifiers.ErrMissing},
		{"header names svix", map[string]any{"secret": vecSecret, "signature": map[string]any{"format": "standard", "header": "Svix-Signature"}},
			std(vecBody, vecAt, "svix-id", vecID, "svix-timestamp", vecTS, "svix-signature", vecSig), nil},
		{"header names svix, webhook-* sent", map[string]any{"secret": vecSecret, "signature": map[string]any{"format": "standard", "header": "svix-signature"}},
			std(vecBody, vecAt, "webhook-id", vecID, "webhook-timestamp", vecTS, "webhook-signature", vecSig), verifiers.ErrMissing},
		{"header names webhook, svix-* sent", map[string]any{"secret": vecSecret, "signature": map[string]any{"format": "standard", "header": "WEBHOOK-SIGNATURE"}},
			std(vecBody, vecAt, "svix-id", vecID, "svix-timestamp", vecTS, "svix-signature", vecSig), verifiers.ErrMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, mustBuild(t, "hmac", tt.cfg).Verify(context.Background(), tt.req), tt.want)
		})
	}
}

func TestHMACGitHub(t *testing.T) {
	// The example from GitHub's "Validating webhook deliveries".
	const (
		ghSecret = "It's a Secret to Everybody"
		ghBody   = "Hello, World!"
		ghSig    = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	)
	v := mustBuild(t, "hmac", map[string]any{"secret": ghSecret, "signature": map[string]any{"format": "github"}})
	tests := []struct {
		name string
		req  *verifiers.Request
		want error
	}{
		{"documented example", req(ghBody, "X-Hub-Signature-256", ghSig), nil},
		{"no prefix", req(ghBody, "X-Hub-Signature-256", strings.TrimPrefix(ghSig, "sha256=")), verifiers.ErrMalformed},
		{"sha1 header only", req(ghBody, "X-Hub-Signature", "sha1="+mac(sha1.New, ghSecret, ghBody)), verifiers.ErrMissing},
		{"tampered", req(ghBody+"!", "X-Hub-Signature-256", ghSig), verifiers.ErrMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkErr(t, v.Verify(context.Background(), tt.req), tt.want) })
	}
	t.Run("header named", func(t *testing.T) {
		v := mustBuild(t, "hmac", map[string]any{"secret": ghSecret, "signature": map[string]any{"format": "github", "header": "X-Gitea-Signature-256"}})
		checkErr(t, v.Verify(context.Background(), req(ghBody, "X-Gitea-Signature-256", ghSig)), nil)
		checkErr(t, v.Verify(context.Background(), req(ghBody, "X-Hub-Signature-256", ghSig)), verifiers.ErrMissing)
	})
}

func TestHMACConfigErrors(t *testing.T) {
	sig := map[string]any{"header": "X-Signature"}
	tests := []struct {
		name  string
		cfg   map[string]any
		field string
	}{
		{"missing secret", map[string]any{"signature": sig}, "secret"},
		{"empty secrets", map[string]any{"secrets": []string{}, "signature": sig}, "secret"},
		{"secret and secrets", map[string]any{"secret": "a", "secrets": []string{"b"}, "signature": sig}, "secret"},
		{"empty entry in secrets", map[string]any{"secrets": []string{"a", ""}, "signature": sig}, "secrets[1]"},
		{"unknown algorithm", map[string]any{"secret": "a", "algorithm": "md5", "signature": sig}, "algorithm"},
		{"unknown placeholder", map[string]any{"secret": "a", "signed": "{cookie.x}{body}", "signature": sig}, "signed"},
		{"placeholder without name", map[string]any{"secret": "a", "signed": "{header.}{body}", "signature": sig}, "signed"},
		{"unclosed placeholder", map[string]any{"secret": "a", "signed": "{body", "signature": sig}, "signed"},
		{"template without body", map[string]any{"secret": "a", "signed": "{header.X-Timestamp}", "signature": sig}, "signed"},
		{"missing signature header", map[string]any{"secret": "a"}, "signature.header"},
		{"unknown encoding", map[string]any{"secret": "a", "signature": map[string]any{"header": "X", "encoding": "base32"}}, "signature.encoding"},
		{"unknown format", map[string]any{"secret": "a", "signature": map[string]any{"format": "slack"}}, "signature.format"},
		{"timestamp without header", map[string]any{"secret": "a", "signature": sig, "timestamp": map[string]any{"format": "unix"}}, "timestamp.header"},
		{"unknown timestamp format", map[string]any{"secret": "a", "signature": sig, "timestamp": map[string]any{"header": "T", "format": "iso"}}, "timestamp.format"},
		{"negative tolerance", map[string]any{"secret": "a", "signature": sig, "timestamp": map[string]any{"header": "T", "tolerance": "-1m"}}, "timestamp.tolerance"},
		{"stripe with signed", map[string]any{"secret": "a", "signed": "{body}", "signature": map[string]any{"format": "stripe"}}, "signed"},
		{"stripe with encoding", map[string]any{"secret": "a", "signature": map[string]any{"format": "stripe", "encoding": "hex"}}, "signature.encoding"},
		{"standard with another header", map[string]any{"secret": "whsec_AAAA", "signature": map[string]any{"format": "standard", "header": "X-Signature"}}, "signature.header"},
		{"standard with a svix id header", map[string]any{"secret": "whsec_AAAA", "signature": map[string]any{"format": "standard", "header": "svix-id"}}, "signature.header"},
		{"stripe with timestamp header", map[string]any{"secret": "a", "signature": map[string]any{"format": "stripe"},
			"timestamp": map[string]any{"header": "X"}}, "timestamp.header"},
		{"stripe with sha1", map[string]any{"secret": "a", "algorithm": "sha1", "signature": map[string]any{"format": "stripe"}}, "algorithm"},
		{"github with timestamp", map[string]any{"secret": "a", "signature": map[string]any{"format": "github"},
			"timestamp": map[string]any{"tolerance": "1m"}}, "timestamp"},
		{"standard with non-base64 secret", map[string]any{"secret": "whsec_not base64!", "signature": map[string]any{"format": "standard"}}, "secret"},
		{"standard rotation with non-base64 secret", map[string]any{"secrets": []string{"whsec_AAAA", "whsec_%%"},
			"signature": map[string]any{"format": "standard"}}, "secrets[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build("hmac", tt.cfg)
			wantFieldError(t, err, tt.field)
			if strings.Contains(err.Error(), "not base64!") || strings.Contains(err.Error(), "%%") {
				t.Errorf("config error quotes the secret: %v", err)
			}
		})
	}
	t.Run("unknown key", func(t *testing.T) {
		_, err := build("hmac", map[string]any{"secret": "a", "signature": sig, "sigend": "{body}"})
		if err == nil || !strings.Contains(err.Error(), "sigend") {
			t.Fatalf("got %v, want an error naming the unknown key", err)
		}
	})
}

// TestNoSecretInErrors checks that no rejection names a secret or the MAC the
// verifier expected: either would let a sender forge the next request.
func TestNoSecretInErrors(t *testing.T) {
	const key = "leak-canary-secret"
	expected := func(h func() []byte) []string {
		raw := h()
		return []string{hex.EncodeToString(raw), strings.ToUpper(hex.EncodeToString(raw)),
			base64.StdEncoding.EncodeToString(raw), base64.RawStdEncoding.EncodeToString(raw)}
	}
	sum := func(k []byte, msg string) func() []byte {
		return func() []byte {
			m := hmac.New(sha256.New, k)
			m.Write([]byte(msg))
			return m.Sum(nil)
		}
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	stdKey := []byte(key)
	stdSecret := "whsec_" + base64.StdEncoding.EncodeToString(stdKey)

	cases := []struct {
		name    string
		kind    string
		cfg     map[string]any
		req     *verifiers.Request
		secrets []string
	}{
		{"hmac hex", "hmac", map[string]any{"secret": key, "signature": map[string]any{"header": "X-Sig"}},
			req(body, "X-Sig", mac(sha256.New, "wrong", body)), append([]string{key}, expected(sum([]byte(key), body))...)},
		{"hmac base64 prefixed", "hmac", map[string]any{"secret": key, "signature": map[string]any{"header": "X-Sig", "encoding": "base64", "prefix": "v1="}},
			req(body, "X-Sig", "v1=AAAA"), append([]string{key}, expected(sum([]byte(key), body))...)},
		{"hmac stale", "hmac", map[string]any{"secret": key, "signed": "{header.T}.{body}", "signature": map[string]any{"header": "X-Sig"},
			"timestamp": map[string]any{"header": "T"}},
			req(body, "T", "1000", "X-Sig", mac(sha256.New, key, "1000."+body)), append([]string{key}, expected(sum([]byte(key), "1000."+body))...)},
		{"stripe", "hmac", map[string]any{"secret": key, "signature": map[string]any{"format": "stripe"}},
			req(body, "Stripe-Signature", "t="+ts+",v1=00"), append([]string{key}, expected(sum([]byte(key), ts+"."+body))...)},
		{"standard", "hmac", map[string]any{"secret": stdSecret, "signature": map[string]any{"format": "standard"}},
			req(body, "webhook-id", "m", "webhook-timestamp", ts, "webhook-signature", "v1,AAAA"),
			append([]string{key, stdSecret}, expected(sum(stdKey, "m."+ts+"."+body))...)},
		{"token", "token", map[string]any{"token": key, "prefix": "token "}, req(body, "Authorization", "token nope"), []string{key}},
		{"bearer", "bearer", map[string]any{"tokens": []string{key, key + "2"}}, req(body, "Authorization", "Bearer nope"), []string{key}},
		{"basic", "basic", map[string]any{"users": map[string]any{"broker": key}},
			req(body, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("broker:nope"))), []string{key}},
		{"apikey", "apikey", map[string]any{"key": key}, req(body, "API-KEY", "nope"), []string{key}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			err := mustBuild(t, tt.kind, tt.cfg).Verify(context.Background(), tt.req)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, s := range tt.secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q contains secret material %q", err, s)
				}
			}
			if !errors.Is(err, verifiers.ErrMismatch) && !errors.Is(err, verifiers.ErrStale) && !errors.Is(err, verifiers.ErrMalformed) {
				t.Errorf("unexpected reason: %v", err)
			}
		})
	}
}
