package dispatch

import (
	"container/heap"
	"context"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/hookrelay/hookrelay/engine/internal/dueheap"
)

// lane is one destination's queues and workers.
type lane struct {
	d      *Dispatcher
	ctx    context.Context // ends when the lane closes or the relay stops
	cancel context.CancelFunc

	mu sync.Mutex
	// idle is signalled (on mu) whenever a worker lets go of a key: an
	// operator's command on a delivery in flight waits for it (settled).
	idle    sync.Cond
	dest    *Destination  // replaced on reload
	limiter *rate.Limiter // nil: unlimited
	slots   chan struct{} // one per request in flight to the destination
	workers int           // running workers; extra ones stop after a reload lowers concurrency
	reconf  chan struct{} // closed when the settings change
	keys    map[string]*keyQueue
	ready   []*keyQueue // keys whose head may be sent now, oldest first
	timers  timerHeap   // keys whose head waits for its next attempt
	wake    chan struct{}
	paused  bool
	pending int // deliveries queued in memory, dead ones included (Backlog)
	// queuedDead counts the dead ones among them: a held key's head, or one
	// loaded dead at start and not yet visited. Stats' pending leaves them
	// out, as they are counted under dead.
	queuedDead int
	held       int // keys blocked behind a dead event
	dead       int // dead deliveries of this destination in the spool
	// deadBy counts them by provider and key (NUL between), so that they
	// can be counted by partition and leave with their keys (Drop).
	deadBy map[string]int
	// down is the run of down-like failures (result.down) since the last
	// success: its first and last, and whether they came from more than one
	// key. outage is the last run that counted as an outage (see track).
	down struct {
		first, last time.Time
		key         string
		many        bool
	}
	outage outageSpan
	// lastFailure is the newest failed attempt, for `hookrelay status`: a
	// delivery that keeps failing is not dead for long under the defaults.
	lastFailure *FailedAttempt
}

// FailedAttempt is one failed attempt of a delivery.
type FailedAttempt struct {
	At       time.Time `json:"at"`
	EventID  string    `json:"event_id"`
	Status   int       `json:"status"`
	Error    string    `json:"error"`
	Response string    `json:"response"`
}

// keyQueue is one key's deliveries to one destination: in spool (ingest)
// order, except that events with a sequence number go in sequence order.
// A key is its provider's: two lenders' keys of one name are two queues.
type keyQueue struct {
	key          string // its name in lane.keys (queueKey)
	provider     string // the provider and the key as the events carry them
	eventKey     string
	items        []item
	scheduled    bool // in ready, in timers or in flight
	inflight     bool // a worker holds the head
	held         bool // the head is dead and the destination holds
	dueheap.Slot      // when the head may be tried again, and the place in timers
	// lastSeq is the highest sequence released for the key; loaded from the
	// spool when the first sequenced head comes up.
	lastSeq   int64
	seqLoaded bool
}

// item is one queued delivery.
type item struct {
	eventID  string
	sequence int64 // 0: none
	dead     bool  // dead in the spool, counted in lane.queuedDead
}

// queueKey is the queue an event goes in: its provider's key (SPEC 5.2:
// per destination, provider and key), or, without ordering, a queue of its
// own.
func (l *lane) queueKey(eventID, provider, key string) string {
	if !l.dest.ordered {
		return eventID
	}
	// Provider names hold no NUL (they are file names or YAML strings), so
	// the provider ends at the first one whatever the key holds.
	return provider + "\x00" + key
}

// queueOf returns the queue an event of provider's key goes in, making it
// when new. l.mu held.
func (l *lane) queueOf(eventID, provider, key string) *keyQueue {
	qk := l.queueKey(eventID, provider, key)
	kq := l.keys[qk]
	if kq == nil {
		kq = &keyQueue{key: qk, provider: provider, eventKey: key, Slot: dueheap.Slot{Idx: -1}}
		l.keys[qk] = kq
	}
	return kq
}

// push queues a delivery behind its key's earlier ones, or, when it has a
// sequence number, before the first queued one with a higher number.
func (l *lane) push(it item, provider, key string, dead bool, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	kq := l.queueOf(it.eventID, provider, key)
	l.pending++
	if it.dead = dead; dead {
		l.queuedDead++
	}
	first := 0
	if kq.inflight || kq.held {
		first = 1 // the head is being sent or blocks the key: it stays first
	}
	if kq.insert(it, first) > 0 {
		return
	}
	if dead && l.dest.hold {
		kq.held = true
		l.held++
		return
	}
	l.newHead(kq, at)
}

// addDead counts n more (or, negative, fewer) dead deliveries of
// provider's key. l.mu held, or l not yet shared.
func (l *lane) addDead(provider, key string, n int) {
	l.dead += n
	k := provider + "\x00" + key
	if c := l.deadBy[k] + n; c > 0 {
		l.deadBy[k] = c
	} else {
		delete(l.deadBy, k)
	}
}

// markDead records that kq's i-th item is dead. l.mu held.
func (l *lane) markDead(kq *keyQueue, i int) {
	if !kq.items[i].dead {
		kq.items[i].dead = true
		l.queuedDead++
	}
}

// markLive records that kq's i-th item is pending again. l.mu held.
func (l *lane) markLive(kq *keyQueue, i int) {
	if kq.items[i].dead {
		kq.items[i].dead = false
		l.queuedDead--
	}
}

// newHead schedules kq for its new head, whatever the old head was waiting for.
func (l *lane) newHead(kq *keyQueue, at time.Time) {
	kq.At = at
	if kq.Idx >= 0 {
		heap.Remove(&l.timers, kq.Idx)
		kq.scheduled = false
	}
	l.schedule(kq)
}

// insert puts it behind the items from first on that it does not precede:
// all of them, unless it has a sequence number, which passes the higher
// numbers (never an unsequenced item). It returns the position.
func (kq *keyQueue) insert(it item, first int) int {
	at := len(kq.items)
	if it.sequence > 0 {
		for i := len(kq.items) - 1; i >= first && kq.items[i].sequence > it.sequence; i-- {
			at = i
		}
	}
	kq.items = slices.Insert(kq.items, at, it)
	return at
}

// schedule puts a key with work on the ready list or the timers. l.mu held.
func (l *lane) schedule(kq *keyQueue) {
	if kq.scheduled || kq.held || len(kq.items) == 0 {
		return
	}
	kq.scheduled = true
	if time.Until(kq.At) > 0 {
		heap.Push(&l.timers, kq)
	} else {
		l.ready = append(l.ready, kq)
	}
	l.signal()
}

// signal wakes one idle worker. l.mu held or not.
func (l *lane) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// take waits for a key whose head may be sent. It returns nil when the lane
// stops, or when this worker is one too many after a reload; l.workers then
// counts it out.
func (l *lane) take() *keyQueue {
	for {
		l.mu.Lock()
		// Checked first: once the relay stops, no new attempt starts, even
		// with keys ready (only the ones in flight are finished).
		if l.ctx.Err() != nil || l.workers > l.wantWorkers() {
			l.workers--
			l.mu.Unlock()
			return nil
		}
		now := time.Now()
		for len(l.timers) > 0 && !l.timers[0].At.After(now) {
			l.ready = append(l.ready, heap.Pop(&l.timers).(*keyQueue))
		}
		wait := time.Hour
		if len(l.timers) > 0 {
			wait = l.timers[0].At.Sub(now)
		}
		for !l.paused && len(l.ready) > 0 {
			kq := l.ready[0]
			l.ready[0] = nil
			l.ready = l.ready[1:]
			if len(kq.items) == 0 || kq.held { // an operator emptied or held it meanwhile
				kq.scheduled = false
				continue
			}
			kq.inflight = true
			if len(l.ready) > 0 { // let another worker take the next one
				l.signal()
			}
			l.mu.Unlock()
			return kq
		}
		reconf := l.reconf
		l.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-l.ctx.Done():
		case <-reconf:
		case <-l.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// work is one worker: it sends heads of ready keys until the lane stops. A
// send in flight when it stops is finished, not abandoned.
func (l *lane) work() {
	for {
		kq := l.take()
		if kq == nil {
			return
		}
		l.mu.Lock()
		head, dest := kq.items[0], l.dest
		last, loaded := kq.lastSeq, kq.seqLoaded
		l.mu.Unlock()
		if head.sequence > 0 && !loaded {
			var err error
			if last, err = l.d.spool.LastSequence(dest.Name, kq.provider, kq.eventKey); err != nil {
				l.d.log.Error("spool read failed", "destination", dest.Name, "provider", kq.provider, "key", kq.eventKey, "error", err)
			}
		}
		var res result
		if l.d.local(kq.provider, kq.eventKey) {
			res = l.d.deliver(l, head, last)
		} else {
			// Its partition's lease lapsed (a renewal late, or lost: then
			// Drop takes the key away): send nothing meanwhile.
			res = result{next: retryAt, at: time.Now().Add(time.Second)}
		}
		l.mu.Lock()
		kq.inflight = false
		l.idle.Broadcast() // an operator's command may wait for this head
		if head.sequence > 0 && !loaded {
			kq.lastSeq, kq.seqLoaded = max(kq.lastSeq, last), true
		}
		switch res.next {
		case popHead:
			if kq.items[0].dead {
				l.queuedDead--
			}
			kq.items[0] = item{}
			kq.items = kq.items[1:]
			kq.At = time.Time{}
			kq.lastSeq = max(kq.lastSeq, head.sequence)
			l.pending--
		case holdKey:
			kq.held = true
			l.held++
			l.markDead(kq, 0)
		case retryAt:
			kq.At = res.at
			if res.down && l.outage.holds(res.sent) {
				// Its answer came after the recovery it was part of: go now,
				// as the keys recover released.
				kq.At = time.Time{}
			}
			// An earlier number that came while the head was out goes first.
			if len(kq.items) > 1 && head.sequence > 0 && kq.items[1].sequence > 0 && kq.items[1].sequence < head.sequence {
				kq.items = kq.items[1:]
				kq.insert(head, 0)
				kq.At = time.Time{}
			}
		}
		if res.dead {
			l.addDead(kq.provider, kq.eventKey, 1)
		}
		l.track(res, kq.key)
		kq.scheduled = false
		if len(kq.items) == 0 {
			delete(l.keys, kq.key)
		} else {
			l.schedule(kq)
		}
		l.mu.Unlock()
	}
}

// track follows the destination's health from the outcome of each attempt
// to key. l.mu held.
func (l *lane) track(res result, key string) {
	d := &l.down
	switch {
	case res.down && d.first.IsZero():
		d.first, d.last, d.key, d.many = res.sent, res.sent, key, false
	case res.down: // attempts in flight at once end in any order
		d.first, d.last = minTime(d.first, res.sent), maxTime(d.last, res.sent)
		d.many = d.many || key != d.key
	case res.ok && !d.first.IsZero():
		// An outage: failures from more than one key, over outageMin,
		// with no success between. One event the destination refuses, or
		// failures that are not spread over time, are not one.
		if d.many && d.last.Sub(d.first) >= l.d.OutageMin {
			l.recover(d.first)
		}
		d.first = time.Time{} // the run ends
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// recover runs when the destination answers after an outage that began at
// from: every key waiting out a backoff earned during the outage is tried
// now rather than at its own time (up to retry.max later), so that the
// backlog drains at the destination's pace. deliver decides per key
// (outage.cut); a key waiting for another reason goes back to waiting.
// l.mu held.
func (l *lane) recover(from time.Time) {
	l.outage = outageSpan{from: from, to: time.Now()}
	for _, kq := range l.timers {
		kq.Idx, kq.At = -1, time.Time{}
		l.ready = append(l.ready, kq)
	}
	clear(l.timers)
	l.timers = l.timers[:0]
	l.signal()
}

// timerHeap orders keys by their head's next attempt.
type timerHeap = dueheap.Heap[*keyQueue]
