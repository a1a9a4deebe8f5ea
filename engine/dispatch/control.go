package dispatch

import (
	"container/heap"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// The operator's commands (SPEC 6). Each writes the spool and then brings
// the lane's queues in line under the lane's lock. A command on a delivery
// that a worker holds in flight waits for the worker to let go of it
// (settled), so the worker's outcome is always applied before the
// command's, never after it.

// Requeue makes the dead delivery dl of ev pending again, its attempt count
// reset: in the spool, where it keeps its place in the key's order, and in
// its key's queue.
func (d *Dispatcher) Requeue(ev *spool.Event, dl *spool.Delivery) error {
	dl.Status, dl.NextAt, dl.AttemptsBefore = spool.Pending, time.Time{}, len(dl.Attempts)
	if err := d.spool.Update(context.Background(), dl); err != nil {
		return err
	}
	d.command(spool.Command{Op: spool.CommandRequeue, Destination: dl.Destination, EventID: ev.ID,
		Provider: ev.Provider, Key: ev.Key, Sequence: ev.Sequence})
	d.log.Info("delivery requeued by operator", "event_id", ev.ID, "destination", dl.Destination, "key", ev.Key)
	return nil
}

// command brings the queues in line with an operator's command the spool
// holds already: here when this relay delivers the key, else on the relay
// that does (forward).
func (d *Dispatcher) command(c spool.Command) {
	l := d.lane(c.Destination)
	switch {
	case l == nil:
	case d.local(c.Provider, c.Key):
		l.apply(c)
	default:
		d.forward(c)
	}
}

// Skip marks dl skipped, in the spool and in its key's queue, which moves
// on; dead says whether it was dead (else held).
func (d *Dispatcher) Skip(ev *spool.Event, dl *spool.Delivery, dead bool) error {
	dl.Status = spool.Skipped
	if err := d.spool.Update(context.Background(), dl); err != nil {
		return err
	}
	d.command(spool.Command{Op: spool.CommandSkip, Destination: dl.Destination, EventID: ev.ID,
		Provider: ev.Provider, Key: ev.Key, Dead: dead})
	d.m.Skipped(dl.Destination)
	d.log.Info("delivery skipped by operator", "event_id", ev.ID, "destination", dl.Destination, "key", ev.Key)
	return nil
}

// Pause pauses or resumes the destination name, in the spool (it outlasts
// a restart) and in its lane; ErrNoDestination when it has no lane.
func (d *Dispatcher) Pause(name string, paused bool) error {
	l := d.lane(name)
	if l == nil {
		return ErrNoDestination
	}
	if err := d.spool.SetPaused(name, paused); err != nil {
		return err
	}
	l.setPaused(paused)
	if paused {
		d.log.Info("destination paused by operator", "destination", name)
	} else {
		d.log.Info("destination resumed by operator", "destination", name)
	}
	return nil
}

// Release drops from the queues the pending deliveries that the spool has
// deleted (an erasure, a purge of dead events), as a skip does: a worker
// that holds one finds it gone and moves on.
func (d *Dispatcher) Release(dropped []spool.Dropped) {
	for _, r := range dropped {
		d.events.forgetID(r.EventID)
		if l := d.lane(r.Destination); l != nil {
			l.release(r.EventID, r.Provider, r.Key, r.Dead)
		}
	}
}

// settled returns the queue qk once no worker holds eventID in flight at
// its head; nil when there is no such queue. l.mu held (idle waits on it).
func (l *lane) settled(qk, eventID string) *keyQueue {
	for {
		kq := l.keys[qk]
		if kq == nil || !kq.inflight || len(kq.items) == 0 || kq.items[0].eventID != eventID {
			return kq
		}
		l.idle.Wait()
	}
}

// requeue puts a dead delivery that an operator retried back in its key's
// queue: a key held behind it is released; one that moved on past it (skip)
// gets it back first, as the oldest of the key.
func (l *lane) requeue(eventID, provider, key string, sequence int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.settled(l.queueKey(eventID, provider, key), eventID)
	l.addDead(provider, key, -1)
	kq := l.queueOf(eventID, provider, key)
	switch i := kq.index(eventID); {
	case i == 0 && kq.held:
		kq.held = false
		l.held--
		l.markLive(kq, 0)
		l.newHead(kq, time.Time{})
	case i >= 0:
		// Still queued (not yet visited since a restart): it goes as pending.
		l.markLive(kq, i)
	default:
		l.pending++
		first := 0
		if kq.inflight || kq.held {
			first = 1 // the head is being sent or blocks the key: it stays first
		}
		// Before the events of the key that came after it (ULIDs sort in
		// ingest order): several dead deliveries of a key requeued one after
		// the other keep their original order.
		at := first
		for at < len(kq.items) && kq.items[at].eventID < eventID {
			at++
		}
		kq.items = slices.Insert(kq.items, at, item{eventID: eventID, sequence: sequence})
		if at == 0 {
			l.newHead(kq, time.Time{})
		}
	}
}

// release drops a delivery an operator skipped (or the spool deleted) from
// its key's queue; when it was the dead head of a held key, the key moves on.
func (l *lane) release(eventID, provider, key string, wasDead bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if wasDead {
		l.addDead(provider, key, -1)
	}
	key = l.queueKey(eventID, provider, key)
	kq := l.settled(key, eventID)
	if kq == nil {
		return
	}
	i := kq.index(eventID)
	if i < 0 {
		return
	}
	if kq.items[i].dead {
		l.queuedDead--
	}
	kq.items = slices.Delete(kq.items, i, i+1)
	l.pending--
	if i == 0 {
		if kq.held {
			kq.held = false
			l.held--
		}
		if len(kq.items) == 0 {
			if kq.Idx >= 0 {
				heap.Remove(&l.timers, kq.Idx)
				kq.scheduled = false
			}
			delete(l.keys, key)
			return
		}
		l.newHead(kq, time.Time{})
	}
}

func (kq *keyQueue) index(eventID string) int {
	return slices.IndexFunc(kq.items, func(it item) bool { return it.eventID == eventID })
}

// setPaused stops or restarts sending; the queues stay.
func (l *lane) setPaused(paused bool) {
	l.mu.Lock()
	l.paused = paused
	l.mu.Unlock()
	l.signal()
	l.mu.Lock()
	close(l.reconf) // wake every idle worker
	l.reconf = make(chan struct{})
	l.mu.Unlock()
}

// Stats is a lane's state, for metrics and the admin API.
type Stats struct {
	Paused bool `json:"paused"`
	// Pending counts the deliveries not final and not dead: waiting their
	// turn, their next attempt or behind a held key. Dead ones are in Dead.
	Pending  int `json:"pending"`
	Dead     int `json:"dead"`
	HeldKeys int `json:"held_keys"`
	// OldestPendingSeconds is the age of the oldest queued delivery.
	OldestPendingSeconds float64 `json:"oldest_pending_seconds"`
	// LastFailure is the newest failed attempt; nil when none since start.
	LastFailure *FailedAttempt `json:"last_failure"`
}

// Lanes are the names of the destinations with a lane.
func (d *Dispatcher) Lanes() []string {
	var names []string
	for _, l := range d.allLanes() {
		names = append(names, l.destination().Name)
	}
	return names
}

// Stats is the state of dest's lane; ok false when it has none.
func (d *Dispatcher) Stats(dest string) (st Stats, ok bool) {
	l := d.lane(dest)
	if l == nil {
		return Stats{}, false
	}
	return l.stats(), true
}

// HeldKeys lists up to limit keys of dest held behind a dead event, with
// the event blocking each, oldest event first.
func (d *Dispatcher) HeldKeys(dest string, limit int) []HeldKey {
	l := d.lane(dest)
	if l == nil {
		return []HeldKey{}
	}
	return l.heldKeys(limit)
}

// Held says whether dl, a pending delivery of ev, waits behind another
// event's dead delivery: its key is held.
func (d *Dispatcher) Held(ev *spool.Event, dl *spool.Delivery) bool {
	if dl.Status != spool.Pending {
		return false
	}
	l := d.lane(dl.Destination)
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	kq := l.keys[l.queueKey(ev.ID, ev.Provider, ev.Key)]
	return kq != nil && kq.held && kq.items[0].eventID != ev.ID
}

// due is when the head of provider's key in dest's lane is tried next,
// with ok false when the key has no queue or its head is in flight (for
// this package's tests).
func (d *Dispatcher) due(dest, provider, key string) (at time.Time, ok bool) {
	l := d.lane(dest)
	if l == nil {
		return time.Time{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	kq := l.keys[l.queueKey("", provider, key)]
	if kq == nil || kq.inflight {
		return time.Time{}, false
	}
	return kq.At, true
}

// waiting counts the keys, over all lanes, waiting for their head's next
// attempt (a backoff, a reorder window), for this package's tests.
func (d *Dispatcher) waiting() int {
	n := 0
	for _, l := range d.allLanes() {
		l.mu.Lock()
		n += len(l.timers)
		l.mu.Unlock()
	}
	return n
}

func (l *lane) stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := Stats{Paused: l.paused, Pending: l.pending - l.queuedDead, Dead: l.dead, HeldKeys: l.held, LastFailure: l.lastFailure}
	var oldest time.Time
	for _, kq := range l.keys {
		oldest = kq.older(oldest)
	}
	if !oldest.IsZero() {
		s.OldestPendingSeconds = time.Since(oldest).Seconds()
	}
	return s
}

// noteFailure records a failed attempt as the lane's newest.
func (l *lane) noteFailure(eventID string, a spool.Attempt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lastFailure == nil || !a.At.Before(l.lastFailure.At) {
		l.lastFailure = &FailedAttempt{At: a.At, EventID: eventID, Status: a.Status, Error: a.Error, Response: a.Response}
	}
}

// heldKeys lists the limit oldest held keys with the event blocking each,
// oldest first.
func (l *lane) heldKeys(limit int) []HeldKey {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []HeldKey{}
	for _, kq := range l.keys {
		if kq.held {
			out = append(out, kq.heldKey())
		}
	}
	return oldestHeld(out, limit)
}

// heldKey is kq as a held key: kq.held.
func (kq *keyQueue) heldKey() HeldKey {
	return HeldKey{Provider: kq.provider, Key: kq.eventKey, EventID: kq.items[0].eventID, Waiting: len(kq.items) - 1}
}

// oldestHeld sorts keys, oldest blocking event first, and keeps the first
// limit: sorted before capping, so that the keys shown are the oldest
// blocked ones.
func oldestHeld(keys []HeldKey, limit int) []HeldKey {
	slices.SortFunc(keys, func(a, b HeldKey) int { return strings.Compare(a.EventID, b.EventID) })
	return keys[:min(len(keys), limit)]
}

// older is the earlier of oldest (zero: none) and when kq's head event
// came. Within a key the head is the oldest but for sequence reordering,
// which is close enough for an alert on age.
func (kq *keyQueue) older(oldest time.Time) time.Time {
	if len(kq.items) == 0 {
		return oldest
	}
	if id, err := ulid.ParseStrict(kq.items[0].eventID); err == nil {
		if t := ulid.Time(id.Time()); oldest.IsZero() || t.Before(oldest) {
			return t
		}
	}
	return oldest
}

// HeldKey is a key blocked behind a dead event.
type HeldKey = spool.HeldKey
