package ingest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/hookrelay/hookrelay/engine/provider"
	"github.com/hookrelay/hookrelay/engine/spool"
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
	// Event is the canonical event (SPEC 4.2) of an accepted request, as
	// the admin API shows a stored one.
	Event spool.Shown `json:"event,omitempty"`
	// Destinations are the destinations its routes chose.
	Destinations []string `json:"destinations,omitempty"`
}

// Try runs req through p as ingest would: path and method, body limit,
// verification and `require` (unless verify is false), decryption, mapping
// and routes.
// received is the time the request is taken to arrive (for timestamp checks).
func Try(ctx context.Context, p *provider.Provider, req *http.Request, body []byte, received time.Time, verify bool) *Trial {
	params, status := Match(p, req)
	switch {
	case status != 0:
		return &Trial{Status: status, Outcome: provider.Rejected, Reason: http.StatusText(status)}
	case p.Disabled != "":
		return &Trial{Status: http.StatusServiceUnavailable, Outcome: provider.Failed, Reason: "provider disabled: " + p.Disabled}
	case int64(len(body)) > p.MaxBody:
		return &Trial{Status: http.StatusRequestEntityTooLarge, Outcome: provider.Rejected, Reason: tooLarge(p)}
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
		t.Event = res.Event.Shown()
	}
	return t
}

// Match routes req against p's paths as the ingest listener does, returning
// the path parameters, or 404 or 405.
func Match(p *provider.Provider, req *http.Request) (params map[string]string, status int) {
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
	case !p.Allows(req.Method):
		return nil, http.StatusMethodNotAllowed
	}
	return params, 0
}

// MaskTrial returns t as `try` and `test` print it: its event masked, its
// reason without the request's sensitive values. body and header are the
// request's as sent.
func MaskTrial(p *provider.Provider, t *Trial, body []byte, header map[string][]string) *Trial {
	if !p.Masks() || t == nil {
		return t
	}
	out := *t
	if t.Event != nil {
		out.Event = t.Event.Clone() // a copy: the caller may compare the real one
		p.MaskEnvelope(out.Event)
	}
	out.Reason = p.MaskText(t.Reason, body, header)
	return &out
}
