package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/engine/dispatch"
	"github.com/hookrelay/hookrelay/engine/seal"
	"github.com/hookrelay/hookrelay/verifiers"
)

// Config is relay.yaml (SPEC 2) as written (config.Config), with what is
// compiled from it: its destinations and its provider files.
type Config struct {
	config.Config

	// Providers are the loaded provider files, sorted by name.
	Providers []*Provider
	// providers indexes Providers by name, built with them (Load): the
	// ingest looks an accepted event's provider up in it (trackPollKey).
	providers map[string]*Provider
	// Destinations are the compiled destinations, by name, each with its
	// relay.yaml entry (Destination.Config): the one map of them. It
	// shadows config.Config's decoded map, which only Load reads.
	Destinations map[string]*dispatch.Destination
	// Warnings are problems that do not stop the relay (a provider loaded
	// disabled, a weak key), logged at start and on reload.
	Warnings []string
	// Weak are the warnings about values that load but are weak (an HMAC
	// key under 16 bytes), also in Warnings: what `check` adds to its
	// listing, which already shows disabled providers.
	Weak []string

	// master and previous are privacy.key and privacy.previous_keys parsed;
	// master is nil without a privacy: block.
	master   *seal.MasterKey
	previous []*seal.MasterKey

	// natsServer, which only the tests set, is an embedded NATS server the
	// JetStream spool connects to in process rather than at
	// spool.nats.urls: a test on a fake clock must not wait on a socket.
	natsServer nats.InProcessConnProvider
}

// Load reads relay.yaml at path (built-in defaults when it does not exist and
// mustExist is false), applies HOOKRELAY_ environment overrides, resolves
// secrets (config.Decode), then compiles its destinations and loads and
// compiles every provider file. The returned error lists every problem as
// "file:line: message", one per line.
func Load(path string, mustExist bool) (*Config, error) {
	written, err := config.Decode(path, mustExist)
	if err != nil {
		return nil, err
	}
	cfg := &Config{Config: *written}
	doc := cfg.Doc()
	errs := &config.Errors{}
	cfg.Destinations = map[string]*dispatch.Destination{}
	for name, dc := range written.Destinations {
		d, err := dispatch.NewDestination(name, dc)
		if err != nil {
			errs.AddField(doc, "destinations."+name, err)
			continue
		}
		if shown, _ := cfg.AsWritten()["destinations"].(map[string]any); shown != nil {
			if dm, _ := shown[name].(map[string]any); dm != nil {
				if u, _ := dm["url"].(string); strings.HasPrefix(u, "env:") || strings.HasPrefix(u, "file:") {
					d.SecretPath()
				}
			}
		}
		if d.WeakSignKey() {
			warns := &config.Errors{}
			at := "destinations." + name + ".sign.secret"
			warns.Add(doc, at, "%s: the key is shorter than %d bytes, which makes it guessable", at, verifiers.MinHMACKey)
			cfg.Weak = append(cfg.Weak, warns.Problems()...)
		}
		cfg.Destinations[name] = d
	}
	cfg.loadPrivacy(errs)
	cfg.loadProviders(errs)
	if !errs.Empty() {
		return nil, errs
	}
	cfg.Weak = append(cfg.Weak, cfg.SpoolWarnings()...)
	cfg.Warnings = append(cfg.Warnings, cfg.Weak...)
	return cfg, nil
}

// loadProviders reads every *.yaml file of ProvidersDir, which must exist:
// a mistyped or unmounted directory would otherwise run a relay with no
// providers at all, without a word.
func (c *Config) loadProviders(errs *config.Errors) {
	if fi, err := os.Stat(c.ProvidersDir); err != nil {
		errs.Add(c.Doc(), "providers_dir", "providers_dir: %v", err)
		return
	} else if !fi.IsDir() {
		errs.Add(c.Doc(), "providers_dir", "providers_dir: %s is not a directory", c.ProvidersDir)
		return
	}
	files, err := filepath.Glob(filepath.Join(c.ProvidersDir, "*.yaml"))
	if err != nil {
		errs.AddPlain(err.Error())
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
			errs.Merge(err)
			continue
		}
		if prev, dup := byName[p.Name]; dup {
			errs.AddPlain(fmt.Sprintf("%s: name %q is also used by %s", f, p.Name, prev))
			continue
		}
		byName[p.Name] = f
		for _, path := range p.Paths {
			norm := normPattern(path)
			if prev, dup := byPath[norm]; dup {
				errs.Add(p.Doc, "paths", "paths: %s is also a path of %s", path, prev)
			}
			byPath[norm] = f
		}
		if p.Disabled != "" {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s: provider %s disabled: %s", f, p.Name, p.Disabled))
		}
		c.Weak = append(c.Weak, p.Warnings.Problems()...)
		c.Providers = append(c.Providers, p)
	}
	c.providers = make(map[string]*Provider, len(c.Providers))
	for _, p := range c.Providers {
		c.providers[p.Name] = p
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

// loadPrivacy parses the master keys of the privacy: block. The errors name
// the key, never its value.
func (c *Config) loadPrivacy(errs *config.Errors) {
	p := c.Privacy
	if p == nil {
		return
	}
	m, err := seal.ParseMasterKey(p.Key)
	if err != nil {
		errs.Add(c.Doc(), "privacy.key", "privacy.key: %v", err)
	}
	c.master = m
	for i, k := range p.PreviousKeys {
		at := fmt.Sprintf("privacy.previous_keys[%d]", i)
		pm, err := seal.ParseMasterKey(k)
		if err != nil {
			errs.Add(c.Doc(), at, "%s: %v", at, err)
			continue
		}
		c.previous = append(c.previous, pm)
	}
}

// PrivacyOff is the warning that check and serve give when relay.yaml has no
// privacy: block; "" when it has one.
func (c *Config) PrivacyOff() string {
	if c.Privacy != nil {
		return ""
	}
	return "privacy: not configured, so nothing is encrypted at rest: lenders' personal data sits in the spool in clear (set privacy.key, see the README's Privacy section)"
}

// PrivacyOn says how records are encrypted ("" without privacy:): the master
// key's id (never the key) and the keystore, for check.
func (c *Config) PrivacyOn() string {
	if c.master == nil {
		return ""
	}
	return fmt.Sprintf("encrypted at rest: master key id %s, %d previous, keystore %s", c.master.ID(), len(c.previous), c.Privacy.Keystore)
}
