package engine

import "context"

// compileRegister compiles a provider's register block (SPEC 9).
func (p *Provider) compileRegister(rc *RegisterConfig, errs *errorList) {
	// TODO(issue 7): templates, success expression, values.
}

// startRegistrations registers, in the background and with backoff, every
// provider whose register block says auto: true.
func (r *Relay) startRegistrations(ctx context.Context) {}

// registrationStatus reports each auto-registering provider's state for /readyz.
func (r *Relay) registrationStatus() map[string]string { return nil }
