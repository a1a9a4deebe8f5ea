// Package dispatch is the step of the flow after the spool: it forwards
// spooled deliveries to their destinations. One lane per destination, and
// in a lane one FIFO per key (SPEC 5.2), of which at most one delivery is
// in flight; retries on the spool's schedule (SPEC 5.4); and the operator's
// commands on the queues (retry, skip, pause, resume, SPEC 6), which write
// the spool and the queues in memory in one place.
//
// It may import engine/spool, engine/outbound, engine/config (a
// destination as written), engine/internal, the standard library,
// x/time/rate, go-retryablehttp and ulid; never engine, engine/admin,
// engine/lender or engine/provider. What it needs of the relay (metrics)
// comes through the Metrics interface.
package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"golang.org/x/time/rate"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/engine/spool"
)

// Metrics is what the dispatcher counts (SPEC 8); the relay's metrics
// implement it.
type Metrics interface {
	// Delivered counts one recorded attempt: outcome success, retry or dead.
	Delivered(dest, outcome string, d time.Duration)
	// Skipped counts an operator's skip.
	Skipped(dest string)
	// SequenceGap counts a sequenced event sent with earlier numbers missing.
	SequenceGap(dest string)
}

// Spool is what the dispatcher needs of the spool: its deliveries and the
// paused destinations' record.
type Spool interface {
	spool.Spool
	SetPaused(dest string, paused bool) error
}

// ErrNoDestination is Pause's answer for a destination with no lane.
var ErrNoDestination = errors.New("dispatch: no such destination")

// Dispatcher forwards spooled deliveries: one lane per destination, and in
// a lane one FIFO per key, of which at most one delivery is in flight.
type Dispatcher struct {
	spool  Spool
	client *retryablehttp.Client
	log    *slog.Logger
	m      Metrics

	ctx context.Context // ends when the relay stops delivering
	wg  sync.WaitGroup  // every worker of every lane

	// mu guards lanes; Committed holds it while it queues, so that a lane
	// being rebuilt from the spool misses no commit.
	mu    sync.Mutex
	lanes map[string]*lane
	// reorder is each provider's reorder_window (SPEC 5.3).
	reorder atomic.Pointer[map[string]time.Duration]
	// events are the events being delivered, read and parsed once.
	events *eventCache
	// shared is the spool when several relays share it (spool.Shared):
	// this relay delivers only the partitions it holds.
	shared spool.Shared
	// OutageMin is how long a run of down-like failures to a destination
	// must last for its end to cut the waiting keys' backoff short
	// (lane.track, lane.recover). 5 s unless set before Start.
	OutageMin time.Duration
}

// New is a dispatcher over sp that sends with client (which must not retry
// on its own: the spool owns the retries' schedule, so that they survive a
// restart).
func New(sp Spool, client *retryablehttp.Client, log *slog.Logger, m Metrics) *Dispatcher {
	d := &Dispatcher{spool: sp, client: client, log: log, m: m, lanes: map[string]*lane{},
		events: newEventCache(eventCacheBytes), OutageMin: 5 * time.Second}
	d.reorder.Store(&map[string]time.Duration{})
	d.shared, _ = sp.(spool.Shared)
	return d
}

// Start opens a lane per destination and starts delivering; reorder is
// each provider's reorder window, paused names the destinations an operator
// paused. Everything stops when ctx ends.
func (d *Dispatcher) Start(ctx context.Context, dests map[string]*Destination, reorder map[string]time.Duration, paused map[string]bool) error {
	d.ctx = ctx
	return d.configure(dests, reorder, paused, d.shared == nil)
}

// Configure applies a (re)loaded configuration: new destinations get a lane
// rebuilt from the spool, changed ones take their new settings, removed ones
// stop (their deliveries stay in the spool). paused names the destinations
// an operator paused: a lane opens paused, before its workers start.
func (d *Dispatcher) Configure(dests map[string]*Destination, reorder map[string]time.Duration, paused map[string]bool) error {
	return d.configure(dests, reorder, paused, true)
}

// configure is Configure; rebuild false skips the new lanes' reading of
// the spool, which a shared spool's relay does at start: it holds no
// partition yet, and the spool feeds it those it comes to hold.
func (d *Dispatcher) configure(dests map[string]*Destination, reorder map[string]time.Duration, paused map[string]bool, rebuild bool) error {
	d.reorder.Store(&reorder)

	d.mu.Lock()
	defer d.mu.Unlock()
	for name, l := range d.lanes {
		if nd := dests[name]; nd == nil || nd.ordered != l.destination().ordered {
			// A lane's queues are grouped by key or not at all: a change of
			// ordering rebuilds them.
			l.close()
			delete(d.lanes, name)
		}
	}
	for name, dest := range dests {
		if l := d.lanes[name]; l != nil {
			l.reconfigure(dest)
			continue
		}
		l, err := d.openLane(dest, paused[name], rebuild)
		if err != nil {
			return err
		}
		d.lanes[name] = l
	}
	return nil
}

// openLane rebuilds a destination's queues from the spool and starts its
// workers. d.mu is held, so no commit slips between the scan and the lane.
func (d *Dispatcher) openLane(dest *Destination, paused, rebuild bool) (*lane, error) {
	ctx, cancel := context.WithCancel(d.ctx)
	l := newLane(ctx, cancel, d, dest)
	l.paused = paused
	if !rebuild {
		l.reconfigure(dest)
		return l, nil
	}
	// The queue entries alone: no delivery is read or decoded, which keeps a
	// restart with a large backlog quick.
	err := d.spool.Pending(dest.Name, func(q *spool.QueuedDelivery) error {
		if !d.local(q.Provider, q.Key) {
			return nil // another relay delivers it
		}
		if q.Status == spool.Dead {
			l.addDead(q.Provider, q.Key, 1)
		}
		l.push(item{eventID: q.EventID.String(), sequence: q.Sequence}, q.Provider, q.Key, q.Status == spool.Dead, q.NextAt)
		return nil
	})
	if err != nil {
		cancel()
		return nil, err
	}
	l.reconfigure(dest)
	return l, nil
}

// Wait blocks until every worker has stopped.
func (d *Dispatcher) Wait() { d.wg.Wait() }

// Committed is the spool's hook: called in commit order, so each key's
// queue is in ingest order.
func (d *Dispatcher) Committed(refs []spool.Ref) {
	if d.shared != nil {
		return // the partitions' holders learn of it from the spool (Queue)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var kept *spool.Event
	since := d.events.forgets() // an erasure's Forget comes after its commit, so after these
	for _, r := range refs {
		l := d.lanes[r.Destination]
		if l == nil {
			continue
		}
		// Kept as appended, the event need not be read back from the spool
		// for its first attempt (a read transaction and a decode).
		if r.Event != nil && r.Event != kept {
			kept = r.Event
			d.events.put(r.Event, messageOf(r.Event), since)
		}
		l.push(item{eventID: r.EventID, sequence: r.Sequence}, r.Provider, r.Key, false, time.Time{})
	}
}

func (d *Dispatcher) lane(name string) *lane {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lanes[name]
}

// allLanes returns the lanes.
func (d *Dispatcher) allLanes() []*lane {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*lane, 0, len(d.lanes))
	for _, l := range d.lanes {
		out = append(out, l)
	}
	return out
}

// Backlog is how many deliveries the lanes hold in memory: pending,
// queued and not yet recorded final in the spool (a lane drops one only
// after the spool's update of its outcome committed), dead ones included
// (unlike Stats' Pending), and dead, the dead deliveries of the lanes. Each lane is read under its
// lock. It is what the load harness (engine/loadtest) waits on; operators
// see the same per destination on /metrics.
func (d *Dispatcher) Backlog() (pending, dead int) {
	for _, l := range d.allLanes() {
		l.mu.Lock()
		pending += l.pending
		dead += l.dead
		l.mu.Unlock()
	}
	return pending, dead
}

// reorderWindow is provider's reorder_window: the one place its default
// applies, to a provider that left it unset (0) and to one no longer
// configured whose events are still queued.
func (d *Dispatcher) reorderWindow(provider string) time.Duration {
	if w := (*d.reorder.Load())[provider]; w != 0 {
		return w
	}
	return config.DefaultReorderWindow
}

// newLane is an empty lane of dest's, not yet started (reconfigure starts
// its workers).
func newLane(ctx context.Context, cancel context.CancelFunc, d *Dispatcher, dest *Destination) *lane {
	l := &lane{d: d, ctx: ctx, cancel: cancel, keys: map[string]*keyQueue{}, deadBy: map[string]int{}, wake: make(chan struct{}, 1),
		reconf: make(chan struct{})}
	l.idle.L = &l.mu
	l.setDestination(dest)
	return l
}

// setDestination installs dest's settings. l.mu held, or l not yet shared.
// The destination's `concurrency` bounds the requests in flight to it, one
// slot per request, whatever the number of workers.
func (l *lane) setDestination(dest *Destination) {
	l.dest = dest
	l.limiter = nil
	if dest.rate > 0 {
		l.limiter = rate.NewLimiter(rate.Limit(dest.rate), 1)
	}
	if l.slots == nil || cap(l.slots) != dest.concurrency {
		l.slots = make(chan struct{}, dest.concurrency) // in-flight sends keep the old one
	}
}

// wantWorkers is how many workers the lane should run. l.mu held.
func (l *lane) wantWorkers() int { return l.dest.concurrency * workersPerSend }

// workersPerSend is how many workers a lane runs per request it may have
// in flight: a worker spends most of a delivery waiting for its outcome's
// fsync, during which it holds no request slot (see setDestination).
const workersPerSend = 4

// reconfigure installs dest's settings and runs its workers: more are
// started, extra ones stop after their current delivery.
func (l *lane) reconfigure(dest *Destination) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dest != dest {
		l.setDestination(dest)
	}
	for ; l.workers < l.wantWorkers(); l.workers++ {
		l.d.wg.Add(1)
		go func() {
			defer l.d.wg.Done()
			l.work()
		}()
	}
	close(l.reconf) // idle workers look again at how many there should be
	l.reconf = make(chan struct{})
}

// close stops the lane's workers; deliveries in flight finish.
func (l *lane) close() { l.cancel() }

func (l *lane) destination() *Destination {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dest
}
