package dispatch

import (
	"fmt"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/engine/outbound"
)

// Destination is a compiled destination: how its deliveries are queued
// (ordering, concurrency, rate, retry, on_exhausted) here, and the request
// side, rendering, auth, signing and masking, in outbound.Endpoint.
type Destination struct {
	Name   string
	Config *config.DestinationConfig

	out         *outbound.Endpoint
	ordered     bool
	concurrency int
	rate        float64
	retry       *outbound.Policy
	hold        bool
}

// NewDestination compiles the destination name as written.
func NewDestination(name string, c *config.DestinationConfig) (*Destination, error) {
	d := &Destination{Name: name, Config: c}
	var err error
	if d.out, err = outbound.NewEndpoint(c); err != nil {
		return nil, err
	}
	switch c.Ordering {
	case "", "key":
		d.ordered = true
	case "none":
	default:
		return nil, config.FieldErr("ordering", fmt.Sprintf("%q is not one of key, none", c.Ordering))
	}
	d.concurrency = c.Concurrency
	if d.concurrency == 0 {
		d.concurrency = 16
	}
	if d.concurrency < 0 {
		return nil, config.FieldErr("concurrency", "must not be negative")
	}
	if c.Rate < 0 {
		return nil, config.FieldErr("rate", "must not be negative")
	}
	d.rate = c.Rate
	switch c.OnExhausted {
	case "", "hold":
		d.hold = true
	case "skip":
	default:
		return nil, config.FieldErr("on_exhausted", fmt.Sprintf("%q is not one of hold, skip", c.OnExhausted))
	}
	d.retry, err = outbound.NewPolicy(c.Retry)
	return d, err
}

// SecretPath masks the path of a URL given as a secret (see
// outbound.Endpoint.SecretPath).
func (d *Destination) SecretPath() { d.out.SecretPath() }

// WeakSignKey says whether its signing key is too short to be safe.
func (d *Destination) WeakSignKey() bool { return d.out.WeakSignKey() }

// ShownURL is the URL as output may show it (check): redact.URL's masking,
// and the path masked too when the URL was given as a secret.
func (d *Destination) ShownURL() string { return d.out.ShownURL() }
