package provider

import (
	"errors"
	"net/http"

	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/verifiers"
)

// Outcome is what became of one request (or one polled answer).
type Outcome int

// The outcomes, in the order a request meets them.
const (
	// Accepted: verified, mapped and routed; ingest spools it and answers
	// the provider's respond.status.
	Accepted Outcome = iota
	// Duplicate: accepted, and the spool already holds an event with its
	// idempotency id (only ingest and the poller, which spool, know this).
	Duplicate
	// Rejected: the request is refused (a bad signature, a failed `require`,
	// a wrong method or path, a body too large); the sender hears 4xx.
	Rejected
	// Unavailable: the keys to verify it cannot be had now (a JWKS server
	// down); not the sender's fault, so it hears 503 and sends again.
	Unavailable
	// Quarantined: verified, but our configuration cannot map or route it;
	// ingest keeps it and answers success.
	Quarantined
	// Failed: the relay could not take it (disabled provider, overload, a
	// spool that cannot write); the sender hears 503 and sends again.
	Failed
)

// String is the outcome's label in metrics, logs and `try`/`test` output:
// accepted, duplicate, rejected, quarantined or error. Unavailable keys
// and failures are both "error", as the sender sees them: 503, try later.
func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case Duplicate:
		return "duplicate"
	case Rejected:
		return "rejected"
	case Quarantined:
		return "quarantined"
	}
	return "error"
}

// Result is what the pipeline made of one request: the outcome, the HTTP
// status ingest answers with, and what each outcome carries.
type Result struct {
	// Outcome is what became of the request.
	Outcome Outcome
	// Status is the HTTP status ingest answers (respond.status for
	// accepted and quarantined requests).
	Status int
	// Err is why a request was rejected, quarantined or failed; nil when
	// accepted. Its text is safe to log: mapping errors name fields, never
	// the request's values.
	Err error
	// Event is the event to spool, when accepted.
	Event *spool.Event
}

// Reason is Err's text, "" without one.
func (r *Result) Reason() string {
	if r.Err == nil {
		return ""
	}
	return r.Err.Error()
}

// Refused is the result of a request its verifiers (or `require`) refuse:
// 503 when the keys are unavailable (verifiers.ErrUnavailable), else 401.
func Refused(err error) Result {
	if errors.Is(err, verifiers.ErrUnavailable) {
		return Result{Outcome: Unavailable, Status: http.StatusServiceUnavailable, Err: err}
	}
	return Result{Outcome: Rejected, Status: http.StatusUnauthorized, Err: err}
}

// MarshalText writes the outcome as its label (String), as `try --json`
// prints it.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }
