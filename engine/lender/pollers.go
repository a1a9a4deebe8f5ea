package lender

import (
	"container/heap"
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/hookrelay/hookrelay/engine/internal/dueheap"
	"github.com/hookrelay/hookrelay/engine/outbound"
	"github.com/hookrelay/hookrelay/engine/provider"
	"github.com/hookrelay/hookrelay/engine/spool"
)

// PollSpool is what the pollers need of the spool: the keys' state and
// the events they make.
type PollSpool interface {
	spool.Poller
	Append(ctx context.Context, ev *spool.Event, dedup time.Duration) (dupOf string, err error)
}

// Source is a provider as polling sees it: an enabled provider with a poll
// block.
type Source struct {
	// Pipeline maps an answer into the event to spool (BuildPolled).
	Pipeline *provider.Pipeline
	Poll     *Poll
	Dedup    time.Duration // the provider's dedup window, for Append
}

// Pollers runs the relay's poll loops and writes tracked keys to the spool.
// Its zero value is ready once Spool, Log and Refused are set: ingest may
// track keys before Start.
type Pollers struct {
	Spool PollSpool
	Log   *slog.Logger
	// Refused counts what polling refuses (hookrelay_poll_refused_total):
	// reason key_pattern or too_large.
	Refused func(provider, reason string)
	// Transport, when set before Start, carries the polls instead of the
	// network: tests on a synctest clock poll a fake lender in memory.
	Transport http.RoundTripper

	// mu guards ctx, client and loops. It is held while loops are replaced
	// and while keys are written and handed to the loops, so that a loop
	// either loaded a key from the spool or is told about it.
	mu     sync.Mutex
	ctx    context.Context // the relay's; nil before startPollers
	client *retryablehttp.Client
	loops  map[string]*pollLoop // by provider

	// Keys tracked by ingest wait here, coalesced, for the tracker.
	pendMu  sync.Mutex
	pending map[trackedID]bool // -> final
	wake    chan struct{}      // cap 1
}

type trackedID struct{ provider, key string }

// wakeChan returns the tracker's wake-up channel, made on first use.
func (ps *Pollers) wakeChan() chan struct{} {
	ps.pendMu.Lock()
	defer ps.pendMu.Unlock()
	if ps.wake == nil {
		ps.wake = make(chan struct{}, 1)
	}
	return ps.wake
}

// Track makes an ingested event's key known to its provider's poller
// (src, which polls), final when typ is one of the provider's final types.
//
// It runs on the ingest path before the lender's answer, so it never waits
// for the disk: the key joins a set that the tracker goroutine writes, as
// one group-committed transaction per batch, as soon as it wakes. A key
// tracked again before that write is coalesced (final wins), so memory is
// bounded by the distinct keys of one batch and nothing is dropped. The
// price is a short window (milliseconds) in which a crash loses a key that
// the event itself did not lose; the key's next webhook tracks it again, and
// the operator can add it with POST /admin/providers/{name}/poll.
func (ps *Pollers) Track(name string, s *Poll, key, typ string) {
	if !s.Pollable(key) {
		ps.Refuse(name, len(key), "webhook")
		return
	}
	wake := ps.wakeChan()
	id := trackedID{name, key}
	ps.pendMu.Lock()
	if ps.pending == nil {
		ps.pending = map[trackedID]bool{}
	}
	ps.pending[id] = ps.pending[id] || s.final[typ]
	ps.pendMu.Unlock()
	select {
	case wake <- struct{}{}:
	default: // already signalled
	}
}

// Refuse counts and logs a key that poll.key_pattern (or MaxPollKey)
// refuses: a sender's key that could steer the lender's request is never
// polled. The key itself is not logged: it is the sender's text. from says
// where the key came from (webhook, admin, spool).
func (ps *Pollers) Refuse(provider string, bytes int, from string) {
	ps.Refused(provider, "key_pattern")
	ps.Log.Warn("poll: key refused by poll.key_pattern; not polled", "provider", provider, "from", from, "bytes", bytes)
}

// Start starts polling for every source, and the tracker that writes keys
// tracked by ingest; wg counts the tracker, which ends with ctx once the
// loops have.
func (ps *Pollers) Start(ctx context.Context, wg *sync.WaitGroup, sources []Source) {
	ps.mu.Lock()
	ps.ctx = ctx
	ps.client = outbound.NewClient(0)
	if ps.Transport != nil {
		ps.client.HTTPClient.Transport = ps.Transport
	}
	ps.loops = map[string]*pollLoop{}
	ps.startLoops(sources)
	ps.mu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		ps.trackKeys(ctx)
		// Loops write to the spool: they end before Close closes it.
		ps.mu.Lock()
		ps.stopLoops()
		ps.mu.Unlock()
	}()
}

// Configure applies a reloaded configuration: every loop is stopped
// (requests in flight are abandoned; their keys are polled again) and
// loops for the new sources start from the spool's state.
func (ps *Pollers) Configure(sources []Source) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.ctx == nil || ps.ctx.Err() != nil {
		return
	}
	ps.stopLoops()
	ps.startLoops(sources)
}

// Now adds key to provider's poller (POST /admin/providers/{name}/poll) and
// polls it now; the caller has checked that the provider polls and the key
// is pollable. The key is stored before it returns. final is set, with the
// type that made it so, when the key is final and no longer polled.
func (ps *Pollers) Now(ctx context.Context, provider, key string) (finalType string, final bool, err error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	st, err := ps.Spool.PollTrack(ctx, []spool.TrackedKey{{Provider: provider, Key: key}})
	if err != nil {
		return "", false, err
	}
	if st[0].Final {
		return st[0].LastType, true, nil
	}
	if l := ps.loops[provider]; l != nil {
		l.track(key, trackMsg{now: true})
	}
	return "", false, nil
}

// Settled reports whether every key tracked by ingest is stored and handed
// to its loop (flushTracked holds mu from taking a batch to handing it over).
func (ps *Pollers) Settled() bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.pendMu.Lock()
	defer ps.pendMu.Unlock()
	return len(ps.pending) == 0
}

// startLoops starts a loop per source, each with its keys loaded from the
// spool. ps.mu is held.
func (ps *Pollers) startLoops(sources []Source) {
	for _, src := range sources {
		ctx, cancel := context.WithCancel(ps.ctx)
		l := &pollLoop{
			ps: ps, src: src, s: src.Poll, client: ps.client, cancel: cancel, done: make(chan struct{}),
			wake: make(chan struct{}, 1), keys: map[string]*pollKeyState{},
			results: make(chan pollResult, src.Poll.concurrency),
		}
		now := time.Now()
		err := ps.Spool.PollKeys(src.Pipeline.Name, func(key string, st *spool.PollState) error {
			if !src.Poll.Pollable(key) {
				// Stored before key_pattern existed or was narrowed.
				ps.Refuse(src.Pipeline.Name, len(key), "spool")
				return nil
			}
			ks := &pollKeyState{key: key, st: *st, Slot: dueheap.Slot{At: st.NextAt}}
			if ks.At.Before(now) {
				// Never polled, or overdue after a restart: spread over one interval.
				ks.At = now.Add(rand.N(src.Poll.interval))
			}
			l.keys[key] = ks
			heap.Push(&l.due, ks)
			return nil
		})
		if err != nil {
			ps.Log.Error("poll: cannot load keys; polling only keys tracked from now on", "provider", src.Pipeline.Name, "error", err)
		}
		ps.Log.Info("poll started", "provider", src.Pipeline.Name, "keys", len(l.keys), "interval", src.Poll.interval)
		ps.loops[src.Pipeline.Name] = l
		go l.run(ctx)
	}
}

// stopLoops stops every loop and waits for it. ps.mu is held.
func (ps *Pollers) stopLoops() {
	for _, l := range ps.loops {
		l.cancel()
	}
	for name, l := range ps.loops {
		<-l.done
		delete(ps.loops, name)
	}
}

// trackKeys writes the keys tracked by ingest until ctx ends, then once more.
func (ps *Pollers) trackKeys(ctx context.Context) {
	wake := ps.wakeChan()
	for {
		select {
		case <-ctx.Done():
			if err := ps.flushTracked(context.WithoutCancel(ctx)); err != nil {
				ps.Log.Error("poll: cannot store tracked keys at shutdown", "error", err)
			}
			return
		case <-wake:
		}
		if err := ps.flushTracked(ctx); err != nil {
			ps.Log.Error("poll: cannot store tracked keys; retrying", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(trackRetry):
			}
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	}
}

// flushTracked writes the pending keys in one transaction and hands them to
// their loops. On error the keys stay pending.
func (ps *Pollers) flushTracked(ctx context.Context) error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.pendMu.Lock()
	batch := ps.pending
	ps.pending = nil
	ps.pendMu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	keys := make([]spool.TrackedKey, 0, len(batch))
	for id, final := range batch {
		keys = append(keys, spool.TrackedKey{Provider: id.provider, Key: id.key, Final: final})
	}
	states, err := ps.Spool.PollTrack(ctx, keys)
	if err != nil {
		ps.pendMu.Lock()
		if ps.pending == nil {
			ps.pending = map[trackedID]bool{}
		}
		for id, final := range batch {
			ps.pending[id] = ps.pending[id] || final
		}
		ps.pendMu.Unlock()
		return err
	}
	for i, k := range keys {
		if l := ps.loops[k.Provider]; l != nil {
			l.track(k.Key, trackMsg{final: states[i].Final})
		}
	}
	return nil
}

// Forget stops polling provider's key, as a key made final is dropped:
// erasure removed its records, and a poll would bring some back.
func (ps *Pollers) Forget(provider, key string) {
	ps.mu.Lock()
	l := ps.loops[provider]
	ps.mu.Unlock()
	if l != nil {
		l.track(key, trackMsg{final: true})
	}
}

// pollLoop polls one provider's keys. Its state is the loop goroutine's
// alone; others reach it through track.
type pollLoop struct {
	ps     *Pollers
	src    Source
	s      *Poll
	client *retryablehttp.Client
	cancel context.CancelFunc
	done   chan struct{} // closed when run has returned and its polls ended

	inMu sync.Mutex
	in   map[string]trackMsg // coalesced until the loop takes them
	wake chan struct{}       // cap 1

	keys    map[string]*pollKeyState // every key not final
	due     keyHeap                  // the keys not being polled, soonest first
	results chan pollResult          // cap concurrency: a poll never waits to report
}

// trackMsg tells a loop about a key: final stops polling it, now polls it at once.
type trackMsg struct{ final, now bool }

type pollKeyState struct {
	key          string
	st           spool.PollState
	dueheap.Slot      // when the key is polled next, and its place in due
	busy         bool // being polled: not in due
	final        bool // made final while busy
	now          bool // asked for while busy
}

type pollResult struct {
	key string
	st  spool.PollState
}

// track hands a key to the loop without waiting for it.
func (l *pollLoop) track(key string, m trackMsg) {
	l.inMu.Lock()
	if l.in == nil {
		l.in = map[string]trackMsg{}
	}
	prev := l.in[key]
	l.in[key] = trackMsg{final: prev.final || m.final, now: prev.now || m.now}
	l.inMu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *pollLoop) run(ctx context.Context) {
	defer close(l.done)
	var polls sync.WaitGroup
	defer polls.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	inflight := 0
	for {
		now := time.Now()
		for inflight < l.s.concurrency && len(l.due) > 0 && !l.due[0].At.After(now) {
			ks := heap.Pop(&l.due).(*pollKeyState)
			ks.busy = true
			inflight++
			polls.Add(1)
			go func(key string, st spool.PollState) {
				defer polls.Done()
				l.results <- pollResult{key, l.poll(ctx, key, st)}
			}(ks.key, ks.st)
		}
		wait := time.Hour
		if inflight < l.s.concurrency && len(l.due) > 0 {
			wait = time.Until(l.due[0].At)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case res := <-l.results:
			inflight--
			l.finish(res, now)
		case <-l.wake:
			l.take(now)
		}
	}
}

// finish puts a polled key back in line, or drops it when it became final.
func (l *pollLoop) finish(res pollResult, now time.Time) {
	ks := l.keys[res.key]
	ks.busy, ks.st = false, res.st
	if ks.final || ks.st.Final {
		delete(l.keys, ks.key)
		return
	}
	ks.At = ks.st.NextAt
	if ks.now {
		ks.At, ks.now = now, false
	}
	heap.Push(&l.due, ks)
}

// take applies the keys handed over by track.
func (l *pollLoop) take(now time.Time) {
	l.inMu.Lock()
	in := l.in
	l.in = nil
	l.inMu.Unlock()
	for key, m := range in {
		ks, known := l.keys[key]
		switch {
		case m.final && !known: // final before this loop polled it
		case m.final && ks.busy:
			ks.final = true
		case m.final:
			heap.Remove(&l.due, ks.Idx)
			delete(l.keys, key)
		case !known:
			ks = &pollKeyState{key: key, Slot: dueheap.Slot{At: now.Add(rand.N(l.s.interval))}}
			if m.now {
				ks.At = now
			}
			l.keys[key] = ks
			heap.Push(&l.due, ks)
		case m.now && ks.busy:
			ks.now = true
		case m.now:
			ks.At = now
			heap.Fix(&l.due, ks.Idx)
		}
	}
}

// poll polls one key and returns its new state: an event when the mapped
// answer changed, the state stored when it changed. It logs its problems;
// a key whose answer cannot be had backs off, one whose answer cannot be
// mapped is polled again after the interval.
func (l *pollLoop) poll(ctx context.Context, key string, st spool.PollState) spool.PollState {
	p, start := l.src.Pipeline, time.Now()
	out := st
	// The spool writes finish even when the loop is being stopped: the
	// event and the state that says it was sent belong together.
	wctx := context.WithoutCancel(ctx)
	save := func() {
		if out.Last == st.Last && out.Final == st.Final && out.Errors == st.Errors && !st.NextAt.IsZero() {
			return // only the schedule moved: not worth a write
		}
		if err := l.ps.Spool.PollSave(wctx, p.Name, key, &out); err != nil {
			l.ps.Log.Error("poll: cannot store state", "provider", p.Name, "key", key, "error", err)
		}
	}
	fail := func(msg string, err error) spool.PollState {
		out.Errors++
		out.NextAt = start.Add(jitter(l.s.interval * time.Duration(min(1<<min(out.Errors, 3), maxPollBackoff))))
		l.ps.Log.Warn(msg, "provider", p.Name, "key", key, "errors", out.Errors, "next_at", out.NextAt, "error", err)
		save()
		return out
	}
	resp, body, err := l.s.fetch(ctx, l.client, p.Name, key, start)
	if ctx.Err() != nil {
		return st // stopping: nothing learned
	}
	if err != nil {
		return fail("poll failed", err)
	}
	out.Errors = 0
	out.NextAt = start.Add(jitter(l.s.interval))
	res, sum := p.BuildPolled(l.s.mapping, l.s.maxEvent, key, resp, body, start)
	switch res.Outcome {
	case provider.Accepted:
	case provider.Rejected: // larger than max_body (provider.ErrPolledTooLarge)
		l.ps.Refused(p.Name, "too_large")
		l.ps.Log.Warn("poll event refused; not spooled", "provider", p.Name, "key", key, "error", res.Err)
		save()
		return out
	default:
		// Our configuration cannot read this answer; the body is not logged.
		l.ps.Log.Warn("poll response unmappable", "provider", p.Name, "key", key, "status", resp.Status, "error", res.Err)
		save()
		return out
	}
	ev := res.Event
	if sum != st.Last {
		dupOf, err := l.ps.Spool.Append(wctx, ev, l.src.Dedup)
		if err != nil {
			out.Errors = st.Errors
			return fail("poll: spool append failed", err)
		}
		outcome := "accepted"
		if dupOf != "" {
			outcome, ev.ID = "duplicate", dupOf
		}
		l.ps.Log.Info("poll "+outcome, "provider", p.Name, "event_id", ev.ID, "key", ev.Key, "type", ev.Type,
			"destinations", ev.Destinations)
		out.Last, out.LastType = sum, ev.Type
	}
	out.Final = out.Final || l.s.final[ev.Type]
	save()
	return out
}

// jitter spreads d by ±10%.
func jitter(d time.Duration) time.Duration {
	return d*9/10 + rand.N(d/5+1)
}

// keyHeap orders keys by their next poll.
type keyHeap = dueheap.Heap[*pollKeyState]
