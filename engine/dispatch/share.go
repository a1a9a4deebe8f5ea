package dispatch

import (
	"container/heap"
	"strings"

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
		l.addDead(q.Provider, q.Key, 1)
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
			// Every dead delivery of the keys, those no longer queued
			// (passed on a destination that does not hold) included.
			for k, n := range l.deadBy {
				if provider, key, _ := strings.Cut(k, "\x00"); match(provider, key) {
					l.dead -= n
					delete(l.deadBy, k)
				}
			}
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

var _ spool.Counter = (*Dispatcher)(nil)

// Count sums each lane's queues over the keys of each partition
// (spool.Counter): the shared spool publishes them, so that every relay's
// admin API shows the queues of every partition.
func (d *Dispatcher) Count(part func(provider, key string) uint32) map[uint32]map[string]*spool.QueueStats {
	out := map[uint32]map[string]*spool.QueueStats{}
	of := func(p uint32, dest string) *spool.QueueStats {
		if out[p] == nil {
			out[p] = map[string]*spool.QueueStats{}
		}
		st := out[p][dest]
		if st == nil {
			st = &spool.QueueStats{}
			out[p][dest] = st
		}
		return st
	}
	for _, l := range d.allLanes() {
		l.count(of, part)
	}
	for _, dests := range out {
		for _, st := range dests {
			st.Held = oldestHeld(st.Held, spool.MaxHeldKeys)
		}
	}
	return out
}

// count adds l's queues to of(partition, destination).
func (l *lane) count(of func(p uint32, dest string) *spool.QueueStats, part func(provider, key string) uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	name := l.dest.Name
	for _, kq := range l.keys {
		if len(kq.items) == 0 {
			continue
		}
		st := of(part(kq.provider, kq.eventKey), name)
		for _, it := range kq.items {
			if !it.dead {
				st.Pending++
			}
		}
		if kq.held {
			st.HeldKeys++
			st.Held = append(st.Held, kq.heldKey())
		}
		st.Oldest = kq.older(st.Oldest)
	}
	for k, n := range l.deadBy {
		provider, key, _ := strings.Cut(k, "\x00")
		of(part(provider, key), name).Dead += n
	}
}
