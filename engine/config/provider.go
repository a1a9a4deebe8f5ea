package config

import (
	"path/filepath"
	"time"

	"github.com/hookrelay/hookrelay/transforms"
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
	Require []string `koanf:"require"`
	// Sensitive are the paths (body.ssn, body.guarantors[*].ssn,
	// headers.authorization) whose values are masked in logs, admin
	// responses, rejections, quarantine reasons and try/test output (SPEC 11).
	Sensitive []string             `koanf:"sensitive"`
	Event     transforms.EventSpec `koanf:"event"`
	Routes    []RouteConfig        `koanf:"routes"`
	// ReorderWindow is how long an event ahead of a sequence gap waits; 0 means
	// DefaultReorderWindow.
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

// ProviderFile is one provider file read and decoded once, its secrets
// resolved, for compiling; and its map as written, for display.
type ProviderFile struct {
	File string
	// Doc is the file's line index, for errors about its keys.
	Doc *Doc
	// Resolved is the file with every secret that could be read resolved;
	// the ones that could not are "" and listed in Missing.
	Resolved ProviderConfig
	// AsWritten is the file's map as written, for the admin API.
	AsWritten map[string]any
	// Missing are the env: and file: secrets that could not be read.
	Missing []MissingSecret
}

// ReadProvider reads and decodes one provider file (SPEC 3). The error is
// the file's unreadable YAML, or an *Errors naming each bad key's line.
func ReadProvider(file string) (*ProviderFile, error) {
	doc, ko, err := readYAML(file)
	if err != nil {
		return nil, err
	}
	// The display copy keeps env:/file: references; the working copy resolves them.
	pf := &ProviderFile{File: file, Doc: doc, AsWritten: ko.Raw()}
	raw := ko.Raw()
	pf.Missing = ResolveSecrets(raw, nil, filepath.Dir(file))
	if err := DecodeMap(raw, &pf.Resolved); err != nil {
		// The messages quote values: those of the file as written, so that
		// a resolved secret is never echoed. The failure path alone decodes
		// a second time.
		if werr := DecodeMap(ko.Raw(), &ProviderConfig{}); werr != nil {
			err = werr
		}
		errs := &Errors{}
		errs.AddDecode(doc, "", err)
		return nil, errs
	}
	return pf, nil
}

// WrittenString is the string at path in the file as written (an env: or
// file: reference unresolved), "" when there is none.
func (pf *ProviderFile) WrittenString(path ...string) string {
	var v any = pf.AsWritten
	for _, k := range path {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	s, _ := v.(string)
	return s
}
