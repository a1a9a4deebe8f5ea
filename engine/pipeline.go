package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/transforms"
	"github.com/hookrelay/hookrelay/verifiers"
)

// verified is a request that passed its provider's verifiers: the body it
// goes on with (a jws verifier may replace it) and the verified JWS payload.
type verified struct {
	req  *verifiers.Request
	body []byte
	jws  []byte
}

// verify runs every verifier of p; the error is the rejection reason.
func (p *Provider) verify(ctx context.Context, vr *verifiers.Request) (*verified, error) {
	v := &verified{req: vr, body: vr.Body}
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
	}
	return v, nil
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
		_ = json.Unmarshal(v.jws, &env.JWS)
	}
	body := v.body
	parse(body, env)
	if p.decrypt != nil {
		pt, err := p.decrypt.Decrypt(env)
		if err != nil {
			return nil, err
		}
		if !json.Valid(pt) {
			return nil, fmt.Errorf("decrypt: the plaintext is not JSON")
		}
		body = pt
		parse(body, env)
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
		return nil, err
	}
	if lenderID != "" {
		ev.IdempotencyID = p.Name + ":" + lenderID
	} else {
		sum := sha256.Sum256(append([]byte(p.Name+"\x00"), body...))
		ev.IdempotencyID = p.Name + ":" + hex.EncodeToString(sum[:])
	}
	env.Event = ev
	dests, err := p.route(env)
	if err != nil {
		return nil, err
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

// parse sets env.Body and env.Raw from body; Body is nil when it is not JSON.
func parse(body []byte, env *transforms.Env) {
	env.Raw, env.Body = string(body), nil
	if json.Unmarshal(body, &env.Body) != nil {
		env.Body = nil
	}
}

// route returns the destinations of every route whose `when` holds, each once.
func (p *Provider) route(env *transforms.Env) ([]string, error) {
	var dests []string
	for i, rt := range p.routes {
		if rt.when != nil {
			ok, err := rt.when.Run(env)
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

// marshalEnvelope encodes the canonical event. Its raw body is already JSON
// (build made it so): it is spliced in rather than re-validated and
// compacted by encoding/json, which was a tenth of ingest's CPU.
func marshalEnvelope(ev *transforms.Event) ([]byte, error) {
	raw := ev.Raw
	ev.Raw = nil
	head, err := json.Marshal(ev)
	ev.Raw = raw
	const tail = `,"raw":null}`
	if err != nil || !bytes.HasSuffix(head, []byte(tail)) {
		return json.Marshal(ev)
	}
	out := make([]byte, 0, len(head)+len(raw))
	out = append(out, head[:len(head)-len(tail)]...)
	out = append(out, `,"raw":`...)
	out = append(out, raw...)
	return append(out, '}'), nil
}
