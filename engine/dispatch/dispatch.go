package engine

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/engine/spool"
)

// dispatcher forwards spooled deliveries: one lane per destination, and in a
// lane one FIFO per key, of which at most one delivery is in flight.
type dispatcher struct {
	spool  spool.Spool
	sender *sender
	log    *slog.Logger
	m      *metrics

	ctx context.Context // ends when the relay stops delivering
	wg  sync.WaitGroup  // every worker of every lane

	// mu guards lanes; committed holds it while it queues, so that a lane
	// being rebuilt from the spool misses no commit.
	mu    sync.Mutex
	lanes map[string]*lane
	// reorder is each provider's reorder_window (SPEC 5.3).
	reorder atomic.Pointer[map[string]time.Duration]
	// outageMin is how long a run of down-like failures to a destination
	// must last for its end to cut the waiting keys' backoff short
	// (lane.track, lane.recover).
	outageMin time.Duration
}

func newDispatcher(sp spool.Spool, s *sender, log *slog.Logger, m *metrics) *dispatcher {
	d := &dispatcher{spool: sp, sender: s, log: log, m: m, lanes: map[string]*lane{}, outageMin: 5 * time.Second}
	d.reorder.Store(&map[string]time.Duration{})
	return d
}

// start opens a lane per destination and starts delivering; paused names
// the destinations an operator paused. Everything stops when ctx ends.
func (d *dispatcher) start(ctx context.Context, dests map[string]*Destination, providers []*Provider, paused map[string]bool) error {
	d.ctx = ctx
	return d.configure(dests, providers, paused)
}

// configure applies a (re)loaded configuration: new destinations get a lane
// rebuilt from the spool, changed ones take their new settings, removed ones
// stop (their deliveries stay in the spool). paused names the destinations
// an operator paused: a lane opens paused, before its workers start.
func (d *dispatcher) configure(dests map[string]*Destination, providers []*Provider, paused map[string]bool) error {
	reorder := make(map[string]time.Duration, len(providers))
	for _, p := range providers {
		reorder[p.Name] = p.reorder
	}
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
		l, err := d.openLane(dest, paused[name])
		if err != nil {
			return err
		}
		d.lanes[name] = l
	}
	return nil
}

// openLane rebuilds a destination's queues from the spool and starts its
// workers. d.mu is held, so no commit slips between the scan and the lane.
func (d *dispatcher) openLane(dest *Destination, paused bool) (*lane, error) {
	ctx, cancel := context.WithCancel(d.ctx)
	l := &lane{d: d, ctx: ctx, cancel: cancel, keys: map[string]*keyQueue{}, wake: make(chan struct{}, 1),
		reconf: make(chan struct{}), paused: paused}
	l.setDestination(dest)
	// The queue entries alone: no delivery is read or decoded, which keeps a
	// restart with a large backlog quick.
	err := d.spool.Pending(dest.Name, func(q *spool.QueuedDelivery) error {
		if q.Status == spool.Dead {
			l.dead++
		}
		l.push(item{q.EventID.String(), q.Sequence}, q.Provider, q.Key, q.Status == spool.Dead, q.NextAt)
		return nil
	})
	if err != nil {
		cancel()
		return nil, err
	}
	l.reconfigure(dest)
	return l, nil
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
			l.push(item{r.EventID, r.Sequence}, r.Provider, r.Key, false, time.Time{})
		}
	}
}

func (d *dispatcher) lane(name string) *lane {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lanes[name]
}

// allLanes returns the lanes, for metrics and the admin API.
func (d *dispatcher) allLanes() []*lane {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*lane, 0, len(d.lanes))
	for _, l := range d.lanes {
		out = append(out, l)
	}
	return out
}

// Backlog is how many deliveries the relay's lanes hold in memory: pending,
// queued and not yet recorded final in the spool (a lane drops one only
// after the spool's update of its outcome committed), and dead, the dead
// ones among them that a key waits behind. Each lane is read under its
// lock. It is what the load harness (engine/loadtest) waits on; operators
// see the same per destination on /metrics.
func (r *Relay) Backlog() (pending, dead int) {
	for _, l := range r.dispatch.allLanes() {
		l.mu.Lock()
		pending += l.pending
		dead += l.dead
		l.mu.Unlock()
	}
	return pending, dead
}

func (d *dispatcher) reorderWindow(provider string) time.Duration {
	if w, ok := (*d.reorder.Load())[provider]; ok {
		return w
	}
	return config.DefaultReorderWindow
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
