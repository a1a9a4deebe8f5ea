package engine

import (
	"container/heap"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// Operator actions on a lane's queues. The caller has already written the
// new status to the spool; these bring the in-memory queues in line.

// requeue puts a dead delivery that an operator retried back in its key's
// queue: a key held behind it is released; one that moved on past it (skip)
// gets it back first, as the oldest of the key.
func (l *lane) requeue(eventID, provider, key string, sequence int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dead--
	kq := l.queueOf(eventID, provider, key)
	switch i := kq.index(eventID); {
	case i == 0 && kq.inflight:
		// The worker that made it dead has yet to hold or pop the key.
		kq.overruled = true
	case i == 0 && kq.held:
		kq.held = false
		l.held--
		l.newHead(kq, time.Time{})
	case i >= 0:
		// Still queued (not yet visited since a restart): it goes as pending.
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
		kq.items = slices.Insert(kq.items, at, item{eventID, sequence})
		if at == 0 {
			l.newHead(kq, time.Time{})
		}
	}
}

// release drops a delivery an operator skipped from its key's queue; when it
// was the dead head of a held key, the key moves on.
func (l *lane) release(eventID, provider, key string, wasDead bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if wasDead {
		l.dead--
	}
	key = l.queueKey(eventID, provider, key)
	kq := l.keys[key]
	if kq == nil {
		return
	}
	i := kq.index(eventID)
	if i == 0 && kq.inflight {
		kq.overruled = true // the worker pops it once it sees it skipped
		return
	}
	if i < 0 {
		return
	}
	kq.items = slices.Delete(kq.items, i, i+1)
	l.pending--
	if i == 0 {
		if kq.held {
			kq.held = false
			l.held--
		}
		if len(kq.items) == 0 {
			if kq.idx >= 0 {
				heap.Remove(&l.timers, kq.idx)
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

// laneStats is a lane's state for metrics and the admin API.
type laneStats struct {
	Paused   bool `json:"paused"`
	Pending  int  `json:"pending"`
	Dead     int  `json:"dead"`
	HeldKeys int  `json:"held_keys"`
	// OldestPendingSeconds is the age of the oldest queued delivery.
	OldestPendingSeconds float64 `json:"oldest_pending_seconds"`
	// LastFailure is the newest failed attempt; nil when none since start.
	LastFailure *failedAttempt `json:"last_failure"`
}

func (l *lane) stats() laneStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := laneStats{Paused: l.paused, Pending: l.pending, Dead: l.dead, HeldKeys: l.held, LastFailure: l.lastFailure}
	var oldest time.Time
	for _, kq := range l.keys {
		if len(kq.items) == 0 {
			continue
		}
		// Within a key the head is the oldest but for sequence reordering,
		// which is close enough for an alert on age.
		if id, err := ulid.ParseStrict(kq.items[0].eventID); err == nil {
			if t := ulid.Time(id.Time()); oldest.IsZero() || t.Before(oldest) {
				oldest = t
			}
		}
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
		l.lastFailure = &failedAttempt{At: a.At, EventID: eventID, Status: a.Status, Error: a.Error, Response: a.Response}
	}
}

// heldBy returns the event that blocks key, if the key is held.
func (l *lane) heldBy(key string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if kq := l.keys[key]; kq != nil && kq.held {
		return kq.items[0].eventID, true
	}
	return "", false
}

// heldKeys lists up to limit held keys with the event blocking each.
func (l *lane) heldKeys(limit int) []heldKey {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []heldKey{}
	for _, kq := range l.keys {
		if kq.held && len(out) < limit {
			out = append(out, heldKey{Provider: kq.provider, Key: kq.eventKey, EventID: kq.items[0].eventID, Waiting: len(kq.items) - 1})
		}
	}
	slices.SortFunc(out, func(a, b heldKey) int { return strings.Compare(a.EventID, b.EventID) })
	return out
}

// heldKey is a key blocked behind a dead event.
type heldKey struct {
	Provider string `json:"provider"` // whose key it is: keys are scoped by provider
	Key      string `json:"key"`
	EventID  string `json:"blocked_by"`
	Waiting  int    `json:"waiting"` // deliveries queued behind it
}

// queueKeyOf is the in-memory queue an event of provider's key sits in.
func (l *lane) queueKeyOf(eventID, provider, key string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.queueKey(eventID, provider, key)
}
