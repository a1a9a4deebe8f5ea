package engine

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/hookrelay/hookrelay/transforms"
	"github.com/hookrelay/hookrelay/verifiers"
)

// ProviderConfig is one providers.d file as written (SPEC 3).
type ProviderConfig struct {
	// Name defaults to the file name without .yaml; unique.
	Name        string `koanf:"name"`
	Description string `koanf:"description"`
	// Paths are ingest paths, "{param}" segments allowed. At least one.
	Paths []string `koanf:"paths"`
	// Methods accepted; empty means [POST].
	Methods []string `koanf:"methods"`
	// MaxBody limits the request body; 0 means spool.max_body.
	MaxBody Size `koanf:"max_body"`
	// Verify is a list of checks, or the string "none".
	Verify any `koanf:"verify"`
	// Decrypt, when set, replaces the body by the plaintext of its encrypted document.
	Decrypt *transforms.DecryptSpec `koanf:"decrypt"`
	// Require lists boolean expressions that must all hold once the request
	// is verified and decrypted; one that is false or fails refuses it like a
	// failed verification (401 "requirement N failed", N from 0). They bind
	// the body to what was signed when a lender signs a claims set.
	Require []string             `koanf:"require"`
	Event   transforms.EventSpec `koanf:"event"`
	Routes  []RouteConfig        `koanf:"routes"`
	// ReorderWindow is how long an event ahead of a sequence gap waits; 0 means 30s.
	ReorderWindow time.Duration `koanf:"reorder_window"`
	// Dedup is the window for dropping repeated idempotency ids; 0 means 72h.
	Dedup   time.Duration `koanf:"dedup"`
	Respond struct {
		// Status of the answer to an accepted request; 0 means 200.
		Status int `koanf:"status"`
		// Body of that answer; unset means {"success":true}, '' an empty body.
		Body *string `koanf:"body"`
		// ContentType of that answer; empty means application/json.
		ContentType string `koanf:"content_type"`
	} `koanf:"respond"`
	// Required makes a missing secret a configuration error instead of
	// loading the provider disabled.
	Required bool `koanf:"required"`
	// Register registers this relay's callback URL with the lender (SPEC 9).
	Register *RegisterConfig `koanf:"register"`
	// Poll asks the lender for the status of keys not yet final (SPEC 9).
	Poll *PollConfig `koanf:"poll"`
}

// RequestConfig is one HTTP request to a lender; every string is a
// {{ expression }} template (SPEC 9).
type RequestConfig struct {
	// Method defaults to POST.
	Method  string            `koanf:"method"`
	URL     string            `koanf:"url"`
	Headers map[string]string `koanf:"headers"`
	Body    string            `koanf:"body"`
}

// RegisterConfig is a provider's `register:` block.
type RegisterConfig struct {
	// Auto registers when the relay starts, retrying with backoff while it fails.
	Auto bool `koanf:"auto"`
	// PublicURL is how the lender reaches this relay.
	PublicURL string `koanf:"public_url"`
	// Request registers; Unregister removes the registration, taking the
	// headers it does not give from Request.
	Request    *RequestConfig `koanf:"request"`
	Unregister *RequestConfig `koanf:"unregister"`
	// Requests, instead of Request and Unregister, for a lender that takes
	// several registrations (one per webhook it offers).
	Requests []RegisterRequest `koanf:"requests"`
	// Success is a boolean expression over `response`; empty means a 2xx status.
	Success string `koanf:"success"`
	// Values are named secrets for the templates, as `values.NAME`.
	Values map[string]string `koanf:"values"`
}

// RegisterRequest is one registration of a lender that takes several.
type RegisterRequest struct {
	RequestConfig `koanf:",squash"`
	Unregister    *RequestConfig `koanf:"unregister"`
}

// PollConfig is a provider's `poll:` block.
type PollConfig struct {
	// Interval between two polls of one key; 0 means 5m.
	Interval time.Duration `koanf:"interval"`
	// FinalTypes are canonical types after which a key is no longer polled.
	FinalTypes []string `koanf:"final_types"`
	// Request is templated over `key` and `values`.
	Request RequestConfig `koanf:"request"`
	// Response is json or xml: how the answer is parsed into `response.body`.
	Response string `koanf:"response"`
	// Event maps the answer, like the provider's event block, over
	// `response` and `key`; its key defaults to the polled key.
	Event transforms.EventSpec `koanf:"event"`
	// Concurrency bounds requests in flight to the lender; 0 means 4.
	Concurrency int `koanf:"concurrency"`
	// Values are named secrets for the templates; register's are used when empty.
	Values map[string]string `koanf:"values"`
	// KeyPattern is the regular expression a key must match, whole, to be
	// polled; empty means ^[A-Za-z0-9._:-]{1,128}$. Other keys are counted
	// and logged, never polled.
	KeyPattern string `koanf:"key_pattern"`
}

// RouteConfig adds destinations to the events for which When holds.
type RouteConfig struct {
	// When is a boolean expression; empty means always.
	When string   `koanf:"when"`
	To   []string `koanf:"to"`
}

// Provider is a loaded, compiled provider file.
type Provider struct {
	Name string
	File string
	// Config is the file as written, secrets unresolved, for display.
	Config ProviderConfig
	// Disabled, when not empty, says why the provider answers 503.
	Disabled string

	Paths      []string
	methods    []string
	maxBody    int64
	verifiers  []verifiers.Verifier
	fetchers   []verifiers.KeyFetcher // the verifiers whose keys come over the network
	decrypt    *transforms.Decrypter  // nil: the body is not encrypted
	require    []*transforms.Program
	mapping    *transforms.Mapping
	routes     []route
	dedup      time.Duration
	reorder    time.Duration
	respStatus int
	respBody   []byte
	respType   string
	poll       *pollSpec     // nil: the provider does not poll
	register   *registration // nil: the provider does not register
	// registerOff and pollOff, when not empty, say why registration or
	// polling cannot run (their own secrets are missing) while ingest does.
	registerOff, pollOff string
	// warnings are "file:line: message" problems that do not stop the
	// provider (a short HMAC key).
	warnings errorList

	doc     *yamlDoc
	display map[string]any // the file as written, for the admin API
	// missing are the paths of the secrets that are not set
	// ("verify[0].secret"), so that a disabled provider is still checked
	// in everything else.
	missing map[string]bool
}

type route struct {
	when *transforms.Program
	to   []string
}

func loadProvider(file string, c *Config) (*Provider, error) {
	doc, ko, err := loadYAML(file)
	if err != nil {
		return nil, err
	}
	errs := &errorList{}
	p := &Provider{File: file, doc: doc}

	// The display copy keeps env:/file: references; the working copy resolves them.
	p.display = ko.Raw()
	if err := decode(ko.Raw(), &p.Config); err != nil {
		errs.addDecode(doc, "", err)
		return nil, errs
	}
	raw := ko.Raw()
	missing := resolveSecrets(raw, nil, filepath.Dir(file))
	var pc ProviderConfig
	_ = decode(raw, &pc) // same shape as above, already checked
	if pc.Required && len(missing) > 0 {
		for _, m := range missing {
			errs.add(doc, m.path, "%s: %s", m.path, m.msg)
		}
		return nil, errs
	}
	// A secret that only registration or polling needs stops just that:
	// the lender's webhooks still come in.
	var why, registerWhy, pollWhy []string
	for _, m := range missing {
		reason := m.path + ": " + m.msg
		switch {
		case strings.HasPrefix(m.path, "register."):
			registerWhy = append(registerWhy, reason)
		case strings.HasPrefix(m.path, "poll."):
			pollWhy = append(pollWhy, reason)
		default:
			why = append(why, reason)
		}
	}
	p.Disabled, p.registerOff, p.pollOff = joinSorted(why), joinSorted(registerWhy), joinSorted(pollWhy)
	p.missing = map[string]bool{}
	for _, m := range missing {
		p.missing[m.path] = true
	}

	p.Name = pc.Name
	if p.Name == "" {
		p.Name = strings.TrimSuffix(strings.TrimSuffix(filepath.Base(file), ".yaml"), ".yml")
	}
	// A name scopes keys: queues and sequence records are the name, a NUL
	// and the sender's key (SPEC 5.2), so a name holding a NUL could share
	// another provider's queues. It is also written into logs as it is.
	if strings.IndexFunc(p.Name, unicode.IsControl) >= 0 {
		errs.add(p.doc, "name", "name: %q holds a control character", p.Name)
	}
	p.compile(&pc, c, errs)
	if !errs.empty() {
		return nil, errs
	}
	return p, nil
}

func (p *Provider) compile(pc *ProviderConfig, c *Config, errs *errorList) {
	doc := p.doc
	if len(pc.Paths) == 0 {
		errs.add(doc, "paths", "paths: at least one path is required")
	}
	for i, path := range pc.Paths {
		if !strings.HasPrefix(path, "/") || (len(path) > 1 && strings.HasSuffix(path, "/")) || strings.Contains(path, "//") {
			errs.add(doc, fmt.Sprintf("paths[%d]", i), "paths[%d]: %q must start with / and not end with /", i, path)
		}
	}
	p.Paths = pc.Paths
	p.methods = pc.Methods
	if len(p.methods) == 0 {
		p.methods = []string{http.MethodPost}
	}
	for i, m := range p.methods {
		p.methods[i] = strings.ToUpper(m)
	}
	p.maxBody = int64(pc.MaxBody)
	if p.maxBody == 0 {
		p.maxBody = int64(c.Spool.MaxBody)
	}

	switch v := pc.Verify.(type) {
	case string:
		if v != "none" {
			errs.add(doc, "verify", "verify: must be a list of checks, or none")
		}
	case []any:
		if len(v) == 0 {
			errs.add(doc, "verify", "verify: an empty list must be written `verify: none`")
		}
		dir, err := filepath.Abs(filepath.Dir(p.File))
		if err != nil {
			errs.add(doc, "verify", "verify: %v", err)
		}
		for i, item := range v {
			at := fmt.Sprintf("verify[%d]", i)
			vf, err := buildVerifier(item, under(p.missing, at), dir)
			if err != nil {
				errs.addField(doc, at, err)
				continue
			}
			if vf == nil {
				continue // a disabled provider's verifier, built only to be checked
			}
			if w, ok := vf.(verifiers.Warner); ok {
				for _, ce := range w.Warnings() {
					p.warnings.addField(doc, at, ce)
				}
			}
			p.verifiers = append(p.verifiers, vf)
			if kf, ok := vf.(verifiers.KeyFetcher); ok {
				// Keys are fetched before a request takes a max_inflight
				// place (fetchKeys), never while it holds one.
				kf.FetchOutside()
				p.fetchers = append(p.fetchers, kf)
			}
		}
	case nil:
		errs.add(doc, "verify", "verify: required (write `verify: none` to accept unauthenticated requests)")
	default:
		errs.add(doc, "verify", "verify: must be a list of checks, or none")
	}

	if pc.Decrypt != nil {
		d, err := transforms.CompileDecrypt(*pc.Decrypt, p.missing["decrypt.key"])
		if err != nil {
			errs.addField(doc, "decrypt", err)
		}
		p.decrypt = d
	}

	for i, src := range pc.Require {
		at := fmt.Sprintf("require[%d]", i)
		prog, err := transforms.CompileBool(src)
		if err != nil {
			errs.addField(doc, at, err)
			continue
		}
		p.require = append(p.require, prog)
	}

	m, err := transforms.CompileMapping(pc.Event)
	if err != nil {
		errs.addField(doc, "event", err)
	}
	p.mapping = m

	for i, r := range pc.Routes {
		at := fmt.Sprintf("routes[%d]", i)
		rt := route{to: r.To}
		if r.When != "" {
			if rt.when, err = transforms.CompileBool(r.When); err != nil {
				errs.addField(doc, at+".when", err)
			}
		}
		if len(r.To) == 0 {
			errs.add(doc, at+".to", "%s.to: at least one destination is required", at)
		}
		for j, d := range r.To {
			if _, ok := c.Dests[d]; !ok {
				errs.add(doc, fmt.Sprintf("%s.to[%d]", at, j), "%s.to: unknown destination %q", at, d)
			}
		}
		p.routes = append(p.routes, rt)
	}
	if len(pc.Routes) == 0 {
		errs.add(doc, "routes", "routes: at least one route is required")
	}

	p.dedup = pc.Dedup
	if p.dedup == 0 {
		p.dedup = 72 * time.Hour
	}
	p.reorder = pc.ReorderWindow
	if p.reorder == 0 {
		p.reorder = 30 * time.Second
	}
	p.respStatus = pc.Respond.Status
	if p.respStatus == 0 {
		p.respStatus = http.StatusOK
	}
	if p.respStatus < 200 || p.respStatus > 299 {
		errs.add(doc, "respond.status", "respond.status: %d is not a 2xx status", p.respStatus)
	}
	p.respBody = []byte(`{"success":true}`)
	if pc.Respond.Body != nil {
		p.respBody = []byte(*pc.Respond.Body)
	}
	p.respType = pc.Respond.ContentType
	if p.respType == "" {
		p.respType = "application/json"
	}
	if pc.Register != nil {
		p.compileRegister(pc.Register, errs)
	}
	if pc.Poll != nil {
		p.compilePoll(pc.Poll, pc.Register, errs)
	}
}

// buildVerifier builds one `verify` entry. missing are the fields of its
// secrets that are not set (the provider loads disabled): the entry is then
// built with a stand-in for each, so that every other field is still checked
// (SPEC 3), and the verifier is dropped (nil, nil), since a disabled provider
// verifies nothing. Files the entry names are relative to dir, the
// provider file's directory (SPEC 2).
func buildVerifier(item any, missing map[string]bool, dir string) (verifiers.Verifier, error) {
	m, ok := item.(map[string]any)
	if !ok {
		return nil, errors.New("must be a map with a kind")
	}
	kind, _ := m["kind"].(string)
	if kind == "" {
		return nil, &fieldErr{path: "kind", msg: "required"}
	}
	rest := make(map[string]any, len(m))
	for k, v := range m {
		if k != "kind" {
			rest[k] = copyTree(v)
		}
	}
	build := func(out any) error {
		if err := decode(rest, out); err != nil {
			return err
		}
		if r, ok := out.(verifiers.PathResolver); ok {
			r.ResolvePaths(dir)
		}
		return nil
	}
	if len(missing) == 0 {
		return verifiers.Default.New(kind, build)
	}
	standIn(rest, nil, missing)
	_, err := verifiers.Default.New(kind, build)
	var ce *verifiers.ConfigError
	if err != nil && !(errors.As(err, &ce) && missing[ce.Field]) { // not about a stand-in
		return nil, err
	}
	return nil, nil
}

// secretStandIn takes the place of a missing secret while a disabled
// provider is checked: a Standard Webhooks secret of 32 bytes, which reads
// as a plain secret, token or password too.
var secretStandIn = "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xa5}, 32))

// standIn puts secretStandIn in each string of v at a path in missing.
func standIn(v any, path []string, missing map[string]bool) {
	visit := func(p []string, val any, set func(any)) {
		if _, ok := val.(string); ok && missing[joinPath(p)] {
			set(secretStandIn)
			return
		}
		standIn(val, p, missing)
	}
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			visit(append(path[:len(path):len(path)], k), val, func(s any) { x[k] = s })
		}
	case []any:
		for i, val := range x {
			visit(append(path[:len(path):len(path)], fmt.Sprintf("[%d]", i)), val, func(s any) { x[i] = s })
		}
	}
}

// under returns the paths of missing that lie inside the block at prefix,
// relative to it.
func under(missing map[string]bool, prefix string) map[string]bool {
	var in map[string]bool
	for p := range missing {
		if rel, ok := strings.CutPrefix(p, prefix+"."); ok {
			if in == nil {
				in = map[string]bool{}
			}
			in[rel] = true
		}
	}
	return in
}

// copyTree copies the maps and lists of a decoded YAML value.
func copyTree(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			out[k] = copyTree(val)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = copyTree(val)
		}
		return out
	}
	return v
}

func joinSorted(reasons []string) string {
	sort.Strings(reasons)
	return strings.Join(reasons, "; ")
}
