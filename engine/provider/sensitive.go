package provider

import (
	"encoding/json"
	"fmt"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/internal/redact"
)

// Masking (SPEC 11) happens where people read, never where the relay keeps
// or sends: the spool holds the real values (sealed when privacy is on) and
// destinations receive them. Every output point asks the provider for one
// request's sensitive values (redact.Paths.Values) and masks with them, by
// the one rule redact.Paths documents.

// compileSensitive compiles a provider's `sensitive:` list; a bad path is a
// configuration error at its line.
func compileSensitive(list []string, doc *config.Doc, errs *config.Errors) *redact.Paths {
	for i, s := range list {
		if _, err := redact.CompilePaths([]string{s}); err != nil {
			at := fmt.Sprintf("sensitive[%d]", i)
			errs.Add(doc, at, "%s: %v", at, err)
		}
	}
	p, err := redact.CompilePaths(list)
	if err != nil {
		return nil
	}
	return p
}

// sensitiveValues are the values at p's sensitive paths in one request:
// body is the plaintext (the decrypted document), header the request's.
func (p *Provider) sensitiveValues(body []byte, header map[string][]string) []string {
	if p == nil || p.sensitive.Empty() {
		return nil
	}
	var doc any
	_ = json.Unmarshal(body, &doc)
	return p.sensitive.Values(doc, header)
}

// plaintext is what the provider's sensitive paths refer to: the body, or
// for an encrypted one its decrypted document (the body itself when it
// cannot be decrypted: then nothing in it was read).
func (p *Provider) plaintext(body []byte, header map[string][]string) []byte {
	if p == nil || p.Decrypt == nil {
		return body
	}
	if pt, err := p.Decrypt.Decrypt(BodyEnv(body, header)); err == nil {
		return pt
	}
	return body
}

// MaskEnvelope masks a canonical event as people read it (spool.Shown), in
// place: `raw` by the sensitive body paths, `raw` and `data` by the values
// found there, which it returns. Ids, key, type and times stay.
func (p *Provider) MaskEnvelope(ev spool.Shown) []string {
	if p == nil || p.sensitive.Empty() || ev == nil {
		return nil
	}
	vals := p.sensitive.Values(ev["raw"], nil)
	if raw, ok := ev["raw"]; ok {
		ev["raw"] = redact.MaskValues(p.sensitive.MaskBody(raw), vals)
	}
	if data, ok := ev["data"]; ok {
		ev["data"] = redact.MaskValues(data, vals)
	}
	return vals
}

// MaskText masks, in free text about one request (a quarantine reason, a
// case's failure), the sensitive values of that request; body is as
// received and is decrypted to find them.
func (p *Provider) MaskText(text string, body []byte, header map[string][]string) string {
	if p == nil || p.sensitive.Empty() {
		return text
	}
	return redact.MaskText(text, p.sensitiveValues(p.plaintext(body, header), header))
}

// MaskVerified is MaskText for a request that Build has seen: the body it
// decrypted is not decrypted again, nor one it could not decrypt.
func (p *Provider) MaskVerified(text string, v *Verified) string {
	if p == nil || p.sensitive.Empty() {
		return text
	}
	body := v.Plain
	if body == nil {
		body = v.Body
	}
	return redact.MaskText(text, p.sensitiveValues(body, v.Req.Header))
}

// MaskRefused is MaskText for a refused request: its body is not decrypted
// (it was not verified), so only a plain body's and the headers' values are
// found; a refusal's reason does not quote a decrypted document.
func (p *Provider) MaskRefused(text string, body []byte, header map[string][]string) string {
	if p == nil || p.sensitive.Empty() {
		return text
	}
	return redact.MaskText(text, p.sensitiveValues(body, header))
}

// Masks reports whether p has sensitive paths, so that there is anything to
// mask; p may be nil.
func (p *Provider) Masks() bool { return p != nil && !p.sensitive.Empty() }

// MaskFailures masks a case's failures, which quote what a trial got (and
// the case wants), by the request's sensitive values and those of the
// trial's event (nil when it made none): `test` output is read by people
// and kept by CI.
func (p *Provider) MaskFailures(failures []string, event spool.Shown, body []byte, header map[string][]string) []string {
	if p == nil || p.sensitive.Empty() || len(failures) == 0 {
		return failures
	}
	vals := p.sensitiveValues(p.plaintext(body, header), header)
	if event != nil {
		vals = append(vals, p.sensitive.Values(event["raw"], nil)...)
	}
	out := make([]string, len(failures))
	for i, f := range failures {
		out[i] = redact.MaskText(f, vals)
	}
	return out
}
