package dispatch

import (
	"container/heap"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// On a shared spool (spool.Shared, JetStream) several relays deliver from
// one stream, each the partitions it holds a lease on. The spool then feeds
// the lanes (Queue, Drop) instead of Pending and Committed, and an
// operator's command on a key another relay holds is forwarded to it: the
// Dispatcher is the spool's spool.Follower.

var _ spool.Follower = (*Dispatcher)(nil)

// local says whether this relay delivers provider's key: always, but on a
// shared spool for a partition another relay holds.
func (d *Dispatcher) local(provider, key string) bool {
	return d.shared == nil || d.shared.Holds(provider, key)
}

// forward hands an operator's command on a key another relay delivers to
// that relay; the spool holds the command's outcome already, so a failure
// is only logged (the next holder rebuilds from the spool).
func (d *Dispatcher) forward(c spool.Command) {
	if err := d.shared.Forward(c); err != nil {
		d.log.Warn("operator command not forwarded; the partition's next holder applies it", "error", err)
	}
}

// Queue puts a delivery of a partition this relay holds in its key's
// queue, unless it is there already (spool.Follower).
func (d *Dispatcher) Queue(dest string, q *spool.QueuedDelivery) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.lanes[dest]
	if l == nil {
		return
	}
	id := q.EventID.String()
	l.mu.Lock()
	kq := l.keys[l.queueKey(id, q.Provider, q.Key)]
	queued := kq != nil && kq.index(id) >= 0
	if !queued && q.Status == spool.Dead {
		l.dead++
	}
	l.mu.Unlock()
	if !queued {
		l.push(item{eventID: id, sequence: q.Sequence}, q.Provider, q.Key, q.Status == spool.Dead, q.NextAt)
	}
}

// Drop removes the keys holds matches from every lane, each once no send
// of its head is in flight (spool.Follower): their partition went to
// another relay.
func (d *Dispatcher) Drop(holds func(provider, key string) bool) {
	for _, l := range d.allLanes() {
		l.drop(holds)
	}
}

// dropWaits bounds how many times drop waits for a worker to let go.
const dropWaits = 100000

func (l *lane) drop(match func(provider, key string) bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for range dropWaits {
		busy := false
		for k, kq := range l.keys {
			if !match(kq.provider, kq.eventKey) {
				continue
			}
			if kq.inflight {
				busy = true
				continue
			}
			l.pending -= len(kq.items)
			for _, it := range kq.items {
				if it.dead {
					l.queuedDead--
					l.dead--
				}
			}
			if kq.held {
				kq.held = false
				l.held--
			}
			if kq.Idx >= 0 {
				heap.Remove(&l.timers, kq.Idx)
				kq.scheduled = false
			}
			kq.items = nil // a worker that finds it on the ready list passes it
			delete(l.keys, k)
		}
		if !busy {
			return
		}
		l.idle.Wait()
	}
}

// Apply applies an operator's command another relay forwarded
// (spool.Follower).
func (d *Dispatcher) Apply(c spool.Command) {
	if l := d.lane(c.Destination); l != nil {
		l.apply(c)
	}
}

// apply applies an operator's command to l's queues.
func (l *lane) apply(c spool.Command) {
	switch c.Op {
	case spool.CommandRequeue:
		l.requeue(c.EventID, c.Provider, c.Key, c.Sequence)
	case spool.CommandSkip:
		l.release(c.EventID, c.Provider, c.Key, c.Dead)
	}
}

// Paused applies a pause or resume another relay recorded (spool.Follower).
func (d *Dispatcher) Paused(dest string, paused bool) {
	if l := d.lane(dest); l != nil {
		l.setPaused(paused)
	}
}
