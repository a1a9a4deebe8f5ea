package jetstream

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// Events calls fn with events newest first (by Seq), each with its
// deliveries, starting after the event `after`, until fn returns false or
// scanned events have been visited. It reads one message per request,
// which suits the admin API's pages.
func (s *Store) Events(after string, scanned int, fn func(ev *spool.Event, ds []*spool.Delivery) bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), scanTimeout)
	defer cancel()
	info, err := s.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("spool: events: %w", err)
	}
	from := info.State.LastSeq
	if after != "" {
		st, err := s.lookup(ctx, after) // refuses an id that is not a ULID
		switch {
		case err == nil:
			from = st.seq - 1
		case !errors.Is(err, spool.ErrNotFound):
			return err
		}
	}
	visited := 0
	for seq := from; seq >= info.State.FirstSeq && seq > 0; seq-- {
		raw, err := s.stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted: purged or erased
		}
		if err != nil {
			return fmt.Errorf("spool: events: %w", err)
		}
		m, rec, err := splitBody(raw.Data)
		if err != nil {
			return err
		}
		if after != "" && m.ID >= after {
			continue // `after` itself is gone: ULIDs still order the page
		}
		st := &stored{seq: seq, m: m, rec: rec, subj: raw.Subject}
		ev, err := s.openEvent(st)
		if err != nil {
			return err
		}
		ds, err := s.deliveriesOf(ctx, st)
		if err != nil {
			return err
		}
		visited++
		if !fn(ev, ds) || (scanned > 0 && visited >= scanned) {
			return nil
		}
	}
	return nil
}

// Deliveries returns the deliveries of one event, by destination name; none
// when the event is not stored.
func (s *Store) Deliveries(eventID string) ([]*spool.Delivery, error) {
	ctx, cancel := s.ctx(context.Background())
	defer cancel()
	st, err := s.lookup(ctx, eventID)
	if errors.Is(err, spool.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return s.deliveriesOf(ctx, st)
}

// keys lists a bucket's keys that match filter, sorted; none for an empty
// bucket.
func keys(ctx context.Context, kv jetstream.KeyValue, filter string) ([]string, error) {
	l, err := kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, err
	}
	defer func() { _ = l.Stop() }()
	var out []string
	for k := range l.Keys() {
		out = append(out, k)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	slices.Sort(out)
	return out, nil
}

// QuarantineList returns up to limit quarantined requests, newest first,
// after the one `after`.
func (s *Store) QuarantineList(after string, limit int) ([]*spool.Quarantined, error) {
	return s.quarantinePage(after, limit, false)
}

// QuarantineOldest implements spool.Admin.
func (s *Store) QuarantineOldest(after string, limit int) ([]*spool.Quarantined, error) {
	return s.quarantinePage(after, limit, true)
}

// quarantinePage returns up to limit quarantined requests past after,
// newest first, or oldest first.
func (s *Store) quarantinePage(after string, limit int, oldestFirst bool) ([]*spool.Quarantined, error) {
	if after != "" {
		if _, err := ulid.ParseStrict(after); err != nil {
			return nil, fmt.Errorf("spool: quarantine id %q: %w", after, err)
		}
	}
	ctx, cancel := s.ctx(context.Background())
	defer cancel()
	ids, err := keys(ctx, s.quar, ">")
	if err != nil {
		return nil, fmt.Errorf("spool: quarantine: %w", err)
	}
	if !oldestFirst {
		slices.Reverse(ids)
	}
	var out []*spool.Quarantined
	for _, id := range ids {
		if limit > 0 && len(out) >= limit {
			break
		}
		if after != "" && (oldestFirst && id <= after || !oldestFirst && id >= after) {
			continue
		}
		e, err := s.quar.Get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted since the listing
		}
		if err != nil {
			return nil, fmt.Errorf("spool: quarantine: %w", err)
		}
		q, err := s.decodeQuar(id, e.Value())
		if err != nil {
			return nil, err
		}
		out = append(out, q)
	}
	return out, nil
}

// Quarantined returns one quarantined request, or ErrNotFound.
func (s *Store) Quarantined(id string) (*spool.Quarantined, error) {
	if _, err := ulid.ParseStrict(id); err != nil {
		return nil, fmt.Errorf("spool: quarantine id %q: %w", id, err)
	}
	ctx, cancel := s.ctx(context.Background())
	defer cancel()
	e, err := s.quar.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: quarantined %s", spool.ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: quarantine %s: %w", id, err)
	}
	return s.decodeQuar(id, e.Value())
}

// DeleteQuarantined removes a quarantined request.
func (s *Store) DeleteQuarantined(id string) error {
	if _, err := ulid.ParseStrict(id); err != nil {
		return fmt.Errorf("spool: quarantine id %q: %w", id, err)
	}
	ctx, cancel := s.ctx(context.Background())
	defer cancel()
	if err := s.quar.Purge(ctx, id); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("spool: quarantine %s: %w", id, err)
	}
	return nil
}

// SetPaused records whether a destination is paused.
func (s *Store) SetPaused(dest string, paused bool) error {
	ctx, cancel := s.ctx(context.Background())
	defer cancel()
	var err error
	if paused {
		_, err = s.paused.Put(ctx, enc(dest), []byte{1})
	} else if err = s.paused.Purge(ctx, enc(dest)); errors.Is(err, jetstream.ErrKeyNotFound) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("spool: pause %s: %w", dest, err)
	}
	return nil
}

// Paused returns the paused destinations. The relay reads them as it
// starts, so a bucket that has no leader for a moment (its server just
// went away) is asked again, in setup's short tries, instead of failing the
// start.
func (s *Store) Paused() (map[string]bool, error) {
	ctx, cancel := s.ctx(context.Background())
	defer cancel()
	var ks []string
	err := s.setup(ctx, func(try context.Context) (err error) {
		ks, err = keys(try, s.paused, ">")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("spool: paused: %w", err)
	}
	out := map[string]bool{}
	for _, k := range ks {
		out[dec(k)] = true
	}
	return out, nil
}
