package engine

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/engine/internal/headers"
	"github.com/hookrelay/hookrelay/internal/redact"
	"github.com/hookrelay/hookrelay/transforms"
)

// Destination is a compiled destination.
type Destination struct {
	Name   string
	Config *config.DestinationConfig

	url         *transforms.Template
	method      string
	timeout     time.Duration
	headers     []headerTmpl
	auth        *config.AuthConfig
	signKey     []byte
	bodyMode    string // envelope | raw | expr
	body        *transforms.Program
	ordered     bool
	concurrency int
	rate        float64
	retry       retryPolicy
	hold        bool
	// secrets are the credentials sent to the destination, masked in what
	// it answers and in errors before an attempt is recorded.
	secrets *redact.Secrets
	// shownPath is the URL's path when the URL was given as a secret: not
	// shown (secretPath).
	shownPath string
}

type headerTmpl struct {
	name  string
	value *transforms.Template
}

func newDestination(name string, c *config.DestinationConfig) (*Destination, error) {
	d := &Destination{Name: name, Config: c, auth: c.Auth}
	var err error
	if c.URL == "" {
		return nil, config.FieldErr("url", "required")
	}
	if d.url, err = transforms.CompileURLTemplate(c.URL); err != nil {
		return nil, config.FieldErr("url", err.Error())
	}
	if d.url.Constant() && !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://") {
		return nil, config.FieldErr("url", "must be an http:// or https:// URL")
	}
	if !authorityParses(c.URL) {
		// Not quoted: what reads as the path may be the rest of a password.
		return nil, config.FieldErr("url", "the host and port do not parse; a password holding /, ? or # must be percent-encoded")
	}
	d.method = strings.ToUpper(c.Method)
	if d.method == "" {
		d.method = http.MethodPost
	}
	if c.Timeout < 0 {
		return nil, config.FieldErr("timeout", "must not be negative")
	}
	d.timeout = orDur(c.Timeout, 10*time.Second)
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
		d.headers = append(d.headers, headerTmpl{http.CanonicalHeaderKey(n), t})
	}
	if a := c.Auth; a != nil {
		switch a.Kind {
		case "basic":
			if a.Username == "" {
				return nil, config.FieldErr("auth.username", "required for kind basic")
			}
		case "bearer":
			if a.Token == "" {
				return nil, config.FieldErr("auth.token", "required for kind bearer")
			}
		case "header", "query":
			if a.APIKey == "" {
				return nil, config.FieldErr("auth.api_key", "required for kind "+a.Kind)
			}
			if a.Name == "" {
				a.Name = "API-KEY"
			}
		default:
			return nil, config.FieldErr("auth.kind", fmt.Sprintf("%q is not one of basic, bearer, header, query", a.Kind))
		}
	}
	if c.Sign != nil {
		s, ok := strings.CutPrefix(c.Sign.Secret, "whsec_")
		key, err := base64.StdEncoding.DecodeString(s)
		if !ok || err != nil || len(key) == 0 {
			return nil, config.FieldErr("sign.secret", `must be "whsec_" followed by base64`)
		}
		d.signKey = key
	}
	switch c.Body {
	case "", "envelope":
		d.bodyMode = "envelope"
	case "raw":
		d.bodyMode = "raw"
	default:
		d.bodyMode = "expr"
		if d.body, err = transforms.Compile(c.Body); err != nil {
			return nil, config.FieldErr("body", err.Error())
		}
	}
	switch c.Ordering {
	case "", "key":
		d.ordered = true
	case "none":
	default:
		return nil, config.FieldErr("ordering", fmt.Sprintf("%q is not one of key, none", c.Ordering))
	}
	d.concurrency = c.Concurrency
	if d.concurrency == 0 {
		d.concurrency = 16
	}
	if d.concurrency < 0 {
		return nil, config.FieldErr("concurrency", "must not be negative")
	}
	if c.Rate < 0 {
		return nil, config.FieldErr("rate", "must not be negative")
	}
	d.rate = c.Rate
	switch c.OnExhausted {
	case "", "hold":
		d.hold = true
	case "skip":
	default:
		return nil, config.FieldErr("on_exhausted", fmt.Sprintf("%q is not one of hold, skip", c.OnExhausted))
	}
	d.secrets = destinationSecrets(c)
	d.retry, err = newRetryPolicy(c.Retry)
	return d, err
}

// secretPath masks the path of a URL given as a secret (env: or file:):
// webhook URLs such as Slack's carry their credential in the path, which
// URL masking leaves shown, and Go's network errors quote the whole URL.
func (d *Destination) secretPath() {
	lit, _, _ := strings.Cut(d.Config.URL, "{{")
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
		d.secrets.Add(p, redact.Mask)
		d.shownPath = p
	}
}

// ShownURL is the URL as output may show it (check): redact.URL's masking,
// and the path masked too when the URL was given as a secret.
func (d *Destination) ShownURL() string {
	u := redact.URL(d.Config.URL)
	if d.shownPath != "" {
		u = strings.Replace(u, d.shownPath, "/"+redact.Mask, 1)
	}
	return u
}

// destinationSecrets gathers what a destination is sent as a credential:
// its auth of any kind, sign secret, the URL's password and query values
// and the header values whose names say credential (as the rejection log
// reads names). A destination may echo them in a refusal ("invalid token:
// Bearer ..."), and the first KiB of each answer is recorded, stored and
// shown by the admin API; redact.Secrets masks their encodings too (the
// base64 of a Basic credential).
func destinationSecrets(c *config.DestinationConfig) *redact.Secrets {
	s := &redact.Secrets{}
	if a := c.Auth; a != nil {
		for _, v := range []string{a.Password, a.Token, a.APIKey} {
			s.Add(v, redact.Mask)
		}
		if a.Kind == "basic" && a.Password != "" {
			s.Add(a.Username+":"+a.Password, redact.Mask)
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

func orDur(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// retryPolicy decides, once, what a response means (STYLE habit 5).
type retryPolicy struct {
	maxAge       time.Duration // 0: no limit
	maxAttempts  int           // 0: no limit
	initial, max time.Duration
	multiplier   float64
	jitter       string
	schedule     []time.Duration
	statuses     map[int]bool
	classes      map[int]bool // 4 for "4xx", 5 for "5xx"
	network      bool
}

func newRetryPolicy(c config.RetryConfig) (retryPolicy, error) {
	p := retryPolicy{
		maxAge:      defaultMaxAge,
		maxAttempts: c.MaxAttempts,
		initial:     orDur(c.Initial, time.Second),
		max:         orDur(c.Max, time.Hour),
		multiplier:  c.Multiplier,
		jitter:      c.Jitter,
		schedule:    c.Schedule,
		statuses:    map[int]bool{},
		classes:     map[int]bool{},
	}
	if c.MaxAge != nil {
		p.maxAge = *c.MaxAge
	}
	if p.maxAge < 0 {
		return p, config.FieldErr("retry.max_age", "must not be negative (0 means no limit)")
	}
	if p.maxAttempts < 0 {
		return p, config.FieldErr("retry.max_attempts", "must not be negative (0 means no limit)")
	}
	// A negative delay would make the jittered backoff panic at run time.
	if c.Initial < 0 {
		return p, config.FieldErr("retry.initial", "must not be negative")
	}
	if c.Max < 0 {
		return p, config.FieldErr("retry.max", "must not be negative")
	}
	for i, d := range c.Schedule {
		if d < 0 {
			return p, config.FieldErr(fmt.Sprintf("retry.schedule[%d]", i), "must not be negative")
		}
	}
	if p.multiplier == 0 {
		p.multiplier = 2
	}
	if p.multiplier < 1 {
		return p, config.FieldErr("retry.multiplier", "must be at least 1")
	}
	switch p.jitter {
	case "":
		p.jitter = "full"
	case "full", "equal", "none":
	default:
		return p, config.FieldErr("retry.jitter", fmt.Sprintf("%q is not one of full, equal, none", p.jitter))
	}
	on := c.RetryOn
	if len(on) == 0 {
		on = []string{"408", "425", "429", "5xx", "network"}
	}
	for i, s := range on {
		s = strings.ToLower(strings.TrimSpace(s))
		switch {
		case s == "network":
			p.network = true
		case len(s) == 3 && strings.HasSuffix(s, "xx") && s[0] >= '1' && s[0] <= '5':
			p.classes[int(s[0]-'0')] = true
		default:
			n, err := strconv.Atoi(s)
			if err != nil || n < 100 || n > 599 {
				return p, config.FieldErr(fmt.Sprintf("retry.retry_on[%d]", i), fmt.Sprintf("%q is not a status, a class such as 5xx, or network", s))
			}
			p.statuses[n] = true
		}
	}
	return p, nil
}

// defaultMaxAge is retry.max_age when it is not written: three days ride out
// a weekend's outage of the destination.
const defaultMaxAge = 72 * time.Hour

// next decides what follows a retryable failure: the time of the next attempt,
// or ok false when the delivery is used up and dead. tries counts the
// attempts made (since an operator's retry), born is when the delivery's age
// starts, retryAfter is the destination's own Retry-After (0 when none).
// The last attempt before max_age is moved to max_age itself, so that a
// delivery dies when it reaches max_age, not up to `max` later.
func (p *retryPolicy) next(tries int, born, now time.Time, retryAfter time.Duration) (at time.Time, ok bool) {
	if p.maxAttempts > 0 && tries >= p.maxAttempts {
		return time.Time{}, false
	}
	at = now.Add(p.delay(tries, retryAfter))
	if p.maxAge > 0 && !born.IsZero() {
		deadline := born.Add(p.maxAge)
		if !now.Before(deadline) {
			return time.Time{}, false
		}
		if at.After(deadline) {
			at = deadline
		}
	}
	return at, true
}

// outcome of one attempt.
type outcome int

const (
	success outcome = iota
	retryable
	permanent
)

// classify decides what one attempt's result means: status is 0 when no
// response came (err then says why).
func (p *retryPolicy) classify(status int, err error) outcome {
	var render *renderError
	switch {
	case errors.As(err, &render):
		// No request was made; a retry would render the event the same way.
		return permanent
	case err != nil || status == 0:
		if p.network {
			return retryable
		}
		return permanent
	case status >= 200 && status < 300:
		return success
	case p.statuses[status] || p.classes[status/100]:
		return retryable
	}
	return permanent // anything not listed in retry_on, 5xx included when the user left it out
}

// delay is the wait before the next attempt, after `attempts` attempts.
// retryAfter, when positive, is the destination's own Retry-After.
func (p *retryPolicy) delay(attempts int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, p.max)
	}
	if n := len(p.schedule); n > 0 {
		return p.schedule[min(attempts-1, n-1)]
	}
	base := float64(p.initial) * math.Pow(p.multiplier, float64(attempts-1))
	d := time.Duration(min(base, float64(p.max)))
	switch p.jitter {
	case "full":
		return rand.N(d + 1)
	case "equal":
		return d/2 + rand.N(d/2+1)
	}
	return d
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
