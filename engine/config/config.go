// Package config is step 1 of hookrelay's flow: the configuration as written.
// It decodes relay.yaml and provider files strictly (every key a field),
// applies HOOKRELAY_ environment overrides, resolves env: and file: secrets,
// writes each default once, and reports problems as "file:line: message".
// What is compiled from the configuration (providers with their verifiers
// and mappings, destinations with their HTTP clients and templates) is the
// work of the rooms above it (engine/provider, engine/outbound,
// engine/dispatch, engine/lender), wired by engine, not this package's.
//
// It may import verifiers and transforms (for the specs and error types the
// files hold) and the standard library and decoders; never engine or any of
// its other packages.
package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"
)

// Defaults written once, for the decoder and for the engine that applies
// them to a value left at 0.
const (
	// DefaultMaxInflight bounds the ingest requests in progress (max_inflight).
	DefaultMaxInflight = 512
	// DefaultReorderWindow is how long an event ahead of a sequence gap
	// waits (a provider's reorder_window).
	DefaultReorderWindow = 30 * time.Second
)

// Config is relay.yaml (SPEC 2) as written, decoded and checked, secrets
// resolved; engine compiles its destinations and reads its providers_dir.
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
		// Kind is the backend: SpoolBolt (one file) or SpoolJetStream
		// (a NATS JetStream stream that several relays share, SPEC 12).
		Kind string `koanf:"kind"`
		// NATS is where the JetStream spool lives; nil unless written.
		NATS *NATS `koanf:"nats"`
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
	// accepted ones keep a short answer time under overload. 0 means
	// DefaultMaxInflight.
	MaxInflight int `koanf:"max_inflight"`
	Log         struct {
		Level  string `koanf:"level"`  // debug | info | warn | error
		Format string `koanf:"format"` // json | text
	} `koanf:"log"`
	Destinations map[string]*DestinationConfig `koanf:"destinations"`
	// Privacy turns on encryption at rest and erasure by key (SPEC 11); nil
	// when relay.yaml has no privacy: block, and then nothing is encrypted.
	Privacy *Privacy `koanf:"privacy"`

	// File is the config file read; empty when running on built-in defaults.
	File string `koanf:"-"`
	// Path is where the config file was looked for, which a reload reads again.
	Path string `koanf:"-"`

	display map[string]any // the file as written, env: and file: unresolved
	doc     *Doc           // relay.yaml's lines, for a reload's errors
}

// The spool backends of spool.kind.
const (
	SpoolBolt      = "bbolt"
	SpoolJetStream = "jetstream"
)

// Defaults of spool.nats.
const (
	DefaultNATSStream     = "HOOKRELAY"
	DefaultNATSReplicas   = 1
	DefaultNATSPartitions = 64
	DefaultNATSLeaseTTL   = 10 * time.Second
)

// NATS is relay.yaml's spool.nats: block (SPEC 12).
type NATS struct {
	// URLs are the servers, nats:// or tls://.
	URLs []string `koanf:"urls"`
	// Creds is a NATS credentials file's content (a secret: file:PATH).
	Creds string `koanf:"creds"`
	// User and Password, or Token, instead of Creds.
	User     string `koanf:"user"`
	Password string `koanf:"password"`
	Token    string `koanf:"token"`
	// Stream names the events stream, created if missing; the KV buckets
	// are named after it.
	Stream string `koanf:"stream"`
	// Replicas is how many servers store each event before it is
	// acknowledged (3 in production).
	Replicas int `koanf:"replicas"`
	// Partitions is how many partitions keys are hashed onto.
	Partitions int `koanf:"partitions"`
	// LeaseTTL is how long a partition's lease outlives a relay that
	// stopped renewing it: the failover time after a crash.
	LeaseTTL time.Duration `koanf:"lease_ttl"`
}

// Privacy is relay.yaml's privacy: block (SPEC 11).
type Privacy struct {
	// Key is the master key, 32 bytes in base64 (a secret): it wraps the
	// data keys that seal every record.
	Key string `koanf:"key"`
	// PreviousKeys are master keys still read during a rotation; data keys
	// wrapped by them are re-wrapped under Key in the background.
	PreviousKeys []string `koanf:"previous_keys"`
	// Keystore is the file of wrapped data keys, relative to the config
	// file's directory; "" means keys.db beside the spool.
	Keystore string `koanf:"keystore"`
	// Retention is how long each kind of record is kept; see Config.Retention.
	Retention Retention `koanf:"retention"`
}

// Retention is how long each kind of record is kept before the purge
// deletes it (SPEC 11); 0 in privacy.retention means its default.
type Retention struct {
	// Delivered events (all deliveries delivered or skipped); default spool.retention.
	Delivered time.Duration `koanf:"delivered"`
	// Dead events (a delivery dead, none pending); default 720h.
	Dead time.Duration `koanf:"dead"`
	// Quarantined requests; default 720h.
	Quarantined time.Duration `koanf:"quarantined"`
	// Rejections in the rejection log (in memory); default 72h.
	Rejections time.Duration `koanf:"rejections"`
}

// Default retentions of privacy.retention (SPEC 11).
const (
	DefaultDeadRetention        = 720 * time.Hour
	DefaultQuarantinedRetention = 720 * time.Hour
	DefaultRejectionsRetention  = 72 * time.Hour
)

// Retention is the retention in force per kind. Delivered is
// privacy.retention.delivered, else spool.retention. The other kinds are
// purged only with a privacy: block (their defaults then apply): without
// it dead events and quarantined requests wait for the operator, as they
// always did, and Dead, Quarantined and Rejections are 0 (kept).
func (c *Config) Retention() Retention {
	r := Retention{Delivered: c.Spool.Retention}
	if c.Privacy == nil {
		return r
	}
	p := c.Privacy.Retention
	pick := func(v, def time.Duration) time.Duration {
		if v > 0 {
			return v
		}
		return def
	}
	return Retention{
		Delivered:   pick(p.Delivered, c.Spool.Retention),
		Dead:        pick(p.Dead, DefaultDeadRetention),
		Quarantined: pick(p.Quarantined, DefaultQuarantinedRetention),
		Rejections:  pick(p.Rejections, DefaultRejectionsRetention),
	}
}

// AsWritten is relay.yaml as written, with HOOKRELAY_ overrides and defaults
// but env: and file: references unresolved: what the admin API may show.
func (c *Config) AsWritten() map[string]any { return c.display }

// Doc is relay.yaml's line index; errors about its keys name their line.
func (c *Config) Doc() *Doc { return c.doc }

// The koanf key delimiter. Not ".", because map keys such as provider event
// types ("invoice.paid") contain dots and must stay single keys.
const delim = "\x1f"

// defaults are the built-in settings of SPEC 1 and 2.
func defaults() map[string]any {
	return map[string]any{
		"listen":           ":8080",
		"admin":            map[string]any{"listen": "127.0.0.1:9090"},
		"spool":            map[string]any{"kind": SpoolBolt, "path": "./data/hookrelay.db", "retention": "168h", "max_body": "1MiB"},
		"providers_dir":    "./providers.d",
		"shutdown_timeout": "20s",
		"log":              map[string]any{"level": "info", "format": "json"},
	}
}

// defaultDestination is used only when there is no relay.yaml at all, so that
// `hookrelay serve` with the shipped providers.d has somewhere to deliver.
func defaultDestination() map[string]any {
	return map[string]any{"broker": map[string]any{"url": "http://127.0.0.1:3000/lender-events"}}
}

// Decode reads relay.yaml at path (built-in defaults when it does not exist
// and mustExist is false), applies HOOKRELAY_ environment overrides, resolves
// secrets and checks every value; spool.path and providers_dir come back
// relative to the file's directory. The returned error is an *Errors, every
// problem as "file:line: message", one per line.
func Decode(path string, mustExist bool) (*Config, error) {
	ko := koanf.New(delim)
	if err := ko.Load(confmap.Provider(defaults(), delim), nil); err != nil {
		return nil, err
	}
	errs := &Errors{}
	given := path
	var doc *Doc
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
		doc = &Doc{}
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
	missing := ResolveSecrets(raw, nil, base)
	for _, m := range missing {
		errs.Add(doc, m.Path, "%s: %s", m.Path, m.Msg)
	}
	// An admin token written as "" (or set so by HOOKRELAY_ADMIN__TOKEN=) is
	// a missing secret like an empty variable, not a request for an open API:
	// leaving the key out is how one asks for that.
	if admin, ok := raw["admin"].(map[string]any); ok {
		if tok, ok := admin["token"].(string); ok && tok == "" && !missingAt(missing, "admin.token") {
			errs.Add(doc, "admin.token", "admin.token: empty; leave it out to run the admin API without a token (loopback only)")
		}
	}
	if admin, ok := raw["admin"].(map[string]any); ok {
		if _, written := admin["token"]; !written {
			// SPEC 2: the token defaults to env:HOOKRELAY_ADMIN_TOKEN, the
			// variable the command-line clients send, so that setting it once
			// guards the API and authorises the clients. Unset or empty, there
			// is no token (and so a loopback admin listener only).
			admin["token"] = os.Getenv(AdminTokenEnv)
		}
	}
	errs.AddDecode(doc, "", DecodeMap(raw, cfg))
	if errs.Empty() {
		cfg.validate(doc, errs)
	}
	if !errs.Empty() {
		return nil, errs
	}
	if cfg.MaxInflight <= 0 {
		// Unset, or 0: the one place the default is applied.
		cfg.MaxInflight = DefaultMaxInflight
	}
	cfg.Spool.Path = RelTo(base, cfg.Spool.Path)
	cfg.ProvidersDir = RelTo(base, cfg.ProvidersDir)
	if cfg.Privacy != nil {
		// Beside the spool by default (seal.DefaultPath), without importing
		// engine/seal here.
		if cfg.Privacy.Keystore == "" {
			cfg.Privacy.Keystore = filepath.Join(filepath.Dir(cfg.Spool.Path), "keys.db")
		} else {
			cfg.Privacy.Keystore = RelTo(base, cfg.Privacy.Keystore)
		}
	}
	return cfg, nil
}

// AdminTokenEnv holds the admin token when relay.yaml does not set one.
const AdminTokenEnv = "HOOKRELAY_ADMIN_TOKEN"

// envKey maps HOOKRELAY_ADMIN__LISTEN to admin.listen. Variables whose first
// level is not a relay.yaml key are not overrides (HOOKRELAY_ADMIN_TOKEN, the
// default admin token, or a secret that happens to share the prefix).
func envKey(k, v string) (string, any) {
	k = strings.ToLower(strings.TrimPrefix(k, "HOOKRELAY_"))
	top, _, _ := strings.Cut(k, "__")
	if _, known := defaults()[top]; !known && top != "destinations" && top != "privacy" && top != "max_inflight" {
		return "", nil
	}
	return strings.ReplaceAll(k, "__", delim), v
}

// missingAt reports whether the secret at path is among missing.
func missingAt(missing []MissingSecret, path string) bool {
	for _, m := range missing {
		if m.Path == path {
			return true
		}
	}
	return false
}

// RelTo is p relative to base, the directory of the file that names it;
// absolute and empty paths stay as they are.
func RelTo(base, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}

func (c *Config) validate(doc *Doc, errs *Errors) {
	if c.Listen == "" {
		errs.Add(doc, "listen", "listen: required")
	}
	switch {
	case c.Admin.Listen == "":
		errs.Add(doc, "admin.listen", "admin.listen: required")
	case c.Admin.Listen == c.Listen:
		errs.Add(doc, "admin.listen", "admin.listen: must differ from listen")
	case c.Admin.Token == "" && !loopback(c.Admin.Listen):
		errs.Add(doc, "admin.listen", "admin.listen: %q is not a loopback address, so admin.token must be set", c.Admin.Listen)
	}
	for i, h := range c.Admin.Hosts {
		if h == "" || strings.ContainsAny(h, "/ ") {
			errs.Add(doc, fmt.Sprintf("admin.hosts[%d]", i), "admin.hosts[%d]: %q is not a host name", i, h)
		}
	}
	if c.Spool.Path == "" {
		errs.Add(doc, "spool.path", "spool.path: required")
	}
	if c.Spool.Retention <= 0 {
		errs.Add(doc, "spool.retention", "spool.retention: must be positive")
	}
	if c.Spool.MaxBody <= 0 {
		errs.Add(doc, "spool.max_body", "spool.max_body: must be positive")
	}
	c.validateSpool(doc, errs)
	if c.Privacy != nil {
		// A missing secret is reported by ResolveSecrets; this is a block
		// written without its key.
		if c.Privacy.Key == "" {
			errs.Add(doc, "privacy", "privacy.key: required (the master key, 32 bytes in base64, e.g. env:HOOKRELAY_DATA_KEY)")
		}
		for i, k := range c.Privacy.PreviousKeys {
			if k == "" {
				errs.Add(doc, fmt.Sprintf("privacy.previous_keys[%d]", i), "privacy.previous_keys[%d]: empty", i)
			}
		}
		for name, d := range map[string]time.Duration{"delivered": c.Privacy.Retention.Delivered, "dead": c.Privacy.Retention.Dead,
			"quarantined": c.Privacy.Retention.Quarantined, "rejections": c.Privacy.Retention.Rejections} {
			if d < 0 {
				errs.Add(doc, "privacy.retention."+name, "privacy.retention.%s: must be positive", name)
			}
		}
		if c.Privacy.Keystore != "" && c.Privacy.Keystore == c.Spool.Path {
			errs.Add(doc, "privacy.keystore", "privacy.keystore: must not be the spool file")
		}
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		errs.Add(doc, "log.format", "log.format: %q is not one of json, text", c.Log.Format)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs.Add(doc, "log.level", "log.level: %q is not one of debug, info, warn, error", c.Log.Level)
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
