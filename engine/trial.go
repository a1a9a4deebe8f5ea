package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/hookrelay/hookrelay/engine/provider"
	"github.com/hookrelay/hookrelay/verifiers"
)

// Trial is what ingest would do with one request, found without storing or
// sending anything: `hookrelay try` and `hookrelay test` print and compare it.
type Trial struct {
	// Status is the HTTP status ingest would answer.
	Status int `json:"status"`
	// Outcome is what ingest would make of it; it prints as accepted,
	// rejected, quarantined or error (unavailable keys are an error, 503,
	// as ingest answers them).
	Outcome provider.Outcome `json:"outcome"`
	// Reason says why a request was rejected or quarantined.
	Reason string `json:"reason,omitempty"`
	// Event is the canonical event (SPEC 4.2) of an accepted request.
	Event map[string]any `json:"event,omitempty"`
	// Destinations are the destinations its routes chose.
	Destinations []string `json:"destinations,omitempty"`
}

// Provider returns the loaded provider called name, or nil.
func (c *Config) Provider(name string) *Provider {
	for _, p := range c.Providers {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Try runs req through p as ingest would: path and method, body limit,
// verification and `require` (unless verify is false), decryption, mapping
// and routes.
// received is the time the request is taken to arrive (for timestamp checks).
func (p *Provider) Try(ctx context.Context, req *http.Request, body []byte, received time.Time, verify bool) *Trial {
	params, status := p.match(req)
	switch {
	case status != 0:
		return &Trial{Status: status, Outcome: provider.Rejected, Reason: http.StatusText(status)}
	case p.Disabled != "":
		return &Trial{Status: http.StatusServiceUnavailable, Outcome: provider.Failed, Reason: "provider disabled: " + p.Disabled}
	case int64(len(body)) > p.maxBody:
		return &Trial{Status: http.StatusRequestEntityTooLarge, Outcome: provider.Rejected, Reason: fmt.Sprintf("body larger than %d bytes", p.maxBody)}
	}
	vr := &verifiers.Request{
		Method: req.Method, Path: req.URL.Path, Header: req.Header, Query: req.URL.Query(),
		Params: params, Body: body, RemoteAddr: req.RemoteAddr, Received: received,
	}
	if verify {
		p.FetchKeys(ctx, vr)
	}
	res, _ := p.Process(ctx, vr, verify)
	t := &Trial{Status: res.Status, Outcome: res.Outcome, Reason: res.Reason()}
	if res.Event != nil {
		t.Destinations = res.Event.Destinations
		_ = json.Unmarshal(res.Event.Envelope, &t.Event)
	}
	return t
}

// match routes req against p's paths as the ingest listener does, returning
// the path parameters, or 404 or 405.
func (p *Provider) match(req *http.Request) (params map[string]string, status int) {
	mux := http.NewServeMux()
	for _, path := range p.Paths {
		_ = handle(mux, path, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			params = pathParams(r)
			status = http.StatusOK
		}))
	}
	if isCleanPath(req.URL.Path) { // as the listener: an unclean path is no provider's
		mux.ServeHTTP(httptest.NewRecorder(), req)
	}
	switch {
	case status == 0:
		return nil, http.StatusNotFound
	case !p.allows(req.Method):
		return nil, http.StatusMethodNotAllowed
	}
	return params, 0
}

func (p *Provider) allows(method string) bool {
	for _, m := range p.methods {
		if m == method {
			return true
		}
	}
	return false
}

// Sign adds to req what p's verifiers check (SPEC 1, `hookrelay sign`), in
// their order. A jws verifier signs only with jwsKey, a private key (PEM or
// JWK); ip checks cannot be signed and are skipped.
func (p *Provider) Sign(req *verifiers.Request, jwsKey []byte) error {
	if p.Disabled != "" {
		return fmt.Errorf("provider %s is disabled: %s", p.Name, p.Disabled)
	}
	for i, v := range p.Verifiers {
		switch s := v.(type) {
		case interface {
			SignWithKey(*verifiers.Request, []byte, string) error
		}:
			if jwsKey == nil {
				return fmt.Errorf("verify[%d]: a jws verifier signs only with a private key (--key)", i)
			}
			if err := s.SignWithKey(req, jwsKey, ""); err != nil {
				return fmt.Errorf("verify[%d]: %w", i, err)
			}
		case verifiers.Signer:
			if err := s.Sign(req); err != nil {
				return fmt.Errorf("verify[%d]: %w", i, err)
			}
		}
	}
	return nil
}

// Encrypt encrypts a plaintext body as the lender would for a provider with
// `decrypt:` (`hookrelay send`); without one the body is returned as is.
func (p *Provider) Encrypt(plaintext []byte) ([]byte, error) {
	if p.Decrypt == nil {
		return plaintext, nil
	}
	if p.Disabled != "" {
		return nil, fmt.Errorf("provider %s is disabled: %s", p.Name, p.Disabled)
	}
	return p.Decrypt.Encrypt(plaintext)
}
