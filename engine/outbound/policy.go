package outbound

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/hookrelay/hookrelay/engine/config"
)

// Policy is a destination's retry policy: it decides, once, what an answer
// means (Classify) and when the next attempt is (Next).
type Policy struct {
	maxAge       time.Duration // 0: no limit
	maxAttempts  int           // 0: no limit
	initial, max time.Duration
	multiplier   float64
	jitter       string
	schedule     []time.Duration
	statuses     map[int]bool
	classes      map[int]bool // 4 for "4xx", 5 for "5xx"
	network      bool
}

// DefaultMaxAge is retry.max_age when it is not written: three days ride out
// a weekend's outage of the destination.
const DefaultMaxAge = 72 * time.Hour

// NewPolicy compiles a retry block. Errors name the field (retry.NAME).
func NewPolicy(c config.RetryConfig) (*Policy, error) {
	p := &Policy{
		maxAge:      DefaultMaxAge,
		maxAttempts: c.MaxAttempts,
		initial:     orDur(c.Initial, time.Second),
		max:         orDur(c.Max, time.Hour),
		multiplier:  c.Multiplier,
		jitter:      c.Jitter,
		schedule:    c.Schedule,
		statuses:    map[int]bool{},
		classes:     map[int]bool{},
	}
	if c.MaxAge != nil {
		p.maxAge = *c.MaxAge
	}
	if p.maxAge < 0 {
		return p, config.FieldErr("retry.max_age", "must not be negative (0 means no limit)")
	}
	if p.maxAttempts < 0 {
		return p, config.FieldErr("retry.max_attempts", "must not be negative (0 means no limit)")
	}
	// A negative delay would make the jittered backoff panic at run time.
	if c.Initial < 0 {
		return p, config.FieldErr("retry.initial", "must not be negative")
	}
	if c.Max < 0 {
		return p, config.FieldErr("retry.max", "must not be negative")
	}
	for i, d := range c.Schedule {
		if d < 0 {
			return p, config.FieldErr(fmt.Sprintf("retry.schedule[%d]", i), "must not be negative")
		}
	}
	if p.multiplier == 0 {
		p.multiplier = 2
	}
	if p.multiplier < 1 {
		return p, config.FieldErr("retry.multiplier", "must be at least 1")
	}
	switch p.jitter {
	case "":
		p.jitter = "full"
	case "full", "equal", "none":
	default:
		return p, config.FieldErr("retry.jitter", fmt.Sprintf("%q is not one of full, equal, none", p.jitter))
	}
	on := c.RetryOn
	if len(on) == 0 {
		on = []string{"408", "425", "429", "5xx", "network"}
	}
	for i, s := range on {
		s = strings.ToLower(strings.TrimSpace(s))
		switch {
		case s == "network":
			p.network = true
		case len(s) == 3 && strings.HasSuffix(s, "xx") && s[0] >= '1' && s[0] <= '5':
			p.classes[int(s[0]-'0')] = true
		default:
			n, err := strconv.Atoi(s)
			if err != nil || n < 100 || n > 599 {
				return p, config.FieldErr(fmt.Sprintf("retry.retry_on[%d]", i), fmt.Sprintf("%q is not a status, a class such as 5xx, or network", s))
			}
			p.statuses[n] = true
		}
	}
	return p, nil
}

func orDur(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// Next decides what follows a retryable failure: the time of the next attempt,
// or ok false when the delivery is used up and dead. tries counts the
// attempts made (since an operator's retry), born is when the delivery's age
// starts, retryAfter is the destination's own Retry-After (0 when none).
// The last attempt before max_age is moved to max_age itself, so that a
// delivery dies when it reaches max_age, not up to `max` later.
func (p *Policy) Next(tries int, born, now time.Time, retryAfter time.Duration) (at time.Time, ok bool) {
	if p.maxAttempts > 0 && tries >= p.maxAttempts {
		return time.Time{}, false
	}
	at = now.Add(p.delay(tries, retryAfter))
	if p.maxAge > 0 && !born.IsZero() {
		deadline := born.Add(p.maxAge)
		if !now.Before(deadline) {
			return time.Time{}, false
		}
		if at.After(deadline) {
			at = deadline
		}
	}
	return at, true
}

// Outcome is what one attempt's answer means.
type Outcome int

// The outcomes of an attempt.
const (
	// Success is a 2xx answer.
	Success Outcome = iota
	// Retry is a failure retry_on lists: the attempt is made again.
	Retry
	// Permanent is any other failure: another attempt would fare no better.
	Permanent
)

// Classify decides what one attempt's result means: status is 0 when no
// response came (err then says why).
func (p *Policy) Classify(status int, err error) Outcome {
	var render *RenderError
	switch {
	case errors.As(err, &render):
		// No request was made; a retry would render the event the same way.
		return Permanent
	case err != nil || status == 0:
		if p.network {
			return Retry
		}
		return Permanent
	case status >= 200 && status < 300:
		return Success
	case p.statuses[status] || p.classes[status/100]:
		return Retry
	}
	return Permanent // anything not listed in retry_on, 5xx included when the user left it out
}

// delay is the wait before the next attempt, after `attempts` attempts.
// retryAfter, when positive, is the destination's own Retry-After.
func (p *Policy) delay(attempts int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, p.max)
	}
	if n := len(p.schedule); n > 0 {
		return p.schedule[min(attempts-1, n-1)]
	}
	return Backoff{p.initial, p.max, p.multiplier, p.jitter}.Delay(attempts)
}

// Backoff is an exponential backoff: the wait after the n-th failure in a
// row is Initial·Multiplier^(n-1), at most Max, jittered. Deliveries (their
// retry policy) and automatic registration use it.
type Backoff struct {
	Initial, Max time.Duration
	// Multiplier is at least 1.
	Multiplier float64
	// Jitter is full (anywhere from 0 to the wait), equal (from half the
	// wait to the whole: never less than half), or none.
	Jitter string
}

// Delay is the wait after the n-th failure in a row, n from 1.
func (b Backoff) Delay(n int) time.Duration {
	base := float64(b.Initial) * math.Pow(b.Multiplier, float64(n-1))
	d := time.Duration(min(base, float64(b.Max)))
	switch b.Jitter {
	case "full":
		return rand.N(d + 1)
	case "equal":
		return d/2 + rand.N(d/2+1)
	}
	return d
}

// RetryAfter is the wait a 429 or 503 answer asks for in its Retry-After
// header (seconds or an HTTP date), or 0 for any other answer or when it
// asks for none. It is not capped: Next caps it at the policy's max.
func RetryAfter(resp *http.Response) time.Duration {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
		return 0
	}
	// DefaultBackoff with a zero minimum is just its Retry-After parser.
	return retryablehttp.DefaultBackoff(0, 0, 0, resp)
}

// RenderError is the error of a request that could not be rendered (a
// template or body expression fails, or the URL is not http): no request was
// made, and another attempt would render it the same way.
type RenderError struct{ Err error }

func (e *RenderError) Error() string { return e.Err.Error() }
func (e *RenderError) Unwrap() error { return e.Err }
