package jetstream

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// An S_dlv value: what Pending needs in clear, then the attempts, sealed
// with privacy (their responses are content):
//
//	status (1) | next attempt (8, unix ns BE, 0: none) | record {attempts, attempts_before}
const dlvHead = 9

var (
	statusCode = map[spool.Status]byte{spool.Pending: 1, spool.Dead: 2, spool.Delivered: 3, spool.Skipped: 4}
	codeStatus = [...]spool.Status{1: spool.Pending, 2: spool.Dead, 3: spool.Delivered, 4: spool.Skipped}
)

// dlvState is the sealed part of an S_dlv value.
type dlvState struct {
	Attempts       []spool.Attempt `json:"attempts"`
	AttemptsBefore int             `json:"attempts_before,omitempty"`
}

// head reads a value's clear status and next attempt.
func head(v []byte) (spool.Status, time.Time, error) {
	if len(v) < dlvHead || int(v[0]) >= len(codeStatus) || codeStatus[v[0]] == "" {
		return "", time.Time{}, errors.New("jetstream: malformed delivery state")
	}
	var at time.Time
	if ns := binary.BigEndian.Uint64(v[1:9]); ns != 0 {
		at = time.Unix(0, int64(ns)).UTC()
	}
	return codeStatus[v[0]], at, nil
}

// delivery builds the delivery of the event st to dest, with its state v
// (nil: pending, never tried).
func (s *Store) delivery(st *stored, dest string, v []byte, withAttempts bool) (*spool.Delivery, error) {
	d := &spool.Delivery{EventID: st.m.ID, Destination: dest, Provider: st.m.Provider, Key: st.m.Key, Seq: st.seq,
		Sequence: st.m.Sequence, Status: spool.Pending, Attempts: []spool.Attempt{}}
	if v == nil {
		return d, nil
	}
	status, at, err := head(v)
	if err != nil {
		return nil, err
	}
	d.Status, d.NextAt = status, at
	if withAttempts {
		var ds dlvState
		if err := s.open(st.m.Provider, st.m.Key, deliveryAAD(st.m.ID, dest), v[dlvHead:], &ds); err != nil {
			return nil, fmt.Errorf("spool: decode delivery %s to %s: %w", st.m.ID, dest, err)
		}
		if ds.Attempts != nil {
			d.Attempts = ds.Attempts
		}
		d.AttemptsBefore = ds.AttemptsBefore
	}
	return d, nil
}

// Update stores d's status, attempts and NextAt; the other fields of d are
// ignored. It returns ErrNotFound when the delivery is not stored.
func (s *Store) Update(ctx context.Context, d *spool.Delivery) error {
	code, ok := statusCode[d.Status]
	if !ok {
		return fmt.Errorf("spool: delivery %s/%s: unknown status %q", d.EventID, d.Destination, d.Status)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	st, err := s.lookup(ctx, d.EventID)
	if err != nil {
		return err
	}
	if !slices.Contains(st.m.Destinations, d.Destination) {
		return fmt.Errorf("%w: delivery %s to %s", spool.ErrNotFound, d.EventID, d.Destination)
	}
	v := make([]byte, dlvHead, 256)
	v[0] = code
	if !d.NextAt.IsZero() {
		binary.BigEndian.PutUint64(v[1:9], uint64(d.NextAt.UnixNano()))
	}
	rec, err := s.seal(st.m.Provider, st.m.Key, deliveryAAD(d.EventID, d.Destination), dlvState{d.Attempts, d.AttemptsBefore})
	if err != nil {
		return fmt.Errorf("spool: seal delivery %s to %s: %w", d.EventID, d.Destination, err)
	}
	if err := s.putState(ctx, st.m, dlvKey(d.EventID, d.Destination), append(v, rec...)); err != nil {
		return fmt.Errorf("spool: update delivery %s to %s: %w", d.EventID, d.Destination, err)
	}
	if d.Status.Final() {
		s.finalised(st, d.Destination)
	}
	if st.m.Sequence > 0 && d.Status != spool.Pending {
		return s.raiseLastSequence(ctx, d.Destination, st.m.Provider, st.m.Key, st.m.Sequence)
	}
	return nil
}

// putState writes a delivery's state. A fenced write (the dispatcher's,
// spool.Fenced) of a shared store is refused once the partition's lease is
// lost, and is checked against the revision it replaces, so that a deposed
// holder never overwrites what its successor wrote since.
func (s *Store) putState(ctx context.Context, m *meta, key string, v []byte) error {
	if !spool.IsFenced(ctx) || !s.sharing() {
		_, err := s.dlv.Put(ctx, key, v)
		return err
	}
	e, err := s.dlv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		if err := s.fence(m, nil); err != nil {
			return err
		}
		_, err = s.dlv.Create(ctx, key, v)
		return err
	case err != nil:
		return err
	}
	if err := s.fence(m, e.Value()); err != nil {
		return err
	}
	_, err = s.dlv.Update(ctx, key, v, e.Revision())
	return err
}

func lastSeqKey(dest, provider, key string) string {
	return enc(dest) + "." + enc(provider) + "." + nameHash(provider, key)
}

// raiseLastSequence records that seq was released to dest for provider's
// key, with a revision check: two instances may release at once.
func (s *Store) raiseLastSequence(ctx context.Context, dest, provider, key string, seq int64) error {
	k := lastSeqKey(dest, provider, key)
	val := []byte(strconv.FormatInt(seq, 10))
	for range 16 {
		e, err := s.lastSeq.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if _, err = s.lastSeq.Create(ctx, k, val); err == nil {
				return nil
			}
		case err != nil:
		default:
			if cur, _ := strconv.ParseInt(string(e.Value()), 10, 64); cur >= seq {
				return nil
			}
			if _, err = s.lastSeq.Update(ctx, k, val, e.Revision()); err == nil {
				return nil
			}
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("spool: last sequence %s: %w", dest, err)
		}
	}
	return fmt.Errorf("spool: last sequence %s: too many concurrent writers", dest)
}

// LastSequence returns the highest sequence released to dest for
// provider's key, 0 when none.
func (s *Store) LastSequence(dest, provider, key string) (int64, error) {
	ctx, cancel := s.ctx(context.Background())
	defer cancel()
	e, err := s.lastSeq.Get(ctx, lastSeqKey(dest, provider, key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("spool: last sequence %s: %w", dest, err)
	}
	return strconv.ParseInt(string(e.Value()), 10, 64)
}

// Delivery returns the delivery of event eventID to dest, or ErrNotFound.
func (s *Store) Delivery(dest, eventID string) (*spool.Delivery, error) {
	ctx, cancel := s.ctx(context.Background())
	defer cancel()
	st, err := s.lookup(ctx, eventID)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(st.m.Destinations, dest) {
		return nil, fmt.Errorf("%w: delivery %s to %s", spool.ErrNotFound, eventID, dest)
	}
	v, err := s.state(ctx, eventID, dest)
	if err != nil {
		return nil, err
	}
	return s.delivery(st, dest, v, true)
}

// state reads a delivery's S_dlv value, nil when it has none.
func (s *Store) state(ctx context.Context, eventID, dest string) ([]byte, error) {
	e, err := s.dlv.Get(ctx, dlvKey(eventID, dest))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool: read delivery %s to %s: %w", eventID, dest, err)
	}
	return e.Value(), nil
}

// Event returns the event with the given ULID, or ErrNotFound.
func (s *Store) Event(id string) (*spool.Event, error) {
	ctx, cancel := s.ctx(context.Background())
	defer cancel()
	st, err := s.lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.openEvent(st)
}

func (s *Store) openEvent(st *stored) (*spool.Event, error) {
	ev := new(spool.Event)
	if err := s.open(st.m.Provider, st.m.Key, eventAAD(st.m.ID), st.rec, ev); err != nil {
		return nil, fmt.Errorf("spool: decode event %s: %w", st.m.ID, err)
	}
	return ev, nil
}

// deliveriesOf reads every delivery of the event st, by destination name.
func (s *Store) deliveriesOf(ctx context.Context, st *stored) ([]*spool.Delivery, error) {
	dests := slices.Clone(st.m.Destinations)
	slices.Sort(dests)
	ds := make([]*spool.Delivery, 0, len(dests))
	for _, dest := range dests {
		v, err := s.state(ctx, st.m.ID, dest)
		if err != nil {
			return nil, err
		}
		d, err := s.delivery(st, dest, v, true)
		if err != nil {
			return nil, err
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// states reads every S_dlv value of dest, by key.
func (s *Store) states(ctx context.Context, dest string) (map[string][]byte, error) {
	var err error
	for try := 0; try < 20 && ctx.Err() == nil; try++ {
		var out map[string][]byte
		if out, err = s.statesOnce(ctx, dest); err == nil {
			return out, nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil, err
}

// statesOnce is one read of states. A watch whose bucket has no leader
// (its server just went away) gets no answer at all, so a read that hears
// nothing for scanTry ends, and states reads again.
func (s *Store) statesOnce(ctx context.Context, dest string) (map[string][]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idle := time.AfterFunc(scanTry, cancel)
	defer idle.Stop()
	w, err := s.dlv.Watch(ctx, "*."+enc(dest), jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("spool: read deliveries to %s: %w", dest, err)
	}
	out, err := drain(ctx, w, func() { idle.Reset(scanTry) })
	if err != nil {
		return nil, fmt.Errorf("spool: read deliveries to %s: %w", dest, err)
	}
	return out, nil
}

// scanChunk is how many event messages one fetch of a scan asks for.
const scanChunk = 256

// scan calls fn, in Seq order, for every event message stored when it
// began.
func (s *Store) scan(ctx context.Context, fn func(st *stored) error) error {
	return consume(ctx, s.stream, s.name+".ev.>", func(seq uint64, subj string, data []byte) error {
		m, rec, err := splitBody(data)
		if err != nil {
			return err
		}
		return fn(&stored{seq: seq, m: m, rec: rec, subj: subj})
	})
}

// consume calls fn, in stream order, for every message of stream on
// subjects matching filter that was stored when it began. It reads
// through an ordered consumer of its own. A consumer lives on one server:
// when that server goes away (or the stream has no leader for a moment)
// the read starts again, a few times, after the last message fn took.
func consume(ctx context.Context, stream jetstream.Stream, filter string, fn func(seq uint64, subj string, data []byte) error) error {
	var last, next uint64
	var err error
	for try := 0; try < 20; try++ {
		if try > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("spool: scan: %w", err)
			case <-time.After(250 * time.Millisecond):
			}
		}
		if last == 0 {
			// Short: a stream without a leader never answers.
			ictx, cancel := context.WithTimeout(ctx, scanTry)
			info, ierr := stream.Info(ictx)
			cancel()
			if err = ierr; err != nil {
				continue
			}
			if info.State.Msgs == 0 {
				return nil
			}
			last = info.State.LastSeq
		}
		err = consumeFrom(ctx, stream, filter, last, &next, fn)
		var fe fnError
		if errors.As(err, &fe) {
			return fe.err
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("spool: scan: %w", err)
}

// scanTry bounds one request of consume to the servers: for a few seconds
// after a server went away the stream it led has no leader and a request
// to it is not answered, where the next try, to the new leader, is.
const scanTry = 3 * time.Second

// fnError carries the error of consume's fn, which ends it at once, apart
// from the servers' errors, after which it reads again.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// consumeFrom is one read of consume from *next (0: the first message) to
// last, advancing *next past each message fn took.
func consumeFrom(ctx context.Context, stream jetstream.Stream, filter string, last uint64, next *uint64,
	fn func(seq uint64, subj string, data []byte) error) error {
	// The client recreates a lost ordered consumer forever by default,
	// inside Fetch; consume's own tries resume after the last message fn
	// took, and end.
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverAllPolicy, MaxResetAttempts: 2}
	if *next > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, *next
	}
	cctx, cancel := context.WithTimeout(ctx, scanTry)
	cons, err := stream.OrderedConsumer(cctx, cfg)
	cancel()
	if err != nil {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch, err := cons.Fetch(scanChunk, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return err
		}
		n := 0
		msgs := batch.Messages()
		stall := time.NewTimer(scanTry + time.Second) // past FetchMaxWait: the fetch's server is gone
		for {
			var msg jetstream.Msg
			var ok bool
			select {
			case msg, ok = <-msgs:
			case <-stall.C:
				return errors.New("fetch stalled")
			case <-ctx.Done():
				stall.Stop()
				return ctx.Err()
			}
			if !ok {
				break
			}
			stall.Reset(scanTry + time.Second)
			n++
			md, err := msg.Metadata()
			if err != nil {
				return err
			}
			if md.Sequence.Stream > last {
				return nil
			}
			if err := fn(md.Sequence.Stream, msg.Subject(), msg.Data()); err != nil {
				return fnError{err}
			}
			*next = md.Sequence.Stream + 1
			if md.Sequence.Stream == last || md.NumPending == 0 {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		if n == 0 {
			return nil // the messages left were deleted meanwhile
		}
	}
}

// scanTimeout bounds a whole scan of the stream (Pending, Queue, Purge).
const scanTimeout = 10 * time.Minute

// Pending calls fn, in Seq order, for every delivery to dest that is not
// final.
func (s *Store) Pending(dest string, fn func(q *spool.QueuedDelivery) error) error {
	var q spool.QueuedDelivery
	return s.bound(dest, func(st *stored, state []byte) error {
		status, at := spool.Pending, time.Time{}
		if state != nil {
			var err error
			if status, at, err = head(state); err != nil {
				return err
			}
		}
		if status.Final() {
			return nil
		}
		id, err := ulid.ParseStrict(st.m.ID)
		if err != nil {
			return err
		}
		q = spool.QueuedDelivery{Seq: st.seq, EventID: id, Provider: st.m.Provider, Key: st.m.Key, Sequence: st.m.Sequence, Status: status, NextAt: at}
		return fn(&q)
	})
}

// Queue is Pending with whole deliveries, attempts included.
func (s *Store) Queue(dest string, fn func(d *spool.Delivery) error) error {
	return s.bound(dest, func(st *stored, state []byte) error {
		d, err := s.delivery(st, dest, state, true)
		if err != nil {
			return err
		}
		if d.Status.Final() {
			return nil
		}
		return fn(d)
	})
}

// bound calls fn, in Seq order, for every event bound to dest, with the
// state of its delivery there (nil while none was written), within one
// scanTimeout.
func (s *Store) bound(dest string, fn func(st *stored, state []byte) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), scanTimeout)
	defer cancel()
	states, err := s.states(ctx, dest)
	if err != nil {
		return err
	}
	return s.scan(ctx, func(st *stored) error {
		if !slices.Contains(st.m.Destinations, dest) {
			return nil
		}
		return fn(st, states[dlvKey(st.m.ID, dest)])
	})
}
