// Package verifiers authenticates inbound webhook requests. Each kind of check
// (hmac, token, basic, ...) lives in its own file and registers itself with the
// default Registry; the engine builds verifiers from provider files by kind.
// It is the first check of the provider step of the flow (engine/provider
// runs a provider's verifiers before anything else reads the request).
//
// It may import internal/ packages (httpout for JWKS fetches, jsonfast,
// redact), its JOSE library and the standard library; never engine/...,
// which build on it.
package verifiers

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"
)

// Request is one inbound webhook as received. Verifiers must not modify its
// exported fields.
type Request struct {
	Method string
	Path   string
	Header http.Header
	Query  url.Values
	// Params holds the values of the route's {param} segments.
	Params map[string]string
	// Body is the raw body, exactly as received.
	Body []byte
	// RemoteAddr is the peer's "host:port" as net/http reports it.
	RemoteAddr string
	// Received is when the request arrived; timestamp tolerances are
	// measured from it so that tests can fix the clock.
	Received time.Time

	// decoded is Body as a jws verifier's FetchKeys decoded it to read the
	// kid, for a VerifyPayload to take instead of decoding it again.
	decoded *decodedBody
}

// decodedBody is a request body decoded by jsonfast.DecodeNumbers.
type decodedBody struct {
	src      []byte // the Body decoded: a body replaced since is decoded anew
	v        any
	repeated bool
}

// takeDecoded returns the body decoded by FetchKeys, once: the taker may
// change it. ok is false when there is none for the current Body.
func (r *Request) takeDecoded() (v any, repeated, ok bool) {
	d := r.decoded
	r.decoded = nil
	if d == nil || len(d.src) != len(r.Body) || len(d.src) == 0 || &d.src[0] != &r.Body[0] {
		return nil, false, false
	}
	return d.v, d.repeated, true
}

// Verifier authenticates one inbound request. It returns nil when the request
// passes, or an error whose text is the rejection reason. The reason is shown to
// the sender and operators, so it must never contain a secret or an expected MAC.
type Verifier interface {
	Verify(ctx context.Context, req *Request) error
}

// KeyFetcher is a Verifier whose keys may have to be fetched over the
// network (jws with jwks_url). Left alone, its Verify fetches what it lacks
// and waits for the fetch. A caller that verifies inside a shared admission
// slot calls FetchOutside once, before the verifier is used, and FetchKeys
// for each request before it takes the slot: a slow key server then holds
// requests outside the slot, a few per verifier, and never a shared place.
type KeyFetcher interface {
	Verifier
	// FetchOutside makes Verify use the keys at hand and never fetch or wait
	// for a fetch: a kid they lack is refused, and before any key set was
	// had the request is ErrUnavailable.
	FetchOutside()
	// FetchKeys fetches what req needs when the keys are missing, stale, or
	// lack its kid (within the verifier's limits on how often it fetches),
	// waiting for the fetch. Only a few requests per verifier wait at once
	// (JWKSMaxWaiting): the others return at once. It reports nothing:
	// Verify says what is wrong with the request.
	FetchKeys(ctx context.Context, req *Request)
}

// Decoder decodes a verifier's configuration block (without its `kind`) into
// out, strictly: unknown fields are errors. The engine supplies it, so that
// errors carry the file and line of the provider file.
type Decoder func(out any) error

// Factory builds a verifier from its configuration block.
type Factory func(decode Decoder) (Verifier, error)

// Build makes a Factory of a constructor that takes its kind's decoded
// configuration struct: every kind registers as Register("kind", Build(NewKind)).
func Build[C any, V Verifier](newV func(C) (V, error)) Factory {
	return func(decode Decoder) (Verifier, error) {
		var c C
		if err := decode(&c); err != nil {
			return nil, err
		}
		v, err := newV(c)
		if err != nil {
			return nil, err // not a typed nil inside the interface
		}
		return v, nil
	}
}

// Registry maps verifier kinds to factories. The zero value is not usable;
// call NewRegistry. Default holds the kinds of this package.
type Registry struct {
	mu        sync.RWMutex
	factories map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{factories: map[string]Factory{}} }

// Default is the registry the built-in kinds register with.
var Default = NewRegistry()

// Register adds a kind. Registering a kind twice is a programming error and panics.
func (r *Registry) Register(kind string, f Factory) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.factories[kind]; dup {
		panic("verifiers: kind registered twice: " + kind)
	}
	r.factories[kind] = f
}

// New builds a verifier of the given kind.
func (r *Registry) New(kind string, decode Decoder) (Verifier, error) {
	r.mu.RLock()
	f, ok := r.factories[kind]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %v)", ErrUnknownKind, kind, r.Kinds())
	}
	return f(decode)
}

// Kinds lists the registered kinds, sorted.
func (r *Registry) Kinds() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	kinds := make([]string, 0, len(r.factories))
	for k := range r.factories {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return kinds
}

// Register adds a kind to the Default registry.
func Register(kind string, f Factory) { Default.Register(kind, f) }

// PathResolver is a verifier configuration that names files. The engine
// calls ResolvePaths with the absolute directory of the provider file once
// the block is decoded, before the verifier is built, so that a relative
// path is relative to that file and never to the process's working
// directory (a relay started by systemd runs in /).
type PathResolver interface {
	ResolvePaths(dir string)
}

// ConfigError is a configuration problem in one field of a verifier block.
// Field is the dotted path inside the block ("signature.header"), which the
// engine turns into a file and line.
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Msg }

// FieldError returns a *ConfigError for field.
func FieldError(field, format string, args ...any) error {
	return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Warner is a Verifier whose configuration loads but is weak (a short key).
// The engine reports each warning, with its file and line, in `check` and at
// start. Like errors, warnings name fields, never secret values.
type Warner interface {
	Warnings() []*ConfigError
}

// PayloadVerifier is a Verifier that also yields the signed payload it
// verified (a JWS's). The engine exposes the parsed payload to expressions as
// `jws` and, when Replace is set, uses it as the body from then on.
type PayloadVerifier interface {
	Verifier
	VerifyPayload(ctx context.Context, req *Request) (*Payload, error)
}

// Payload is what a PayloadVerifier verified.
type Payload struct {
	// Data is the signed payload, exactly as signed.
	Data []byte
	// Replace asks the engine to use Data as the request body.
	Replace bool
	// Signed is what the signature covers, as received (for a compact JWS,
	// its protected header and payload segments). Two requests with equal
	// Signed carry the same signed statement however their bodies are
	// written, so the engine derives the default idempotency id from it.
	// It is not the signature itself: an ECDSA signature can be re-encoded
	// by anyone into another valid one over the same input.
	Signed []byte
}

// Signer is a Verifier that can also produce what it checks, for
// `hookrelay sign` and for tests: Sign adds the credentials or signature to
// req (headers or query) so that Verify accepts it. Kinds whose secret cannot
// sign (ip; jws without a private key) do not implement it.
type Signer interface {
	Sign(req *Request) error
}
