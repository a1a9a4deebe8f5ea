// Package spool stores events and their deliveries durably. The engine talks
// to it through the Spool interface so that another backend can replace bbolt;
// Bolt is the single-node implementation. It is the step between ingest
// (which appends an event and answers once it is committed) and the
// dispatcher (which takes each committed delivery); admin and the poller
// read and write it too, and Shown is the one form in which people read an
// event.
//
// It may import engine/internal/scrub, bbolt, ulid and the standard library;
// nothing else of hookrelay, since every other room imports it.
package spool

import (
	"context"
	"encoding/json"
	"time"
)

// Status is the state of one delivery (one event to one destination).
type Status string

const (
	// Pending deliveries wait for their turn or their next attempt.
	Pending Status = "pending"
	// Delivered deliveries got a 2xx. Final.
	Delivered Status = "delivered"
	// Dead deliveries used up their attempts or got a permanent error. With
	// on_exhausted: hold they stay queued and block their key.
	Dead Status = "dead"
	// Skipped deliveries were given up on, by policy or by an operator. Final.
	Skipped Status = "skipped"
)

// Final reports whether s leaves the queue for good.
func (s Status) Final() bool { return s == Delivered || s == Skipped }

// Event is one canonical event as ingest stores it.
type Event struct {
	ID            string    `json:"id"` // ULID, given at ingest
	Provider      string    `json:"provider"`
	Type          string    `json:"type"`
	Key           string    `json:"key"`
	Sequence      int64     `json:"sequence,omitempty"`
	IdempotencyID string    `json:"idempotency_id"`
	ReceivedAt    time.Time `json:"received_at"`
	// Envelope is the canonical event JSON of SPEC 4.2, sent as is in envelope
	// mode. Stored as JSON, not base64: it is most of an event's bytes.
	Envelope json.RawMessage `json:"envelope"`
	// Raw is the provider body after decryption, sent as is in raw mode.
	Raw []byte `json:"raw"`
	// Destinations lists the destinations the routes chose; one delivery each.
	Destinations []string `json:"destinations"`
}

// Ref names one queued delivery.
type Ref struct {
	// Seq is the spool-wide commit order: a later commit has a larger Seq.
	Seq         uint64
	EventID     string
	Destination string
	Provider    string // scopes Key: one lender's key never orders another's (SPEC 5.2)
	Key         string
	Sequence    int64
	// Event is the event as it was appended, for the dispatcher to keep
	// rather than read back; nil where the spool does not have it at hand.
	// It is shared: read it, never change it.
	Event *Event
}

// Attempt is one recorded delivery attempt.
type Attempt struct {
	At         time.Time `json:"at"`
	Status     int       `json:"status"` // HTTP status; 0 when no response came
	Error      string    `json:"error,omitempty"`
	DurationMS int64     `json:"duration_ms"`
	Response   string    `json:"response,omitempty"` // first 1 KiB of the response body
}

// Delivery is one event's journey to one destination.
type Delivery struct {
	EventID     string    `json:"event_id"`
	Destination string    `json:"destination"`
	Provider    string    `json:"provider,omitempty"` // scopes Key; empty when written before it was stored (codec.go)
	Key         string    `json:"key"`
	Seq         uint64    `json:"seq"`
	Sequence    int64     `json:"sequence,omitempty"`
	Status      Status    `json:"status"`
	Attempts    []Attempt `json:"attempts"`
	// AttemptsBefore is how many of Attempts were made before an operator's
	// last retry: the attempt count (and max_attempts) starts again after it,
	// while the history stays.
	AttemptsBefore int `json:"attempts_before,omitempty"`
	// NextAt is when a pending delivery may be tried again; zero means now.
	NextAt time.Time `json:"next_at,omitempty"`
}

// Quarantined is a verified request that our configuration could not map or
// decrypt, kept whole so that it can be reprocessed after a fix.
type Quarantined struct {
	ID       string `json:"id"` // ULID
	Provider string `json:"provider"`
	// Key is the event key, when the request got as far as having one;
	// erasure of the key removes the request. "" for most: a request that
	// could not be mapped has no key.
	Key        string              `json:"key,omitempty"`
	Reason     string              `json:"reason"`
	ReceivedAt time.Time           `json:"received_at"`
	Method     string              `json:"method"`
	Path       string              `json:"path"`
	Header     map[string][]string `json:"header"`
	Query      map[string][]string `json:"query"`
	Params     map[string]string   `json:"params"`
	// Body is the body after verification: as received, or the signed
	// payload when a jws verifier replaced it.
	Body []byte `json:"body"`
	// JWS is the verified JWS payload, when a jws verifier ran.
	JWS []byte `json:"jws,omitempty"`
	// JWSSigned is the digest of what the jws verifiers verified, from
	// which the event's default idempotency id is made; "" without one
	// (and in records written before it was kept).
	JWSSigned  string `json:"jws_signed,omitempty"`
	RemoteAddr string `json:"remote_addr"`
}

// Spool is the durable store behind ingest and delivery. All methods are safe
// for concurrent use. Writes return only once they are on disk.
type Spool interface {
	// Append stores ev and one pending delivery per destination in one durable
	// transaction. When an event with the same IdempotencyID was appended less
	// than dedup ago, nothing is written and the earlier event's ID is returned
	// as dupOf. dedup 0 disables the check.
	Append(ctx context.Context, ev *Event, dedup time.Duration) (dupOf string, err error)
	// Quarantine stores a request that could not be mapped.
	Quarantine(ctx context.Context, q *Quarantined) error
	// Pending calls fn, in commit order, for every delivery to dest that is
	// not final, as its queue entry records it: how the dispatcher rebuilds
	// its queues after a restart. fn must not keep its argument.
	Pending(dest string, fn func(q *QueuedDelivery) error) error
	// Queue is Pending with whole deliveries, attempts included.
	Queue(dest string, fn func(d *Delivery) error) error
	// Delivery returns one delivery, or ErrNotFound.
	Delivery(dest, eventID string) (*Delivery, error)
	// Event returns one event, or ErrNotFound.
	Event(id string) (*Event, error)
	// Update stores d's status, attempts and NextAt; a final status removes it
	// from its destination's queue. Concurrent updates are group-committed.
	Update(ctx context.Context, d *Delivery) error
	// LastSequence returns the highest sequence number of provider's key
	// released to dest (delivered, skipped or dead), 0 when none; Update
	// maintains it.
	LastSequence(dest, provider, key string) (int64, error)
	// Purge deletes events received before cutoff whose deliveries are all
	// final, and dedup entries older than cutoff. It returns how many events it deleted.
	Purge(cutoff time.Time) (int, error)
	// Size is the size of the store on disk, in bytes.
	Size() int64
	// Close waits for pending writes and closes the store.
	Close() error
}

// Tries is how many attempts count against max_attempts: those since the
// operator's last retry.
func (d *Delivery) Tries() int { return len(d.Attempts) - d.AttemptsBefore }

// String returns the status name.
func (s Status) String() string { return string(s) }

// Admin answers the admin API. Listings read short transactions; none of
// them blocks ingest for long.
type Admin interface {
	// Events calls fn with events newest first, each with its deliveries,
	// starting after the event `after` ("" for the newest), until fn returns
	// false or scanned events have been visited (0 means no bound).
	Events(after string, scanned int, fn func(ev *Event, ds []*Delivery) bool) error
	// Deliveries returns the deliveries of one event, by destination name.
	Deliveries(eventID string) ([]*Delivery, error)
	// QuarantineList returns up to limit quarantined requests, newest first,
	// after the one `after` ("" for the newest).
	QuarantineList(after string, limit int) ([]*Quarantined, error)
	// QuarantineOldest returns up to limit quarantined requests, oldest
	// first, after the one `after` ("" for the oldest): reprocessing pages
	// through the quarantine in the order the requests came.
	QuarantineOldest(after string, limit int) ([]*Quarantined, error)
	// Quarantined returns one quarantined request, or ErrNotFound.
	Quarantined(id string) (*Quarantined, error)
	// DeleteQuarantined removes a quarantined request once it was reprocessed.
	DeleteQuarantined(id string) error
	// SetPaused records whether a destination is paused, across restarts.
	SetPaused(dest string, paused bool) error
	// Paused returns the paused destinations.
	Paused() (map[string]bool, error)
}

// Poller keeps the status poller's keys and their state (SPEC 9) across
// restarts. Writes are group-committed with the spool's other writes.
type Poller interface {
	// PollTrack makes keys known in one write: a new key is stored with an
	// empty state, a known one keeps its state; Final, once set, sticks. It
	// returns each key's state after the write, in the order of keys.
	PollTrack(ctx context.Context, keys []TrackedKey) ([]PollState, error)
	// PollKeys calls fn, in key order, with every key of provider that is not
	// final. It reads in short transactions and calls fn outside them.
	PollKeys(provider string, fn func(key string, st *PollState) error) error
	// PollSave stores st as the state of provider's key, when the key is
	// tracked (PollTrack); an untracked key, such as one erased while it was
	// being polled, is left alone. Final, once stored, sticks; Since keeps
	// its first value.
	PollSave(ctx context.Context, provider, key string, st *PollState) error
}

// Store is a spool with its admin side and the poller's state: what the
// relay runs on.
type Store interface {
	Spool
	Admin
	Poller
}
