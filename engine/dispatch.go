package engine

import (
	"container/heap"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// dispatcher forwards spooled deliveries: one lane per destination, and in a
// lane one FIFO per key, of which at most one delivery is in flight.
type dispatcher struct {
	spool  spool.Spool
	sender *sender
	log    *slog.Logger
	m      *metrics

	mu    sync.Mutex
	lanes map[string]*lane
	// reorder is each provider's reorder_window (SPEC 5.3).
	reorder map[string]time.Duration
	wg      sync.WaitGroup
}

// lane is one destination's queues.
type lane struct {
	d       *dispatcher
	dest    *Destination
	limiter *rate.Limiter // nil: unlimited

	mu      sync.Mutex
	keys    map[string]*keyQueue
	ready   []*keyQueue // keys whose head may be sent now, oldest first
	timers  timerHeap   // keys whose head waits for its next attempt
	wake    chan struct{}
	paused  bool
	pending int // items queued, for metrics
	held    int // keys blocked behind a dead event
}

// keyQueue is one key's deliveries to one destination: in spool (ingest)
// order, except that events with a sequence number go in sequence order.
type keyQueue struct {
	key       string
	items     []item
	scheduled bool // in ready, in timers or in flight
	inflight  bool // a worker holds the head
	held      bool // the head is dead and the destination holds
	nextAt    time.Time
	heapIdx   int
	// lastSeq is the highest sequence released for the key; loaded from the
	// spool when the first sequenced head comes up.
	lastSeq   int64
	seqLoaded bool
}

// item is one queued delivery.
type item struct {
	eventID  string
	sequence int64 // 0: none
}

func newDispatcher(sp spool.Spool, s *sender, log *slog.Logger, m *metrics) *dispatcher {
	return &dispatcher{spool: sp, sender: s, log: log, m: m, lanes: map[string]*lane{}, reorder: map[string]time.Duration{}}
}

// start opens a lane per destination, rebuilds its queues from the spool,
// and starts its workers; they stop when ctx ends.
func (d *dispatcher) start(ctx context.Context, dests map[string]*Destination, providers []*Provider) error {
	for _, p := range providers {
		d.reorder[p.Name] = p.reorder
	}
	for _, dest := range dests {
		l := &lane{d: d, dest: dest, keys: map[string]*keyQueue{}, wake: make(chan struct{}, 1)}
		if dest.rate > 0 {
			l.limiter = rate.NewLimiter(rate.Limit(dest.rate), 1)
		}
		d.mu.Lock()
		d.lanes[dest.Name] = l
		d.mu.Unlock()
		err := d.spool.Queue(dest.Name, func(dl *spool.Delivery) error {
			l.push(item{dl.EventID, dl.Sequence}, dl.Key, dl.Status == spool.Dead, dl.NextAt)
			return nil
		})
		if err != nil {
			return err
		}
		for range dest.concurrency {
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				l.work(ctx)
			}()
		}
	}
	return nil
}

// wait blocks until every worker has stopped.
func (d *dispatcher) wait() { d.wg.Wait() }

// committed is the spool's hook: called in commit order, so each key's
// queue is in ingest order.
func (d *dispatcher) committed(refs []spool.Ref) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range refs {
		if l := d.lanes[r.Destination]; l != nil {
			l.push(item{r.EventID, r.Sequence}, r.Key, false, time.Time{})
		}
	}
}

func (d *dispatcher) lane(name string) *lane {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lanes[name]
}

// push queues a delivery behind its key's earlier ones, or, when it has a
// sequence number, before the first queued one with a higher number.
func (l *lane) push(it item, key string, dead bool, nextAt time.Time) {
	if !l.dest.ordered {
		key = it.eventID // every event is its own queue
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	kq := l.keys[key]
	if kq == nil {
		kq = &keyQueue{key: key, heapIdx: -1}
		l.keys[key] = kq
	}
	l.pending++
	first := 0
	if kq.inflight || kq.held {
		first = 1 // the head is being sent or blocks the key: it stays first
	}
	if kq.insert(it, first) > 0 {
		return
	}
	// A new head: it may go now, whatever the old head was waiting for.
	if dead && l.dest.hold {
		kq.held = true
		l.held++
		return
	}
	kq.nextAt = nextAt
	if kq.heapIdx >= 0 {
		heap.Remove(&l.timers, kq.heapIdx)
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
	if time.Until(kq.nextAt) > 0 {
		heap.Push(&l.timers, kq)
	} else {
		l.ready = append(l.ready, kq)
	}
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// take waits for a key whose head may be sent; nil when ctx ends.
func (l *lane) take(ctx context.Context) *keyQueue {
	for {
		// Checked first: once the relay stops, no new attempt starts, even
		// with keys ready (only the ones in flight are finished).
		if ctx.Err() != nil {
			return nil
		}
		l.mu.Lock()
		now := time.Now()
		for len(l.timers) > 0 && !l.timers[0].nextAt.After(now) {
			l.ready = append(l.ready, heap.Pop(&l.timers).(*keyQueue))
		}
		var wait time.Duration = time.Hour
		if len(l.timers) > 0 {
			wait = l.timers[0].nextAt.Sub(now)
		}
		if !l.paused && len(l.ready) > 0 {
			kq := l.ready[0]
			l.ready[0] = nil
			l.ready = l.ready[1:]
			more := len(l.ready) > 0
			l.mu.Unlock()
			if more { // let another worker take the next one
				select {
				case l.wake <- struct{}{}:
				default:
				}
			}
			return kq
		}
		l.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-l.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// work is one worker: it sends heads of ready keys until ctx ends. A send in
// flight when ctx ends is finished, not abandoned.
func (l *lane) work(ctx context.Context) {
	for {
		kq := l.take(ctx)
		if kq == nil {
			return
		}
		l.mu.Lock()
		kq.inflight = true
		head := kq.items[0]
		last, loaded := kq.lastSeq, kq.seqLoaded
		l.mu.Unlock()
		if head.sequence > 0 && !loaded {
			var err error
			if last, err = l.d.spool.LastSequence(l.dest.Name, kq.key); err != nil {
				l.d.log.Error("spool read failed", "destination", l.dest.Name, "key", kq.key, "error", err)
			}
		}
		res := l.d.deliver(ctx, l, head, last)
		l.mu.Lock()
		kq.inflight = false
		if head.sequence > 0 && !loaded {
			kq.lastSeq, kq.seqLoaded = max(kq.lastSeq, last), true
		}
		switch res.next {
		case popHead:
			kq.items[0] = item{}
			kq.items = kq.items[1:]
			kq.nextAt = time.Time{}
			kq.lastSeq = max(kq.lastSeq, head.sequence)
			l.pending--
		case holdKey:
			kq.held = true
			l.held++
		case retryAt:
			kq.nextAt = res.at
			// An earlier number that came while the head was out goes first.
			if len(kq.items) > 1 && head.sequence > 0 && kq.items[1].sequence > 0 && kq.items[1].sequence < head.sequence {
				kq.items = kq.items[1:]
				kq.insert(head, 0)
				kq.nextAt = time.Time{}
			}
		}
		kq.scheduled = false
		if len(kq.items) == 0 {
			delete(l.keys, kq.key)
		} else {
			l.schedule(kq)
		}
		l.mu.Unlock()
	}
}

// result tells a worker what to do with its key after one delivery.
type result struct {
	next int
	at   time.Time
}

const (
	popHead = iota // delivered, skipped, or gone: the key moves on
	retryAt        // try the head again at `at`
	holdKey        // dead and the destination holds: the key waits for an operator
)

// deliver makes at most one attempt of the delivery of it to l's
// destination and records it. last is the highest sequence released for the
// key: a sequenced event beyond last+1 waits for the gap to fill, up to its
// provider's reorder window.
func (d *dispatcher) deliver(ctx context.Context, l *lane, it item, last int64) result {
	dest, eventID := l.dest, it.eventID
	dl, err := d.spool.Delivery(dest.Name, eventID)
	if errors.Is(err, spool.ErrNotFound) {
		return result{next: popHead}
	}
	if err != nil {
		d.log.Error("spool read failed", "destination", dest.Name, "event_id", eventID, "error", err)
		return result{next: retryAt, at: time.Now().Add(time.Second)}
	}
	switch {
	case dl.Status.Final():
		return result{next: popHead}
	case dl.Status == spool.Dead && dest.hold:
		return result{next: holdKey}
	case dl.Status == spool.Dead:
		return result{next: popHead}
	case time.Until(dl.NextAt) > 0:
		return result{next: retryAt, at: dl.NextAt}
	}
	ev, err := d.spool.Event(eventID)
	if err != nil {
		d.log.Error("spool read failed", "destination", dest.Name, "event_id", eventID, "error", err)
		return result{next: retryAt, at: time.Now().Add(time.Second)}
	}
	if it.sequence > last+1 && l.dest.ordered {
		window, ok := d.reorder[ev.Provider]
		if !ok {
			window = 30 * time.Second
		}
		if wait := ev.ReceivedAt.Add(window); time.Until(wait) > 0 {
			return result{next: retryAt, at: wait}
		}
		d.log.Warn("sequence gap: sending without the missing events", "provider", ev.Provider, "key", ev.Key,
			"destination", dest.Name, "event_id", eventID, "sequence", it.sequence, "expected", last+1)
		d.m.sequenceGap(dest.Name)
	}
	if l.limiter != nil {
		if err := l.limiter.Wait(ctx); err != nil {
			return result{next: retryAt}
		}
	}

	att, retryAfter, sendErr := d.sender.send(dest, ev, dl.Tries()+1)
	dl.Attempts = append(dl.Attempts, att)
	out := dest.retry.classify(att.Status, sendErr)
	res := result{next: popHead}
	metric := "success"
	switch {
	case out == success:
		dl.Status, dl.NextAt = spool.Delivered, time.Time{}
	case out == retryable && dl.Tries() < dest.retry.maxAttempts:
		dl.NextAt = time.Now().Add(dest.retry.delay(dl.Tries(), retryAfter))
		res, metric = result{next: retryAt, at: dl.NextAt}, "retry"
	default:
		dl.Status, dl.NextAt, metric = spool.Dead, time.Time{}, "dead"
		if dest.hold {
			res.next = holdKey
		}
	}
	// The key may move on only once the outcome is on disk: otherwise a crash
	// could send the next event of the key while this one is still pending.
	if err := d.spool.Update(context.WithoutCancel(ctx), dl); err != nil {
		d.log.Error("spool update failed", "destination", dest.Name, "event_id", eventID, "error", err)
		return result{next: retryAt, at: time.Now().Add(time.Second)}
	}
	d.m.delivered(dest.Name, metric, time.Duration(att.DurationMS)*time.Millisecond)
	if metric != "retry" {
		lvl := slog.LevelInfo
		if metric == "dead" {
			lvl = slog.LevelWarn
		}
		d.log.Log(ctx, lvl, "delivery "+dl.Status.String(), "event_id", eventID, "provider", ev.Provider,
			"key", ev.Key, "destination", dest.Name, "attempts", len(dl.Attempts), "status", att.Status, "error", att.Error)
	}
	return res
}

// timerHeap orders keys by their next attempt.
type timerHeap []*keyQueue

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].nextAt.Before(h[j].nextAt) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *timerHeap) Push(x any) {
	kq := x.(*keyQueue)
	kq.heapIdx = len(*h)
	*h = append(*h, kq)
}
func (h *timerHeap) Pop() any {
	old := *h
	kq := old[len(old)-1]
	old[len(old)-1] = nil
	kq.heapIdx = -1
	*h = old[:len(old)-1]
	return kq
}
