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

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/engine/provider"
	"github.com/hookrelay/hookrelay/transforms"
	"github.com/hookrelay/hookrelay/verifiers"
)

// Provider is a loaded, compiled provider file: its pipeline (verify,
// decrypt, map, route; Name is the pipeline's) and what the relay around it
// needs (paths, limits, dedup, registration and polling).
type Provider struct {
	provider.Pipeline
	File string
	// Config is the file as written, secrets unresolved, for display.
	Config config.ProviderConfig
	// Disabled, when not empty, says why the provider answers 503.
	Disabled string

	Paths   []string
	methods []string
	maxBody int64
	// verifiers are the pipeline's Verifiers, for credentialsOf (which
	// reads them to mask credentials in the rejection log).
	verifiers []verifiers.Verifier
	dedup     time.Duration
	reorder   time.Duration
	respBody  []byte
	respType  string
	poll      *pollSpec     // nil: the provider does not poll
	register  *registration // nil: the provider does not register
	// registerOff and pollOff, when not empty, say why registration or
	// polling cannot run (their own secrets are missing) while ingest does.
	registerOff, pollOff string
	// warnings are "file:line: message" problems that do not stop the
	// provider (a short HMAC key).
	warnings config.Errors

	doc     *config.Doc
	display map[string]any // the file as written, for the admin API
	// missing are the paths of the secrets that are not set
	// ("verify[0].secret"), so that a disabled provider is still checked
	// in everything else.
	missing map[string]bool
}

func loadProvider(file string, c *Config) (*Provider, error) {
	pf, err := config.ReadProvider(file)
	if err != nil {
		return nil, err
	}
	errs := &config.Errors{}
	doc := pf.Doc
	p := &Provider{File: file, doc: doc, Config: pf.Written, display: pf.AsWritten}
	pc, missing := pf.Resolved, pf.Missing
	if pc.Required && len(missing) > 0 {
		for _, m := range missing {
			errs.Add(doc, m.Path, "%s: %s", m.Path, m.Msg)
		}
		return nil, errs
	}
	// A secret that only registration or polling needs stops just that:
	// the lender's webhooks still come in.
	var why, registerWhy, pollWhy []string
	for _, m := range missing {
		reason := m.Path + ": " + m.Msg
		switch {
		case strings.HasPrefix(m.Path, "register."):
			registerWhy = append(registerWhy, reason)
		case strings.HasPrefix(m.Path, "poll."):
			pollWhy = append(pollWhy, reason)
		default:
			why = append(why, reason)
		}
	}
	p.Disabled, p.registerOff, p.pollOff = joinSorted(why), joinSorted(registerWhy), joinSorted(pollWhy)
	p.missing = map[string]bool{}
	for _, m := range missing {
		p.missing[m.Path] = true
	}

	p.Name = pc.Name
	if p.Name == "" {
		p.Name = strings.TrimSuffix(strings.TrimSuffix(filepath.Base(file), ".yaml"), ".yml")
	}
	// A name scopes keys: queues and sequence records are the name, a NUL
	// and the sender's key (SPEC 5.2), so a name holding a NUL could share
	// another provider's queues. It is also written into logs as it is.
	if strings.IndexFunc(p.Name, unicode.IsControl) >= 0 {
		errs.Add(p.doc, "name", "name: %q holds a control character", p.Name)
	}
	p.compile(&pc, c, errs)
	if !errs.Empty() {
		return nil, errs
	}
	return p, nil
}

func (p *Provider) compile(pc *config.ProviderConfig, c *Config, errs *config.Errors) {
	doc := p.doc
	if len(pc.Paths) == 0 {
		errs.Add(doc, "paths", "paths: at least one path is required")
	}
	for i, path := range pc.Paths {
		if !strings.HasPrefix(path, "/") || (len(path) > 1 && strings.HasSuffix(path, "/")) || strings.Contains(path, "//") {
			errs.Add(doc, fmt.Sprintf("paths[%d]", i), "paths[%d]: %q must start with / and not end with /", i, path)
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
			errs.Add(doc, "verify", "verify: must be a list of checks, or none")
		}
	case []any:
		if len(v) == 0 {
			errs.Add(doc, "verify", "verify: an empty list must be written `verify: none`")
		}
		dir, err := filepath.Abs(filepath.Dir(p.File))
		if err != nil {
			errs.Add(doc, "verify", "verify: %v", err)
		}
		for i, item := range v {
			at := fmt.Sprintf("verify[%d]", i)
			vf, err := buildVerifier(item, under(p.missing, at), dir)
			if err != nil {
				errs.AddField(doc, at, err)
				continue
			}
			if vf == nil {
				continue // a disabled provider's verifier, built only to be checked
			}
			if w, ok := vf.(verifiers.Warner); ok {
				for _, ce := range w.Warnings() {
					p.warnings.AddField(doc, at, ce)
				}
			}
			p.Verifiers = append(p.Verifiers, vf)
			if kf, ok := vf.(verifiers.KeyFetcher); ok {
				// Keys are fetched before a request takes a max_inflight
				// place (FetchKeys), never while it holds one.
				kf.FetchOutside()
				p.Fetchers = append(p.Fetchers, kf)
			}
		}
	case nil:
		errs.Add(doc, "verify", "verify: required (write `verify: none` to accept unauthenticated requests)")
	default:
		errs.Add(doc, "verify", "verify: must be a list of checks, or none")
	}

	p.verifiers = p.Verifiers

	if pc.Decrypt != nil {
		d, err := transforms.CompileDecrypt(*pc.Decrypt, p.missing["decrypt.key"])
		if err != nil {
			errs.AddField(doc, "decrypt", err)
		}
		p.Decrypt = d
	}

	for i, src := range pc.Require {
		at := fmt.Sprintf("require[%d]", i)
		prog, err := transforms.CompileBool(src)
		if err != nil {
			errs.AddField(doc, at, err)
			continue
		}
		p.Require = append(p.Require, prog)
	}

	m, err := transforms.CompileMapping(pc.Event)
	if err != nil {
		errs.AddField(doc, "event", err)
	}
	p.Mapping = m

	for i, r := range pc.Routes {
		at := fmt.Sprintf("routes[%d]", i)
		rt := provider.Route{To: r.To}
		if r.When != "" {
			if rt.When, err = transforms.CompileBool(r.When); err != nil {
				errs.AddField(doc, at+".when", err)
			}
		}
		if len(r.To) == 0 {
			errs.Add(doc, at+".to", "%s.to: at least one destination is required", at)
		}
		for j, d := range r.To {
			if _, ok := c.Dests[d]; !ok {
				errs.Add(doc, fmt.Sprintf("%s.to[%d]", at, j), "%s.to: unknown destination %q", at, d)
			}
		}
		p.Routes = append(p.Routes, rt)
	}
	if len(pc.Routes) == 0 {
		errs.Add(doc, "routes", "routes: at least one route is required")
	}

	p.dedup = pc.Dedup
	if p.dedup == 0 {
		p.dedup = 72 * time.Hour
	}
	p.reorder = pc.ReorderWindow
	if p.reorder == 0 {
		p.reorder = config.DefaultReorderWindow
	}
	p.RespondStatus = pc.Respond.Status
	if p.RespondStatus == 0 {
		p.RespondStatus = http.StatusOK
	}
	if p.RespondStatus < 200 || p.RespondStatus > 299 {
		errs.Add(doc, "respond.status", "respond.status: %d is not a 2xx status", p.RespondStatus)
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
		return nil, config.FieldErr("kind", "required")
	}
	rest := make(map[string]any, len(m))
	for k, v := range m {
		if k != "kind" {
			rest[k] = copyTree(v)
		}
	}
	build := func(out any) error {
		if err := config.DecodeMap(rest, out); err != nil {
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
		if _, ok := val.(string); ok && missing[config.JoinPath(p)] {
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
