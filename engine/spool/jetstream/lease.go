package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// Leases: each partition is delivered by one instance at a time (issue 16,
// item 2). For a stream named S:
//
//	KV S_leases   p<partition> -> holder's instance id, bucket TTL lease_ttl
//	KV S_members  <instance>   -> heartbeat, bucket TTL lease_ttl
//	KV S_low      p<partition> -> a stream sequence below which every event
//	                              of the partition is final: where a new
//	                              holder starts reading
//	KV S_stats    p<partition> -> its queues' counts (stats.go)
//	subject S.cmd.<partition>  operators' commands forwarded to the holder
//
// A holder renews its leases every TTL/3 with an update checked against the
// revision it holds; a lease nobody renews expires on the servers after the
// TTL and another instance takes it with a create, which exactly one wins.
// The revision is the lease's epoch. A holder counts a lease as its own
// only until 2/3 of the TTL after it sent its last successful renewal, so
// that it has stopped writing before the servers can let the lease go.
// Instances count the members and each holds about partitions/members,
// giving up extras.

// DefaultLeaseTTL is how long a partition's lease outlives its holder.
const DefaultLeaseTTL = 10 * time.Second

// errNotHeld refuses a fenced write on a partition this instance lost.
var errNotHeld = errors.New("spool: partition not held by this instance (lease lost)")

// lease is one partition this instance holds.
type lease struct {
	rev       uint64
	until     time.Time // writes allowed until then (see above)
	lost      bool      // lost or being given up: no more fenced writes
	releasing bool
	stop      context.CancelFunc
	done      chan struct{} // closed when its feeder returned
	low       lowMark
	// caught is set once the feed read the partition to its end: from
	// then on the queues count all of it (stats.go).
	caught atomic.Bool
	// readTo is the last event the feed read from the stream, ahead of
	// the one it hands the dispatcher.
	readTo atomic.Uint64
	// shown is the last S_stats entry written, at shownAt (beat's only).
	shown   []byte
	shownAt time.Time
}

// lowMark follows which events of a held partition have deliveries that
// are not final, for S_low: every event below the lowest of them (or
// below the next one to read) is final, and final states never change.
type lowMark struct {
	mu      sync.Mutex
	open    map[uint64]map[string]bool // stream seq -> destinations not final
	next    uint64                     // the seq after the last event read
	written uint64                     // what S_low holds, as far as known
}

// queued notes that seq's delivery to dest is not final.
func (m *lowMark) queued(seq uint64, dest string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.open[seq] == nil {
		m.open[seq] = map[string]bool{}
	}
	m.open[seq][dest] = true
}

// read notes that every event up to seq was read.
func (m *lowMark) read(seq uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.next = max(m.next, seq+1)
}

// final notes that seq's delivery to dest is final.
func (m *lowMark) final(seq uint64, dest string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ds := m.open[seq]; ds != nil {
		delete(ds, dest)
		if len(ds) == 0 {
			delete(m.open, seq)
		}
	}
}

// mark is the partition's low mark now, 0 when nothing was read yet.
func (m *lowMark) mark() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	low := m.next
	for seq := range m.open {
		low = min(low, seq)
	}
	return low
}

// leases is a Store's share of the partitions.
type leases struct {
	mu    sync.RWMutex
	held  map[uint32]*lease
	on    bool // Share is running
	id    string
	ttl   time.Duration
	bkt   jetstream.KeyValue
	memb  jetstream.KeyValue
	low   jetstream.KeyValue
	stats jetstream.KeyValue // the partitions' queue counts (stats.go)
	log   *slog.Logger
	stops sync.WaitGroup
}

var _ spool.Shared = (*Store)(nil)

func leaseKey(p uint32) string { return "p" + strconv.FormatUint(uint64(p), 10) }

// openLeases opens the lease and member buckets, with ttl as their TTL,
// and the low marks' and queue counts' buckets.
func (s *Store) openLeases(ctx context.Context, replicas int, ttl time.Duration) error {
	for _, b := range []struct {
		kv   *jetstream.KeyValue
		name string
		ttl  time.Duration
	}{{&s.ls.bkt, "leases", ttl}, {&s.ls.memb, "members", ttl}, {&s.ls.low, "low", 0}, {&s.ls.stats, "stats", 0}} {
		name := s.name + "_" + b.name
		ttl := b.ttl
		cfg := jetstream.KeyValueConfig{Bucket: name, Storage: jetstream.FileStorage, Replicas: replicas, History: 1, TTL: ttl}
		kv, err := s.js.KeyValue(ctx, name)
		switch {
		case errors.Is(err, jetstream.ErrBucketNotFound):
			kv, err = s.js.CreateKeyValue(ctx, cfg)
		case err == nil:
			var st jetstream.KeyValueStatus
			if st, err = kv.Status(ctx); err == nil && st.TTL() != ttl {
				// The TTL is the bucket's: the last relay started sets it.
				kv, err = s.js.UpdateKeyValue(ctx, cfg)
			}
		}
		if err == nil {
			kv, err = s.leaderReads(ctx, kv, name)
		}
		if err != nil {
			return fmt.Errorf("jetstream: bucket %s: %w", name, err)
		}
		*b.kv = kv
	}
	return nil
}

// Holds says whether this instance delivers provider's key now.
func (s *Store) Holds(provider, key string) bool { return s.holdsPart(s.Partition(provider, key)) }

func (s *Store) holdsPart(p uint32) bool {
	s.ls.mu.RLock()
	defer s.ls.mu.RUnlock()
	l := s.ls.held[p]
	return l != nil && !l.lost && time.Now().Before(l.until)
}

// sharing says whether Share was called, so that Append leaves the dispatcher's
// feeding to the partitions' holders.
func (s *Store) sharing() bool {
	s.ls.mu.RLock()
	defer s.ls.mu.RUnlock()
	return s.ls.on
}

// Share takes part in the partitions' leases until ctx ends (spool.Shared).
func (s *Store) Share(ctx context.Context, f spool.Follower) (<-chan struct{}, error) {
	s.ls.mu.Lock()
	defer s.ls.mu.Unlock()
	if s.ls.on {
		return nil, errors.New("jetstream: Share called twice")
	}
	sub, err := s.nc.Subscribe(s.name+".cmd.*", func(m *nats.Msg) { s.command(m, f) })
	if err != nil {
		return nil, fmt.Errorf("jetstream: commands: %w", err)
	}
	pw, err := s.paused.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("jetstream: paused: %w", err)
	}
	s.ls.on, s.ls.held = true, map[uint32]*lease{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = sub.Unsubscribe() }()
		defer func() { _ = pw.Stop() }()
		s.beat(ctx, f, pw.Updates())
	}()
	return done, nil
}

// beat runs the leases' rounds every TTL/3 and applies other instances'
// pauses, until ctx ends.
func (s *Store) beat(ctx context.Context, f spool.Follower, updates <-chan jetstream.KeyValueEntry) {
	tick := time.NewTicker(s.ls.ttl / 3)
	defer tick.Stop()
	counts := time.NewTicker(s.statsEvery())
	defer counts.Stop()
	s.round(ctx, f)
	for {
		select {
		case <-counts.C:
			cctx, cancel := context.WithTimeout(ctx, s.statsEvery())
			s.publishStats(cctx, f)
			cancel()
		case <-ctx.Done():
			s.leaveAll(f)
			return
		case e, ok := <-updates:
			switch {
			case !ok:
				updates = nil // the watch ended with the connection
			case e != nil:
				f.Paused(dec(e.Key()), e.Operation() == jetstream.KeyValuePut)
			}
		case <-tick.C:
			s.round(ctx, f)
		}
	}
}

// round is one beat: heartbeat, renew, balance.
func (s *Store) round(ctx context.Context, f spool.Follower) {
	rctx, cancel := context.WithTimeout(ctx, s.ls.ttl/3)
	defer cancel()
	if _, err := s.ls.memb.Put(rctx, s.ls.id, []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
		s.ls.log.Warn("jetstream: heartbeat failed", "error", err)
	}
	s.renew(rctx, f)
	s.writeLow(rctx)
	members, err := keys(rctx, s.ls.memb, ">")
	if err != nil || rctx.Err() != nil {
		return
	}
	n := max(len(members), 1)
	if !slices.Contains(members, s.ls.id) {
		n++
	}
	target := (int(s.parts) + n - 1) / n
	s.ls.mu.RLock()
	var mine []uint32
	for p, l := range s.ls.held {
		if !l.lost && !l.releasing {
			mine = append(mine, p)
		}
	}
	s.ls.mu.RUnlock()
	slices.Sort(mine)
	if len(mine) > target {
		for _, p := range mine[target:] {
			s.giveUp(p, f, false)
		}
		return
	}
	// Claim free partitions, starting at a place of this instance's own so
	// that instances starting together try different ones first.
	h := fnv.New32a()
	_, _ = h.Write([]byte(s.ls.id))
	start := h.Sum32() % s.parts
	for i := uint32(0); i < s.parts && len(mine) < target && rctx.Err() == nil; i++ {
		p := (start + i) % s.parts
		s.ls.mu.RLock()
		_, have := s.ls.held[p]
		s.ls.mu.RUnlock()
		if have {
			continue
		}
		sent := time.Now()
		rev, err := s.ls.bkt.Create(rctx, leaseKey(p), []byte(s.ls.id))
		if err != nil {
			continue // held by another, or the servers did not answer
		}
		s.take(ctx, p, rev, sent, f)
		mine = append(mine, p)
	}
}

// writeLow records each held partition's low mark where it rose.
func (s *Store) writeLow(ctx context.Context) {
	s.ls.mu.RLock()
	var ls []*lease
	var ps []uint32
	for p, l := range s.ls.held {
		if !l.lost {
			ls, ps = append(ls, l), append(ps, p)
		}
	}
	s.ls.mu.RUnlock()
	for i, l := range ls {
		low := l.low.mark()
		l.low.mu.Lock()
		up := low > l.low.written
		l.low.mu.Unlock()
		if !up {
			continue
		}
		// Any instance's mark is safe to store, however old: every event
		// below it was final when it was computed, and stays so.
		if _, err := s.ls.low.Put(ctx, leaseKey(ps[i]), []byte(strconv.FormatUint(low, 10))); err == nil {
			l.low.mu.Lock()
			l.low.written = max(l.low.written, low)
			l.low.mu.Unlock()
		}
	}
}

// finalised tells the low mark of event st's partition, when held, that
// its delivery to dest is final.
func (s *Store) finalised(st *stored, dest string) {
	p := s.Partition(st.m.Provider, st.m.Key)
	s.ls.mu.RLock()
	l := s.ls.held[p]
	s.ls.mu.RUnlock()
	if l != nil {
		l.low.final(st.seq, dest)
	}
}

// renew extends every lease held; one whose revision moved was taken over.
func (s *Store) renew(ctx context.Context, f spool.Follower) {
	s.ls.mu.RLock()
	revs := map[uint32]uint64{}
	for p, l := range s.ls.held {
		if !l.lost {
			revs[p] = l.rev
		}
	}
	s.ls.mu.RUnlock()
	for p, rev := range revs {
		sent := time.Now()
		nrev, err := s.ls.bkt.Update(ctx, leaseKey(p), []byte(s.ls.id), rev)
		s.ls.mu.Lock()
		l := s.ls.held[p]
		if l == nil {
			s.ls.mu.Unlock()
			continue
		}
		if err == nil {
			l.rev = nrev
			if !l.lost {
				l.until = sent.Add(2 * s.ls.ttl / 3)
			}
			s.ls.mu.Unlock()
			continue
		}
		expired := !time.Now().Before(l.until)
		s.ls.mu.Unlock()
		if errors.Is(err, jetstream.ErrKeyExists) || expired {
			s.ls.log.Warn("jetstream: partition lease lost", "partition", p, "error", err)
			s.giveUp(p, f, true)
		}
	}
}

// take starts delivering partition p, whose lease has revision rev.
func (s *Store) take(ctx context.Context, p uint32, rev uint64, sent time.Time, f spool.Follower) {
	fctx, stop := context.WithCancel(ctx)
	l := &lease{rev: rev, until: sent.Add(2 * s.ls.ttl / 3), stop: stop, done: make(chan struct{}),
		low: lowMark{open: map[uint64]map[string]bool{}}}
	s.ls.mu.Lock()
	s.ls.held[p] = l
	s.ls.mu.Unlock()
	go func() {
		defer close(l.done)
		s.feed(fctx, p, l, f)
	}()
}

// giveUp stops delivering p: its feeder stops, its keys leave the queues
// once their sends in flight ended, then the lease is deleted (lost:
// another instance holds it already, or will after the TTL). It returns at
// once; the rest runs on its own.
func (s *Store) giveUp(p uint32, f spool.Follower, lost bool) {
	s.ls.mu.Lock()
	l := s.ls.held[p]
	if l == nil || l.lost || l.releasing {
		s.ls.mu.Unlock()
		return
	}
	l.lost, l.releasing = lost, !lost
	s.ls.mu.Unlock()
	l.stop()
	s.ls.stops.Add(1)
	go func() {
		defer s.ls.stops.Done()
		s.release(p, l, f)
	}()
}

func (s *Store) release(p uint32, l *lease, f spool.Follower) {
	<-l.done
	f.Drop(func(provider, key string) bool { return s.Partition(provider, key) == p })
	s.ls.mu.Lock()
	rev, lost := l.rev, l.lost && !l.releasing
	l.lost = true
	delete(s.ls.held, p)
	s.ls.mu.Unlock()
	if !lost {
		ctx, cancel := s.ctx(context.Background())
		defer cancel()
		_ = s.ls.bkt.Delete(ctx, leaseKey(p), jetstream.LastRevision(rev))
	}
}

// leaveAll gives up every partition, for a clean stop: the others take
// them at once instead of after the TTL.
func (s *Store) leaveAll(f spool.Follower) {
	s.ls.mu.RLock()
	var ps []uint32
	for p := range s.ls.held {
		ps = append(ps, p)
	}
	s.ls.mu.RUnlock()
	for _, p := range ps {
		s.giveUp(p, f, false)
	}
	s.ls.stops.Wait()
	ctx, cancel := s.ctx(context.Background())
	defer cancel()
	_ = s.ls.memb.Delete(ctx, s.ls.id)
	// s.ls.on stays: the store is shared for good, its fenced writes
	// refused now that it holds nothing.
}

// feed hands the dispatcher partition p's deliveries that are not final,
// from the first message of the partition, then each one appended later by
// any instance, until ctx ends.
func (s *Store) feed(ctx context.Context, p uint32, l *lease, f spool.Follower) {
	subj := s.subject(p, ">")
	for ctx.Err() == nil {
		err := s.follow(ctx, p, subj, l, f)
		if ctx.Err() != nil {
			return
		}
		s.ls.log.Warn("jetstream: partition feed restarts", "partition", p, "error", err)
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

func (s *Store) follow(ctx context.Context, p uint32, subj string, l *lease, f spool.Follower) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}, DeliverPolicy: jetstream.DeliverAllPolicy}
	gctx, cancel := s.ctx(ctx)
	e, err := s.ls.low.Get(gctx, leaseKey(p))
	cancel()
	switch {
	case err == nil:
		if low, _ := strconv.ParseUint(string(e.Value()), 10, 64); low > 1 {
			// Every event of the partition before low is final: start there
			// rather than at the partition's first.
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, low
			l.low.mu.Lock()
			l.low.written = max(l.low.written, low)
			l.low.next = max(l.low.next, low)
			l.low.mu.Unlock()
		}
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return err
	}
	// The partition's end as the feed starts: once read to it, the queues
	// count the whole partition (stats.go).
	gctx, cancel = s.ctx(ctx)
	last, err := s.stream.GetLastMsgForSubject(gctx, subj)
	cancel()
	var end uint64
	switch {
	case err == nil:
		end = last.Sequence
	case !errors.Is(err, jetstream.ErrMsgNotFound):
		return err
	}
	if end < cfg.OptStartSeq || end == 0 {
		l.caught.Store(true)
	}
	cons, err := s.stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	ctx, cancel = context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		it.Stop()
	}()
	// The reader reads ahead, each event's delivery states asked for at
	// once, while this loop hands the events read to the dispatcher in
	// stream order: the first is delivered while the rest are read, and a
	// long backlog is read at many requests at a time, not one.
	read := make(chan *feedItem, feedAhead)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		s.readAhead(ctx, it, l, read)
	}()
	defer func() {
		cancel()
		<-readerDone
	}()
	for {
		var fi *feedItem
		select {
		case fi = <-read:
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case <-fi.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if fi.err != nil {
			return fi.err
		}
		if fi.m != nil {
			for i, dest := range fi.m.Destinations {
				status, at := spool.Pending, time.Time{}
				if v := fi.states[i]; v != nil {
					if status, at, err = head(v); err != nil {
						continue
					}
				}
				if status.Final() {
					continue
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				l.low.queued(fi.seq, dest)
				f.Queue(dest, &spool.QueuedDelivery{Seq: fi.seq, EventID: fi.id, Provider: fi.m.Provider, Key: fi.m.Key,
					Sequence: fi.m.Sequence, Status: status, NextAt: at})
			}
		}
		l.low.read(fi.seq)
		if fi.seq >= end || fi.last {
			l.caught.Store(true)
		}
	}
}

// feedAhead bounds how many events a partition's feed reads ahead of the
// one it hands the dispatcher, and so the state reads in flight.
const feedAhead = 64

// feedItem is one event a feed read: its delivery states arrive in
// states, one per destination, before done closes.
type feedItem struct {
	seq    uint64
	last   bool // nothing more in the partition when it was read
	m      *meta
	id     ulid.ULID
	states [][]byte
	err    error // the read failed: the feed starts again
	done   chan struct{}
}

// readAhead reads the events of l's partition from it into out, in order,
// starting each one's state reads at once, until ctx ends or a read fails
// (the last item then carries the error).
func (s *Store) readAhead(ctx context.Context, it jetstream.MessagesContext, l *lease, out chan<- *feedItem) {
	send := func(fi *feedItem) bool {
		select {
		case out <- fi:
			return true
		case <-ctx.Done():
			return false
		}
	}
	failed := func(err error) {
		fi := &feedItem{err: err, done: make(chan struct{})}
		close(fi.done)
		send(fi)
	}
	for {
		msg, err := it.Next()
		if err != nil {
			failed(err)
			return
		}
		md, err := msg.Metadata()
		if err != nil {
			failed(err)
			return
		}
		fi := &feedItem{seq: md.Sequence.Stream, last: md.NumPending == 0, done: make(chan struct{})}
		l.readTo.Store(fi.seq)
		m, _, err := splitBody(msg.Data())
		if err != nil {
			s.ls.log.Warn("jetstream: unreadable event message", "seq", fi.seq, "error", err)
		} else if fi.id, err = ulid.ParseStrict(m.ID); err == nil {
			fi.m = m
		}
		if fi.m == nil {
			close(fi.done) // skipped, as read
		} else {
			fi.states = make([][]byte, len(m.Destinations))
			go s.readStates(ctx, fi)
		}
		if !send(fi) {
			return
		}
	}
}

// readStates reads fi's delivery states, then closes fi.done.
func (s *Store) readStates(ctx context.Context, fi *feedItem) {
	defer close(fi.done)
	for i, dest := range fi.m.Destinations {
		rctx, cancel := s.ctx(ctx)
		v, err := s.state(rctx, fi.m.ID, dest)
		cancel()
		if err != nil {
			fi.err = err
			return
		}
		fi.states[i] = v
	}
}

// command applies an operator's command forwarded to partition p's holder.
func (s *Store) command(m *nats.Msg, f spool.Follower) {
	ps := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	p, err := strconv.ParseUint(ps, 10, 32)
	if err != nil || !s.holdsPart(uint32(p)) {
		return // the holder answers
	}
	var c spool.Command
	if err := json.Unmarshal(m.Data, &c); err != nil {
		return
	}
	f.Apply(c)
	_ = m.Respond([]byte("ok"))
}

// forwardTries bounds the tries of a forward: a partition changing hands
// may have no holder for a moment.
const forwardTries = 3

// Forward hands c to the holder of its partition and waits for it to be
// applied. With no holder answering it fails: the state is in the spool,
// and whoever takes the partition next rebuilds its queues from it.
func (s *Store) Forward(c spool.Command) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	subj := s.name + ".cmd." + strconv.FormatUint(uint64(s.Partition(c.Provider, c.Key)), 10)
	for range forwardTries {
		ctx, cancel := context.WithTimeout(context.Background(), s.ls.ttl/3)
		_, err = s.nc.RequestWithContext(ctx, subj, b) // not Request: see timerFree
		cancel()
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("spool: forward %s of %s to its partition's holder: %w", c.Op, c.EventID, err)
}

// fence checks a fenced write of event m's delivery: the partition held,
// and the state it replaces (nil when none) not final.
func (s *Store) fence(m *meta, old []byte) error {
	if !s.sharing() {
		return nil
	}
	if !s.holdsPart(s.Partition(m.Provider, m.Key)) {
		return errNotHeld
	}
	if old != nil {
		if st, _, err := head(old); err == nil && st.Final() {
			return fmt.Errorf("spool: delivery %s is %s already (written by another instance)", m.ID, st)
		}
	}
	return nil
}

// Held lists the partitions this instance delivers now, in order.
func (s *Store) Held() []uint32 {
	s.ls.mu.RLock()
	defer s.ls.mu.RUnlock()
	var out []uint32
	for p, l := range s.ls.held {
		if !l.lost && time.Now().Before(l.until) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// Kill closes the connection to the servers at once, giving up nothing:
// to the other instances it looks like a crash (fault tests).
func (s *Store) Kill() { s.nc.Close() }
