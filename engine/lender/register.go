// Package lender is the step of the flow that talks to lenders on their
// side rather than waiting for their webhooks (SPEC 9): registration (the
// relay tells a lender where to send its callbacks) and status polling
// (the relay asks for what a webhook would have said, and spools it as an
// event of the same pipeline).
//
// It may import engine/config, engine/provider (the pipeline's typed
// Result), engine/outbound (every outgoing request), engine/spool,
// engine/internal, transforms, internal/, go-retryablehttp and the standard
// library; never engine, engine/admin or
// engine/dispatch. What it needs of the relay comes in as values and small
// seams: the providers as Registrant and Source, metrics as a func.
package lender

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/engine/outbound"
	"github.com/hookrelay/hookrelay/internal/httpout"
	"github.com/hookrelay/hookrelay/internal/redact"
	"github.com/hookrelay/hookrelay/transforms"
)

// Registration (SPEC 9): the relay tells a lender where to send its callbacks.
// `hookrelay register NAME` and `hookrelay unregister NAME` do it on demand;
// with `auto: true` the relay also does it when it starts, retrying with
// backoff until the lender accepts. A reload never registers again: after a
// change of public_url or of the register block, run `hookrelay register`.

// The automatic registration's backoff: the first wait after a failure,
// doubled after each further failure up to the longest (a Registrar's
// retryInitial and retryMax, which this package's tests shorten).
const (
	defaultRegisterRetryInitial = time.Second
	defaultRegisterRetryMax     = 5 * time.Minute
)

const (
	// registerTimeout bounds one registration request, answer included.
	registerTimeout = 10 * time.Second
	// registerAnswerMax is how much of a lender's answer is read and parsed.
	registerAnswerMax = 1 << 20
	// registerAnswerShown is how much of a refusing answer an error quotes.
	registerAnswerShown = 200
)

// Registration is a provider's compiled register block.
type Registration struct {
	auto      bool
	publicURL string // trailing slash trimmed
	calls     []regCall
	success   *transforms.Program // nil: any 2xx status
	values    map[string]string
	secrets   *redact.Secrets // what errors must never show, derived forms included
}

// regCall is one registration: the request that makes it and the one that
// removes it (nil when the lender has none).
type regCall struct {
	reg, unreg *regRequest
}

type regRequest struct {
	method  *transforms.Template // nil: POST (DELETE for an unregister)
	url     *transforms.Template // a URL template: placeholders escaped for their place
	headers []outbound.Header
	body    *transforms.Template // nil: no body; escaped for contentType
	// contentType is the configured Content-Type ("" when none or
	// templated), which says how the body escapes its placeholders.
	contentType string
}

// valueRef finds the values a template uses: values.NAME or values["NAME"].
var valueRef = regexp.MustCompile(`\bvalues(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*["']([^"']*)["']\s*\])`)

// CompileRegister compiles provider name's register block rc (SPEC 9), of
// the file doc; writtenURL is its public_url as written (env:NAME where rc
// has the value, possibly missing). off says why the provider cannot
// register (disabled, a missing secret): then, its missing secrets being
// empty, only the shape is checked.
func CompileRegister(name string, doc *config.Doc, rc *config.RegisterConfig, writtenURL, off string, errs *config.Errors) *Registration {
	disabled := off != ""
	reg := &Registration{auto: rc.Auto, values: rc.Values}
	if reg.values == nil {
		reg.values = map[string]string{}
	}
	reg.secrets = &redact.Secrets{}
	for name, v := range reg.values {
		// A URL is often used without its trailing slash; the rest of it
		// is what must not show. Add masks its encodings too: a lender may
		// echo a credential back in base64, hex or URL-escaped.
		if s := strings.TrimRight(v, "/"); s != "" {
			reg.secrets.Add(s, "<values."+name+">")
		}
		// Basic credentials join two values: user:secret.
		for other, w := range reg.values {
			if other != name && v != "" && w != "" {
				reg.secrets.Add(v+":"+w, "<values."+name+":values."+other+">")
			}
		}
	}

	// The display copy still says env:NAME where the working copy has the
	// (possibly missing) value: "absent" and "missing secret" differ.
	written := writtenURL
	reg.publicURL = strings.TrimRight(rc.PublicURL, "/")
	switch {
	case written == "":
		errs.Add(doc, "register.public_url", "register.public_url: required (how the lender reaches this relay, e.g. env:RELAY_PUBLIC_URL)")
	case reg.publicURL != "":
		if u, err := url.Parse(reg.publicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			errs.Add(doc, "register.public_url", "register.public_url: %q is not an http(s) URL without query", reg.publicURL)
		}
	}

	c := &regCompiler{name: name, doc: doc, reg: reg, errs: errs, check: !disabled}
	switch {
	case rc.Request != nil && len(rc.Requests) > 0:
		errs.Add(doc, "register.requests", "register: request and requests are exclusive; give one of them")
	case rc.Request == nil && len(rc.Requests) == 0:
		errs.Add(doc, "register", "register: one of request or requests is required")
	case rc.Request != nil:
		call := regCall{reg: c.request("register.request", rc.Request, nil)}
		if rc.Unregister != nil {
			call.unreg = c.request("register.unregister", rc.Unregister, call.reg)
		}
		reg.calls = append(reg.calls, call)
	default:
		if rc.Unregister != nil {
			errs.Add(doc, "register.unregister", "register.unregister: with requests, each request gives its own unregister")
		}
		for i := range rc.Requests {
			at := fmt.Sprintf("register.requests[%d]", i)
			call := regCall{reg: c.request(at, &rc.Requests[i].RequestConfig, nil)}
			if u := rc.Requests[i].Unregister; u != nil {
				call.unreg = c.request(at+".unregister", u, call.reg)
			}
			reg.calls = append(reg.calls, call)
		}
	}

	if rc.Success != "" {
		prog, err := transforms.CompileBool(rc.Success)
		if err != nil {
			errs.AddField(doc, "register.success", err)
		}
		reg.success = prog
	}
	return reg
}

// Auto says whether the relay registers on its own at start (auto: true).
func (reg *Registration) Auto() bool { return reg.auto }

// HasUnregister says whether some request of the block can be undone.
func (reg *Registration) HasUnregister() bool {
	return slices.ContainsFunc(reg.calls, func(c regCall) bool { return c.unreg != nil })
}

// regCompiler compiles the requests of one register block.
type regCompiler struct {
	name  string
	doc   *config.Doc
	reg   *Registration
	errs  *config.Errors
	check bool // render at load: the values are all there
}

// request compiles rc at path at. For an unregister, of is the registering
// request, whose URL and headers fill in those rc does not give.
func (c *regCompiler) request(at string, rc *config.RequestConfig, of *regRequest) *regRequest {
	rq := &regRequest{}
	if rc.Method != "" {
		rq.method = c.template(at+".method", rc.Method, transforms.CompileTemplate)
	}
	switch {
	case rc.URL != "":
		rq.url = c.template(at+".url", rc.URL, transforms.CompileURLTemplate)
	case of != nil:
		rq.url = of.url
	default:
		c.errs.Add(c.doc, at+".url", "%s.url: required", at)
	}
	if rc.Body != "" {
		ct, ok := headerValue(rc.Headers, "Content-Type")
		if !ok && of != nil {
			ct = of.contentType
		}
		rq.contentType = ct
		rq.body = c.template(at+".body", rc.Body, func(s string) (*transforms.Template, error) {
			return transforms.CompileBodyTemplate(s, ct)
		})
	} else if ct, ok := headerValue(rc.Headers, "Content-Type"); ok || of == nil {
		rq.contentType = ct
	} else {
		rq.contentType = of.contentType
	}
	for _, name := range sortedNames(rc.Headers) {
		rq.headers = append(rq.headers, outbound.Header{Name: name, Value: c.template(at+".headers."+name, rc.Headers[name], transforms.CompileTemplate)})
	}
	if of != nil {
		for _, h := range of.headers {
			if !slices.ContainsFunc(rq.headers, func(o outbound.Header) bool { return strings.EqualFold(o.Name, h.Name) }) {
				rq.headers = append(rq.headers, h)
			}
		}
	}
	if c.check && rq.url != nil {
		// Values and public_url are fixed at load, so the request is too:
		// what would fail at the lender fails here, with file and line.
		env := c.reg.env(c.name)
		if _, err := rq.renderMethod(env, of != nil); err != nil {
			c.errs.Add(c.doc, at+".method", "%s.method: %s", at, c.reg.mask(err.Error(), nil))
		}
		if u, err := rq.url.Execute(env); err == nil { // a failing template is reported already
			if _, err := requestURL(u); err != nil {
				c.errs.Add(c.doc, at+".url", "%s.url: %s", at, err)
			} else if err := rq.url.CheckURL(env); err != nil {
				c.errs.Add(c.doc, at+".url", "%s.url: %s", at, c.reg.mask(err.Error(), nil))
			}
		}
	}
	return rq
}

// template compiles one string of a request with compile (a plain, URL or
// body template); at is its config path.
func (c *regCompiler) template(at, src string, compile func(string) (*transforms.Template, error)) *transforms.Template {
	t, err := compile(src)
	if err != nil {
		c.errs.Add(c.doc, at, "%s: %v", at, err)
		return nil
	}
	for _, m := range valueRef.FindAllStringSubmatch(src, -1) {
		name := cmp.Or(m[1], m[2])
		if _, ok := c.reg.values[name]; !ok {
			c.errs.Add(c.doc, at, "%s: values.%s is not in register.values", at, name)
			return nil
		}
	}
	if c.check {
		if _, err := t.Execute(c.reg.env(c.name)); err != nil {
			c.errs.Add(c.doc, at, "%s: %s", at, c.reg.mask(err.Error(), nil))
			return nil
		}
	}
	return t
}

// Run registers provider name's callback URL with the lender, or removes
// it when unregister is set: the requests from index from on, in order,
// stopping at the first the lender refuses. It returns how many are done,
// so that a retry does not repeat those the lender accepted. The error
// names the request (without its query) and the answer's status and first
// bytes, and never holds a secret of the block.
func (reg *Registration) Run(ctx context.Context, name string, unregister bool, from int) (int, error) {
	env := reg.env(name)
	for i := from; i < len(reg.calls); i++ {
		rq := reg.calls[i].reg
		if unregister {
			if rq = reg.calls[i].unreg; rq == nil {
				continue
			}
		}
		if err := reg.do(ctx, rq, env, unregister); err != nil {
			return i, err
		}
	}
	return len(reg.calls), nil
}

// env is what the templates see: public_url, provider and values.
func (reg *Registration) env(provider string) *transforms.Env {
	return &transforms.Env{PublicURL: reg.publicURL, Provider: provider, Values: reg.values}
}

// do sends one request and judges the answer.
func (reg *Registration) do(ctx context.Context, rq *regRequest, env *transforms.Env, unregister bool) error {
	req, shown, masks, err := rq.render(env, unregister)
	if err != nil {
		return errors.New(reg.mask(err.Error(), masks))
	}
	shown = reg.mask(shown, masks)
	ctx, cancel := context.WithTimeout(ctx, registerTimeout)
	defer cancel()
	resp, err := registerClient().Do(req.WithContext(ctx))
	if err != nil {
		// url.Error would quote the whole URL, query and all.
		err = httpout.TransportError(err)
		return fmt.Errorf("%s: no answer: %s", shown, reg.mask(err.Error(), masks))
	}
	defer resp.Body.Close()
	raw, _, err := outbound.ReadAnswer(resp.Body, registerAnswerMax)
	if err != nil {
		return fmt.Errorf("%s: status %d: reading the answer: %s", shown, resp.StatusCode, reg.mask(err.Error(), masks))
	}
	answer := newResponse(resp, raw)
	ok := resp.StatusCode >= 200 && resp.StatusCode <= 299
	if reg.success != nil {
		senv := *env
		senv.Response = answer
		out, err := reg.success.Run(&senv)
		if err != nil {
			return fmt.Errorf("%s: status %d: success: %s", shown, resp.StatusCode, reg.mask(err.Error(), masks))
		}
		ok, _ = out.(bool)
	}
	if ok {
		return nil
	}
	judged := "not 2xx"
	if reg.success != nil {
		judged = "success is false"
	}
	return fmt.Errorf("%s: status %d, %s; answer %q", shown, resp.StatusCode, judged, excerpt(reg.mask(string(raw), masks)))
}

// render builds the HTTP request. shown is its method and URL without
// userinfo, query or fragment, for messages; masks are the rendered values
// of templated headers (and each word of them: "Basic <credential>"), which
// hold credentials derived from values.
func (rq *regRequest) render(env *transforms.Env, unregister bool) (req *retryablehttp.Request, shown string, masks *redact.Secrets, err error) {
	method, err := rq.renderMethod(env, unregister)
	if err != nil {
		return nil, "", nil, fmt.Errorf("method: %w", err)
	}
	raw, err := rq.url.Execute(env)
	if err != nil {
		return nil, "", nil, fmt.Errorf("url: %w", err)
	}
	u, err := requestURL(raw)
	if err != nil {
		return nil, "", nil, fmt.Errorf("url: %w", err)
	}
	shown = method + " " + (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}).String()
	var body []byte
	if rq.body != nil {
		b, err := rq.body.Execute(env)
		if err != nil {
			return nil, shown, nil, fmt.Errorf("%s: body: %w", shown, err)
		}
		body = []byte(b)
	}
	req, err = retryablehttp.NewRequest(method, u.String(), body)
	if err != nil {
		return nil, shown, nil, fmt.Errorf("%s: %w", shown, err)
	}
	for _, h := range rq.headers {
		// A value with CR or LF, which would start another header, is not sent.
		v, err := h.Render(env)
		if err != nil {
			return nil, shown, nil, fmt.Errorf("%s: header %s: %w", shown, h.Name, err)
		}
		if strings.EqualFold(h.Name, "Host") {
			req.Host = v
		} else {
			req.Header.Set(h.Name, v)
		}
		if !h.Value.Constant() && len(v) >= 4 {
			if masks == nil {
				masks = &redact.Secrets{}
			}
			masks.Add(v, "<header "+h.Name+">")
			for _, word := range strings.Fields(v) {
				if len(word) >= 8 {
					masks.Add(word, "<header "+h.Name+">")
				}
			}
		}
	}
	return req, shown, masks, nil
}

func (rq *regRequest) renderMethod(env *transforms.Env, unregister bool) (string, error) {
	method := http.MethodPost
	if unregister {
		method = http.MethodDelete
	}
	if rq.method != nil {
		m, err := rq.method.Execute(env)
		if err != nil {
			return "", err
		}
		method = strings.ToUpper(strings.TrimSpace(m))
	}
	if method == "" || strings.IndexFunc(method, func(r rune) bool { return r < 'A' || r > 'Z' }) >= 0 {
		return "", fmt.Errorf("%q is not an HTTP method", method)
	}
	return method, nil
}

// requestURL parses a rendered URL, which must be absolute http(s)
// (outbound.ParseURL). The error does not quote it: it may hold a secret.
func requestURL(raw string) (*url.URL, error) { return outbound.ParseURL(raw) }

// newResponse is the lender's answer as the success expression sees it:
// body is the JSON when the answer parses as JSON, else the XML, else the text.
func newResponse(resp *http.Response, raw []byte) *transforms.Response {
	r, _, _ := outbound.ParseAnswer(resp, raw)
	switch {
	case r.JSON != nil:
		r.Body = r.JSON
	case r.XML != nil:
		r.Body = r.XML
	default:
		r.Body = r.Raw
	}
	return r
}

// mask replaces every secret of the block, and the extra ones, in s, with
// the forms derived from them; URLs in s are shown as redact.URL shows them.
func (reg *Registration) mask(s string, extra *redact.Secrets) string {
	secrets := reg.secrets
	if !extra.Empty() {
		secrets = secrets.Merge(extra)
	}
	return outbound.MaskText(secrets, s)
}

// excerpt is the first registerAnswerShown bytes of s, cut on a character.
func excerpt(s string) string {
	if len(s) <= registerAnswerShown {
		return s
	}
	cut := registerAnswerShown
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// headerValue finds a configured header by name, in any case. A templated
// value counts as none: what it renders to is not known at load.
func headerValue(h map[string]string, name string) (string, bool) {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			if strings.Contains(v, "{{") {
				return "", true
			}
			return v, true
		}
	}
	return "", false
}

func sortedNames(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// registerClient makes registration requests (see outbound.NewClient).
var registerClient = sync.OnceValue(func() *retryablehttp.Client { return outbound.NewClient(0) })

// Registrant is a provider as automatic registration sees it: looked up
// in the configuration in force before each attempt, so a reload that
// fixes a token is used by the next one.
type Registrant interface {
	// Registration is its register block; nil when it has none.
	Registration() *Registration
	// RegisterFrom sends the requests from index from on (Registration.Run
	// after the provider's own checks) and returns how many are done.
	RegisterFrom(ctx context.Context, unregister bool, from int) (int, error)
}

// Registrar runs the automatic registrations and keeps each one's state:
// "pending", "ok" or "failing: <reason>". Its zero value is ready once Log
// and Lookup are set.
type Registrar struct {
	Log *slog.Logger
	// Lookup finds a provider in the configuration in force; nil when
	// there is none of that name.
	Lookup func(name string) Registrant

	// retryInitial and retryMax are the backoff; zero: the defaults.
	retryInitial, retryMax time.Duration

	mu sync.Mutex
	m  map[string]string
}

func (s *Registrar) set(provider, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]string{}
	}
	if state == "" {
		delete(s.m, provider)
		return
	}
	s.m[provider] = state
}

// Start registers, in the background and with backoff, each of the named
// providers (those whose register block says auto: true and that can
// register); wg counts the goroutines, which end with ctx.
func (s *Registrar) Start(ctx context.Context, wg *sync.WaitGroup, names []string) {
	for _, name := range names {
		s.set(name, "pending")
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.autoRegister(ctx, name)
		}()
	}
}

// autoRegister registers one provider, retrying until the lender accepts or
// ctx ends. Each attempt uses the provider as currently configured, so a
// reload that fixes a token is used by the next attempt.
func (s *Registrar) autoRegister(ctx context.Context, name string) {
	backoff := outbound.Backoff{Initial: cmp.Or(s.retryInitial, defaultRegisterRetryInitial),
		Max: cmp.Or(s.retryMax, defaultRegisterRetryMax), Multiplier: 2, Jitter: "equal"}
	failures := 0
	var last *Registration
	done := 0
	for {
		p := s.Lookup(name)
		var reg *Registration
		if p != nil {
			reg = p.Registration()
		}
		if reg == nil || !reg.auto {
			s.set(name, "")
			s.Log.Info("automatic registration stopped: no longer configured", "provider", name)
			return
		}
		if reg != last {
			last, done = reg, 0
		}
		var err error
		done, err = p.RegisterFrom(ctx, false, done)
		if err == nil {
			s.set(name, "ok")
			s.Log.Info("registered callback URL", "provider", name)
			return
		}
		if ctx.Err() != nil {
			return
		}
		s.set(name, "failing: "+err.Error())
		failures++
		wait := backoff.Delay(failures)
		s.Log.Warn("registration failed", "provider", name, "error", err.Error(), "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Status reports each auto-registering provider's state for
// /admin/providers: "pending", "ok" or "failing: <reason>". The map is a copy.
func (s *Registrar) Status() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.m))
	for k, v := range s.m {
		out[k] = v
	}
	return out
}
