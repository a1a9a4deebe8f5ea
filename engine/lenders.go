package engine

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/hookrelay/hookrelay/engine/admin"
	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/engine/lender"
	"github.com/hookrelay/hookrelay/engine/provider"
	"github.com/hookrelay/hookrelay/engine/spool"
)

// The relay's side of engine/lender: registration and polling wired to the
// configuration in force, the spool and the metrics.

// Provider is a compiled provider (engine/provider) with its register and
// poll blocks, which engine/lender compiles: lender runs the provider's
// pipeline on what it polls, so it sits above engine/provider, and the two
// meet here.
type Provider struct {
	*provider.Provider
	poll     *lender.Poll         // nil: the provider does not poll
	register *lender.Registration // nil: the provider does not register
}

// Provider returns the loaded provider called name, or nil.
func (c *Config) Provider(name string) *Provider {
	return c.providers[name]
}

// compiled is the compiled provider called name, or nil: masking asks it
// with a name a record holds, whose provider may be configured no more.
func (c *Config) compiled(name string) *provider.Provider {
	if p := c.Provider(name); p != nil {
		return p.Provider
	}
	return nil
}

// loadProvider reads and compiles one provider file with its register and
// poll blocks.
func loadProvider(file string, c *Config) (*Provider, error) {
	pf, err := config.ReadProvider(file)
	if err != nil {
		return nil, err
	}
	errs := &config.Errors{}
	known := func(d string) bool { _, ok := c.Destinations[d]; return ok }
	cp := provider.New(pf, int64(c.Spool.MaxBody), known, errs)
	if cp == nil {
		return nil, errs
	}
	p := &Provider{Provider: cp}
	pc := &pf.Resolved
	if pc.Register != nil {
		p.register = lender.CompileRegister(p.Name, p.Doc, pc.Register, pf.WrittenString("register", "public_url"), p.RegistrationOff(), errs)
	}
	if pc.Poll != nil {
		p.poll = lender.CompilePoll(p.Name, p.Doc, pc.Poll, pc.Register, p.MaxBody, cmp.Or(p.Disabled, p.PollMissing), p.RegisterMissing, errs)
	}
	if !errs.Empty() {
		return nil, errs
	}
	return p, nil
}

// Register registers this relay's callback URL with the lender, as the
// provider's register block says (SPEC 9), or removes it when unregister is
// set: each request in order, stopping at the first the lender refuses. The
// error names the provider, the request (without its query) and the answer's
// status and first bytes, and never holds a secret of the block.
func (p *Provider) Register(ctx context.Context, unregister bool) error {
	_, err := p.RegisterFrom(ctx, unregister, 0)
	return err
}

// RegisterFrom sends the requests from index from on and returns how many
// are done, so that a retry does not repeat those the lender accepted
// (lender.Registrant).
func (p *Provider) RegisterFrom(ctx context.Context, unregister bool, from int) (int, error) {
	verb := "register"
	if unregister {
		verb = "unregister"
	}
	reg := p.register
	switch {
	case reg == nil:
		return from, fmt.Errorf("%s %s: the provider has no register block", verb, p.Name)
	case p.RegistrationOff() != "":
		return from, fmt.Errorf("%s %s: cannot register: %s", verb, p.Name, p.RegistrationOff())
	case unregister && !reg.HasUnregister():
		return from, fmt.Errorf("unregister %s: the register block has no unregister request", p.Name)
	}
	done, err := reg.Run(ctx, p.Name, unregister, from)
	if err != nil {
		return done, fmt.Errorf("%s %s: %w", verb, p.Name, err)
	}
	return done, nil
}

// Registration is its compiled register block; nil when it has none
// (lender.Registrant).
func (p *Provider) Registration() *lender.Registration { return p.register }

// RegistrationOff says why p cannot register: the provider is disabled, or
// a secret of its register block is missing.
func (p *Provider) RegistrationOff() string {
	if p.Disabled != "" {
		return p.Disabled
	}
	return p.RegisterMissing
}

// PollingOff says why p cannot poll: the provider is disabled, or a secret
// its poll block needs is missing.
func (p *Provider) PollingOff() string {
	switch {
	case p.Disabled != "":
		return p.Disabled
	case p.PollMissing != "":
		return p.PollMissing
	case p.poll != nil && p.poll.RegisterValues():
		return p.RegisterMissing
	}
	return ""
}

// newLenders wires registration and polling to the relay.
func (r *Relay) newLenders() {
	r.registrations.Log = r.log
	r.registrations.Lookup = func(name string) lender.Registrant {
		if p := r.Config().Provider(name); p != nil {
			return p
		}
		return nil
	}
	r.poll.Spool, r.poll.Log, r.poll.Refused = r.spool, r.log, r.m.pollRefusal
}

// startRegistrations registers, in the background and with backoff, every
// provider whose register block says auto: true and that is not disabled.
func (r *Relay) startRegistrations(ctx context.Context) {
	var names []string
	for _, p := range r.Config().Providers {
		if reg := p.register; reg != nil && reg.Auto() && p.RegistrationOff() == "" {
			names = append(names, p.Name)
		}
	}
	r.registrations.Start(ctx, &r.bg, names)
}

// registrationStatus reports each auto-registering provider's state for
// /admin/providers: "pending", "ok" or "failing: <reason>".
func (r *Relay) registrationStatus() map[string]string { return r.registrations.Status() }

// pollSources are the providers of cfg that poll.
func pollSources(cfg *Config) []lender.Source {
	var out []lender.Source
	for _, p := range cfg.Providers {
		if p.poll == nil || p.PollingOff() != "" {
			continue
		}
		out = append(out, lender.Source{Pipeline: &p.Pipeline, Poll: p.poll, Dedup: p.Dedup})
	}
	return out
}

// trackPollKey makes an ingested event's key known to its provider's
// poller (lender.Pollers.Track), final when the event's type is one of the
// provider's final types.
func (r *Relay) trackPollKey(cp *provider.Provider, ev *spool.Event) {
	p := r.Config().Provider(cp.Name)
	if p == nil || p.poll == nil || p.PollingOff() != "" || ev.Key == "" {
		return
	}
	r.poll.Track(p.Name, p.poll, ev.Key, ev.Type)
}

// pollKey adds a key to a provider's poller (POST /admin/providers/{name}/poll)
// and polls it now. The key is stored before it returns.
func (r *Relay) pollKey(provider, key string) error {
	p := r.Config().Provider(provider)
	switch {
	case p == nil:
		return admin.NotFound("no provider " + provider)
	case p.poll == nil:
		return admin.BadRequest("provider " + provider + " has no poll block")
	case p.PollingOff() != "":
		return admin.Conflict("provider " + provider + " cannot poll: " + p.PollingOff())
	case key == "":
		return admin.BadRequest("key: required")
	case len(key) > lender.MaxPollKey:
		r.poll.Refuse(p.Name, len(key), "admin")
		return admin.BadRequest(fmt.Sprintf("key: longer than %d bytes", lender.MaxPollKey))
	case !p.poll.Pollable(key):
		r.poll.Refuse(p.Name, len(key), "admin")
		return admin.BadRequest("key: does not match poll.key_pattern")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	finalType, final, err := r.poll.Now(ctx, p.Name, key)
	if err != nil {
		return err
	}
	if final {
		return admin.Conflict("key " + key + " reached a final type (" + finalType + "); it is no longer polled")
	}
	return nil
}
