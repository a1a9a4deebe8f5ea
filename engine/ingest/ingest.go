// Package ingest is the HTTP edge, the first step of the flow: it routes a
// lender's request to its provider's path, reads the body within max_body,
// sheds load past max_inflight, runs the provider's pipeline
// (engine/provider) and answers from its Result: the event is spooled
// (engine/spool) and the lender answered as the provider's respond: says, a
// refusal is answered and kept in the rejection log, an unmappable request
// is quarantined. `hookrelay try` and `test` run the same steps without
// storing anything (Try).
//
// It may import engine/provider, engine/spool, engine/internal/*,
// verifiers, internal/*, ulid and the standard library; never engine, which
// wires it to the configuration in force, the metrics and the pollers
// through Options.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/internal/httpjson"
	"github.com/hookrelay/hookrelay/engine/provider"
	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/verifiers"
)

// Options are what the edge needs from the relay around it.
type Options struct {
	// Spool stores accepted events and quarantined requests.
	Spool spool.Store
	// Log gets a line per request (info) and per failure.
	Log *slog.Logger
	// Rejections keeps the refused requests for the admin API.
	Rejections *Rejections
	// Observe counts one request's outcome and duration (metrics); Shed
	// one answered 503 because max_inflight was reached.
	Observe func(provider, outcome string, d time.Duration)
	Shed    func(provider string)
	// Admit takes one of max_inflight places, or reports that there is
	// none; Release gives it back.
	Admit   func() bool
	Release func()
	// Track makes an accepted event's key known to its provider's poller
	// (it is called for every accepted event and decides; nil: none is).
	Track func(p *provider.Provider, ev *spool.Event)
}

// Edge serves the lenders: one handler per provider path.
type Edge struct{ o Options }

// New returns the edge wired as o says.
func New(o Options) *Edge { return &Edge{o: o} }

// Mux routes every path of providers to its handler; anything else is 404.
func (r *Edge) Mux(providers []*provider.Provider) (http.Handler, error) {
	mux := http.NewServeMux()
	for _, p := range providers {
		for _, path := range p.Paths {
			if err := handle(mux, path, r.ingest(p)); err != nil {
				return nil, fmt.Errorf("%s: paths: %w", p.File, err)
			}
		}
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		httpjson.Error(w, http.StatusNotFound, "no provider at this path")
	})
	// ServeMux answers a path that is not clean (//, /./, /../, also
	// percent-encoded) with a 307 to its clean form, which keeps the method
	// and body and may be another provider's path. A webhook URL is exact:
	// such a path is no provider's.
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !isCleanPath(req.URL.Path) {
			httpjson.Error(w, http.StatusNotFound, "no provider at this path")
			return
		}
		mux.ServeHTTP(w, req)
	}), nil
}

// isCleanPath reports whether p is what ServeMux would not redirect: rooted,
// without empty, "." or ".." segments (a trailing slash is allowed).
func isCleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	clean := path.Clean(p)
	if p[len(p)-1] == '/' && clean != "/" {
		clean += "/"
	}
	return clean == p
}

// handle registers a pattern, turning ServeMux's panic on conflicting
// patterns into an error.
func handle(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// ingest is one provider's handler: SPEC 5.1, steps 1 to 5.
func (r *Edge) ingest(p *provider.Provider) http.HandlerFunc {
	allow := strings.Join(p.Methods, ", ")
	return func(w http.ResponseWriter, req *http.Request) {
		start := time.Now()
		outcome := r.ingestOne(w, req, p, allow, start)
		r.o.Observe(p.Name, outcome.String(), time.Since(start))
	}
}

func (r *Edge) ingestOne(w http.ResponseWriter, req *http.Request, p *provider.Provider, allow string, start time.Time) provider.Outcome {
	if !p.Allows(req.Method) {
		w.Header().Set("Allow", allow)
		httpjson.Error(w, http.StatusMethodNotAllowed, "method not allowed")
		return provider.Rejected
	}
	if p.Disabled != "" {
		w.Header().Set("Retry-After", "60")
		httpjson.Error(w, http.StatusServiceUnavailable, "provider disabled: its configuration is incomplete")
		return provider.Failed
	}
	if req.ContentLength > p.MaxBody {
		httpjson.Error(w, http.StatusRequestEntityTooLarge, tooLarge(p))
		return provider.Rejected
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, p.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			httpjson.Error(w, http.StatusRequestEntityTooLarge, tooLarge(p))
			return provider.Rejected
		}
		httpjson.Error(w, http.StatusBadRequest, "cannot read body")
		return provider.Failed
	}

	vr := &verifiers.Request{
		Method: req.Method, Path: req.URL.Path, Header: req.Header, Query: req.URL.Query(),
		Params: pathParams(req), Body: body, RemoteAddr: req.RemoteAddr, Received: start,
	}
	p.FetchKeys(req.Context(), vr)
	// Shed once the body is in: reading is cheap and bounded by the server's
	// timeouts; verifying, mapping and the spool's queue are not.
	if !r.o.Admit() {
		w.Header().Set("Retry-After", "1")
		httpjson.Error(w, http.StatusServiceUnavailable, "overloaded, retry later")
		r.o.Shed(p.Name)
		return provider.Failed
	}
	defer r.o.Release()
	res, v := p.Process(req.Context(), vr, true)
	switch res.Outcome {
	case provider.Rejected, provider.Unavailable:
		return r.refuse(w, p, vr, &res)
	case provider.Quarantined:
		return r.quarantine(w, p, v, res.Err)
	}
	ev := res.Event
	dupOf, err := r.o.Spool.Append(req.Context(), ev, p.Dedup)
	if err != nil && req.Context().Err() != nil {
		// The lender hung up before the event was stored: nothing failed
		// here, and it will send the request again.
		r.o.Log.Info("ingest abandoned: the client closed the connection", "provider", p.Name, "key", ev.Key)
		return provider.Failed
	}
	if err != nil {
		r.o.Log.Error("spool append failed", "provider", p.Name, "error", err)
		w.Header().Set("Retry-After", "5")
		httpjson.Error(w, http.StatusServiceUnavailable, "cannot store the event now")
		return provider.Failed
	}
	outcome := provider.Accepted
	if dupOf != "" {
		outcome = provider.Duplicate
		ev.ID = dupOf
	}
	r.trackPollKey(p, ev)
	// Enabled first: building the arguments (boxing each, joining the
	// message) costs allocations even when the level is off.
	if r.o.Log.Enabled(context.Background(), slog.LevelInfo) {
		msg := "ingest accepted"
		if outcome == provider.Duplicate {
			msg = "ingest duplicate"
		}
		// Typed attributes: the access log's line formats without boxing.
		r.o.Log.LogAttrs(context.Background(), slog.LevelInfo, msg, slog.String("provider", p.Name), slog.String("event_id", ev.ID),
			slog.String("key", ev.Key), slog.String("type", ev.Type), slog.Any("destinations", ev.Destinations))
	}
	p.Respond(w)
	return outcome
}

// refuse answers a request that failed verification (or `require`) and
// records the rejection.
func (r *Edge) refuse(w http.ResponseWriter, p *provider.Provider, vr *verifiers.Request, res *provider.Result) provider.Outcome {
	reason := res.Reason()
	// Masked once, for both the rejection log and the log line: finding the
	// sensitive values decodes the body.
	masked := p.MaskRefused(reason, vr.Body, vr.Header)
	r.o.Rejections.add(p, vr, masked)
	r.o.Log.Info("ingest rejected", "provider", p.Name, "path", vr.Path, "reason", masked)
	if res.Outcome == provider.Unavailable {
		// Not the sender's fault: ask it to come back rather than count a
		// failure. Why the keys cannot be had (the JWKS fetch's error) is
		// for the operator's log and rejection log, not for the sender.
		w.Header().Set("Retry-After", "30")
		httpjson.Error(w, res.Status, verifiers.ErrUnavailable.Error())
		return res.Outcome
	}
	httpjson.Error(w, res.Status, reason)
	return res.Outcome
}

// tooLarge is why a body over max_body is refused, here and in Try.
func tooLarge(p *provider.Provider) string {
	return "body larger than " + strconv.FormatInt(p.MaxBody, 10) + " bytes"
}

// pathParams reads the {param} segments of the matched pattern.
func pathParams(req *http.Request) map[string]string {
	if !strings.Contains(req.Pattern, "{") {
		return nil // most patterns: no need to split them
	}
	var params map[string]string
	for _, seg := range strings.Split(req.Pattern, "/") {
		if name, ok := strings.CutPrefix(seg, "{"); ok {
			name = strings.TrimSuffix(strings.TrimSuffix(name, "}"), "...")
			if params == nil {
				params = map[string]string{}
			}
			params[name] = req.PathValue(name)
		}
	}
	return params
}

// quarantine keeps a verified request that our configuration cannot map,
// and answers the lender with success: the request is not lost, and sending
// it again would not help until the configuration is fixed.
func (r *Edge) quarantine(w http.ResponseWriter, p *provider.Provider, v *provider.Verified, cause error) provider.Outcome {
	vr := v.Req
	header, query := p.MaskRequest(vr.Header, vr.Query)
	q := &spool.Quarantined{
		ID: ulid.Make().String(), Provider: p.Name, Key: provider.KeyOf(cause), Reason: cause.Error(), ReceivedAt: vr.Received.UTC(),
		Method: vr.Method, Path: vr.Path, Header: header, Query: query, Params: vr.Params,
		Body: v.Body, JWS: v.JWS, JWSSigned: v.Signed, RemoteAddr: vr.RemoteAddr,
	}
	if err := r.o.Spool.Quarantine(context.Background(), q); err != nil {
		r.o.Log.Error("spool quarantine failed", "provider", p.Name, "error", err)
		w.Header().Set("Retry-After", "5")
		httpjson.Error(w, http.StatusServiceUnavailable, "cannot store the request now")
		return provider.Failed
	}
	r.o.Log.Warn("ingest quarantined", "provider", p.Name, "quarantine_id", q.ID, "reason", p.MaskVerified(q.Reason, v))
	p.Respond(w)
	return provider.Quarantined
}

// trackPollKey hands an accepted event to its provider's poller (Options.Track).
func (r *Edge) trackPollKey(p *provider.Provider, ev *spool.Event) {
	if r.o.Track != nil {
		r.o.Track(p, ev)
	}
}
