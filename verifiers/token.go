package verifiers

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

func init() {
	Register("token", Build(NewToken))
	Register("bearer", Build(NewBearer))
}

// TokenConfig is the configuration block of the token kind.
type TokenConfig struct {
	// Header is the header holding the token. Empty means Authorization.
	Header string `koanf:"header"`
	// Prefix is literal text before the token, such as "token " (compared
	// exactly, case included). Empty means the header holds the bare token.
	Prefix string `koanf:"prefix"`
	// Token is the accepted token. Set Token or Tokens.
	Token string `koanf:"token"`
	// Tokens are tokens accepted at the same time, for rotation. Sign uses the
	// first one. Set Token or Tokens.
	Tokens []string `koanf:"tokens"`
}

// Token checks that a header equals a prefix followed by one of the tokens.
type Token struct {
	header string
	prefix string
	tokens tokenSet
	first  string // the token Sign sends
}

var (
	_ Verifier = (*Token)(nil)
	_ Signer   = (*Token)(nil)
)

// NewToken validates c and returns the verifier. Errors are *ConfigError.
func NewToken(c TokenConfig) (*Token, error) {
	tokens, err := oneOrMany(c.Token, c.Tokens, "token", "tokens")
	if err != nil {
		return nil, err
	}
	if c.Header == "" {
		c.Header = "Authorization"
	}
	return &Token{header: c.Header, prefix: c.Prefix, tokens: newTokenSet(tokens), first: tokens[0]}, nil
}

// Sign sets the header to the prefix and the first token.
func (v *Token) Sign(req *Request) error {
	initRequest(req)
	req.Header.Set(v.header, v.prefix+v.first)
	return nil
}

// Verify checks the header.
func (v *Token) Verify(_ context.Context, req *Request) error {
	raw := req.Header.Get(v.header)
	if raw == "" {
		return reject(ErrMissing, "no %s header", v.header)
	}
	tok, ok := strings.CutPrefix(raw, v.prefix)
	if !ok {
		return reject(ErrMalformed, "%s header does not start with %q", v.header, v.prefix)
	}
	if !v.tokens.match(tok) {
		return reject(ErrMismatch, "%s token does not match", v.header)
	}
	return nil
}

// BearerConfig is the configuration block of the bearer kind.
type BearerConfig struct {
	// Token is the accepted token. Set Token or Tokens.
	Token string `koanf:"token"`
	// Tokens are tokens accepted at the same time, for rotation. Sign uses the
	// first one. Set Token or Tokens.
	Tokens []string `koanf:"tokens"`
}

// Bearer checks "Authorization: Bearer TOKEN" (RFC 6750; the scheme name is
// case-insensitive).
type Bearer struct {
	tokens tokenSet
	first  string // the token Sign sends
}

var (
	_ Verifier = (*Bearer)(nil)
	_ Signer   = (*Bearer)(nil)
)

// NewBearer validates c and returns the verifier. Errors are *ConfigError.
func NewBearer(c BearerConfig) (*Bearer, error) {
	tokens, err := oneOrMany(c.Token, c.Tokens, "token", "tokens")
	if err != nil {
		return nil, err
	}
	return &Bearer{tokens: newTokenSet(tokens), first: tokens[0]}, nil
}

// Sign sets "Authorization: Bearer" and the first token.
func (v *Bearer) Sign(req *Request) error {
	initRequest(req)
	req.Header.Set("Authorization", "Bearer "+v.first)
	return nil
}

// Verify checks the Authorization header.
func (v *Bearer) Verify(_ context.Context, req *Request) error {
	tok, err := credentials(req, "Bearer")
	if err != nil {
		return err
	}
	if !v.tokens.match(tok) {
		return reject(ErrMismatch, "bearer token does not match")
	}
	return nil
}

// credentials returns the credentials of "Authorization: <scheme> <credentials>",
// matching the scheme name case-insensitively as RFC 9110 says.
func credentials(req *Request, scheme string) (string, error) {
	raw := req.Header.Get("Authorization")
	if raw == "" {
		return "", reject(ErrMissing, "no Authorization header")
	}
	got, cred, _ := strings.Cut(raw, " ")
	cred = strings.TrimLeft(cred, " ")
	if !strings.EqualFold(got, scheme) || cred == "" {
		return "", reject(ErrMalformed, "Authorization header is not %s credentials", scheme)
	}
	return cred, nil
}

// initRequest gives req the header and query maps a Sign writes to.
func initRequest(req *Request) {
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if req.Query == nil {
		req.Query = url.Values{}
	}
}
