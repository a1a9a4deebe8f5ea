package engine

import (
	"cmp"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/engine/lender"
	"github.com/hookrelay/hookrelay/engine/provider"
	"github.com/hookrelay/hookrelay/internal/redact"
)

// Provider is a loaded, compiled provider file: its pipeline (verify,
// decrypt, map, route; Name is the pipeline's) and what the relay around it
// needs (paths, limits, dedup, registration and polling).
type Provider struct {
	provider.Pipeline
	File string
	// Disabled, when not empty, says why the provider answers 503.
	Disabled string

	Paths   []string
	methods []string
	maxBody int64
	// creds are where its verifiers and `sensitive:` headers put
	// credentials, found once at load for every masking (credentialsOf).
	creds     credentialNames
	dedup     time.Duration
	reorder   time.Duration
	respBody  []byte
	respType  string
	poll      *lender.Poll         // nil: the provider does not poll
	register  *lender.Registration // nil: the provider does not register
	sensitive *redact.Paths        // what is masked where people read (SPEC 11)
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
	p := &Provider{File: file, doc: doc, display: pf.AsWritten}
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
	p.compile(&pc, pf.WrittenString("register", "public_url"), c, errs)
	if !errs.Empty() {
		return nil, errs
	}
	return p, nil
}

// compile compiles the decoded file pc; publicURL is register.public_url
// as written (env:NAME where pc has the value, possibly missing).
func (p *Provider) compile(pc *config.ProviderConfig, publicURL string, c *Config, errs *config.Errors) {
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

	p.Compile(pc, p.File, doc, p.missing, func(d string) bool { _, ok := c.Destinations[d]; return ok }, errs, &p.warnings)
	p.sensitive = compileSensitive(pc.Sensitive, doc, errs)
	p.creds = readCredentials(p.Verifiers, p.sensitive)
	p.dedup = pc.Dedup
	if p.dedup == 0 {
		p.dedup = 72 * time.Hour
	}
	p.reorder = pc.ReorderWindow // 0: the default, which the dispatcher applies
	p.respBody = []byte(`{"success":true}`)
	if pc.Respond.Body != nil {
		p.respBody = []byte(*pc.Respond.Body)
	}
	p.respType = pc.Respond.ContentType
	if p.respType == "" {
		p.respType = "application/json"
	}
	if pc.Register != nil {
		p.register = lender.CompileRegister(p.Name, doc, pc.Register, publicURL, p.RegistrationOff(), errs)
	}
	if pc.Poll != nil {
		p.poll = lender.CompilePoll(p.Name, doc, pc.Poll, pc.Register, p.maxBody, cmp.Or(p.Disabled, p.pollOff), p.registerOff, errs)
	}
}

func joinSorted(reasons []string) string {
	sort.Strings(reasons)
	return strings.Join(reasons, "; ")
}
