package provider

import (
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/internal/redact"
)

// Provider is a loaded, compiled provider file: its pipeline (verify,
// decrypt, map, route; Name is the pipeline's) and what the HTTP edge around
// it needs (paths, methods, limits, dedup, the answer, masking). Its
// register and poll blocks are compiled by engine/lender, which sits above
// this package; the engine keeps them beside it.
type Provider struct {
	Pipeline
	// File is the provider file it was loaded from.
	File string
	// Disabled, when not empty, says why the provider answers 503.
	Disabled string
	// RegisterMissing and PollMissing, when not empty, say why registration
	// or polling cannot run (their own secrets are missing) while ingest does.
	RegisterMissing, PollMissing string

	// Paths are the ingest paths (ServeMux patterns); Methods the methods
	// they accept, upper case (default POST).
	Paths, Methods []string
	// MaxBody is the largest body accepted, in bytes.
	MaxBody int64
	// Dedup is how long an event id is remembered against duplicates.
	Dedup time.Duration
	// Reorder is the reorder_window; 0: the dispatcher's default.
	Reorder time.Duration
	// Doc is the file's line index, for errors about its keys.
	Doc *config.Doc
	// Display is the file as written (env:/file: references kept), for the
	// admin API.
	Display map[string]any
	// Missing are the paths of the secrets that are not set
	// ("verify[0].secret"), so that a disabled provider is still checked in
	// everything else.
	Missing map[string]bool
	// Warnings are "file:line: message" problems that do not stop the
	// provider (a short HMAC key).
	Warnings config.Errors

	// creds are where its verifiers and `sensitive:` headers put
	// credentials, found once at load for every masking (Credentials).
	creds     credentialNames
	sensitive *redact.Paths // what is masked where people read (SPEC 11)
	respBody  []byte
	respType  string
}

// New compiles the provider file pf; maxBody is spool.max_body (the default
// of max_body), known reports whether a destination of that name exists.
// Each problem is added to errs at its file:line; New returns nil when a
// required secret is missing (nothing else is then checked).
func New(pf *config.ProviderFile, maxBody int64, known func(dest string) bool, errs *config.Errors) *Provider {
	file, doc := pf.File, pf.Doc
	p := &Provider{File: file, Doc: doc, Display: pf.AsWritten}
	pc, missing := pf.Resolved, pf.Missing
	if pc.Required && len(missing) > 0 {
		for _, m := range missing {
			errs.Add(doc, m.Path, "%s: %s", m.Path, m.Msg)
		}
		return nil
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
	p.Disabled, p.RegisterMissing, p.PollMissing = joinSorted(why), joinSorted(registerWhy), joinSorted(pollWhy)
	p.Missing = map[string]bool{}
	for _, m := range missing {
		p.Missing[m.Path] = true
	}

	p.Name = pc.Name
	if p.Name == "" {
		p.Name = strings.TrimSuffix(strings.TrimSuffix(filepath.Base(file), ".yaml"), ".yml")
	}
	// A name scopes keys: queues and sequence records are the name, a NUL
	// and the sender's key (SPEC 5.2), so a name holding a NUL could share
	// another provider's queues. It is also written into logs as it is.
	if strings.IndexFunc(p.Name, unicode.IsControl) >= 0 {
		errs.Add(p.Doc, "name", "name: %q holds a control character", p.Name)
	}
	p.compile(&pc, maxBody, known, errs)
	return p
}

// compile compiles the decoded file pc.
func (p *Provider) compile(pc *config.ProviderConfig, maxBody int64, known func(string) bool, errs *config.Errors) {
	doc := p.Doc
	if len(pc.Paths) == 0 {
		errs.Add(doc, "paths", "paths: at least one path is required")
	}
	for i, path := range pc.Paths {
		if !strings.HasPrefix(path, "/") || (len(path) > 1 && strings.HasSuffix(path, "/")) || strings.Contains(path, "//") {
			errs.Add(doc, fmt.Sprintf("paths[%d]", i), "paths[%d]: %q must start with / and not end with /", i, path)
		}
	}
	p.Paths = pc.Paths
	p.Methods = pc.Methods
	if len(p.Methods) == 0 {
		p.Methods = []string{http.MethodPost}
	}
	for i, m := range p.Methods {
		p.Methods[i] = strings.ToUpper(m)
	}
	p.MaxBody = int64(pc.MaxBody)
	if p.MaxBody == 0 {
		p.MaxBody = maxBody
	}

	p.Compile(pc, p.File, doc, p.Missing, known, errs, &p.Warnings)
	p.sensitive = compileSensitive(pc.Sensitive, doc, errs)
	p.creds = readCredentials(p.Verifiers, p.sensitive)
	p.Dedup = pc.Dedup
	if p.Dedup == 0 {
		p.Dedup = 72 * time.Hour
	}
	p.Reorder = pc.ReorderWindow // 0: the default, which the dispatcher applies
	p.respBody = []byte(`{"success":true}`)
	if pc.Respond.Body != nil {
		p.respBody = []byte(*pc.Respond.Body)
	}
	p.respType = pc.Respond.ContentType
	if p.respType == "" {
		p.respType = "application/json"
	}
}

// Respond writes the provider's answer to a request it took (respond:).
func (p *Provider) Respond(w http.ResponseWriter) {
	w.Header().Set("Content-Type", p.respType)
	w.WriteHeader(p.RespondStatus)
	_, _ = w.Write(p.respBody)
}

// Allows reports whether the provider's paths accept method.
func (p *Provider) Allows(method string) bool {
	for _, m := range p.Methods {
		if m == method {
			return true
		}
	}
	return false
}

func joinSorted(reasons []string) string {
	sort.Strings(reasons)
	return strings.Join(reasons, "; ")
}
