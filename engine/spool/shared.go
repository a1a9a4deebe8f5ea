package spool

import "context"

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
