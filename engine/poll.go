package engine

import (
	"context"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// compilePoll compiles a provider's poll block (SPEC 9).
func (p *Provider) compilePoll(pc *PollConfig, rc *RegisterConfig, errs *errorList) {
	// TODO(issue 7): templates, response kind, event mapping.
}

// startPollers starts polling for every provider with a poll block.
func (r *Relay) startPollers(ctx context.Context) {}

// configurePollers applies a reloaded configuration to the pollers.
func (r *Relay) configurePollers() {}

// trackPollKey makes an ingested event's key known to its provider's poller.
func (r *Relay) trackPollKey(p *Provider, ev *spool.Event) {}

// pollKey adds a key to a provider's poller (POST /admin/providers/{name}/poll).
func (r *Relay) pollKey(provider, key string) error { return nil }
