package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// statuses reads the status of each delivery of the event st.
func (s *Store) statuses(ctx context.Context, st *stored) ([]spool.Status, error) {
	out := make([]spool.Status, 0, len(st.m.Destinations))
	for _, dest := range st.m.Destinations {
		v, err := s.state(ctx, st.m.ID, dest)
		if err != nil {
			return nil, err
		}
		status := spool.Pending
		if v != nil {
			if status, _, err = head(v); err != nil {
				return nil, err
			}
		}
		out = append(out, status)
	}
	return out, nil
}

// errPast ends a purge's scan: the stream is in commit order, so once
// events are well past the cutoff none before it follows. The margin
// covers the clocks of instances appending at once.
var errPast = errors.New("past the cutoff")

// purgeMargin is how far past the cutoff a purge's scan goes.
const purgeMargin = time.Hour

// past reports whether a purge's scan may stop at m.
func past(m *meta, cutoff time.Time) bool { return m.ReceivedAt.After(cutoff.Add(purgeMargin)) }

// before reports whether the event was received before cutoff, by its id's
// time and by its ReceivedAt, as bbolt's purge reads them.
func before(m *meta, cutoff time.Time) bool {
	id, err := ulid.ParseStrict(m.ID)
	return err == nil && ulid.Time(id.Time()).Before(cutoff) && m.ReceivedAt.Before(cutoff)
}

// eraseEvent deletes one event with its deliveries and its dedup entry,
// counting into out; statuses are its deliveries' (as s.statuses reads
// them). secure overwrites the message on the servers' disks.
func (s *Store) eraseEvent(ctx context.Context, st *stored, statuses []spool.Status, secure bool, out *spool.Erased) error {
	for i, dest := range st.m.Destinations {
		out.Deliveries++
		if !statuses[i].Final() {
			out.Pending++
			out.Dropped = append(out.Dropped, spool.Dropped{Ref: spool.Ref{Seq: st.seq, EventID: st.m.ID, Destination: dest,
				Provider: st.m.Provider, Key: st.m.Key, Sequence: st.m.Sequence}, Dead: statuses[i] == spool.Dead})
		}
		if err := s.dlv.Purge(ctx, dlvKey(st.m.ID, dest)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("spool: erase delivery %s to %s: %w", st.m.ID, dest, err)
		}
	}
	if st.m.Idem != "" {
		ik := idemKey(st.m.Provider, st.m.Idem)
		if e, err := s.idem.Get(ctx, ik); err == nil {
			var r idemRecord
			if json.Unmarshal(e.Value(), &r) == nil && r.ID == st.m.ID {
				if err := s.idem.Purge(ctx, ik, jetstream.LastRevision(e.Revision())); err == nil {
					out.Dedup++
				}
			}
		}
	}
	del := s.stream.DeleteMsg
	if secure {
		del = s.stream.SecureDeleteMsg
	}
	if err := del(ctx, st.seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("spool: erase event %s: %w", st.m.ID, err)
	}
	out.Events++
	return nil
}

// Purge deletes events received before cutoff whose deliveries are all
// final, and dedup entries older than cutoff; it returns how many events it
// deleted.
func (s *Store) Purge(cutoff time.Time) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), scanTimeout)
	defer cancel()
	var out spool.Erased
	err := s.purgeBefore(ctx, cutoff, &out, func(statuses []spool.Status) bool {
		for _, status := range statuses {
			if !status.Final() {
				return false
			}
		}
		return true
	})
	if err != nil {
		return out.Events, err
	}
	return out.Events, s.purgeIdem(ctx, cutoff)
}

// purgeBefore erases, counting into out, the events received before cutoff
// whose deliveries' statuses doomed accepts.
func (s *Store) purgeBefore(ctx context.Context, cutoff time.Time, out *spool.Erased, doomed func([]spool.Status) bool) error {
	err := s.scan(ctx, func(st *stored) error {
		if past(st.m, cutoff) {
			return errPast
		}
		if !before(st.m, cutoff) {
			return nil
		}
		statuses, err := s.statuses(ctx, st)
		if err != nil || !doomed(statuses) {
			return err
		}
		return s.eraseEvent(ctx, st, statuses, false, out)
	})
	if errors.Is(err, errPast) {
		err = nil
	}
	return err
}

// purgeIdem deletes dedup entries received before cutoff.
func (s *Store) purgeIdem(ctx context.Context, cutoff time.Time) error {
	w, err := s.idem.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("spool: purge dedup: %w", err)
	}
	type old struct {
		key string
		rev uint64
	}
	var doomed []old
	for e := range w.Updates() {
		if e == nil {
			break
		}
		var r idemRecord
		if json.Unmarshal(e.Value(), &r) == nil && time.Unix(0, r.At).Before(cutoff) {
			doomed = append(doomed, old{e.Key(), e.Revision()})
		}
	}
	_ = w.Stop()
	for _, d := range doomed {
		// A newer copy may have replaced the entry meanwhile: it stays.
		err := s.idem.Purge(ctx, d.key, jetstream.LastRevision(d.rev))
		if err != nil && !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyNotFound) {
			var apiErr *jetstream.APIError
			if !errors.As(err, &apiErr) {
				return fmt.Errorf("spool: purge dedup: %w", err)
			}
		}
	}
	return ctx.Err()
}

// PurgeDead deletes events received before cutoff that have a dead
// delivery and no pending one, with their deliveries and dedup entries.
func (s *Store) PurgeDead(ctx context.Context, cutoff time.Time) (spool.Erased, error) {
	var out spool.Erased
	ctx, cancel := context.WithTimeout(ctx, scanTimeout)
	defer cancel()
	err := s.purgeBefore(ctx, cutoff, &out, func(statuses []spool.Status) bool {
		dead := false
		for _, status := range statuses {
			switch {
			case status == spool.Dead:
				dead = true
			case !status.Final():
				return false
			}
		}
		return dead
	})
	return out, err
}

// PurgeQuarantined deletes quarantined requests received before cutoff
// (by their id's time) and returns how many.
func (s *Store) PurgeQuarantined(ctx context.Context, cutoff time.Time) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, scanTimeout)
	defer cancel()
	ids, err := keys(ctx, s.quar, ">")
	if err != nil {
		return 0, fmt.Errorf("spool: purge quarantine: %w", err)
	}
	n := 0
	for _, id := range ids {
		u, err := ulid.ParseStrict(id)
		if err != nil || !ulid.Time(u.Time()).Before(cutoff) {
			break // ids are ULIDs, sorted: in time order
		}
		// Its head names the key in clear: overwritten, not only purged.
		if _, err := s.secureDelete(ctx, s.quar, id); err != nil {
			return n, fmt.Errorf("spool: purge quarantine: %w", err)
		}
		n++
	}
	return n, nil
}

// EraseKey removes every event of provider's key with its deliveries
// (pending ones too), dedup entries and sequence records, every quarantined
// request stored with the key, and its poll state; with a Sealer it first
// destroys the key's data key. Event messages are deleted securely
// (overwritten on the servers).
func (s *Store) EraseKey(ctx context.Context, provider, key string) (spool.Erased, error) {
	var out spool.Erased
	if provider == "" {
		return out, errors.New("spool: erase: empty provider")
	}
	if s.sealer != nil {
		if err := s.sealer.Destroy(provider, key); err != nil {
			return out, fmt.Errorf("spool: erase %s/%s: %w", provider, key, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, scanTimeout)
	defer cancel()
	err := s.scan(ctx, func(st *stored) error {
		if st.m.Provider != provider || st.m.Key != key {
			return nil
		}
		statuses, err := s.statuses(ctx, st)
		if err != nil {
			return err
		}
		return s.eraseEvent(ctx, st, statuses, true, &out)
	})
	if err != nil {
		return out, err
	}
	ls, err := keys(ctx, s.lastSeq, "*."+enc(provider)+"."+nameHash(provider, key))
	if err != nil {
		return out, fmt.Errorf("spool: erase %s/%s: %w", provider, key, err)
	}
	for _, k := range ls {
		if err := s.lastSeq.Purge(ctx, k); err != nil {
			return out, fmt.Errorf("spool: erase %s/%s: %w", provider, key, err)
		}
	}
	ids, err := keys(ctx, s.quar, ">")
	if err != nil {
		return out, fmt.Errorf("spool: erase %s/%s: %w", provider, key, err)
	}
	for _, id := range ids {
		e, err := s.quar.Get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("spool: erase %s/%s: %w", provider, key, err)
		}
		if p, k, _, err := quarHead(e.Value()); err != nil || p != provider || k != key || k == "" {
			continue
		}
		// Its head names the key in clear: overwritten, not only purged.
		if _, err := s.secureDelete(ctx, s.quar, id); err != nil {
			return out, fmt.Errorf("spool: erase %s/%s: %w", provider, key, err)
		}
		out.Quarantined++
	}
	for _, k := range []string{pollKey(provider, key), pollNameKey(provider, key)} {
		found, err := s.secureDelete(ctx, s.poll, k)
		if err != nil {
			return out, fmt.Errorf("spool: erase %s/%s: %w", provider, key, err)
		}
		if found && k == pollKey(provider, key) {
			out.PollStates = 1
		}
	}
	return out, nil
}
