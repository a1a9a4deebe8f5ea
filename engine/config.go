package engine

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"

	"github.com/hookrelay/hookrelay/verifiers"
)

// Config is relay.yaml (SPEC 2) with its provider files loaded.
type Config struct {
	// Listen is the ingest listener address.
	Listen string `koanf:"listen"`
	Admin  struct {
		// Listen is the admin listener address; never the same as Listen.
		Listen string `koanf:"listen"`
		// Token guards the admin API; empty leaves it open, allowed only on loopback.
		Token string `koanf:"token"`
		// Hosts are further names (or name:port) the admin API answers in the
		// Host header, besides loopback names and the listen address: the
		// name operators reach it by through DNS or a proxy. Empty means none.
		Hosts []string `koanf:"hosts"`
	} `koanf:"admin"`
	Spool struct {
		// Path of the bbolt file, relative to the config file's directory.
		Path string `koanf:"path"`
		// Retention is how long delivered events are kept.
		Retention time.Duration `koanf:"retention"`
		// MaxBody is the request size limit of providers that set none.
		MaxBody Size `koanf:"max_body"`
	} `koanf:"spool"`
	// ProvidersDir holds one YAML file per provider.
	ProvidersDir string `koanf:"providers_dir"`
	// ShutdownTimeout bounds the graceful drain on SIGTERM.
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
	// MaxInflight bounds the requests being verified, mapped and stored at
	// once; beyond it ingest sheds with 503 and Retry-After, so that the
	// accepted ones keep a short answer time under overload. 0 means 512.
	MaxInflight int `koanf:"max_inflight"`
	Log         struct {
		Level  string `koanf:"level"`  // debug | info | warn | error
		Format string `koanf:"format"` // json | text
	} `koanf:"log"`
	Destinations map[string]*DestinationConfig `koanf:"destinations"`

	// File is the config file read; empty when running on built-in defaults.
	File string `koanf:"-"`
	// Path is where the config file was looked for, which a reload reads again.
	Path string `koanf:"-"`
	// Providers are the loaded provider files, sorted by name.
	Providers []*Provider `koanf:"-"`
	// Dests are the compiled destinations, by name.
	Dests map[string]*Destination `koanf:"-"`
	// Warnings are problems that do not stop the relay (a provider loaded
	// disabled, a weak key), logged at start and on reload.
	Warnings []string `koanf:"-"`
	// Weak are the warnings about values that load but are weak (an HMAC
	// key under 16 bytes), also in Warnings: what `check` adds to its
	// listing, which already shows disabled providers.
	Weak []string `koanf:"-"`

	display map[string]any // the file as written, env: and file: unresolved
	doc     *yamlDoc       // relay.yaml's lines, for a reload's errors

}

// The koanf key delimiter. Not ".", because map keys such as provider event
// types ("invoice.paid") contain dots and must stay single keys.
const delim = "\x1f"

// defaults are the built-in settings of SPEC 1 and 2.
func defaults() map[string]any {
	return map[string]any{
		"listen":           ":8080",
		"admin":            map[string]any{"listen": "127.0.0.1:9090"},
		"spool":            map[string]any{"path": "./data/hookrelay.db", "retention": "168h", "max_body": "1MiB"},
		"providers_dir":    "./providers.d",
		"shutdown_timeout": "20s",
		"max_inflight":     512,
		"log":              map[string]any{"level": "info", "format": "json"},
	}
}

// defaultDestination is used only when there is no relay.yaml at all, so that
// `hookrelay serve` with the shipped providers.d has somewhere to deliver.
func defaultDestination() map[string]any {
	return map[string]any{"broker": map[string]any{"url": "http://127.0.0.1:3000/lender-events"}}
}

// Load reads relay.yaml at path (built-in defaults when it does not exist and
// mustExist is false), applies HOOKRELAY_ environment overrides, resolves
// secrets, and loads and compiles every provider file. The returned error
// lists every problem as "file:line: message", one per line.
func Load(path string, mustExist bool) (*Config, error) {
	ko := koanf.New(delim)
	if err := ko.Load(confmap.Provider(defaults(), delim), nil); err != nil {
		return nil, err
	}
	errs := &errorList{}
	given := path
	var doc *yamlDoc
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if doc, err = parseYAML(path, data); err != nil {
			return nil, err
		}
		if err := ko.Load(rawbytes.Provider(data), yaml.Parser()); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	case os.IsNotExist(err) && !mustExist:
		path = ""
		doc = &yamlDoc{}
		_ = ko.Load(confmap.Provider(map[string]any{"destinations": defaultDestination()}, delim), nil)
	default:
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := ko.Load(env.Provider(delim, env.Opt{Prefix: "HOOKRELAY_", TransformFunc: envKey}), nil); err != nil {
		return nil, err
	}

	cfg := &Config{File: path, Path: given, doc: doc}
	cfg.display = ko.Raw() // before secrets are resolved: what the admin API may show
	raw := ko.Raw()
	base := "."
	if path != "" {
		base = filepath.Dir(path)
	}
	missing := resolveSecrets(raw, nil, base)
	for _, m := range missing {
		errs.add(doc, m.path, "%s: %s", m.path, m.msg)
	}
	// An admin token written as "" (or set so by HOOKRELAY_ADMIN__TOKEN=) is
	// a missing secret like an empty variable, not a request for an open API:
	// leaving the key out is how one asks for that.
	if admin, ok := raw["admin"].(map[string]any); ok {
		if tok, ok := admin["token"].(string); ok && tok == "" && !missingAt(missing, "admin.token") {
			errs.add(doc, "admin.token", "admin.token: empty; leave it out to run the admin API without a token (loopback only)")
		}
	}
	if admin, ok := raw["admin"].(map[string]any); ok {
		if _, written := admin["token"]; !written {
			// SPEC 2: the token defaults to env:HOOKRELAY_ADMIN_TOKEN, the
			// variable the command-line clients send, so that setting it once
			// guards the API and authorises the clients. Unset or empty, there
			// is no token (and so a loopback admin listener only).
			admin["token"] = os.Getenv(adminTokenEnv)
		}
	}
	errs.addDecode(doc, "", decode(raw, cfg))
	if errs.empty() {
		cfg.validate(doc, errs)
	}
	if !errs.empty() {
		return nil, errs
	}
	cfg.Spool.Path = relTo(base, cfg.Spool.Path)
	cfg.ProvidersDir = relTo(base, cfg.ProvidersDir)

	cfg.Dests = map[string]*Destination{}
	for name, dc := range cfg.Destinations {
		d, err := newDestination(name, dc)
		if err != nil {
			errs.addField(doc, "destinations."+name, err)
			continue
		}
		if shown, _ := cfg.display["destinations"].(map[string]any); shown != nil {
			if dm, _ := shown[name].(map[string]any); dm != nil {
				if u, _ := dm["url"].(string); strings.HasPrefix(u, "env:") || strings.HasPrefix(u, "file:") {
					d.secretPath()
				}
			}
		}
		if d.signKey != nil && len(d.signKey) < verifiers.MinHMACKey {
			warns := &errorList{}
			at := "destinations." + name + ".sign.secret"
			warns.add(doc, at, "%s: the key is shorter than %d bytes, which makes it guessable", at, verifiers.MinHMACKey)
			cfg.Weak = append(cfg.Weak, warns.Problems()...)
		}
		cfg.Dests[name] = d
	}
	cfg.loadProviders(errs)
	if !errs.empty() {
		return nil, errs
	}
	cfg.Warnings = append(cfg.Warnings, cfg.Weak...)
	return cfg, nil
}

// adminTokenEnv holds the admin token when relay.yaml does not set one.
const adminTokenEnv = "HOOKRELAY_ADMIN_TOKEN"

// envKey maps HOOKRELAY_ADMIN__LISTEN to admin.listen. Variables whose first
// level is not a relay.yaml key are not overrides (HOOKRELAY_ADMIN_TOKEN, the
// default admin token, or a secret that happens to share the prefix).
func envKey(k, v string) (string, any) {
	k = strings.ToLower(strings.TrimPrefix(k, "HOOKRELAY_"))
	top, _, _ := strings.Cut(k, "__")
	if _, known := defaults()[top]; !known && top != "destinations" {
		return "", nil
	}
	return strings.ReplaceAll(k, "__", delim), v
}

// missingAt reports whether the secret at path is among missing.
func missingAt(missing []missingSecret, path string) bool {
	for _, m := range missing {
		if m.path == path {
			return true
		}
	}
	return false
}

func relTo(base, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}

func (c *Config) validate(doc *yamlDoc, errs *errorList) {
	if c.Listen == "" {
		errs.add(doc, "listen", "listen: required")
	}
	if c.Admin.Listen == "" {
		errs.add(doc, "admin.listen", "admin.listen: required")
	} else if c.Admin.Listen == c.Listen {
		errs.add(doc, "admin.listen", "admin.listen: must differ from listen")
	} else if c.Admin.Token == "" && !loopback(c.Admin.Listen) {
		errs.add(doc, "admin.listen", "admin.listen: %q is not a loopback address, so admin.token must be set", c.Admin.Listen)
	}
	for i, h := range c.Admin.Hosts {
		if h == "" || strings.ContainsAny(h, "/ ") {
			errs.add(doc, fmt.Sprintf("admin.hosts[%d]", i), "admin.hosts[%d]: %q is not a host name", i, h)
		}
	}
	if c.Spool.Path == "" {
		errs.add(doc, "spool.path", "spool.path: required")
	}
	if c.Spool.Retention <= 0 {
		errs.add(doc, "spool.retention", "spool.retention: must be positive")
	}
	if c.Spool.MaxBody <= 0 {
		errs.add(doc, "spool.max_body", "spool.max_body: must be positive")
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		errs.add(doc, "log.format", "log.format: %q is not one of json, text", c.Log.Format)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs.add(doc, "log.level", "log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
}

// loopback reports whether addr listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loadProviders reads every *.yaml file of ProvidersDir, which must exist:
// a mistyped or unmounted directory would otherwise run a relay with no
// providers at all, without a word.
func (c *Config) loadProviders(errs *errorList) {
	if fi, err := os.Stat(c.ProvidersDir); err != nil {
		errs.add(c.doc, "providers_dir", "providers_dir: %v", err)
		return
	} else if !fi.IsDir() {
		errs.add(c.doc, "providers_dir", "providers_dir: %s is not a directory", c.ProvidersDir)
		return
	}
	files, err := filepath.Glob(filepath.Join(c.ProvidersDir, "*.yaml"))
	if err != nil {
		errs.list = append(errs.list, err.Error())
		return
	}
	yml, _ := filepath.Glob(filepath.Join(c.ProvidersDir, "*.yml"))
	files = append(files, yml...)
	sort.Strings(files)
	byName := map[string]string{}
	byPath := map[string]string{}
	for _, f := range files {
		p, err := loadProvider(f, c)
		if err != nil {
			errs.merge(err)
			continue
		}
		if prev, dup := byName[p.Name]; dup {
			errs.list = append(errs.list, fmt.Sprintf("%s: name %q is also used by %s", f, p.Name, prev))
			continue
		}
		byName[p.Name] = f
		for _, path := range p.Paths {
			norm := normPattern(path)
			if prev, dup := byPath[norm]; dup {
				errs.add(p.doc, "paths", "paths: %s is also a path of %s", path, prev)
			}
			byPath[norm] = f
		}
		if p.Disabled != "" {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s: provider %s disabled: %s", f, p.Name, p.Disabled))
		}
		c.Weak = append(c.Weak, p.warnings.Problems()...)
		c.Providers = append(c.Providers, p)
	}
}

// normPattern makes /in/{a} and /in/{b} compare equal.
func normPattern(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "{") {
			segs[i] = "{}"
		}
	}
	return strings.Join(segs, "/")
}
