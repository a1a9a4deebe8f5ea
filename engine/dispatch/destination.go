package engine

import (
	"fmt"
	"time"

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
	retry       retryPolicy
	hold        bool
}

func newDestination(name string, c *config.DestinationConfig) (*Destination, error) {
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
	p, err := outbound.NewPolicy(c.Retry)
	d.retry = retryPolicy{p}
	return d, err
}

// secretPath masks the path of a URL given as a secret (see
// outbound.Endpoint.SecretPath).
func (d *Destination) secretPath() { d.out.SecretPath() }

// ShownURL is the URL as output may show it (check): redact.URL's masking,
// and the path masked too when the URL was given as a secret.
func (d *Destination) ShownURL() string { return d.out.ShownURL() }

// retryPolicy is the dispatcher's view of outbound.Policy.
type retryPolicy struct{ *outbound.Policy }

// outcome of one attempt.
type outcome = outbound.Outcome

const (
	success   = outbound.Success
	retryable = outbound.Retry
	permanent = outbound.Permanent
)

// classify decides what one attempt's result means (outbound.Policy.Classify).
func (p retryPolicy) classify(status int, err error) outcome { return p.Classify(status, err) }

// next is the time of the next attempt, or ok false when the delivery is
// dead (outbound.Policy.Next).
func (p retryPolicy) next(tries int, born, now time.Time, retryAfter time.Duration) (time.Time, bool) {
	return p.Next(tries, born, now, retryAfter)
}
