package verifiers_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"strconv"
	"testing"

	"github.com/hookrelay/hookrelay/verifiers"
)

// reason fails unless err is nil or wraps one of the rejection sentinels.
func reason(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("rejection without a known reason: %v", err)
}

// FuzzHMACVerify feeds untrusted headers and bodies to each hmac scheme.
func FuzzHMACVerify(f *testing.F) {
	ts := strconv.FormatInt(now.Unix(), 10)
	f.Add([]byte(body), mac(sha256.New, secret, ts+"."+body), ts, "t="+ts+",v1="+mac(sha256.New, secret, ts+"."+body), "v1,AAAA v1,")
	f.Add([]byte{}, "", "", "", "")
	f.Add([]byte("\x00\xff"), "sha256=zz", "-9223372036854775808", "t=,v1=,v0=x,,=", "v1 v1, ,v1")
	f.Add([]byte("x"), "00", "99999999999999999999", "t=1,t=2,v1=0", "v1,====")

	vs := []verifiers.Verifier{
		mustBuild(f, "hmac", map[string]any{
			"secret": secret, "signed": "{header.X-Timestamp}.{body}",
			"signature": map[string]any{"header": "X-Signature"},
			"timestamp": map[string]any{"header": "X-Timestamp"},
		}),
		mustBuild(f, "hmac", map[string]any{
			"secrets": []string{secret, "other"}, "signed": "{header.X-Timestamp}:{body}",
			"signature": map[string]any{"header": "X-Signature", "encoding": "base64", "prefix": "v1="},
			"timestamp": map[string]any{"header": "X-Timestamp", "format": "rfc3339"},
		}),
		mustBuild(f, "hmac", map[string]any{"secret": secret, "signature": map[string]any{"format": "stripe"}}),
		mustBuild(f, "hmac", map[string]any{"secret": "whsec_c2VjcmV0", "signature": map[string]any{"format": "standard"}}),
		mustBuild(f, "hmac", map[string]any{"secret": secret, "signature": map[string]any{"format": "github"}}),
	}
	f.Fuzz(func(t *testing.T, b []byte, sig, ts, stripe, std string) {
		r := req(string(b), "X-Signature", sig, "X-Timestamp", ts, "X-Hub-Signature-256", sig,
			"Stripe-Signature", stripe, "Webhook-Id", ts, "Webhook-Timestamp", ts, "Webhook-Signature", std)
		for _, v := range vs {
			reason(t, v.Verify(context.Background(), r))
		}
	})
}

// FuzzSignedTemplate parses arbitrary signed templates: each either is a
// config error for "signed" or builds a verifier that runs without panicking.
func FuzzSignedTemplate(f *testing.F) {
	f.Add("{body}", "v", "q", "p")
	f.Add("{header.X-Timestamp}:{body}", "2024-01-15T10:35:00Z", "", "")
	f.Add("{param.event}/{query.id}/{body}", "", "42", "approved")
	f.Add("{", "", "", "")
	f.Add("}{body}{{header.a}}", "", "", "")
	f.Add("{header.}{query.}{body}{param.x.y}", "", "", "")
	f.Fuzz(func(t *testing.T, tmpl, header, query, param string) {
		v, err := build("hmac", map[string]any{
			"secret": secret, "signed": tmpl, "signature": map[string]any{"header": "X-Signature"},
		})
		if err != nil {
			if tmpl == "" {
				t.Fatalf("empty template (default {body}) rejected: %v", err)
			}
			wantFieldError(t, err, "signed")
			return
		}
		r := req(body, "X-Signature", "00", "X-Timestamp", header, "X-A", header)
		r.Query.Set("id", query)
		r.Params["event"] = param
		reason(t, v.Verify(context.Background(), r))
	})
}
