package lender

// Status polling (SPEC 9). Each provider with a poll block gets one loop
// that polls every key not yet final, once per interval, and turns a changed
// answer into an event of the same pipeline as webhooks (routes, dedup,
// spool, ordered delivery) with "source": "poll".
//
// Keys, their last poll result, their schedule and error count live in the
// spool (spool.Poller), so a restart neither forgets a key nor sends an
// unchanged status again. Keys come from webhook events of the provider
// (Pollers.Track, on the ingest path) and from the admin API (Pollers.Now).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/engine/outbound"
	"github.com/hookrelay/hookrelay/internal/redact"
	"github.com/hookrelay/hookrelay/transforms"
)

const (
	// pollTimeout bounds one status request, answer included.
	pollTimeout = 10 * time.Second
	// maxPollResponse bounds the answer read from the lender.
	maxPollResponse = 4 << 20
	// maxPollBackoff is how many intervals a failing key waits at most.
	maxPollBackoff = 8
	// MaxPollKey bounds a polled key, in bytes; longer keys are not tracked.
	MaxPollKey = 1024
	// defaultKeyPatternSrc is poll.key_pattern's default (SPEC 9).
	defaultKeyPatternSrc = `^[A-Za-z0-9._:-]{1,128}$`
	// trackRetry is how long the tracker waits after a failed write.
	trackRetry = time.Second
)

var defaultKeyPattern = regexp.MustCompile(defaultKeyPatternSrc)

// errKeyPattern is the error of a key that poll.key_pattern refuses: it is
// never polled.
var errKeyPattern = errors.New("the key does not match poll.key_pattern")

// Pollable reports whether key may be polled: it matches poll.key_pattern
// and fits MaxPollKey.
func (s *Poll) Pollable(key string) bool {
	return len(key) <= MaxPollKey && s.keyPattern.MatchString(key)
}

// Poll is a compiled poll block.
type Poll struct {
	interval    time.Duration
	concurrency int
	final       map[string]bool // canonical types after which a key is not polled
	method      string
	url         *transforms.Template // a URL template: {{ key }} is escaped for its place
	headers     []outbound.Header
	body        *transforms.Template // nil: no body; escaped for its Content-Type
	keyPattern  *regexp.Regexp       // the keys that may be polled
	maxAnswer   int64                // bytes of an answer read: the provider's max_body, at most maxPollResponse
	maxEvent    int64                // bytes of a polled event's envelope: the provider's max_body
	response    string               // json | xml
	mapping     *transforms.Mapping
	values      map[string]string
	// secrets are the values (named secrets, SPEC 9) and the forms derived
	// from them, masked in every error of a poll request wherever the
	// request put them: redact.Text alone masks a URL's userinfo and query,
	// not a value in its path.
	secrets *redact.Secrets
	// registerValues: the values are the register block's, so its missing
	// secrets stop polling too.
	registerValues bool
}

// CompilePoll compiles provider name's poll block pc (SPEC 9), of the file
// doc; rc is its register block (nil when none), whose values the poll
// block uses when it has none. maxBody is the provider's max_body. off and
// registerOff say why the provider cannot poll or register (a missing
// secret, disabled): the values are then not all known, and a templated
// URL is not checked.
func CompilePoll(name string, doc *config.Doc, pc *config.PollConfig, rc *config.RegisterConfig, maxBody int64, off, registerOff string, errs *config.Errors) *Poll {
	s := &Poll{
		interval: pc.Interval, concurrency: pc.Concurrency, final: map[string]bool{},
		method: strings.ToUpper(pc.Request.Method), response: pc.Response, values: pc.Values,
	}
	s.maxAnswer, s.maxEvent = min(maxPollResponse, maxBody), maxBody
	switch {
	case s.interval == 0:
		s.interval = 5 * time.Minute
	case s.interval < 0:
		errs.Add(doc, "poll.interval", "poll.interval: must be positive")
	}
	switch {
	case s.concurrency == 0:
		s.concurrency = 4
	case s.concurrency < 0:
		errs.Add(doc, "poll.concurrency", "poll.concurrency: must be positive")
	}
	for i, t := range pc.FinalTypes {
		if t == "" {
			errs.Add(doc, fmt.Sprintf("poll.final_types[%d]", i), "poll.final_types[%d]: empty type", i)
		}
		s.final[t] = true
	}
	if len(s.values) == 0 && rc != nil {
		s.values, s.registerValues = rc.Values, true
	}
	s.secrets = &redact.Secrets{}
	for name, v := range s.values {
		s.secrets.Add(v, "<values."+name+">")
		for other, w := range s.values {
			if other != name && v != "" && w != "" { // a Basic credential joins two
				s.secrets.Add(v+":"+w, "<values."+name+":values."+other+">")
			}
		}
	}
	if s.method == "" {
		s.method = http.MethodPost
	}
	compileWith := func(at, src string, compile func(string) (*transforms.Template, error)) *transforms.Template {
		t, err := compile(src)
		if err != nil {
			errs.Add(doc, at, "%s: %v", at, err)
		}
		return t
	}
	compile := func(at, src string) *transforms.Template { return compileWith(at, src, transforms.CompileTemplate) }
	// Values are known now unless a secret is missing (polling is then off):
	// a URL that starts with {{ values.api_url }} is checked here for where
	// {{ key }} lands, not first when a key is polled.
	valuesKnown := off == "" && (!s.registerValues || registerOff == "")
	if pc.Request.URL == "" {
		errs.Add(doc, "poll.request.url", "poll.request.url: required")
	} else if s.url = compileWith("poll.request.url", pc.Request.URL, transforms.CompileURLTemplate); s.url != nil && s.url.Constant() {
		if _, err := httpURL(pc.Request.URL); err != nil {
			errs.Add(doc, "poll.request.url", "poll.request.url: %v", err)
		}
	} else if s.url != nil && valuesKnown {
		if err := s.url.CheckURL(&transforms.Env{Values: s.values, Provider: name}); err != nil {
			errs.Add(doc, "poll.request.url", "poll.request.url: %v", err)
		}
	}
	s.keyPattern = defaultKeyPattern
	if pc.KeyPattern != "" {
		// Matched against the whole key, anchored or not.
		re, err := regexp.Compile(`^(?:` + pc.KeyPattern + `)$`)
		if err != nil {
			errs.Add(doc, "poll.key_pattern", "poll.key_pattern: %v", err)
		}
		s.keyPattern = re
	}
	names := make([]string, 0, len(pc.Request.Headers))
	for name := range pc.Request.Headers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		at := "poll.request.headers." + name
		s.headers = append(s.headers, outbound.Header{Name: name, Value: compile(at, pc.Request.Headers[name])})
	}
	if pc.Request.Body != "" {
		ct, _ := headerValue(pc.Request.Headers, "Content-Type")
		s.body = compileWith("poll.request.body", pc.Request.Body, func(src string) (*transforms.Template, error) {
			return transforms.CompileBodyTemplate(src, ct)
		})
	}
	switch s.response {
	case "json", "xml":
	case "":
		errs.Add(doc, "poll.response", "poll.response: required (json or xml)")
	default:
		errs.Add(doc, "poll.response", "poll.response: must be json or xml, not %q", s.response)
	}
	ev := pc.Event
	if ev.Key == "" {
		ev.Key = "key" // the polled key
	}
	if ev.Type == "" {
		errs.Add(doc, "poll.event", "poll.event.type: required")
	}
	m, err := transforms.CompileMapping(ev)
	if err != nil {
		errs.AddField(doc, "poll.event", err)
	}
	s.mapping = m
	return s
}

// Interval is how often a key is polled.
func (s *Poll) Interval() time.Duration { return s.interval }

// IsFinal says whether typ is one of final_types: a key is not polled
// after an event of it.
func (s *Poll) IsFinal(typ string) bool { return s.final[typ] }

// RegisterValues says whether the block uses the register block's values,
// so that their missing secrets stop polling too.
func (s *Poll) RegisterValues() bool { return s.registerValues }

// httpURL parses an http or https URL (outbound.ParseURL). Its error never
// quotes the URL, which may carry a secret.
func httpURL(s string) (*url.URL, error) {
	u, err := outbound.ParseURL(s)
	if err != nil {
		return nil, errors.New("not an http(s) URL")
	}
	return u, nil
}

// Request renders the status request of key.
func (s *Poll) Request(ctx context.Context, provider, key string, now time.Time) (*retryablehttp.Request, error) {
	if !s.Pollable(key) {
		return nil, errKeyPattern
	}
	env := &transforms.Env{Key: key, Values: s.values, Provider: provider, Now: now}
	u, err := s.url.Execute(env)
	if err != nil {
		return nil, fmt.Errorf("poll.request.url: %w", err)
	}
	if _, err := httpURL(u); err != nil {
		return nil, fmt.Errorf("poll.request.url: %w", err)
	}
	var body io.Reader
	if s.body != nil {
		b, err := s.body.Execute(env)
		if err != nil {
			return nil, fmt.Errorf("poll.request.body: %w", err)
		}
		body = strings.NewReader(b)
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, s.method, u, body)
	if err != nil {
		return nil, fmt.Errorf("poll.request: %w", errors.Unwrap(err))
	}
	for _, h := range s.headers {
		// A value with CR or LF, which would start another header, is not sent.
		v, err := h.Render(env)
		if err != nil {
			return nil, fmt.Errorf("poll.request.headers.%s: %w", h.Name, err)
		}
		req.Header.Set(h.Name, v)
	}
	return req, nil
}

// fetch asks the lender for key's status and parses the answer as the
// configuration says. An error means no usable answer: the key backs off.
func (s *Poll) fetch(ctx context.Context, c *retryablehttp.Client, provider, key string, now time.Time) (*transforms.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, pollTimeout)
	defer cancel()
	req, err := s.Request(ctx, provider, key, now)
	if err != nil {
		if m := outbound.MaskText(s.secrets, err.Error()); m != err.Error() {
			err = errors.New(m)
		}
		return nil, nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		// *url.Error quotes the URL, which may carry a secret.
		return nil, nil, errors.New("request: " + outbound.MaskText(s.secrets, err.Error()))
	}
	defer resp.Body.Close()
	body, whole, err := outbound.ReadAnswer(resp.Body, s.maxAnswer)
	if err != nil {
		return nil, nil, fmt.Errorf("read response: %w", err)
	}
	if !whole {
		// Its event would be larger still: not worth parsing.
		return nil, nil, fmt.Errorf("response larger than %d bytes (the provider's max_body)", s.maxAnswer)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	r, jsonErr, xmlErr := outbound.ParseAnswer(resp, body)
	switch s.response {
	case "json":
		if r.JSON == nil {
			return nil, nil, fmt.Errorf("response is not JSON: %w", jsonErr)
		}
		r.Body = r.JSON
	case "xml":
		if r.XML == nil {
			return nil, nil, fmt.Errorf("response is not XML: %w", xmlErr)
		}
		r.Body = r.XML
	}
	return r, body, nil
}
