package verifiers

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"
)

func init() { Register("hmac", Build(NewHMAC)) }

// HMACConfig is the configuration block of the hmac kind.
type HMACConfig struct {
	// Secret is the shared key. It is used as its UTF-8 bytes, except with
	// signature.format standard, where it reads "whsec_<base64>" (the prefix is
	// optional) and the decoded bytes are the key. Set Secret or Secrets.
	Secret string `koanf:"secret"`
	// Secrets are keys accepted at the same time, for rotation: a request passes
	// when its MAC matches any of them. Sign (hookrelay sign) uses the first
	// one only, so list the current key first. Set Secret or Secrets.
	Secrets []string `koanf:"secrets"`
	// Algorithm is the hash: sha1, sha256 or sha512. Empty means sha256. The
	// stripe, standard and github formats require sha256.
	Algorithm string `koanf:"algorithm"`
	// Signed is the template of the message the MAC covers: literal text with
	// {body} (the raw body bytes), {header.NAME} (case-insensitive),
	// {query.NAME} and {param.NAME} (a route's {param} segment). A brace always
	// opens a placeholder. It must contain {body}. Empty means "{body}". Must be
	// empty when Signature.Format is set.
	Signed string `koanf:"signed"`
	// Signature says where the MAC is and how it is written.
	Signature SignatureConfig `koanf:"signature"`
	// Timestamp, when set, requires a timestamp header within a tolerance of
	// the time received, against replays. Nil means no timestamp check, except
	// for the stripe and standard formats, which always check theirs; for them
	// only Timestamp.Tolerance may be set.
	Timestamp *TimestampConfig `koanf:"timestamp"`
}

// SignatureConfig locates the MAC in the request.
type SignatureConfig struct {
	// Header is the header holding the MAC. Required unless Format is set.
	// With Format it may still be written: for stripe and github it names
	// the signature header (default Stripe-Signature, X-Hub-Signature-256);
	// for standard it is webhook-signature or svix-signature (any case), and
	// the id and timestamp headers then carry the same prefix. Empty with
	// standard means the webhook-* headers, or the svix-* ones when a request
	// has no webhook-* header at all.
	Header string `koanf:"header"`
	// Encoding is how the MAC is written: hex (either case) or base64 (standard
	// alphabet, padding optional). Empty means hex.
	Encoding string `koanf:"encoding"`
	// Prefix is literal text before the encoded MAC, such as "sha256=". Empty
	// means none.
	Prefix string `koanf:"prefix"`
	// Format names a whole public scheme, which fixes the encoding, signed
	// message and timestamp: stripe (Stripe-Signature: t=..,v1=..),
	// standard (Standard Webhooks: webhook-id, webhook-timestamp,
	// webhook-signature: v1,<base64>; or Svix's svix-* names) or github
	// (X-Hub-Signature-256: sha256=<hex> over the body). Empty means the
	// generic scheme built from the other fields; with a Format, Encoding and
	// Prefix must be empty.
	Format string `koanf:"format"`
}

// TimestampConfig locates the signed timestamp in the request.
type TimestampConfig struct {
	// Header is the header holding the timestamp. Required without
	// Signature.Format; must be empty with it.
	Header string `koanf:"header"`
	// Format is how the timestamp is written: unix (seconds), unix_ms
	// (milliseconds) or rfc3339. Empty means unix. Must be empty with
	// Signature.Format.
	Format string `koanf:"format"`
	// Tolerance is how far the timestamp may be from the time received, in
	// either direction. Zero means 5 minutes.
	Tolerance time.Duration `koanf:"tolerance"`
}

// DefaultTolerance is the timestamp tolerance when none is configured.
const DefaultTolerance = 5 * time.Minute

// HMAC checks a keyed-hash signature over a message built from the request.
// Build it with NewHMAC or through the registry as kind "hmac". It is
// immutable once built, so safe for concurrent use, as are all verifiers here.
type HMAC struct {
	format   string // "" (generic), "stripe" or "standard"; github is generic
	newHash  func() hash.Hash
	keys     [][]byte
	macs     []*sync.Pool // of hash.Hash: a MAC keyed with keys[i], reset
	signed   []segment    // generic only
	header   string       // signature header, generic only
	encoding string
	prefix   string
	ts       *timestampCheck // nil: no timestamp
	// std are the header families a standard verifier reads, in order of
	// preference: webhook-* then svix-*, or the one signature.header names.
	std      []*standardHeaders
	warnings []*ConfigError
}

// standardHeaders names one family of Standard Webhooks headers. Svix, which
// the standard grew out of, sends the same scheme as svix-id,
// svix-timestamp and svix-signature.
type standardHeaders struct {
	id, sig string
	ts      *timestampCheck // its header is this family's timestamp header
}

var (
	_ Verifier = (*HMAC)(nil)
	_ Signer   = (*HMAC)(nil)
	_ Warner   = (*HMAC)(nil)
)

// MinHMACKey is the shortest HMAC key, in bytes, that loads without a
// warning. Shorter ones work, as senders issue them, but are open to
// guessing offline from any one signed request.
const MinHMACKey = 16

// Warnings names the secrets whose keys are shorter than MinHMACKey.
func (v *HMAC) Warnings() []*ConfigError { return v.warnings }

// NewHMAC validates c and returns the verifier. Errors are *ConfigError.
func NewHMAC(c HMACConfig) (*HMAC, error) {
	secrets, err := oneOrMany(c.Secret, c.Secrets, "secret", "secrets")
	if err != nil {
		return nil, err
	}
	v := &HMAC{encoding: "hex"}
	switch c.Algorithm {
	case "", "sha256":
		v.newHash = sha256.New
	case "sha1":
		v.newHash = sha1.New
	case "sha512":
		v.newHash = sha512.New
	default:
		return nil, FieldError("algorithm", "unknown algorithm %q: want sha1, sha256 or sha512", c.Algorithm)
	}

	sig := c.Signature
	switch sig.Format {
	case "":
		err = v.generic(c)
	case "stripe", "standard", "github":
		err = v.scheme(c)
	default:
		err = FieldError("signature.format", "unknown format %q: want stripe, standard or github", sig.Format)
	}
	if err != nil {
		return nil, err
	}

	for i, s := range secrets {
		field := "secret"
		if c.Secret == "" {
			field = fmt.Sprintf("secrets[%d]", i)
		}
		key := []byte(s)
		if v.format == "standard" {
			if key, err = base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_")); err != nil {
				// The decode error would quote the offending byte of the secret.
				return nil, FieldError(field, "a standard webhooks secret must be whsec_ followed by base64")
			}
		}
		// An empty key is public: anyone can compute the MAC under it.
		if len(key) == 0 {
			return nil, FieldError(field, "the key is empty (whsec_ must be followed by the base64 of the key)")
		}
		if len(key) < MinHMACKey {
			v.warnings = append(v.warnings, &ConfigError{Field: field,
				Msg: fmt.Sprintf("the key is shorter than %d bytes, which makes it guessable; ask the sender for a longer one", MinHMACKey)})
		}
		v.keys = append(v.keys, key)
		// hmac.New hashes the key into two pads and allocates a few
		// objects; a reset MAC is the same state, ready again.
		v.macs = append(v.macs, &sync.Pool{New: func() any { return hmac.New(v.newHash, key) }})
	}
	return v, nil
}

// generic configures the scheme spelled out by the signed, signature and
// timestamp fields.
func (v *HMAC) generic(c HMACConfig) error {
	sig := c.Signature
	if sig.Header == "" {
		return FieldError("signature.header", "must be set (or set signature.format)")
	}
	v.header = sig.Header
	v.prefix = sig.Prefix
	switch sig.Encoding {
	case "", "hex":
	case "base64":
		v.encoding = "base64"
	default:
		return FieldError("signature.encoding", "unknown encoding %q: want hex or base64", sig.Encoding)
	}
	tmpl := c.Signed
	if tmpl == "" {
		tmpl = "{body}"
	}
	var err error
	if v.signed, err = parseSigned(tmpl); err != nil {
		return err
	}
	if t := c.Timestamp; t != nil {
		if t.Header == "" {
			return FieldError("timestamp.header", "must be set")
		}
		format := t.Format
		if format == "" {
			format = "unix"
		}
		if format != "unix" && format != "unix_ms" && format != "rfc3339" {
			return FieldError("timestamp.format", "unknown format %q: want unix, unix_ms or rfc3339", t.Format)
		}
		v.ts = &timestampCheck{header: t.Header, format: format}
		if v.ts.tolerance, err = tolerance(t.Tolerance); err != nil {
			return err
		}
	}
	return nil
}

// scheme configures a public scheme named by signature.format. Fields the
// scheme fixes must be left out, so that a config never looks like it changes
// something it does not.
func (v *HMAC) scheme(c HMACConfig) error {
	sig := c.Signature
	fixed := func(field, value string) error {
		if value != "" {
			return FieldError(field, "is fixed by signature.format %s; leave it out", sig.Format)
		}
		return nil
	}
	for _, f := range []struct{ field, value string }{
		{"signed", c.Signed}, {"signature.encoding", sig.Encoding}, {"signature.prefix", sig.Prefix},
	} {
		if err := fixed(f.field, f.value); err != nil {
			return err
		}
	}
	if c.Algorithm != "" && c.Algorithm != "sha256" {
		return FieldError("algorithm", "signature.format %s uses sha256", sig.Format)
	}

	if sig.Format == "github" {
		if c.Timestamp != nil {
			return FieldError("timestamp", "github signatures carry no timestamp; leave it out")
		}
		v.header, v.prefix, v.signed = "X-Hub-Signature-256", "sha256=", []segment{{kind: segBody}}
		if sig.Header != "" {
			v.header = textproto.CanonicalMIMEHeaderKey(sig.Header)
		}
		return nil
	}

	v.format = sig.Format
	var tol time.Duration
	if t := c.Timestamp; t != nil {
		if err := fixed("timestamp.header", t.Header); err != nil {
			return err
		}
		if err := fixed("timestamp.format", t.Format); err != nil {
			return err
		}
		tol = t.Tolerance
	}
	tol, err := tolerance(tol)
	if err != nil {
		return err
	}
	if v.format == "stripe" {
		// The timestamp is inside the signature header.
		v.header = "Stripe-Signature"
		if sig.Header != "" {
			v.header = textproto.CanonicalMIMEHeaderKey(sig.Header)
		}
		v.ts = &timestampCheck{header: v.header, format: "unix", tolerance: tol}
		return nil
	}
	family := func(prefix string) *standardHeaders {
		return &standardHeaders{id: prefix + "-Id", sig: prefix + "-Signature",
			ts: &timestampCheck{header: prefix + "-Timestamp", format: "unix", tolerance: tol}}
	}
	switch strings.ToLower(sig.Header) {
	case "":
		v.std = []*standardHeaders{family("Webhook"), family("Svix")}
	case "webhook-signature":
		v.std = []*standardHeaders{family("Webhook")}
	case "svix-signature":
		v.std = []*standardHeaders{family("Svix")}
	default:
		return FieldError("signature.header", "%q is not webhook-signature or svix-signature, the headers of signature.format standard", sig.Header)
	}
	v.ts = v.std[0].ts // Verify picks the family's own per request
	return nil
}

func tolerance(d time.Duration) (time.Duration, error) {
	switch {
	case d < 0:
		return 0, FieldError("timestamp.tolerance", "must not be negative")
	case d == 0:
		return DefaultTolerance, nil
	}
	return d, nil
}

// Verify checks the signature, then the timestamp against req.Received (a
// zero Received means now). The timestamp comes second
// so that ErrStale means an authentic request that is old or from a skewed
// clock (a replay, or a lender's retry after a long outage), not just noise.
func (v *HMAC) Verify(_ context.Context, req *Request) error {
	var (
		parts [][]byte
		sigs  [][]byte
		at    time.Time
		err   error
		ts    = v.ts
	)
	switch v.format {
	case "stripe":
		parts, sigs, at, err = v.readStripe(req)
	case "standard":
		h := v.standardFamily(req)
		ts = h.ts
		parts, sigs, at, err = v.readStandard(req, h)
	default:
		parts, sigs, at, err = v.readGeneric(req)
	}
	if err != nil {
		return err
	}
	if !v.match(parts, sigs) {
		return reject(ErrMismatch, "signature does not match")
	}
	if ts != nil {
		return ts.fresh(at, req.Received)
	}
	return nil
}

// match reports whether any sent signature is the MAC of the message under
// any key. It tries every pair, without stopping at the first hit, so timing
// does not reveal which key matched.
func (v *HMAC) match(parts, sigs [][]byte) bool {
	ok := false
	for i := range v.keys {
		sum := v.sum(i, parts...)
		for _, s := range sigs {
			if hmac.Equal(sum, s) {
				ok = true
			}
		}
	}
	return ok
}

func (v *HMAC) readGeneric(req *Request) (parts, sigs [][]byte, at time.Time, err error) {
	if v.ts != nil {
		raw := req.Header.Get(v.ts.header)
		if raw == "" {
			return nil, nil, at, reject(ErrMissing, "no %s header", v.ts.header)
		}
		if at, err = v.ts.parse(raw); err != nil {
			return nil, nil, at, err
		}
	}
	raw := req.Header.Get(v.header)
	if raw == "" {
		return nil, nil, at, reject(ErrMissing, "no %s header", v.header)
	}
	enc, ok := strings.CutPrefix(raw, v.prefix)
	if !ok {
		return nil, nil, at, reject(ErrMalformed, "%s header does not start with %q", v.header, v.prefix)
	}
	var sig []byte
	if v.encoding == "base64" {
		sig, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(enc, "="))
	} else {
		sig, err = hex.DecodeString(enc)
	}
	if err != nil {
		return nil, nil, at, reject(ErrMalformed, "%s header is not %s", v.header, v.encoding)
	}
	if parts, err = v.message(req); err != nil {
		return nil, nil, at, err
	}
	return parts, [][]byte{sig}, at, nil
}

// readStripe reads "Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]" (or
// the header signature.header names). Other schemes (v0, the test-mode
// scheme) are ignored, as Stripe's own libraries do, so a downgrade to them
// is impossible.
func (v *HMAC) readStripe(req *Request) (parts, sigs [][]byte, at time.Time, err error) {
	raw := req.Header.Get(v.header)
	if raw == "" {
		return nil, nil, at, reject(ErrMissing, "no %s header", v.header)
	}
	var ts string
	for _, item := range strings.Split(raw, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(item), "=")
		switch k {
		case "t":
			ts = val
		case "v1":
			if b, err := hex.DecodeString(val); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	if ts == "" {
		return nil, nil, at, reject(ErrMalformed, "%s has no t= timestamp", v.header)
	}
	if at, err = v.ts.parse(ts); err != nil {
		return nil, nil, at, err
	}
	if len(sigs) == 0 {
		return nil, nil, at, reject(ErrMalformed, "%s has no hex v1= signature", v.header)
	}
	return [][]byte{[]byte(ts), []byte("."), req.Body}, sigs, at, nil
}

// standardFamily picks the header family a standard request is read from:
// the first configured one of which the request has any header, else the
// first (whose missing headers the rejection then names). The three values
// always come from one family, never a mix.
func (v *HMAC) standardFamily(req *Request) *standardHeaders {
	for _, h := range v.std {
		if req.Header.Get(h.sig) != "" || req.Header.Get(h.id) != "" || req.Header.Get(h.ts.header) != "" {
			return h
		}
	}
	return v.std[0]
}

// readStandard reads one family of Standard Webhooks headers: webhook-id,
// webhook-timestamp and webhook-signature (or svix-*); the signature is
// "v1,<base64>", several space-separated during a key rotation, other
// versions ignored.
func (v *HMAC) readStandard(req *Request, h *standardHeaders) (parts, sigs [][]byte, at time.Time, err error) {
	var vals [3]string
	for i, name := range []string{h.id, h.ts.header, h.sig} {
		if vals[i] = req.Header.Get(name); vals[i] == "" {
			return nil, nil, at, reject(ErrMissing, "no %s header", name)
		}
	}
	id, ts := vals[0], vals[1]
	if at, err = h.ts.parse(ts); err != nil {
		return nil, nil, at, err
	}
	for _, item := range strings.Fields(vals[2]) {
		version, enc, _ := strings.Cut(item, ",")
		if version != "v1" {
			continue
		}
		if b, err := base64.StdEncoding.DecodeString(enc); err == nil {
			sigs = append(sigs, b)
		}
	}
	if len(sigs) == 0 {
		return nil, nil, at, reject(ErrMalformed, "%s has no base64 v1 signature", h.sig)
	}
	return [][]byte{[]byte(id), []byte("."), []byte(ts), []byte("."), req.Body}, sigs, at, nil
}

// Sign adds the signature headers Verify checks, computed with the first
// configured secret, at req.Received (a zero Received means now):
//
//   - generic (and github): when a timestamp is configured and req lacks its
//     header, the header is set first, in the configured format, so that a
//     template naming it signs that value; an existing one is kept (and must
//     parse). Every other {header.X}, {query.X} and {param.X} of the template
//     is taken from req as it is, and a missing one is an error. The signature
//     header is then set, prefix included: hex in lower case, base64 padded.
//   - stripe: Stripe-Signature (or signature.header): t=<unix>,v1=<hex>.
//   - standard: webhook-id (an existing one is kept, else a random "msg_"
//     id), webhook-timestamp (always from Received) and webhook-signature:
//     v1,<base64>; svix-* instead when signature.header says so.
//
// Sign replaces any signature header req already had. Its errors name only
// headers and parameters, never the secret.
func (v *HMAC) Sign(req *Request) error {
	initRequest(req)
	at := req.Received
	if at.IsZero() {
		at = time.Now()
	}
	switch v.format {
	case "stripe":
		ts := strconv.FormatInt(at.Unix(), 10)
		sum := v.sum(0, []byte(ts), []byte("."), req.Body)
		req.Header.Set(v.header, "t="+ts+",v1="+hex.EncodeToString(sum))
		return nil
	case "standard":
		h := v.std[0]
		id := req.Header.Get(h.id)
		if id == "" {
			id = "msg_" + rand.Text()
			req.Header.Set(h.id, id)
		}
		ts := strconv.FormatInt(at.Unix(), 10)
		req.Header.Set(h.ts.header, ts)
		sum := v.sum(0, []byte(id), []byte("."), []byte(ts), []byte("."), req.Body)
		req.Header.Set(h.sig, "v1,"+base64.StdEncoding.EncodeToString(sum))
		return nil
	}
	added := false
	if v.ts != nil {
		// Verify requires the timestamp header whether or not the template
		// names it, so it is set in either case.
		if raw := req.Header.Get(v.ts.header); raw == "" {
			req.Header.Set(v.ts.header, v.ts.write(at))
			added = true
		} else if _, err := v.ts.parse(raw); err != nil {
			return fmt.Errorf("hmac: cannot sign: %w", err)
		}
	}
	parts, err := v.message(req)
	if err != nil {
		if added {
			req.Header.Del(v.ts.header) // a failed Sign leaves req as it was
		}
		return fmt.Errorf("hmac: cannot sign: %w", err)
	}
	sum := v.sum(0, parts...)
	enc := hex.EncodeToString(sum)
	if v.encoding == "base64" {
		enc = base64.StdEncoding.EncodeToString(sum)
	}
	req.Header.Set(v.header, v.prefix+enc)
	return nil
}

// sum is the MAC of the concatenated parts under keys[i].
func (v *HMAC) sum(i int, parts ...[]byte) []byte {
	m := v.macs[i].Get().(hash.Hash)
	for _, p := range parts {
		m.Write(p)
	}
	sum := m.Sum(nil)
	m.Reset()
	v.macs[i].Put(m)
	return sum
}
