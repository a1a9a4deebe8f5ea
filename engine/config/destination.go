package config

import "time"

// DestinationConfig is one entry of relay.yaml's destinations (SPEC 2).
type DestinationConfig struct {
	// URL may hold {{ expression }} placeholders over the event, escaped for
	// their place: a path placeholder is one segment, a query placeholder one
	// value; none may stand in the scheme, userinfo, host or port (SPEC 2).
	URL string `koanf:"url"`
	// Method defaults to POST.
	Method string `koanf:"method"`
	// Timeout of one attempt; 0 means 10s.
	Timeout time.Duration `koanf:"timeout"`
	// Headers are added to every request; values may hold {{ expression }}.
	// A value that renders with a control character (CR, LF, NUL) fails the
	// attempt as permanent.
	Headers map[string]string `koanf:"headers"`
	Auth    *AuthConfig       `koanf:"auth"`
	Sign    *struct {
		// Secret is "whsec_" + base64, as Standard Webhooks.
		Secret string `koanf:"secret"`
	} `koanf:"sign"`
	// Body is envelope (default), raw, or an expression over event.
	Body string `koanf:"body"`
	// Ordering is key (default) or none.
	Ordering string `koanf:"ordering"`
	// Concurrency is how many keys are delivered in parallel; 0 means 16.
	Concurrency int `koanf:"concurrency"`
	// Rate caps requests per second; 0 means unlimited.
	Rate  float64     `koanf:"rate"`
	Retry RetryConfig `koanf:"retry"`
	// OnExhausted is hold (default: the key waits behind its dead event) or skip.
	OnExhausted string `koanf:"on_exhausted"`
}

// AuthConfig is how we authenticate to a destination.
type AuthConfig struct {
	// Kind is basic, bearer, header or query.
	Kind     string `koanf:"kind"`
	Username string `koanf:"username"`
	Password string `koanf:"password"`
	Token    string `koanf:"token"`
	// Scheme of bearer; nil means "Bearer", "" sends the bare token.
	Scheme *string `koanf:"scheme"`
	APIKey string  `koanf:"api_key"`
	// Name of the header or query parameter; empty means API-KEY.
	Name string `koanf:"name"`
}

// RetryConfig is a destination's retry policy. The defaults ride out a long
// destination outage: a retryable failure is retried, from 1s up to 1h apart,
// until the delivery is 72h old, so a redeploy of the destination kills
// nothing and blocks no key for longer than the redeploy.
type RetryConfig struct {
	// MaxAge is how old a delivery may grow (from its event's received_at, or
	// from an operator's retry) while retryable failures are retried; nil
	// means 72h, 0 means no limit.
	MaxAge *time.Duration `koanf:"max_age"`
	// MaxAttempts counts every request, the first included; 0 means no
	// count limit. With both limits set, whichever is used up first makes
	// the delivery dead.
	MaxAttempts int `koanf:"max_attempts"`
	// Initial delay; 0 means 1s.
	Initial time.Duration `koanf:"initial"`
	// Max delay, also the cap on Retry-After; 0 means 1h.
	Max time.Duration `koanf:"max"`
	// Multiplier of the exponential backoff; 0 means 2.
	Multiplier float64 `koanf:"multiplier"`
	// Jitter is full (default), equal or none.
	Jitter string `koanf:"jitter"`
	// Schedule, when set, gives explicit delays and overrides the above; the
	// last one repeats.
	Schedule []time.Duration `koanf:"schedule"`
	// RetryOn lists retryable statuses and classes ("5xx", "network"); every
	// other 4xx is permanent. Empty means [408, 425, 429, 5xx, network].
	RetryOn []string `koanf:"retry_on"`
}
