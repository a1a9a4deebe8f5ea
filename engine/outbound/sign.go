package outbound

import (
	"net/http"
	"strings"
	"time"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/verifiers"
)

// standardSigner adds a destination's Standard Webhooks headers (sign:):
// webhook-id, webhook-timestamp and webhook-signature, an HMAC-SHA256 over
// "id.timestamp.body" written "v1,<base64>". The hmac verifier of format
// standard signs them, so what the relay sends and what it accepts are one
// implementation.
type standardSigner struct{ hmac verifiers.Signer }

func newStandardSigner(secret string) (*standardSigner, error) {
	if !strings.HasPrefix(secret, "whsec_") {
		return nil, config.FieldErr("sign.secret", `must be "whsec_" followed by base64`)
	}
	v, err := verifiers.NewHMAC(verifiers.HMACConfig{
		Secret:    secret,
		Signature: verifiers.SignatureConfig{Format: "standard"},
	})
	if err != nil {
		// Not the verifier's words: they would name its fields, not sign's.
		return nil, config.FieldErr("sign.secret", `must be "whsec_" followed by base64`)
	}
	return &standardSigner{v}, nil
}

// sign sets the headers on h for the message id and body, at now.
func (s *standardSigner) sign(h http.Header, id string, now time.Time, body []byte) error {
	h.Set("webhook-id", id)
	return s.hmac.Sign(&verifiers.Request{Header: h, Body: body, Received: now})
}

// WeakSignKey reports whether the sign secret's key is shorter than
// verifiers.MinHMACKey: it works, but is guessable offline from any one
// signed request.
func (e *Endpoint) WeakSignKey() bool {
	if e.signer == nil {
		return false
	}
	w, ok := e.signer.hmac.(verifiers.Warner)
	return ok && len(w.Warnings()) > 0
}
