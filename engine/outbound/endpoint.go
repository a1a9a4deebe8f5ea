package outbound

import (
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/engine/internal/headers"
	"github.com/hookrelay/hookrelay/internal/redact"
	"github.com/hookrelay/hookrelay/transforms"
)

// Endpoint is the request side of a compiled destination: where a delivery
// goes, how it is rendered, authenticated and signed, and what is masked in
// its answers. The engine's Destination adds how deliveries are queued.
type Endpoint struct {
	rawURL   string
	url      *transforms.Template
	method   string
	timeout  time.Duration
	headers  []Header
	auth     Auth // nil: none
	signer   *standardSigner
	bodyMode string // envelope | raw | expr
	body     *transforms.Program
	// needEnv: the body, the url or a header reads the event, so that a
	// send decodes the stored one; false when all are constant.
	needEnv bool
	// secrets are the credentials sent to the destination, masked in what
	// it answers and in errors before an attempt is recorded.
	secrets *redact.Secrets
	// shownPath is the URL's path when the URL was given as a secret: not
	// shown (SecretPath).
	shownPath string
}

// NewEndpoint compiles the request side of a destination: url, method,
// timeout, headers, auth, sign and body. Errors name the field.
func NewEndpoint(c *config.DestinationConfig) (*Endpoint, error) {
	e := &Endpoint{rawURL: c.URL}
	var err error
	if c.URL == "" {
		return nil, config.FieldErr("url", "required")
	}
	if e.url, err = transforms.CompileURLTemplate(c.URL); err != nil {
		return nil, config.FieldErr("url", err.Error())
	}
	if e.url.Constant() && !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://") {
		return nil, config.FieldErr("url", "must be an http:// or https:// URL")
	}
	if !authorityParses(c.URL) {
		// Not quoted: what reads as the path may be the rest of a password.
		return nil, config.FieldErr("url", "the host and port do not parse; a password holding /, ? or # must be percent-encoded")
	}
	e.method = strings.ToUpper(c.Method)
	if e.method == "" {
		e.method = http.MethodPost
	}
	if c.Timeout < 0 {
		return nil, config.FieldErr("timeout", "must not be negative")
	}
	e.timeout = orDur(c.Timeout, 10*time.Second)
	names := make([]string, 0, len(c.Headers))
	for n := range c.Headers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t, err := transforms.CompileTemplate(c.Headers[n])
		if err != nil {
			return nil, config.FieldErr("headers."+n, err.Error())
		}
		e.headers = append(e.headers, Header{http.CanonicalHeaderKey(n), t})
	}
	if c.Auth != nil {
		if e.auth, err = NewAuth(c.Auth); err != nil {
			return nil, err
		}
	}
	if c.Sign != nil {
		if e.signer, err = newStandardSigner(c.Sign.Secret); err != nil {
			return nil, err
		}
	}
	switch c.Body {
	case "", "envelope":
		e.bodyMode = "envelope"
	case "raw":
		e.bodyMode = "raw"
	default:
		e.bodyMode = "expr"
		if e.body, err = transforms.Compile(c.Body); err != nil {
			return nil, config.FieldErr("body", err.Error())
		}
	}
	e.needEnv = e.bodyMode == "expr" || !e.url.Constant()
	for _, h := range e.headers {
		e.needEnv = e.needEnv || !h.Value.Constant()
	}
	e.secrets = e.secretsOf(c)
	return e, nil
}

// SecretPath masks the path of a URL given as a secret (env: or file:):
// webhook URLs such as Slack's carry their credential in the path, which
// URL masking leaves shown, and Go's network errors quote the whole URL.
func (e *Endpoint) SecretPath() {
	lit, _, _ := strings.Cut(e.rawURL, "{{")
	lit, _, _ = strings.Cut(lit, "?")
	lit, _, _ = strings.Cut(lit, "#")
	i := strings.Index(lit, "://")
	if i < 0 {
		return
	}
	j := strings.IndexByte(lit[i+3:], '/')
	if j < 0 {
		return
	}
	if p := lit[i+3+j:]; len(p) > 1 {
		e.secrets.Add(p, redact.Mask)
		e.shownPath = p
	}
}

// ShownURL is the URL as output may show it (check): redact.URL's masking,
// and the path masked too when the URL was given as a secret.
func (e *Endpoint) ShownURL() string {
	u := redact.URL(e.rawURL)
	if e.shownPath != "" {
		u = strings.Replace(u, e.shownPath, "/"+redact.Mask, 1)
	}
	return u
}

// Mask replaces every credential the endpoint sends in s.
func (e *Endpoint) Mask(s string) string { return e.secrets.Replace(s) }

// secretsOf gathers what a destination is sent as a credential: its auth of
// any kind (every credential field written, used by the kind or not), sign
// secret, the URL's password and query values and the header values whose
// names say credential (as the rejection log reads names). A destination
// may echo them in a refusal ("invalid token: Bearer ..."), and the first
// KiB of each answer is recorded, stored and shown by the admin API;
// redact.Secrets masks their encodings too (the base64 of a Basic
// credential).
func (e *Endpoint) secretsOf(c *config.DestinationConfig) *redact.Secrets {
	s := &redact.Secrets{}
	if a := c.Auth; a != nil {
		creds := []string{a.Password, a.Token, a.APIKey}
		if e.auth != nil {
			creds = append(creds, e.auth.Secrets()...)
		}
		seen := map[string]bool{}
		for _, v := range creds {
			if !seen[v] {
				seen[v] = true
				s.Add(v, redact.Mask)
			}
		}
	}
	if c.Sign != nil {
		s.Add(c.Sign.Secret, redact.Mask)
	}
	lit, _, _ := strings.Cut(c.URL, "{{")
	if u, err := url.Parse(lit); err == nil {
		if p, ok := u.User.Password(); ok && p != "" {
			s.Add(p, redact.Mask)
			s.Add(u.User.Username()+":"+p, redact.Mask)
		}
		for name, vs := range u.Query() {
			if headers.Secret(name) {
				for _, v := range vs {
					s.Add(v, redact.Mask)
				}
			}
		}
	}
	for name, v := range c.Headers {
		if !headers.Secret(name) || strings.Contains(v, "{{") {
			continue
		}
		s.Add(v, redact.Mask)
		for _, word := range strings.Fields(v) {
			if len(word) >= 8 { // "Bearer <token>": the token alone
				s.Add(word, redact.Mask)
			}
		}
	}
	return s
}

// authorityParses reports whether the scheme, userinfo, host and port of a
// URL template, when its literal text holds them whole, parse. A password
// written with a "/", "?" or "#" ends the authority early: every request
// would fail, and the rest of the password, read as the path, query or
// fragment, would be shown unmasked wherever the URL is (check, admin
// responses).
func authorityParses(tmpl string) bool {
	lit, _, templated := strings.Cut(tmpl, "{{")
	i := strings.Index(lit, "://")
	if i < 0 {
		return true
	}
	end := len(lit)
	if j := strings.IndexAny(lit[i+3:], "/?#"); j >= 0 {
		end = i + 3 + j
	} else if templated {
		return true // a placeholder completes it; rendering checks it
	}
	_, err := url.Parse(lit[:end])
	return err == nil
}
