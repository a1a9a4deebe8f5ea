// Package admin is the admin API (SPEC 6), the operator's step of the flow:
// it lists and shows what the relay holds and turns the operator's requests
// (retry, skip, pause, resume, reload, reprocess, poll) into calls on the
// running relay. It knows the relay only through the Relay interface, which
// engine implements, and reads events and quarantined requests from the
// spool through Reader.
//
// It may import engine/spool (its types), engine/internal and internal/
// packages, ulid and the standard library; never engine nor another of its
// rooms.
package admin

import (
	"net/http"
	"time"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// Relay is what the admin API needs of the running relay. Every method
// answers from the configuration and memory in force at the call.
type Relay interface {
	// Ready reports whether the relay has rebuilt its queues and delivers.
	Ready() bool
	// Listener is the admin section in force: the token ("" for none), the
	// listen address and the further host names the API answers to.
	Listener() (token, listen string, hosts []string)
	// Metrics serves /metrics.
	Metrics() http.Handler

	// Providers and Destinations are the configuration in force with
	// their state, in name order for destinations, file order for providers.
	Providers() []Provider
	Destinations() []Destination
	// Lanes are the names of the destinations with a delivery queue.
	Lanes() []string
	// DeliveryStatus is d's status as the API shows it: "held" for a
	// pending delivery waiting behind another event's dead one.
	DeliveryStatus(ev *spool.Event, d *spool.Delivery) string
	// MaskHeaders is the first value of each header of a request to
	// provider, credentials masked.
	MaskHeaders(provider string, h map[string][]string) map[string]string
	// MaskEvent masks, in place, the sensitive values (SPEC 11) of an event
	// of provider as shown, and returns them, to mask what else is shown of
	// the event (its attempts' responses).
	MaskEvent(provider string, ev spool.Shown) []string
	// MaskReason is a quarantined request's reason without its sensitive values.
	MaskReason(q *spool.Quarantined) string
	// Rejections lists up to n recent refused requests, of provider if set.
	Rejections(provider string, n int) any

	// Requeue makes the dead delivery d of ev pending again, its attempt
	// count reset, in the spool and in its queue.
	Requeue(ev *spool.Event, d *spool.Delivery) error
	// Skip marks d skipped and releases its key; dead says whether it was
	// dead (else held).
	Skip(ev *spool.Event, d *spool.Delivery, dead bool) error
	// Pause pauses or resumes the destination name; NotFound when there is none.
	Pause(name string, paused bool) error
	// Reload loads the configuration again; a refused one is an *Error.
	Reload() error
	// PollKey makes key known to provider's poller and polls it now.
	PollKey(provider, key string) error
	// Reprocess runs a quarantined request through the configuration in
	// force: spooled and out of the quarantine, or failed with why it
	// still does not map (err is for the spool's own failures).
	Reprocess(q *spool.Quarantined) (failed string, err error)

	// Privacy is the state of encryption at rest (SPEC 11).
	Privacy() Privacy
	// EraseKey removes every record of provider's key, its pending
	// deliveries included, and destroys its data key (SPEC 11, erasure).
	EraseKey(provider, key string) (spool.Erased, error)
}

// Privacy is what GET /admin/privacy shows: whether records are encrypted
// at rest, under which master key (its id, never the key), and the progress
// of a rotation to it.
type Privacy struct {
	Enabled      bool      `json:"enabled"`
	MasterKeyID  string    `json:"master_key_id,omitempty"`
	Keystore     string    `json:"keystore,omitempty"`
	PreviousKeys int       `json:"previous_keys"`
	Rotation     *Rotation `json:"rotation"`
}

// Rotation is the progress of re-wrapping data keys under the current
// master key; nil when no previous key is configured.
type Rotation struct {
	// State is running, done or failed.
	State string `json:"state"`
	// Rewrapped is how many data keys were re-wrapped since start; Pending
	// how many a previous master key still wraps.
	Rewrapped int    `json:"rewrapped"`
	Pending   int    `json:"pending"`
	Error     string `json:"error,omitempty"`
}

// Reader is the spool as the admin API reads it; spool.Store is one.
type Reader interface {
	Events(after string, scanned int, fn func(ev *spool.Event, ds []*spool.Delivery) bool) error
	Event(id string) (*spool.Event, error)
	Deliveries(eventID string) ([]*spool.Delivery, error)
	Queue(dest string, fn func(d *spool.Delivery) error) error
	QuarantineList(after string, limit int) ([]*spool.Quarantined, error)
	QuarantineOldest(after string, limit int) ([]*spool.Quarantined, error)
	Quarantined(id string) (*spool.Quarantined, error)
}

// Provider is a provider in force as the API lists it.
type Provider struct {
	Name, File string
	Paths      []string
	Methods    []string
	// Disabled, when not empty, says why the provider answers 503.
	Disabled string
	// Config is the file as written, env: and file: unresolved; the API
	// masks credentials written inline.
	Config map[string]any
	// Registration is the state of its automatic registration, when it has one.
	Registration *string
	// RegisterOff and PollOff say why registration or polling cannot run.
	RegisterOff, PollOff string
	// Poll sums up the keys its poller tracks; nil when it does not poll.
	Poll *PollSummary
}

// PollSummary is the state of one provider's poller as the spool holds it.
type PollSummary struct {
	// Keys counts the keys still polled (not final), up to MaxPollKeys.
	Keys int `json:"keys"`
	// Failing counts those whose last poll failed.
	Failing int `json:"failing"`
	// NextAt is when the soonest key is due (zero: none scheduled).
	NextAt time.Time `json:"next_at"`
	// More is set when there were more than MaxPollKeys keys to count.
	More bool `json:"more,omitempty"`
}

// MaxPollKeys bounds how many poll keys one providers listing reads.
const MaxPollKeys = 10000

// Destination is a destination in force as the API lists it.
type Destination struct {
	Name string
	// Config is its relay.yaml entry as written.
	Config any
	// Lane is its queue's state; nil when it has none.
	Lane *Lane
}

// Lane is a destination queue's state.
type Lane struct {
	Paused                  bool
	Pending, Dead, HeldKeys int
	OldestPendingSeconds    float64
	// LastFailure and Held are shown as they marshal.
	LastFailure any
	Held        any
}

// Error is an admin error with its HTTP status.
type Error struct {
	Status int
	Msg    string
	// Problems lists configuration errors of a refused reload.
	Problems []string
}

func (e *Error) Error() string { return e.Msg }

// BadRequest is a 400 answer.
func BadRequest(msg string) error { return &Error{Status: http.StatusBadRequest, Msg: msg} }

// NotFound is a 404 answer.
func NotFound(msg string) error { return &Error{Status: http.StatusNotFound, Msg: msg} }

// Conflict is a 409 answer: the request is well formed but the state refuses it.
func Conflict(msg string) error { return &Error{Status: http.StatusConflict, Msg: msg} }
