package engine

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

	"github.com/hookrelay/hookrelay/engine/provider"
	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/internal/jsonfast"
	"github.com/hookrelay/hookrelay/internal/redact"
	"github.com/hookrelay/hookrelay/transforms"
	"github.com/hookrelay/hookrelay/verifiers"
)

// verified is a request that passed its provider's verifiers: the body it
// goes on with (a jws verifier may replace it), the verified JWS payload and
// the digest of what the JWS signed.
type verified struct {
	req  *verifiers.Request
	body []byte
	jws  []byte
	// signed is the hex sha256 of what the provider's jws verifiers
	// verified (their signing inputs); "" when none ran. The default
	// idempotency id is made of it, not of the body.
	signed string
	// unverified: the verifiers were skipped (try --no-verify), and so is
	// `require`, which is part of verification.
	unverified bool
}

// requirementError is a request that one of its provider's `require`
// expressions refuses: answered and recorded as a failed verification, not
// quarantined. N counts from 0, as require[N] in the provider file.
type requirementError struct{ n int }

func (e *requirementError) Error() string { return fmt.Sprintf("requirement %d failed", e.n) }

// isRequirement reports whether err is a refusal by `require`.
func isRequirement(err error) bool {
	var re *requirementError
	return errors.As(err, &re)
}

// checkRequire runs p's require expressions over env, in order.
func (p *Provider) checkRequire(env *transforms.Env) error {
	if len(p.require) == 0 {
		return nil
	}
	var vm transforms.Machine
	for i, prog := range p.require {
		// An expression that fails (a missing field compared, a non-boolean)
		// refuses as a false one does: what cannot be checked is not bound.
		if ok, err := vm.Run(prog, env); err != nil || ok != true {
			return &requirementError{n: i}
		}
	}
	return nil
}

// fetchKeys fetches what vr's verifiers need over the network, waiting for
// it within each verifier's bound (verifiers.KeyFetcher). Ingest calls it
// before admission: a slow key server must not hold the places that every
// provider's requests share.
func (p *Provider) fetchKeys(ctx context.Context, vr *verifiers.Request) {
	for _, f := range p.fetchers {
		f.FetchKeys(ctx, vr)
	}
}

// verify runs every verifier of p; the error is the rejection reason.
func (p *Provider) verify(ctx context.Context, vr *verifiers.Request) (*verified, error) {
	v := &verified{req: vr, body: vr.Body}
	var signed []byte
	for _, vf := range p.verifiers {
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
		v.jws = payload.Data
		if payload.Replace {
			v.body = payload.Data
		}
		if payload.Signed != nil {
			signed = append(signed, payload.Signed...)
			signed = append(signed, 0) // signing inputs are base64url: no NUL inside
		}
	}
	if signed != nil {
		sum := sha256.Sum256(signed)
		v.signed = hex.EncodeToString(sum[:])
	}
	return v, nil
}

// process is the one pipeline that ingest and `try`/`test` share: it
// verifies vr (unless verify is false: try --no-verify), decrypts, maps and
// routes it, and says what came of it. The verified request is returned for
// the quarantine, nil when verification refused it. Keys over the network
// are the caller's to fetch first (fetchKeys): ingest does so before it
// takes a max_inflight place.
func (p *Provider) process(ctx context.Context, vr *verifiers.Request, verify bool) (provider.Result, *verified) {
	v := &verified{req: vr, body: vr.Body, unverified: !verify}
	if verify {
		var err error
		if v, err = p.verify(ctx, vr); err != nil {
			return provider.Refused(err), nil
		}
	}
	ev, err := p.build(v)
	switch {
	case isRequirement(err):
		return provider.Refused(err), v // verified, but not bound to what was signed
	case err != nil:
		return provider.Result{Outcome: provider.Quarantined, Status: p.respStatus, Err: err}, v
	}
	return provider.Result{Outcome: provider.Accepted, Status: p.respStatus, Event: ev}, v
}

// build decrypts, maps and routes a verified request into the event to
// spool. An error means our configuration cannot read it: the caller
// quarantines, never drops, it.
func (p *Provider) build(v *verified) (*spool.Event, error) {
	vr := v.req
	env := &transforms.Env{
		Headers: firstValues(vr.Header, true), Query: firstValues(vr.Query, false),
		Params: vr.Params, Provider: p.Name, Now: vr.Received,
	}
	if v.jws != nil {
		if payload, err := jsonfast.Decode(string(v.jws)); err == nil {
			env.JWS = payload
		}
	}
	body := v.body
	parse(body, env)
	if p.decrypt != nil {
		pt, err := p.decrypt.Decrypt(env)
		if err != nil {
			return nil, withoutValues(err, env)
		}
		if !json.Valid(pt) {
			return nil, fmt.Errorf("decrypt: the plaintext is not JSON")
		}
		body = pt
		parse(body, env)
	}
	if !v.unverified {
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
	lenderID, err := p.mapping.Map(env, ev)
	if err != nil {
		return nil, keyed(withoutValues(err, env), ev.Key)
	}
	// The key (queued with each delivery, tracked for polling) and the type
	// outlive the request; as slices of the body (see parse) they would keep
	// all of it in memory.
	ev.Key, ev.Type = strings.Clone(ev.Key), strings.Clone(ev.Type)
	switch {
	case lenderID != "":
		ev.IdempotencyID = p.Name + ":" + lenderID
	case v.signed != "":
		// A signed callback is the same callback however its body is
		// spaced, ordered or escaped (must-match compares JSON): only
		// what was signed tells copies apart, so a replay is a duplicate.
		sum := sha256.Sum256([]byte(p.Name + "\x00jws\x00" + v.signed))
		ev.IdempotencyID = p.Name + ":" + hex.EncodeToString(sum[:])
	default:
		sum := sha256.Sum256(append([]byte(p.Name+"\x00"), body...))
		ev.IdempotencyID = p.Name + ":" + hex.EncodeToString(sum[:])
	}
	env.Event = ev
	dests, err := p.route(env)
	if err != nil {
		return nil, keyed(withoutValues(err, env), ev.Key)
	}
	envelope, err := marshalEnvelope(ev)
	if err != nil {
		return nil, fmt.Errorf("event: %w", err)
	}
	return &spool.Event{
		ID: ev.ID, Provider: p.Name, Type: ev.Type, Key: ev.Key, Sequence: ev.Sequence,
		IdempotencyID: ev.IdempotencyID, ReceivedAt: ev.ReceivedAt, Envelope: envelope,
		Raw: body, Destinations: dests,
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

// keyOf is the event key an error of build knew, "" if none.
func keyOf(err error) string {
	var k *keyedError
	if errors.As(err, &k) {
		return k.key
	}
	return ""
}

// withoutValues is err with every value of the request that it quotes
// replaced by ***: an expression's error may print what it failed on (a
// name, a personal number), and the error becomes a quarantine reason, a log
// line and an admin answer, which name the field, never the value.
func withoutValues(err error, env *transforms.Env) error {
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

// parse sets env.Body and env.Raw from body; Body is nil when it is not JSON.
func parse(body []byte, env *transforms.Env) {
	env.Raw, env.Body = string(body), nil
	// The body's strings are slices of env.Raw, not copies of their own:
	// build clones what it keeps of them.
	if v, err := jsonfast.Decode(env.Raw); err == nil {
		env.Body = v
	}
}

// route returns the destinations of every route whose `when` holds, each once.
func (p *Provider) route(env *transforms.Env) ([]string, error) {
	var (
		dests []string
		vm    transforms.Machine
	)
	for i, rt := range p.routes {
		if rt.when != nil {
			ok, err := vm.Run(rt.when, env)
			if err != nil {
				return nil, fmt.Errorf("routes[%d].when: %w", i, err)
			}
			if ok != true {
				continue
			}
		}
	next:
		for _, d := range rt.to {
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

// firstValues maps each name of h with a value to its first value; with
// lower, by the lower-cased name.
func firstValues(h map[string][]string, lower bool) map[string]string {
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

// marshalEnvelope encodes the canonical event as json.Marshal(ev) would.
// It writes the fields itself (encoding/json's reflection over the event
// and its data was a tenth of ingest's CPU) and splices in the raw body,
// which is already JSON (build made it so), rather than re-validating and
// compacting it. Anything it cannot write as encoding/json does goes to
// json.Marshal, for the same output or the same error.
func marshalEnvelope(ev *transforms.Event) ([]byte, error) {
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
