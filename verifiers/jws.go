package verifiers

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookrelay/hookrelay/internal/httpout"
	"github.com/hookrelay/hookrelay/internal/jsonfast"
	"github.com/hookrelay/hookrelay/internal/redact"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

func init() { Register("jws", Build(NewJWS)) }

// JWSConfig is the configuration block of the jws kind: a compact JWS carried
// in the request, signed with a public key the lender publishes.
//
// Keys are chosen by the JWS protected header's kid: a token with a kid is
// checked against the keys with that kid, or against the only key of a set of
// one key that has no kid (a PEM key_file). A token without a kid is checked
// only when the set holds exactly one key, since trying every key of a set
// would let a token pick its key. Headers that name a key (jku, jwk, x5u,
// x5c) are ignored: only the configured keys are ever used.
type JWSConfig struct {
	// From says where the compact JWS is: body.FIELD[.FIELD...], a path of
	// object fields into the JSON body (field names cannot contain dots), or
	// header.NAME. Surrounding whitespace of the value is trimmed. Required.
	From string `koanf:"from"`
	// JWKSURL is an http or https URL serving the lender's JWK set. It is
	// fetched on first use (not when the config loads), kept in memory,
	// fetched again every Refresh and, at most once per MinRefresh, when a
	// token names an unknown kid. While the URL is down or serves something
	// that is not a JWK set, the last good set stays in use. Set exactly one
	// of jwks_url, jwks_file or key_file.
	//
	// It may also be a file URL with an absolute path,
	// file:///abs/path/jwks.json (file://localhost/abs/path too; no query or
	// fragment), or file://rel/path/jwks.json relative to the provider
	// file's directory (ResolvePaths), for a JWK set mounted into the
	// container or written by a recorded test case. The file is read, not watched, under the same rules
	// as a fetch: on first use, again after Refresh and on an unknown kid at
	// most once per MinRefresh, at most JWKSMaxBytes, the last good set kept
	// while the file is missing or broken. It must be a regular file.
	// Unlike jwks_file, a file that is missing at load is no error, and a
	// replaced file is picked up without a reload.
	JWKSURL string `koanf:"jwks_url"`
	// JWKSHeaders are headers sent with every fetch of JWKSURL, such as an
	// apikey. Empty means none. Ignored for a file:// jwks_url.
	JWKSHeaders map[string]string `koanf:"jwks_headers"`
	// JWKSFile is a file holding a JWK set (JSON), read when the config
	// loads. A relative path is relative to the provider file's directory
	// (ResolvePaths). Set exactly one of jwks_url, jwks_file or key_file.
	JWKSFile string `koanf:"jwks_file"`
	// KeyFile is a file holding one public key, as PEM (PKIX or PKCS#1 public
	// key; a private key is reduced to its public half) or as a single JWK
	// (JSON), read when the config loads. A relative path is relative to the
	// provider file's directory (ResolvePaths). Set exactly one of jwks_url,
	// jwks_file or key_file.
	KeyFile string `koanf:"key_file"`
	// Algorithms are the accepted values of the JWS alg header: RS256, RS384,
	// RS512, PS256, PS384, PS512, ES256, ES384, ES512 or EdDSA. A token with
	// another alg is rejected before any key is used. none and the HMAC
	// algorithms (HS256, HS384, HS512) are refused: the keys here are public,
	// so a MAC under them proves nothing. Empty means [RS256].
	Algorithms []string `koanf:"algorithms"`
	// Payload says what becomes of the signed payload: verify-only (the body
	// stays as received), replace (the signed payload becomes the body) or
	// must-match (the signed payload must equal, as JSON, the body without the
	// field named by From; with From header.NAME, the whole body). Empty
	// means verify-only.
	Payload string `koanf:"payload"`
	// Refresh is how old the JWKSURL set may get before it is fetched again,
	// on the next request. Zero means 1 hour. Only with jwks_url.
	Refresh time.Duration `koanf:"refresh"`
	// MaxAge, when positive, refuses a token whose iat (issued at) claim is
	// older than this, against replays of old signed callbacks. A payload
	// without iat (or not a JSON object) is not checked. Zero means no limit.
	MaxAge time.Duration `koanf:"max_age"`
	// MinRefresh is the least time between two fetches of JWKSURL, whatever
	// prompts them (an unknown kid, Refresh, a failed fetch), so that tokens
	// with made-up kids cannot hammer the lender. Zero means 1 minute. Only
	// with jwks_url.
	MinRefresh time.Duration `koanf:"min_refresh"`
}

// Defaults and limits of the jws kind.
const (
	// DefaultJWKSRefresh is JWSConfig.Refresh when none is configured.
	DefaultJWKSRefresh = time.Hour
	// DefaultJWKSMinRefresh is JWSConfig.MinRefresh when none is configured.
	DefaultJWKSMinRefresh = time.Minute
	// JWKSFetchTimeout bounds one fetch of a JWK set URL, redirects included.
	JWKSFetchTimeout = 10 * time.Second
	// JWKSMaxBytes is the largest JWK set accepted from a URL.
	JWKSMaxBytes = 1 << 20
	// JWKSMaxWaiting bounds how many requests of one jws verifier wait in
	// FetchKeys for a fetch at once; the others go on with the keys at hand.
	JWKSMaxWaiting = 4
	// JWSLeeway is the clock skew allowed on the exp and nbf claims.
	JWSLeeway = time.Minute
)

// Payload modes of the jws kind.
const (
	payloadVerifyOnly = "verify-only"
	payloadReplace    = "replace"
	payloadMustMatch  = "must-match"
)

// jwsAlgorithms are the algorithms that may be allowed, with the key type
// each needs.
var jwsAlgorithms = map[jwa.SignatureAlgorithm]jwa.KeyType{
	jwa.RS256: jwa.RSA, jwa.RS384: jwa.RSA, jwa.RS512: jwa.RSA,
	jwa.PS256: jwa.RSA, jwa.PS384: jwa.RSA, jwa.PS512: jwa.RSA,
	jwa.ES256: jwa.EC, jwa.ES384: jwa.EC, jwa.ES512: jwa.EC,
	jwa.EdDSA: jwa.OKP,
}

// JWS checks a compact JWS carried in the request against the lender's public
// keys and yields its payload. Build it with NewJWS or through the registry as
// kind "jws". It is safe for concurrent use.
type JWS struct {
	from    jwsLocation
	algs    map[jwa.SignatureAlgorithm]jws.Verifier // the allow-list, each with its verifier
	order   []jwa.SignatureAlgorithm                // the allow-list as configured
	allowed string                                  // the allow-list, for messages
	mode    string
	maxAge  time.Duration // 0: iat not checked
	keys    keySource
}

var (
	_ Verifier        = (*JWS)(nil)
	_ PayloadVerifier = (*JWS)(nil)
	_ KeySigner       = (*JWS)(nil)
	_ KeyFetcher      = (*JWS)(nil)
)

// KeySigner is a Verifier that signs with a private key the caller supplies,
// since its configuration holds only public keys (jws): for
// `hookrelay sign PROVIDER BODY --key KEY` and recorded test cases.
type KeySigner interface {
	SignWithKey(req *Request, key []byte, kid string) error
}

var _ PathResolver = (*JWSConfig)(nil)

// ResolvePaths makes jwks_file, key_file and a file:// jwks_url whose path
// is relative (file://keys/jwks.json) absolute, under dir.
func (c *JWSConfig) ResolvePaths(dir string) {
	for _, p := range []*string{&c.JWKSFile, &c.KeyFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if rel, ok := strings.CutPrefix(c.JWKSURL, "file://"); ok && rel != "" && !strings.HasPrefix(rel, "/") &&
		!strings.HasPrefix(rel, "localhost/") && !strings.ContainsAny(rel, "?#") {
		c.JWKSURL = (&url.URL{Scheme: "file", Path: filepath.ToSlash(filepath.Join(dir, filepath.FromSlash(rel)))}).String()
	}
}

// NewJWS validates c and returns the verifier. It reads jwks_file and
// key_file but never fetches jwks_url. Errors are *ConfigError.
func NewJWS(c JWSConfig) (*JWS, error) {
	v := &JWS{}
	var err error
	if v.from, err = parseJWSFrom(c.From); err != nil {
		return nil, err
	}

	switch v.mode = c.Payload; v.mode {
	case "":
		v.mode = payloadVerifyOnly
	case payloadVerifyOnly, payloadReplace, payloadMustMatch:
	default:
		return nil, FieldError("payload", "unknown mode %q: want verify-only, replace or must-match", c.Payload)
	}

	algs := c.Algorithms
	if len(algs) == 0 {
		algs = []string{jwa.RS256.String()}
	}
	v.algs = map[jwa.SignatureAlgorithm]jws.Verifier{}
	var names []string
	for i, a := range algs {
		alg := jwa.SignatureAlgorithm(a)
		field := fmt.Sprintf("algorithms[%d]", i)
		switch {
		case strings.EqualFold(a, "none"):
			return nil, FieldError(field, "alg none signs nothing and is never accepted")
		case alg == jwa.HS256 || alg == jwa.HS384 || alg == jwa.HS512:
			return nil, FieldError(field, "%s is an HMAC algorithm: with public keys as its secret anyone could sign (algorithm confusion); use kind hmac for shared secrets", a)
		case jwsAlgorithms[alg] == "":
			return nil, FieldError(field, "unknown algorithm %q: want RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512 or EdDSA", a)
		}
		if v.algs[alg] == nil {
			if v.algs[alg], err = jws.NewVerifier(alg); err != nil {
				return nil, FieldError(field, "%s is not supported: %v", a, err)
			}
			v.order = append(v.order, alg)
			names = append(names, a)
		}
	}
	v.allowed = strings.Join(names, ", ")
	if c.MaxAge < 0 {
		return nil, FieldError("max_age", "must not be negative")
	}
	v.maxAge = c.MaxAge

	if v.keys, err = v.keySource(c); err != nil {
		return nil, err
	}
	return v, nil
}

// keySource builds the one configured source of keys.
func (v *JWS) keySource(c JWSConfig) (keySource, error) {
	var set []string
	for _, s := range []struct{ field, value string }{
		{"jwks_url", c.JWKSURL}, {"jwks_file", c.JWKSFile}, {"key_file", c.KeyFile},
	} {
		if s.value != "" {
			set = append(set, s.field)
		}
	}
	switch len(set) {
	case 0:
		return nil, FieldError("jwks_url", "one of jwks_url, jwks_file or key_file must be set")
	case 1:
	default:
		return nil, FieldError(set[1], "set only one of jwks_url, jwks_file or key_file (%s is set too)", set[0])
	}

	if c.JWKSURL == "" {
		for _, f := range []struct {
			field string
			set   bool
		}{{"jwks_headers", len(c.JWKSHeaders) > 0}, {"refresh", c.Refresh != 0}, {"min_refresh", c.MinRefresh != 0}} {
			if f.set {
				return nil, FieldError(f.field, "applies only to jwks_url; leave it out")
			}
		}
	}

	switch {
	case c.JWKSURL != "":
		return newRemoteKeys(c)
	case c.JWKSFile != "":
		data, err := os.ReadFile(c.JWKSFile)
		if err != nil {
			return nil, FieldError("jwks_file", "%v", err)
		}
		keys, err := parseKeySet(data)
		if err != nil {
			return nil, FieldError("jwks_file", "%s: %v", c.JWKSFile, err)
		}
		return v.staticKeys("jwks_file", keys)
	default:
		data, err := os.ReadFile(c.KeyFile)
		if err != nil {
			return nil, FieldError("key_file", "%v", err)
		}
		keys, err := parseKeyFile(data)
		if err != nil {
			return nil, FieldError("key_file", "%s: %v", c.KeyFile, err)
		}
		return v.staticKeys("key_file", keys)
	}
}

// staticKeys checks that a key read at load can serve an allowed algorithm,
// so that a wrong key or algorithms list fails at load rather than on every
// request.
func (v *JWS) staticKeys(field string, keys *keySet) (keySource, error) {
	for _, k := range keys.all {
		for alg := range v.algs {
			if keyFits(k.jwk, alg) {
				return staticKeys{keys}, nil
			}
		}
	}
	return nil, FieldError(field, "no key fits algorithms [%s]", v.allowed)
}

// Verify checks the JWS and, with payload must-match, the body against it.
func (v *JWS) Verify(ctx context.Context, req *Request) error {
	_, err := v.VerifyPayload(ctx, req)
	return err
}

// VerifyPayload checks the JWS in req in this order: present and compact, alg
// allowed (before any key is touched), signature under a key chosen by kid,
// exp and nbf claims when the payload is a JWT claims set (against
// req.Received, zero meaning now, with JWSLeeway), and with must-match the
// body. It returns the signed payload, with Replace set in mode replace.
func (v *JWS) VerifyPayload(ctx context.Context, req *Request) (*Payload, error) {
	var (
		body     any
		repeated bool // body repeats a name in an object
		raw      string
		err      error
	)
	if v.from.header != "" {
		raw = req.Header.Get(v.from.header)
		if raw = strings.TrimSpace(raw); raw == "" {
			return nil, reject(ErrMissing, "no JWS in the %s header", v.from.header)
		}
	} else {
		var ok bool
		if body, repeated, ok = req.takeDecoded(); !ok {
			body, repeated, err = jsonfast.DecodeNumbers(string(req.Body))
		}
		if err != nil {
			return nil, reject(ErrMalformed, "body is not JSON, so it has no %s", v.from.name)
		}
		if raw, err = v.from.lookup(body); err != nil {
			return nil, err
		}
	}

	tok := []byte(raw)
	msg, err := jws.Parse(tok, jws.WithCompact())
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, reject(ErrMalformed, "%s is not a compact JWS", v.from.name)
	}
	sig := msg.Signatures()[0]
	hdr := sig.ProtectedHeaders()
	alg := hdr.Algorithm()
	if alg == "" {
		return nil, fmt.Errorf("%w: %w: %s has no alg header", ErrMismatch, ErrAlgorithm, v.from.name)
	}
	verifier := v.algs[alg]
	if verifier == nil {
		return nil, fmt.Errorf("%w: %w: %s has alg %q; allowed: %s", ErrMismatch, ErrAlgorithm, v.from.name, clip(alg.String()), v.allowed)
	}
	// crit names extensions a verifier must understand (b64 changes what is
	// signed); none is supported, so the token cannot be understood.
	if len(hdr.Critical()) > 0 {
		return nil, reject(ErrMalformed, "%s has a crit header; no JWS extension is supported", v.from.name)
	}
	if _, ok := hdr.Get("b64"); ok {
		return nil, reject(ErrMalformed, "%s has a b64 header; unencoded payloads are not supported", v.from.name)
	}

	kid := hdr.KeyID()
	keys, err := v.keys.lookup(ctx, kid)
	if err != nil {
		return nil, err
	}
	// The signing input is the token up to its last dot as received (RFC
	// 7515 5.2), not re-encoded from what Parse decoded.
	input := tok[:bytes.LastIndexByte(tok, '.')]
	fit, ok := false, false
	for _, k := range keys {
		if keyFits(k.jwk, alg) {
			fit = true
			if ok = verifier.Verify(input, sig.Signature(), k.raw) == nil; ok {
				break
			}
		}
	}
	if !fit {
		return nil, reject(ErrMismatch, "no %s key with kid %q", alg, clip(kid))
	}
	if !ok {
		return nil, reject(ErrMismatch, "%s signature does not match", v.from.name)
	}

	data := msg.Payload()
	payload, payloadErr := decodeJSON(data)
	if payloadErr == nil {
		if err := checkClaims(payload, req.Received, v.maxAge); err != nil {
			return nil, err
		}
	}
	if v.mode == payloadMustMatch {
		if payloadErr != nil {
			return nil, reject(ErrMismatch, "signed payload is not JSON, so it cannot match the body")
		}
		if v.from.header != "" {
			if body, repeated, err = jsonfast.DecodeNumbers(string(req.Body)); err != nil {
				return nil, reject(ErrMismatch, "body is not JSON, so it cannot match the signed payload")
			}
		} else {
			v.from.remove(body)
		}
		if !jsonEqual(payload, body) {
			return nil, reject(ErrMismatch, "body differs from the signed payload")
		}
		// Decoding kept the last of a repeated name, as most parsers do, but
		// not all: the body passed on must not read otherwise to another.
		if repeated {
			return nil, reject(ErrMismatch, "body repeats a name in an object, so it cannot match the signed payload")
		}
	}
	return &Payload{Data: data, Replace: v.mode == payloadReplace, Signed: input}, nil
}

// SignWithKey signs req with key (a PEM private key - PKCS#1, PKCS#8 or EC - or a JWK JSON private key) so that
// Verify accepts it when the key's public half is in the verifier's key set: the payload is the body (for
// `from: body.FIELD`, the body without FIELD, re-encoded compactly, which is what must-match compares), the
// protected header carries alg (the first allowed algorithm the key fits) and kid (the JWK's kid, or the kid
// argument when not empty), and the compact JWS is put where `from` says: into the body's FIELD (the body is
// re-encoded with the field added) or into the header.
//
// In detail:
//
//   - With from body.FIELD[.FIELD...] the body must be a JSON object.
//     Objects on the way to the field that are missing are created (and so
//     are part of the payload); one that is not an object is an error. A
//     FIELD the body already has is replaced and is not signed. Re-encoding
//     keeps numbers as written but sorts object keys and drops whitespace.
//   - With from header.NAME the payload is the body exactly as it is and the
//     body is left alone; in mode must-match it must be JSON.
//   - A key fits an algorithm when it has the key type the algorithm needs,
//     a JWK's own alg and use agree, and for ES256, ES384, ES512 and EdDSA the
//     curve is P-256, P-384, P-521 and Ed25519. A PEM with several blocks is
//     searched for its first private key block (EC PARAMETERS and the like
//     are skipped); encrypted PEM keys are refused.
//   - A header without a kid is written when neither the JWK nor kid gives
//     one; Verify takes it only from a key set of one key.
//
// A failed SignWithKey leaves req as it was. Its errors name the key's type
// and the algorithms, never the key.
func (v *JWS) SignWithKey(req *Request, key []byte, kid string) error {
	k, err := parseSigningKey(key)
	if err != nil {
		return fmt.Errorf("jws: cannot sign: %w", err)
	}
	var alg jwa.SignatureAlgorithm
	for _, a := range v.order {
		if signFits(k, a) {
			alg = a
			break
		}
	}
	if alg == "" {
		return fmt.Errorf("jws: cannot sign: the %s key fits none of the allowed algorithms [%s]", keyDesc(k), v.allowed)
	}
	if kid == "" {
		kid = k.KeyID()
	}
	var raw any
	if err := k.Raw(&raw); err != nil {
		return fmt.Errorf("jws: cannot sign: the %s key cannot be used", keyDesc(k))
	}

	payload := req.Body
	var obj map[string]any
	if v.from.header == "" {
		doc, err := decodeJSON(req.Body)
		if obj, _ = doc.(map[string]any); err != nil || obj == nil {
			return fmt.Errorf("jws: cannot sign: from %s needs a body that is a JSON object", v.from.name)
		}
		parent, err := v.from.parent(obj)
		if err != nil {
			return fmt.Errorf("jws: cannot sign: %w", err)
		}
		delete(parent, v.from.path[len(v.from.path)-1])
		if payload, err = compactJSON(obj); err != nil {
			return fmt.Errorf("jws: cannot sign: the body cannot be re-encoded: %w", err)
		}
	} else if v.mode == payloadMustMatch {
		if _, err := decodeJSON(req.Body); err != nil {
			return errors.New("jws: cannot sign: payload must-match needs a JSON body")
		}
	}

	hdr := jws.NewHeaders()
	if kid != "" {
		if err := hdr.Set(jws.KeyIDKey, kid); err != nil {
			return errors.New("jws: cannot sign: the kid cannot be set")
		}
	}
	// The raw key, not k: jws.Sign would put a jwk.Key's own kid over ours.
	tok, err := jws.Sign(payload, jws.WithKey(alg, raw, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		// jwx's message might describe the key; say only what failed.
		return fmt.Errorf("jws: cannot sign with the %s key as %s", keyDesc(k), alg)
	}

	if v.from.header != "" {
		initRequest(req)
		req.Header.Set(v.from.header, string(tok))
		return nil
	}
	parent, _ := v.from.parent(obj) // created above
	parent[v.from.path[len(v.from.path)-1]] = string(tok)
	body, err := compactJSON(obj)
	if err != nil {
		return fmt.Errorf("jws: cannot sign: the body cannot be re-encoded: %w", err)
	}
	req.Body = body
	return nil
}

// parent returns the object that holds the location's last field, creating
// the objects on the way that body lacks.
func (l jwsLocation) parent(body map[string]any) (map[string]any, error) {
	cur := body
	for i, p := range l.path[:len(l.path)-1] {
		next, ok := cur[p]
		if !ok {
			m := map[string]any{}
			cur[p] = m
			cur = m
			continue
		}
		if cur, ok = next.(map[string]any); !ok {
			return nil, fmt.Errorf("body field %s is not an object", strings.Join(l.path[:i+1], "."))
		}
	}
	return cur, nil
}

// compactJSON encodes v without whitespace or HTML escaping.
func compactJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// parseSigningKey reads a private key, as PEM or as a JWK. Its errors never
// quote the key.
func parseSigningKey(data []byte) (jwk.Key, error) {
	var (
		k   jwk.Key
		err error
	)
	if bytes.Contains(data, []byte("-----BEGIN")) {
		raw, err := parsePEMPrivate(data)
		if err != nil {
			return nil, err
		}
		if k, err = jwk.FromRaw(raw); err != nil {
			return nil, errors.New("the PEM private key is of an unsupported type")
		}
	} else if k, err = jwk.ParseKey(data); err != nil {
		return nil, errors.New("the key is not a PEM private key or a JWK")
	}
	switch k.(type) {
	case jwk.RSAPrivateKey, jwk.ECDSAPrivateKey, jwk.OKPPrivateKey:
		return k, nil
	case jwk.SymmetricKey:
		return nil, errors.New("the key is a symmetric key; jws signs with a private key")
	}
	return nil, errors.New("the key is a public key; signing needs the private key")
}

// parsePEMPrivate returns the first private key block of PEM data.
func parsePEMPrivate(data []byte) (any, error) {
	public := false
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED") || b.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("the PEM private key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)")
		}
		var (
			k   any
			err error
		)
		switch b.Type {
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE":
			public = true
			continue
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("the PEM %s block does not parse", b.Type)
		}
		return k, nil
	}
	if public {
		return nil, errors.New("the PEM holds a public key or certificate; signing needs the private key")
	}
	return nil, errors.New("no RSA PRIVATE KEY, EC PRIVATE KEY or PRIVATE KEY block in the PEM")
}

// signFits reports whether k may sign alg: keyFits, and the curve the
// algorithm names.
func signFits(k jwk.Key, alg jwa.SignatureAlgorithm) bool {
	if !keyFits(k, alg) {
		return false
	}
	var crv jwa.EllipticCurveAlgorithm
	switch k := k.(type) {
	case jwk.ECDSAPrivateKey:
		crv = k.Crv()
	case jwk.OKPPrivateKey:
		crv = k.Crv()
	}
	switch alg {
	case jwa.ES256:
		return crv == jwa.P256
	case jwa.ES384:
		return crv == jwa.P384
	case jwa.ES512:
		return crv == jwa.P521
	case jwa.EdDSA:
		return crv == jwa.Ed25519
	}
	return true
}

// keyDesc names a key's type (and curve) for messages.
func keyDesc(k jwk.Key) string {
	switch k := k.(type) {
	case jwk.ECDSAPrivateKey:
		return "EC " + k.Crv().String()
	case jwk.OKPPrivateKey:
		return "OKP " + k.Crv().String()
	}
	return k.KeyType().String()
}

// checkClaims checks the exp and nbf claims of a payload that has them, and
// with maxAge > 0 its iat claim.
func checkClaims(payload any, received time.Time, maxAge time.Duration) error {
	claims, ok := payload.(map[string]any)
	if !ok {
		return nil
	}
	if received.IsZero() {
		received = time.Now()
	}
	for _, name := range []string{"exp", "nbf", "iat"} {
		raw, ok := claims[name]
		if !ok || (name == "iat" && maxAge <= 0) {
			continue
		}
		n, ok := raw.(json.Number)
		if !ok {
			return reject(ErrMalformed, "%s claim is not a number", name)
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil || f > 1e15 || f < -1e15 {
			return reject(ErrMalformed, "%s claim is not a time", name)
		}
		sec := math.Floor(f)
		at := time.Unix(int64(sec), int64((f-sec)*1e9))
		if name == "exp" && received.After(at.Add(JWSLeeway)) {
			return reject(ErrStale, "token expired %s ago", received.Sub(at).Round(time.Second))
		}
		if name == "nbf" && received.Before(at.Add(-JWSLeeway)) {
			return reject(ErrStale, "token not valid for another %s", at.Sub(received).Round(time.Second))
		}
		if name == "iat" && received.Sub(at) > maxAge {
			return reject(ErrStale, "token issued %s ago, max_age %s", received.Sub(at).Round(time.Second), maxAge)
		}
	}
	return nil
}

// clip shortens text taken from a token before it goes into a message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// jwsLocation is a parsed JWSConfig.From.
type jwsLocation struct {
	name   string   // as configured, for messages
	header string   // canonical header name, or "" for the body
	path   []string // object fields into the body
}

func parseJWSFrom(from string) (jwsLocation, error) {
	loc := jwsLocation{name: from}
	switch src, rest, _ := strings.Cut(from, "."); {
	case from == "":
		return loc, FieldError("from", "must be set, as body.FIELD or header.NAME")
	case src == "header" && rest != "":
		loc.header = textproto.CanonicalMIMEHeaderKey(rest)
		return loc, nil
	case src == "body" && rest != "":
		loc.path = strings.Split(rest, ".")
		for _, p := range loc.path {
			if p == "" {
				return loc, FieldError("from", "empty field name in %q", from)
			}
		}
		return loc, nil
	}
	return loc, FieldError("from", "%q is not body.FIELD[.FIELD...] or header.NAME", from)
}

// lookup returns the trimmed string at the path in body.
func (l jwsLocation) lookup(body any) (string, error) {
	cur := body
	for _, p := range l.path {
		obj, ok := cur.(map[string]any)
		if !ok {
			return "", reject(ErrMissing, "no %s", l.name)
		}
		if cur, ok = obj[p]; !ok {
			return "", reject(ErrMissing, "no %s", l.name)
		}
	}
	s, ok := cur.(string)
	if !ok {
		return "", reject(ErrMalformed, "%s is not a string", l.name)
	}
	if s = strings.TrimSpace(s); s == "" {
		return "", reject(ErrMissing, "%s is empty", l.name)
	}
	return s, nil
}

// remove deletes the field at the path from body, which lookup has walked.
func (l jwsLocation) remove(body any) {
	cur := body
	for _, p := range l.path[:len(l.path)-1] {
		cur = cur.(map[string]any)[p]
	}
	delete(cur.(map[string]any), l.path[len(l.path)-1])
}

// decodeJSON decodes one JSON value, numbers as json.Number (so that
// must-match tells apart numbers a float64 would not), and refuses trailing
// data.
func decodeJSON(data []byte) (any, error) {
	v, _, err := jsonfast.DecodeNumbers(string(data))
	return v, err
}

// jsonEqual compares decoded JSON values. Numbers are equal when they are the
// same decimal number however written (1, 1.0 and 1e0), exactly, with no
// rounding to float64; objects regardless of key order.
func jsonEqual(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, av := range a {
			bv, ok := b[k]
			if !ok || !jsonEqual(av, bv) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !jsonEqual(a[i], b[i]) {
				return false
			}
		}
		return true
	case json.Number:
		b, ok := b.(json.Number)
		return ok && numberEqual(a, b)
	default: // string, bool or nil
		return a == b
	}
}

// numberEqual compares two JSON numbers as exact decimals.
func numberEqual(a, b json.Number) bool {
	if a == b {
		return true
	}
	an, ad, ae, aok := decimal(string(a))
	bn, bd, be, bok := decimal(string(b))
	return aok && bok && an == bn && ad == bd && ae == be
}

// decimal splits a JSON number into sign, significant digits (no leading or
// trailing zeros) and exponent, so that equal numbers split equally. Zero is
// positive with no digits. ok is false for an exponent out of range.
func decimal(s string) (neg bool, digits string, exp int64, ok bool) {
	neg = strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	mant, e, hasExp := strings.Cut(strings.ToLower(s), "e")
	if hasExp {
		var err error
		if exp, err = strconv.ParseInt(e, 10, 64); err != nil || exp > 1<<40 || exp < -(1<<40) {
			return false, "", 0, false
		}
	}
	whole, frac, _ := strings.Cut(mant, ".")
	digits = whole + frac
	exp -= int64(len(frac))
	digits = strings.TrimLeft(digits, "0")
	trimmed := strings.TrimRight(digits, "0")
	exp += int64(len(digits) - len(trimmed))
	if trimmed == "" {
		return false, "", 0, true
	}
	return neg, trimmed, exp, true
}

// keyFits reports whether k may verify alg: the key type the algorithm needs,
// and the key's own alg and use, when it states them, agree.
func keyFits(k jwk.Key, alg jwa.SignatureAlgorithm) bool {
	if a := k.Algorithm().String(); a != "" && a != alg.String() {
		return false
	}
	if u := k.KeyUsage(); u != "" && u != string(jwk.ForSignature) {
		return false
	}
	return k.KeyType() == jwsAlgorithms[alg]
}

// keySource yields the keys that may have signed a token with a given kid.
type keySource interface {
	lookup(ctx context.Context, kid string) ([]sigKey, error)
}

// sigKey is a public key with its raw form, which jwx would otherwise
// extract (copying the key) on every verification.
type sigKey struct {
	jwk jwk.Key
	raw any
}

// keySet is a set of public keys, indexed by kid.
type keySet struct {
	all   []sigKey
	byKid map[string][]sigKey
}

// newKeySet indexes keys by kid and takes their raw forms once.
func newKeySet(keys []jwk.Key) *keySet {
	s := &keySet{byKid: map[string][]sigKey{}}
	for _, k := range keys {
		sk := sigKey{jwk: k, raw: k}
		if raw, err := jwk.PublicRawKeyOf(k); err == nil {
			sk.raw = raw
		}
		s.all = append(s.all, sk)
		if kid := k.KeyID(); kid != "" {
			s.byKid[kid] = append(s.byKid[kid], sk)
		}
	}
	return s
}

// pick applies the kid rule of JWSConfig to the set.
func (s *keySet) pick(kid string) []sigKey {
	if kid == "" {
		if len(s.all) == 1 {
			return s.all
		}
		return nil
	}
	if keys := s.byKid[kid]; len(keys) > 0 {
		return keys
	}
	if len(s.all) == 1 && s.all[0].jwk.KeyID() == "" {
		return s.all
	}
	return nil
}

// unknownKid is the rejection for a kid no key has.
func unknownKid(kid string, n int) error {
	if kid == "" {
		return reject(ErrMismatch, "token has no kid and the key set holds %d keys", n)
	}
	return reject(ErrMismatch, "no key with kid %q", clip(kid))
}

// staticKeys are keys read from a file at load.
type staticKeys struct{ *keySet }

func (s staticKeys) lookup(_ context.Context, kid string) ([]sigKey, error) {
	if keys := s.pick(kid); len(keys) > 0 {
		return keys, nil
	}
	return nil, unknownKid(kid, len(s.all))
}

// parseKeySet reads a JWK set, keeping the public keys usable for signatures.
// Keys of unknown types are skipped; symmetric keys are dropped, since they
// are secrets and HMAC is not accepted here; private keys are reduced to
// their public half.
func parseKeySet(data []byte) (*keySet, error) {
	set, err := jwk.Parse(data, jwk.WithIgnoreParseError(true))
	if err != nil {
		return nil, errors.New("not a JWK set")
	}
	var keys []jwk.Key
	for i := range set.Len() {
		k, _ := set.Key(i)
		if k.KeyType() == jwa.OctetSeq {
			continue
		}
		if u := k.KeyUsage(); u != "" && u != string(jwk.ForSignature) {
			continue
		}
		pub, err := jwk.PublicKeyOf(k)
		if err != nil {
			continue
		}
		keys = append(keys, pub)
	}
	if len(keys) == 0 {
		return nil, errors.New("no public signing key in the JWK set")
	}
	return newKeySet(keys), nil
}

// parseKeyFile reads one key, as PEM or as a JWK.
func parseKeyFile(data []byte) (*keySet, error) {
	var (
		k   jwk.Key
		err error
	)
	if bytes.Contains(data, []byte("-----BEGIN")) {
		k, err = jwk.ParseKey(data, jwk.WithPEM(true))
	} else {
		k, err = jwk.ParseKey(data)
	}
	if err != nil {
		return nil, errors.New("not a PEM public key or a JWK")
	}
	if k.KeyType() == jwa.OctetSeq {
		return nil, errors.New("a symmetric key is a shared secret; jws verifies with public keys (use kind hmac)")
	}
	pub, err := jwk.PublicKeyOf(k)
	if err != nil {
		return nil, errors.New("no public key in it")
	}
	return newKeySet([]jwk.Key{pub}), nil
}

// FetchOutside implements KeyFetcher: only a jwks_url fetches.
func (v *JWS) FetchOutside() {
	if r, ok := v.keys.(*remoteKeys); ok {
		r.outside.Store(true)
	}
}

// FetchKeys implements KeyFetcher. The token's kid is read (from its
// protected header, unverified) only when a fetch may happen.
func (v *JWS) FetchKeys(ctx context.Context, req *Request) {
	if r, ok := v.keys.(*remoteKeys); ok {
		r.prefetch(ctx, func() string { return v.kidOf(req) })
	}
}

// kidOf reads the kid of req's token without verifying anything; "" when
// there is none or no token.
func (v *JWS) kidOf(req *Request) string {
	var raw string
	if v.from.header != "" {
		raw = strings.TrimSpace(req.Header.Get(v.from.header))
	} else {
		// Decoded as VerifyPayload decodes it, which takes it (takeDecoded).
		body, repeated, err := jsonfast.DecodeNumbers(string(req.Body))
		if err != nil {
			return ""
		}
		req.decoded = &decodedBody{src: req.Body, v: body, repeated: repeated}
		if raw, err = v.from.lookup(body); err != nil {
			return ""
		}
	}
	seg, _, _ := strings.Cut(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil {
		return ""
	}
	var hdr struct {
		Kid string `json:"kid"`
	}
	_ = json.Unmarshal(b, &hdr)
	return hdr.Kid
}

// remoteKeys is a JWK set fetched from a URL, cached in memory. Fetches
// happen on use, one at a time, and at most once per minRefresh. A file URL
// is "fetched" by reading the file. With outside set, fetches happen only in
// prefetch, and lookup uses the keys at hand.
type remoteKeys struct {
	url        string
	file       string // the path of a file URL, or ""
	header     http.Header
	client     *http.Client
	refresh    time.Duration
	minRefresh time.Duration

	fetching sync.Mutex // held for the whole of a fetch
	outside  atomic.Bool
	waiting  chan struct{} // one per request waiting in prefetch

	mu      sync.Mutex // guards the fields below
	keys    *keySet    // nil until a fetch succeeds
	fetched time.Time  // last successful fetch
	tried   time.Time  // last fetch, successful or not
	lastErr error      // why the last fetch failed
}

func newRemoteKeys(c JWSConfig) (*remoteKeys, error) {
	u, err := url.Parse(c.JWKSURL)
	const want = "must be an http or https URL, or a file URL with an absolute path (file:///abs/path/jwks.json)"
	if err != nil {
		return nil, FieldError("jwks_url", "%s", want)
	}
	r := &remoteKeys{url: c.JWKSURL, header: http.Header{}, refresh: c.Refresh, minRefresh: c.MinRefresh,
		waiting: make(chan struct{}, JWKSMaxWaiting)}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return nil, FieldError("jwks_url", "%s", want)
		}
	case "file":
		// file:relative and file://host/path parse with an Opaque or a
		// Host; a query or fragment would be silently ignored.
		if u.Opaque != "" || (u.Host != "" && u.Host != "localhost") || !strings.HasPrefix(u.Path, "/") ||
			u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.User != nil {
			return nil, FieldError("jwks_url", "%s", want)
		}
		// jwks_headers are not an error here: one provider file serves both
		// the lender's URL and a recorded case's local copy of its JWKS.
		r.file = filepath.FromSlash(u.Path)
	default:
		return nil, FieldError("jwks_url", "%s", want)
	}
	for name, val := range c.JWKSHeaders {
		if name == "" {
			return nil, FieldError("jwks_headers", "empty header name")
		}
		r.header.Set(name, val)
	}
	switch {
	case r.refresh < 0:
		return nil, FieldError("refresh", "must not be negative")
	case r.refresh == 0:
		r.refresh = DefaultJWKSRefresh
	}
	switch {
	case r.minRefresh < 0:
		return nil, FieldError("min_refresh", "must not be negative")
	case r.minRefresh == 0:
		r.minRefresh = DefaultJWKSMinRefresh
	}
	if r.file != "" {
		return r, nil
	}
	host := u.Host
	// jwks_headers may carry an API key: never send it to another host or
	// over plain http after https.
	r.client = httpout.Client(0, func(req *http.Request, via []*http.Request) error {
		switch {
		case len(via) >= 5:
			return errors.New("too many redirects")
		case req.URL.Host != host || (via[0].URL.Scheme == "https" && req.URL.Scheme != "https"):
			return errors.New("redirect to another host or to http")
		}
		return nil
	})
	r.client.Timeout = JWKSFetchTimeout
	return r, nil
}

func (r *remoteKeys) lookup(ctx context.Context, kid string) ([]sigKey, error) {
	if r.outside.Load() {
		return r.atHand(kid)
	}
	r.mu.Lock()
	keys, fetched := r.keys, r.fetched
	r.mu.Unlock()

	var err error
	switch {
	case keys == nil:
		if keys, err = r.fetch(ctx, true); err != nil {
			return nil, err
		}
	case time.Since(fetched) >= r.refresh:
		// A stale set still serves while another request refreshes it.
		if keys, err = r.fetch(ctx, false); err != nil {
			return nil, err
		}
	}
	got := keys.pick(kid)
	if len(got) == 0 && kid != "" {
		// Perhaps the lender rotated its keys since the last fetch: wait for
		// a fetch in flight, which may bring the kid.
		if keys, err = r.fetch(ctx, true); err != nil {
			return nil, err
		}
		got = keys.pick(kid)
	}
	if len(got) == 0 {
		return nil, unknownKid(kid, len(keys.all))
	}
	return got, nil
}

// atHand picks kid's keys from the set as it is, without fetching.
func (r *remoteKeys) atHand(kid string) ([]sigKey, error) {
	r.mu.Lock()
	keys, tried := r.keys, !r.tried.IsZero()
	r.mu.Unlock()
	switch {
	case keys == nil && !tried:
		return nil, reject(ErrUnavailable, "the key set has not been fetched yet")
	case keys == nil:
		_, err := r.current() // why the fetches failed
		return nil, err
	}
	if got := keys.pick(kid); len(got) > 0 {
		return got, nil
	}
	return nil, unknownKid(kid, len(keys.all))
}

// prefetch fetches, as lookup would, what a request with the kid that kid()
// returns needs: the set when there is none, a new one when it is stale or
// lacks the kid. It returns at once when no fetch can happen now (the set is
// there and minRefresh has not passed since the last fetch), or when
// JWKSMaxWaiting requests already wait; the kid is read only past those.
func (r *remoteKeys) prefetch(ctx context.Context, kid func() string) {
	r.mu.Lock()
	keys, fetched, tried := r.keys, r.fetched, r.tried
	r.mu.Unlock()
	if keys != nil && !tried.IsZero() && time.Since(tried) < r.minRefresh {
		return
	}
	select {
	case r.waiting <- struct{}{}:
		defer func() { <-r.waiting }()
	default:
		return
	}
	switch {
	case keys == nil:
		keys, _ = r.fetch(ctx, true)
	case time.Since(fetched) >= r.refresh:
		keys, _ = r.fetch(ctx, false) // a stale set still serves meanwhile
	}
	if keys != nil {
		if k := kid(); k != "" && len(keys.pick(k)) == 0 {
			_, _ = r.fetch(ctx, true)
		}
	}
}

// fetch fetches the set unless a fetch was tried within minRefresh, and
// returns the newest good set, however stale. It fails only when no fetch
// has ever succeeded. When another fetch is in flight, fetch waits for it if
// wait is set and otherwise returns the current set at once.
func (r *remoteKeys) fetch(ctx context.Context, wait bool) (*keySet, error) {
	if wait {
		r.fetching.Lock()
	} else if !r.fetching.TryLock() {
		return r.current()
	}
	defer r.fetching.Unlock()

	r.mu.Lock()
	due := r.tried.IsZero() || time.Since(r.tried) >= r.minRefresh
	r.mu.Unlock()
	if due {
		// A request that gives up must not cut short a fetch other requests
		// wait for; the client's timeout bounds it.
		keys, err := r.get(context.WithoutCancel(ctx))
		r.mu.Lock()
		r.tried = time.Now()
		if err == nil {
			r.keys, r.fetched, r.lastErr = keys, r.tried, nil
		} else {
			r.lastErr = err
		}
		r.mu.Unlock()
	}
	return r.current()
}

// current returns the newest good set, or why there is none.
func (r *remoteKeys) current() (*keySet, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.keys == nil {
		return nil, reject(ErrUnavailable, "%v", r.lastErr)
	}
	return r.keys, nil
}

// get performs one fetch. Its errors name neither the URL, which may hold a
// credential in its query, nor the headers.
func (r *remoteKeys) get(ctx context.Context) (*keySet, error) {
	if r.file != "" {
		return r.read()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return nil, errors.New("jwks_url: cannot build the request")
	}
	req.Header = r.header.Clone()
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwks_url fetch failed: %s", redact.Error(httpout.TransportError(err)))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks_url answered %s", resp.Status)
	}
	data, whole, err := httpout.ReadAnswer(resp.Body, JWKSMaxBytes)
	switch {
	case err != nil:
		return nil, errors.New("jwks_url fetch failed while reading the body")
	case !whole:
		return nil, fmt.Errorf("jwks_url served more than %d bytes", JWKSMaxBytes)
	}
	keys, err := parseKeySet(data)
	if err != nil {
		return nil, fmt.Errorf("jwks_url: %w", err)
	}
	return keys, nil
}

// read reads the JWK set of a file URL. Its errors do not name the path:
// they become rejection reasons, which the sender sees.
func (r *remoteKeys) read() (*keySet, error) {
	// Stat first: opening a FIFO would block until someone writes to it.
	switch fi, err := os.Stat(r.file); {
	case errors.Is(err, fs.ErrNotExist):
		return nil, errors.New("jwks_url file does not exist")
	case err != nil:
		return nil, fmt.Errorf("jwks_url file cannot be read: %w", pathErr(err))
	case !fi.Mode().IsRegular():
		return nil, errors.New("jwks_url file is not a regular file")
	}
	f, err := os.Open(r.file)
	if err != nil {
		return nil, fmt.Errorf("jwks_url file cannot be read: %w", pathErr(err))
	}
	defer func() { _ = f.Close() }() // read only: closing cannot lose data
	data, err := io.ReadAll(io.LimitReader(f, JWKSMaxBytes+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("jwks_url file cannot be read: %w", pathErr(err))
	case len(data) > JWKSMaxBytes:
		return nil, fmt.Errorf("jwks_url file holds more than %d bytes", JWKSMaxBytes)
	}
	keys, err := parseKeySet(data)
	if err != nil {
		return nil, fmt.Errorf("jwks_url: %w", err)
	}
	return keys, nil
}

// pathErr strips the path from a file error.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
