package provider

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/internal/jsonfast"
	"github.com/hookrelay/hookrelay/internal/redact"
	"github.com/hookrelay/hookrelay/transforms"
	"github.com/hookrelay/hookrelay/verifiers"
)

// Pipeline is a provider's compiled steps: its verifiers, decryption,
// `require`, mapping and routes, compiled once when the configuration
// loads. Its zero value verifies nothing and routes nowhere.
type Pipeline struct {
	// Name is the provider's name: events carry it and scope their keys with it.
	Name string
	// Verifiers run in order; each must pass.
	Verifiers []verifiers.Verifier
	// Fetchers are the verifiers whose keys come over the network.
	Fetchers []verifiers.KeyFetcher
	// Decrypt decrypts the body; nil: the body is not encrypted.
	Decrypt *transforms.Decrypter
	// Require are the `require` expressions, part of verification.
	Require []*transforms.Program
	// Mapping makes the canonical event.
	Mapping *transforms.Mapping
	// Routes choose the destinations.
	Routes []Route
	// RespondStatus is respond.status: what ingest answers for an accepted
	// or quarantined request.
	RespondStatus int
}

// Route is one compiled entry of `routes`.
type Route struct {
	// When is the condition; nil: always.
	When *transforms.Program
	// To are the destinations' names.
	To []string
}

// Verified is a request that passed its provider's verifiers: the body it
// goes on with (a jws verifier may replace it), the verified JWS payload and
// the digest of what the JWS signed.
type Verified struct {
	// Req is the request as received.
	Req *verifiers.Request
	// Body is the body the pipeline goes on with.
	Body []byte
	// JWS is the verified JWS payload, nil without one.
	JWS []byte
	// Signed is the hex sha256 of what the provider's jws verifiers
	// verified (their signing inputs); "" when none ran. The default
	// idempotency id is made of it, not of the body.
	Signed string
	// Unverified: the verifiers were skipped (try --no-verify), and so is
	// `require`, which is part of verification.
	Unverified bool
	// Plain is Body decrypted, once Build has decrypted it; nil before,
	// when it cannot be, and without decrypt.
	Plain []byte
}

// RequirementError is a request that one of its provider's `require`
// expressions refuses: answered and recorded as a failed verification, not
// quarantined. N counts from 0, as require[N] in the provider file.
type RequirementError struct{ N int }

func (e *RequirementError) Error() string { return fmt.Sprintf("requirement %d failed", e.N) }

// IsRequirement reports whether err is a refusal by `require`.
func IsRequirement(err error) bool {
	var re *RequirementError
	return errors.As(err, &re)
}

// checkRequire runs p's require expressions over env, in order.
func (p *Pipeline) checkRequire(env *transforms.Env) error {
	if len(p.Require) == 0 {
		return nil
	}
	var vm transforms.Machine
	for i, prog := range p.Require {
		// An expression that fails (a missing field compared, a non-boolean)
		// refuses as a false one does: what cannot be checked is not bound.
		if ok, err := vm.Run(prog, env); err != nil || ok != true {
			return &RequirementError{N: i}
		}
	}
	return nil
}

// FetchKeys fetches what vr's verifiers need over the network, waiting for
// it within each verifier's bound (verifiers.KeyFetcher). Ingest calls it
// before admission: a slow key server must not hold the places that every
// provider's requests share.
func (p *Pipeline) FetchKeys(ctx context.Context, vr *verifiers.Request) {
	for _, f := range p.Fetchers {
		f.FetchKeys(ctx, vr)
	}
}

// Verify runs every verifier of p; the error is the rejection reason.
func (p *Pipeline) Verify(ctx context.Context, vr *verifiers.Request) (*Verified, error) {
	v := &Verified{Req: vr, Body: vr.Body}
	var signed []byte
	for _, vf := range p.Verifiers {
		pv, ok := vf.(verifiers.PayloadVerifier)
		if !ok {
			if err := vf.Verify(ctx, vr); err != nil {
				return nil, err
			}
			continue
		}
		payload, err := pv.VerifyPayload(ctx, vr)
		if err != nil {
			return nil, err
		}
		v.JWS = payload.Data
		if payload.Replace {
			v.Body = payload.Data
		}
		if payload.Signed != nil {
			signed = append(signed, payload.Signed...)
			signed = append(signed, 0) // signing inputs are base64url: no NUL inside
		}
	}
	if signed != nil {
		sum := sha256.Sum256(signed)
		v.Signed = hex.EncodeToString(sum[:])
	}
	return v, nil
}

// Process is the one pipeline that ingest and `try`/`test` share: it
// verifies vr (unless verify is false: try --no-verify), decrypts, maps and
// routes it, and says what came of it. The verified request is returned for
// the quarantine, nil when verification refused it. Keys over the network
// are the caller's to fetch first (FetchKeys): ingest does so before it
// takes a max_inflight place.
func (p *Pipeline) Process(ctx context.Context, vr *verifiers.Request, verify bool) (Result, *Verified) {
	v := &Verified{Req: vr, Body: vr.Body, Unverified: !verify}
	if verify {
		var err error
		if v, err = p.Verify(ctx, vr); err != nil {
			return Refused(err), nil
		}
	}
	ev, err := p.Build(v)
	switch {
	case IsRequirement(err):
		return Refused(err), v // verified, but not bound to what was signed
	case err != nil:
		return Result{Outcome: Quarantined, Status: p.RespondStatus, Err: err}, v
	}
	return Result{Outcome: Accepted, Status: p.RespondStatus, Event: ev}, v
}

// Build decrypts, maps and routes a verified request into the event to
// spool. An error means our configuration cannot read it: the caller
// quarantines, never drops, it.
func (p *Pipeline) Build(v *Verified) (*spool.Event, error) {
	vr := v.Req
	env := &transforms.Env{
		Headers: FirstValues(vr.Header, true), Query: FirstValues(vr.Query, false),
		Params: vr.Params, Provider: p.Name, Now: vr.Received,
	}
	if v.JWS != nil {
		if payload, err := jsonfast.Decode(string(v.JWS)); err == nil {
			env.JWS = payload
		}
	}
	body := v.Body
	parse(body, env)
	if p.Decrypt != nil {
		pt, err := p.Decrypt.Decrypt(env)
		if err != nil {
			return nil, WithoutValues(err, env)
		}
		parse(pt, env)
		// The decode is the syntax check (one pass over the plaintext):
		// json.Valid runs only when it fails, so that valid JSON the decode
		// refuses (a number out of range) is still taken, undecoded.
		if env.Body == nil && !json.Valid(pt) {
			return nil, fmt.Errorf("decrypt: the plaintext is not JSON")
		}
		body, v.Plain = pt, pt
	}
	if !v.Unverified {
		if err := p.checkRequire(env); err != nil {
			return nil, err
		}
	}
	raw := json.RawMessage(body)
	switch {
	case env.Body == nil:
		raw, _ = json.Marshal(string(body))
	case !utf8.Valid(body):
		// encoding/json read the invalid bytes (only strings can hold them)
		// as U+FFFD; the copy sent on must be UTF-8 JSON too (RFC 8259 8.1).
		raw = bytes.ToValidUTF8(body, []byte("\uFFFD"))
	}
	ev := &transforms.Event{
		ID: ulid.Make().String(), Provider: p.Name, Source: "webhook",
		ReceivedAt: vr.Received.UTC().Truncate(time.Millisecond), Raw: raw,
	}
	lenderID, err := p.Mapping.Map(env, ev)
	if err != nil {
		return nil, keyed(WithoutValues(err, env), ev.Key)
	}
	// The key (queued with each delivery, tracked for polling) and the type
	// outlive the request; as slices of the body (see parse) they would keep
	// all of it in memory.
	ev.Key, ev.Type = strings.Clone(ev.Key), strings.Clone(ev.Type)
	switch {
	case lenderID != "":
		ev.IdempotencyID = p.Name + ":" + lenderID
	case v.Signed != "":
		// A signed callback is the same callback however its body is
		// spaced, ordered or escaped (must-match compares JSON): only
		// what was signed tells copies apart, so a replay is a duplicate.
		sum := sha256.Sum256([]byte(p.Name + "\x00jws\x00" + v.Signed))
		ev.IdempotencyID = p.Name + ":" + hex.EncodeToString(sum[:])
	default:
		// Hashed in two writes: appending the body to the name would copy
		// all of it (up to max_body) on every request without a lender id.
		h := sha256.New()
		h.Write([]byte(p.Name + "\x00"))
		h.Write(body)
		ev.IdempotencyID = p.Name + ":" + hex.EncodeToString(h.Sum(nil))
	}
	return p.spoolable(env, ev, body)
}

// spoolable routes the mapped event ev and makes the event to spool, with
// raw as the body kept beside it: the tail that a webhook (Build) and a
// polled answer (BuildPolled) share.
func (p *Pipeline) spoolable(env *transforms.Env, ev *transforms.Event, raw []byte) (*spool.Event, error) {
	env.Event = ev
	dests, err := p.Route(env)
	if err != nil {
		return nil, keyed(WithoutValues(err, env), ev.Key)
	}
	envelope, err := MarshalEnvelope(ev)
	if err != nil {
		return nil, fmt.Errorf("event: %w", err)
	}
	return &spool.Event{
		ID: ev.ID, Provider: p.Name, Type: ev.Type, Key: ev.Key, Sequence: ev.Sequence,
		IdempotencyID: ev.IdempotencyID, ReceivedAt: ev.ReceivedAt, Envelope: envelope,
		Raw: raw, Destinations: dests,
	}, nil
}

// keyedError is a mapping error of a request whose event key was already
// known: its quarantined copy is stored with the key, so that erasure of
// the key removes it too (SPEC 11).
type keyedError struct {
	error
	key string
}

func (e *keyedError) Unwrap() error { return e.error }

// keyed wraps err with key, when there is one.
func keyed(err error, key string) error {
	if key == "" {
		return err
	}
	return &keyedError{err, strings.Clone(key)}
}

// KeyOf is the event key an error of Build knew, "" if none.
func KeyOf(err error) string {
	var k *keyedError
	if errors.As(err, &k) {
		return k.key
	}
	return ""
}

// WithoutValues is err with every value of the request that it quotes
// replaced by ***: an expression's error may print what it failed on (a
// name, a personal number), and the error becomes a quarantine reason, a log
// line and an admin answer, which name the field, never the value.
func WithoutValues(err error, env *transforms.Env) error {
	msg := err.Error()
	var values []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			// Shorter strings would mask words of the message itself.
			if len(x) >= 4 && strings.Contains(msg, x) {
				values = append(values, x)
			}
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]string:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(env.Body)
	walk(env.JWS)
	walk(env.Headers)
	walk(env.Query)
	walk(env.Params)
	if env.Response != nil {
		walk(env.Response.Body)
	}
	if len(values) == 0 {
		return err
	}
	sort.Slice(values, func(i, j int) bool { return len(values[i]) > len(values[j]) })
	for _, v := range values {
		msg = strings.ReplaceAll(msg, v, redact.Mask)
	}
	return errors.New(msg)
}

// BodyEnv is the expression environment of a request's body and headers
// alone, as decryption sees it: what masking needs to find the plaintext.
func BodyEnv(body []byte, header map[string][]string) *transforms.Env {
	env := &transforms.Env{Headers: FirstValues(header, true)}
	parse(body, env)
	return env
}

// parse sets env.Body and env.Raw from body; Body is nil when it is not JSON.
func parse(body []byte, env *transforms.Env) {
	env.Raw, env.Body = string(body), nil
	// The body's strings are slices of env.Raw, not copies of their own:
	// Build clones what it keeps of them.
	if v, err := jsonfast.Decode(env.Raw); err == nil {
		env.Body = v
	}
}

// Route returns the destinations of every route whose `when` holds, each once.
func (p *Pipeline) Route(env *transforms.Env) ([]string, error) {
	var (
		dests []string
		vm    transforms.Machine
	)
	for i, rt := range p.Routes {
		if rt.When != nil {
			ok, err := vm.Run(rt.When, env)
			if err != nil {
				return nil, fmt.Errorf("routes[%d].when: %w", i, err)
			}
			if ok != true {
				continue
			}
		}
	next:
		for _, d := range rt.To {
			for _, have := range dests {
				if have == d {
					continue next
				}
			}
			dests = append(dests, d)
		}
	}
	return dests, nil
}

// FirstValues maps each name of h with a value to its first value; with
// lower, by the lower-cased name.
func FirstValues(h map[string][]string, lower bool) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		if len(v) == 0 {
			continue
		}
		if lower {
			k = strings.ToLower(k)
		}
		out[k] = v[0]
	}
	return out
}

// MarshalEnvelope encodes the canonical event as json.Marshal(ev) would.
// It writes the fields itself (encoding/json's reflection over the event
// and its data was a tenth of ingest's CPU) and splices in the raw body,
// which is already JSON (Build made it so), rather than re-validating and
// compacting it. Anything it cannot write as encoding/json does goes to
// json.Marshal, for the same output or the same error.
func MarshalEnvelope(ev *transforms.Event) ([]byte, error) {
	// Room for the fields, the raw body and the data, which is commonly
	// picked from the body: one allocation, no growing.
	out := make([]byte, 0, 256+2*len(ev.Raw)+len(ev.Key)+len(ev.Type)+len(ev.IdempotencyID)+len(ev.OccurredAt))
	out = append(out, `{"id":`...)
	out = jsonfast.AppendString(out, ev.ID)
	out = append(out, `,"provider":`...)
	out = jsonfast.AppendString(out, ev.Provider)
	out = append(out, `,"source":`...)
	out = jsonfast.AppendString(out, ev.Source)
	out = append(out, `,"type":`...)
	out = jsonfast.AppendString(out, ev.Type)
	out = append(out, `,"key":`...)
	out = jsonfast.AppendString(out, ev.Key)
	out = append(out, `,"sequence":`...)
	out = strconv.AppendInt(out, ev.Sequence, 10)
	out = append(out, `,"idempotency_id":`...)
	out = jsonfast.AppendString(out, ev.IdempotencyID)
	out = append(out, `,"received_at":"`...)
	out, err := ev.ReceivedAt.AppendText(out) // what Time.MarshalJSON writes, unquoted
	if err != nil {
		return json.Marshal(ev)
	}
	out = append(out, '"')
	if ev.OccurredAt != "" {
		out = append(out, `,"occurred_at":`...)
		out = jsonfast.AppendString(out, ev.OccurredAt)
	}
	out = append(out, `,"data":`...)
	if out, err = jsonfast.Append(out, ev.Data); err != nil {
		return json.Marshal(ev)
	}
	out = append(out, `,"raw":`...)
	if ev.Raw == nil {
		out = append(out, "null"...)
	} else {
		out = append(out, ev.Raw...)
	}
	return append(out, '}'), nil
}
