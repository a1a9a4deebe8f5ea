package jetstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// Queues of every partition, for the admin API of any relay (issue 16,
// items 1 and 4). A relay's queues hold only the partitions it delivers,
// and the deliveries they count are spread over the stream and S_dlv,
// where counting them would mean reading the whole backlog. So each holder
// publishes its partitions' counts, and any relay sums them:
//
//	KV S_stats   p<partition> -> by destination: pending, dead, held keys,
//	                             the oldest queued event's time, and up to
//	                             spool.MaxHeldKeys held keys' blocking
//	                             event ids (no key in clear: a reader finds
//	                             each one's provider and key in its event)
//
// A holder writes a partition's entry once its feed has read the partition
// to its end (before that its queues are short of the backlog), then every
// statsEvery when it changed. An entry outlives its holder: a partition
// nobody holds keeps its last counts, still true since nobody delivers it,
// until its next holder has read it.

// statsRefresh is how often a holder writes an entry that did not change,
// so that a deposed holder's late write does not stay: three lease lives,
// 30 s at the default lease_ttl, by when the next holder has taken over.
func (s *Store) statsRefresh() time.Duration { return 3 * s.ls.ttl }

// statsEvery is how often a holder publishes its partitions' counts.
func (s *Store) statsEvery() time.Duration { return min(time.Second, s.ls.ttl/3) }

// destStats is one destination's queues in an S_stats entry.
type destStats struct {
	Pending  int         `json:"p,omitempty"`
	Dead     int         `json:"d,omitempty"`
	HeldKeys int         `json:"h,omitempty"`
	Oldest   int64       `json:"o,omitempty"` // unix ms; 0: nothing queued
	Held     []heldEvent `json:"k,omitempty"`
}

// heldEvent is a held key as S_stats names it: the event blocking it.
type heldEvent struct {
	ID      string `json:"e"`
	Waiting int    `json:"w,omitempty"`
}

// publishStats writes the counts of the partitions held whose feed read
// them to their end, where they changed.
func (s *Store) publishStats(ctx context.Context, f spool.Follower) {
	c, ok := f.(spool.Counter)
	if !ok {
		return
	}
	ready := s.counted()
	if len(ready) == 0 {
		return
	}
	counts := c.Count(s.Partition)
	for p, l := range ready {
		out := map[string]destStats{}
		for dest, st := range counts[p] {
			ds := destStats{Pending: st.Pending, Dead: st.Dead, HeldKeys: st.HeldKeys}
			if !st.Oldest.IsZero() {
				ds.Oldest = st.Oldest.UnixMilli()
			}
			for _, h := range st.Held {
				ds.Held = append(ds.Held, heldEvent{h.EventID, h.Waiting})
			}
			out[dest] = ds
		}
		v, err := json.Marshal(out) // map keys sorted: equal counts, equal bytes
		if err != nil {
			continue
		}
		if bytes.Equal(v, l.shown) && time.Since(l.shownAt) < s.statsRefresh() {
			continue
		}
		if !s.holdsPart(p) {
			continue // another relay's counts from now on
		}
		if _, err := s.ls.stats.Put(ctx, leaseKey(p), v); err != nil {
			s.ls.log.Warn("jetstream: partition counts not published", "partition", p, "error", err)
			continue
		}
		l.shown, l.shownAt = v, time.Now()
	}
}

// counted are the partitions held whose feed read them to their end: the
// dispatcher's queues count all of each.
func (s *Store) counted() map[uint32]*lease {
	s.ls.mu.RLock()
	defer s.ls.mu.RUnlock()
	out := map[uint32]*lease{}
	for p, l := range s.ls.held {
		if !l.lost && !l.releasing && l.caught.Load() {
			out[p] = l
		}
	}
	return out
}

var _ spool.Totaler = (*Store)(nil)

// QueueTotals sums every partition's queues by destination: those this
// relay holds and has read to their end from c, its own queues, at once;
// the others as their holders published them (statsEvery ago at most).
// ok is false when the store is not shared: the dispatcher's own queues
// hold everything.
func (s *Store) QueueTotals(c spool.Counter) (totals map[string]*spool.QueueStats, ok bool, err error) {
	if !s.sharing() {
		return nil, false, nil
	}
	ctx, cancel := s.ctx(context.Background())
	defer cancel()
	// Short: a bucket without a leader never answers, and the admin API
	// then shows this relay's own queues rather than wait.
	wctx, cancelWatch := context.WithTimeout(ctx, scanTry)
	entries, err := values(wctx, s.ls.stats)
	cancelWatch()
	if err != nil {
		return nil, true, fmt.Errorf("spool: queue counts: %w", err)
	}
	own := s.counted()
	totals = map[string]*spool.QueueStats{}
	of := func(dest string) *spool.QueueStats {
		t := totals[dest]
		if t == nil {
			t = &spool.QueueStats{}
			totals[dest] = t
		}
		return t
	}
	add := func(t *spool.QueueStats, pending, dead, heldKeys int, oldest time.Time) {
		t.Pending += pending
		t.Dead += dead
		t.HeldKeys += heldKeys
		if !oldest.IsZero() && (t.Oldest.IsZero() || oldest.Before(t.Oldest)) {
			t.Oldest = oldest
		}
	}
	// The held keys by destination; the published ones name their
	// blocking event only.
	type heldAt struct {
		spool.HeldKey
		dest string
	}
	var held []heldAt
	if len(own) > 0 {
		for p, dests := range c.Count(s.Partition) {
			if own[p] == nil {
				continue
			}
			for dest, st := range dests {
				add(of(dest), st.Pending, st.Dead, st.HeldKeys, st.Oldest)
				for _, h := range st.Held {
					held = append(held, heldAt{h, dest})
				}
			}
		}
	}
	for k, v := range entries {
		p, err := strconv.ParseUint(strings.TrimPrefix(k, "p"), 10, 32)
		if err != nil || uint32(p) >= s.parts || own[uint32(p)] != nil {
			continue // this relay's own, or a partition of an earlier `partitions`
		}
		var e map[string]destStats
		if json.Unmarshal(v, &e) != nil {
			continue
		}
		for dest, ds := range e {
			var oldest time.Time
			if ds.Oldest > 0 {
				oldest = time.UnixMilli(ds.Oldest)
			}
			add(of(dest), ds.Pending, ds.Dead, ds.HeldKeys, oldest)
			for _, h := range ds.Held {
				held = append(held, heldAt{spool.HeldKey{EventID: h.ID, Waiting: h.Waiting}, dest})
			}
		}
	}
	// The oldest blocked keys of each destination are the ones shown.
	slices.SortFunc(held, func(a, b heldAt) int { return strings.Compare(a.EventID, b.EventID) })
	for _, ha := range held {
		h, t := ha.HeldKey, totals[ha.dest]
		if len(t.Held) >= spool.MaxHeldKeys {
			continue
		}
		if h.Provider == "" && h.Key == "" {
			// Published by another relay: its provider and key are the
			// event's.
			st, err := s.lookup(ctx, h.EventID)
			if errors.Is(err, spool.ErrNotFound) {
				continue // erased or purged since
			}
			if err != nil {
				return nil, true, err
			}
			h.Provider, h.Key = st.m.Provider, st.m.Key
		}
		t.Held = append(t.Held, h)
	}
	return totals, true, nil
}

// values reads every value of a bucket, by key, through one watch.
func values(ctx context.Context, kv jetstream.KeyValue) (map[string][]byte, error) {
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	return drain(ctx, w, nil)
}

// drain reads w's current values, by key, up to the marker that ends them,
// then stops w. seen, if not nil, is called on every update.
func drain(ctx context.Context, w jetstream.KeyWatcher, seen func()) (map[string][]byte, error) {
	defer func() { _ = w.Stop() }()
	out := map[string][]byte{}
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("watch ended")
			}
			if seen != nil {
				seen()
			}
			if e == nil { // every current value was sent
				return out, nil
			}
			out[e.Key()] = e.Value()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
