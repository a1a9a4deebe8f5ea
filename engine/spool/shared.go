package spool

import (
	"context"
	"time"
)

// Shared is a Store that several relay instances deliver from at once (the
// JetStream spool, SPEC 12): keys are hashed onto partitions, and each
// partition is delivered by the one instance holding its lease. The bbolt
// spool is not Shared: its one relay delivers everything.
type Shared interface {
	// Share takes part in the partitions' leases until ctx ends: for every
	// partition this instance comes to hold it calls f.Queue with the
	// partition's deliveries that are not final, in commit order, then
	// with each one committed later by any instance; for every partition it
	// loses or gives up it stops and calls f.Drop. It returns once sharing
	// began (from then on Options.Committed is no longer called: the
	// holders learn of every commit); done closes after ctx ended and every
	// partition held was dropped and given up.
	Share(ctx context.Context, f Follower) (done <-chan struct{}, err error)
	// Holds says whether this instance delivers provider's key now.
	Holds(provider, key string) bool
	// Forward hands an operator's command on a partition this instance
	// does not hold to its holder (the spool's state is already written).
	Forward(c Command) error
}

// Follower is what a Shared store drives: the dispatcher's queues.
type Follower interface {
	// Queue puts a delivery of a held partition in its key's queue, unless
	// it is queued already.
	Queue(dest string, q *QueuedDelivery)
	// Drop removes from the queues the keys holds matches, once no send of
	// theirs is in flight.
	Drop(holds func(provider, key string) bool)
	// Apply applies an operator's command another instance forwarded.
	Apply(c Command)
	// Paused applies a pause or resume another instance recorded.
	Paused(dest string, paused bool)
}

// Command is an operator's command on one delivery, forwarded to the
// instance holding its partition.
type Command struct {
	Op          string `json:"op"` // CommandRequeue or CommandSkip
	Destination string `json:"dest"`
	EventID     string `json:"id"`
	Provider    string `json:"p"`
	Key         string `json:"k"`
	Sequence    int64  `json:"s,omitempty"`
	Dead        bool   `json:"dead,omitempty"` // a skip of a dead delivery
}

// The operators' commands a Follower applies.
const (
	CommandRequeue = "requeue"
	CommandSkip    = "skip"
)

type fencedKey struct{}

// Fenced marks ctx as a delivering instance's write: on a Shared store it
// is refused once the instance no longer holds the delivery's partition, or
// when it would overwrite a final state, so that a deposed holder cannot
// undo its successor's work. An operator's write is not fenced.
func Fenced(ctx context.Context) context.Context { return context.WithValue(ctx, fencedKey{}, true) }

// IsFenced says whether ctx was marked by Fenced.
func IsFenced(ctx context.Context) bool { v, _ := ctx.Value(fencedKey{}).(bool); return v }

// Counter is a Follower that counts its queues by partition, so that a
// shared spool can show every relay the queues of every partition (the
// admin API's destinations), not only those the relay holds.
type Counter interface {
	// Count sums each destination's queues over the keys of each
	// partition, part naming a key's partition.
	Count(part func(provider, key string) uint32) map[uint32]map[string]*QueueStats
}

// Totaler is a Shared spool that sums the queues of every partition, its
// own relay's from c and the others' as their holders published them.
type Totaler interface {
	// QueueTotals returns them by destination; ok is false when the
	// spool is not shared, whose dispatcher's queues hold everything.
	QueueTotals(c Counter) (totals map[string]*QueueStats, ok bool, err error)
}

// QueueStats is one destination's queues over some keys.
type QueueStats struct {
	// Pending counts the deliveries neither final nor dead; Dead the dead
	// ones; HeldKeys the keys blocked behind a dead event.
	Pending, Dead, HeldKeys int
	// Oldest is when the oldest queued delivery's event came; zero: none.
	Oldest time.Time
	// Held lists up to MaxHeldKeys held keys, the oldest blocking event
	// first.
	Held []HeldKey
}

// MaxHeldKeys bounds the held keys QueueStats lists.
const MaxHeldKeys = 100

// HeldKey is a key blocked behind a dead event.
type HeldKey struct {
	Provider string `json:"provider"` // whose key it is: keys are scoped by provider
	Key      string `json:"key"`
	EventID  string `json:"blocked_by"`
	Waiting  int    `json:"waiting"` // deliveries queued behind it
}
