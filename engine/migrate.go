package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/engine/seal"
	"github.com/hookrelay/hookrelay/engine/spool"
)

// MigrateOptions say which way `hookrelay migrate` copies.
type MigrateOptions struct {
	// Bolt is the bbolt spool file on the other side of the JetStream
	// spool the configuration names.
	Bolt string
	// Keystore is the bbolt side's keystore, with privacy; "" means
	// keys.db beside Bolt.
	Keystore string
	// ToBolt copies from JetStream into Bolt; otherwise from Bolt into
	// JetStream.
	ToBolt bool
}

// Migrated counts what a migration copied, and what it found already
// there from an earlier run.
type Migrated struct {
	Events      int `json:"events"`
	Pending     int `json:"pending"`
	Dead        int `json:"dead"`
	Delivered   int `json:"delivered"`
	Present     int `json:"already_present"`
	Quarantined int `json:"quarantined"`
	Paused      int `json:"paused"`
	PollStates  int `json:"poll_states"`
}

// migrated is one event of the source with its deliveries.
type migrated struct {
	ev  *spool.Event
	ds  []*spool.Delivery
	seq uint64
}

// Migrate copies a stopped relay's spool between its bbolt file and the
// JetStream stream cfg's spool block names (SPEC 12): every event with a
// delivery that is not final (pending, dead, held), with its attempts and
// their counts, every event still inside its provider's dedup window (so
// that its dedup entry keeps dropping copies), the event each pending
// key last released when it has a sequence number, quarantined requests,
// paused destinations and the poller's state. Events are appended in the
// source's commit order, so that per-key order holds on the other side.
// An event already in the target is left as it is, unless its deliveries
// there were never tried: running it twice copies nothing twice.
func Migrate(ctx context.Context, cfg *Config, opts MigrateOptions) (*Migrated, error) {
	if cfg.Spool.Kind != config.SpoolJetStream {
		return nil, errors.New("migrate: the configuration's spool.kind must be jetstream: it names the JetStream side")
	}
	if opts.Bolt == "" {
		return nil, errors.New("migrate: no bbolt spool file")
	}
	if !opts.ToBolt {
		// Open would create an empty one: never read a spool that is not there.
		if _, err := os.Stat(opts.Bolt); err != nil {
			return nil, fmt.Errorf("migrate: %w", err)
		}
	}
	var boltSealer, jsSealer spool.Sealer
	if cfg.master != nil {
		path := opts.Keystore
		if path == "" {
			path = filepath.Join(filepath.Dir(opts.Bolt), "keys.db")
		}
		bks, err := seal.Open(path, cfg.master, cfg.previous...)
		if err != nil {
			return nil, fmt.Errorf("migrate: keystore %s: %w", path, err)
		}
		defer func() { _ = bks.Close() }()
		jks, err := openKeystore(cfg)
		if err != nil {
			return nil, fmt.Errorf("migrate: keystore: %w", err)
		}
		defer func() { _ = jks.Close() }()
		boltSealer, jsSealer = bks, jks
	}
	bolt, err := spool.Open(opts.Bolt, spool.Options{Sealer: boltSealer})
	if err != nil {
		if errors.Is(err, spool.ErrLocked) {
			return nil, fmt.Errorf("migrate: %s is in use: stop the relay first: %w", opts.Bolt, err)
		}
		return nil, fmt.Errorf("migrate: %w", err)
	}
	defer func() { _ = bolt.Close() }()
	js, err := openSpool(cfg, spool.Options{Sealer: jsSealer}, nil) // migrate takes no lease: nothing to log
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	defer func() { _ = js.Close() }()
	var src, dst spool.Store = bolt, js
	if opts.ToBolt {
		src, dst = js, bolt
	}
	return copySpool(ctx, cfg, src, dst)
}

// copySpool copies src into dst as Migrate says.
func copySpool(ctx context.Context, cfg *Config, src, dst spool.Store) (*Migrated, error) {
	var window time.Duration
	for _, p := range cfg.Providers {
		window = max(window, p.Dedup)
	}
	now := time.Now()
	var evs []migrated
	var readErr error
	add := func(ev *spool.Event, ds []*spool.Delivery) bool {
		full, err := src.Event(ev.ID) // a listing's event may lack its bodies
		if err != nil {
			readErr = err
			return false
		}
		var seq uint64
		if len(ds) > 0 {
			seq = ds[0].Seq
		}
		evs = append(evs, migrated{ev: full, ds: ds, seq: seq})
		return true
	}
	// released are the events left behind that carry a sequence number,
	// by destination, provider, key and sequence: the one a pending
	// delivery's key last released goes too, so that the target knows
	// where the key's sequence stands (SPEC 5.3) rather than wait for
	// the numbers before it.
	type seqRef struct {
		dest, provider, key string
		n                   int64
	}
	released := map[seqRef]*spool.Event{}
	releasedDs := map[string][]*spool.Delivery{}
	err := src.Events("", 0, func(ev *spool.Event, ds []*spool.Delivery) bool {
		keep := now.Sub(ev.ReceivedAt) < window
		for _, d := range ds {
			keep = keep || !d.Status.Final()
		}
		if keep {
			return add(ev, ds)
		}
		if ev.Sequence > 0 {
			for _, d := range ds {
				released[seqRef{d.Destination, ev.Provider, ev.Key, ev.Sequence}] = ev
			}
			releasedDs[ev.ID] = ds
		}
		return true
	})
	if err == nil {
		err = readErr
	}
	if err != nil {
		return nil, fmt.Errorf("migrate: read events: %w", err)
	}
	if len(released) > 0 {
		seen := map[string]bool{}
		for _, m := range slices.Clone(evs) {
			for _, d := range m.ds {
				if d.Status.Final() || m.ev.Sequence <= 0 {
					continue
				}
				last, err := src.LastSequence(d.Destination, m.ev.Provider, m.ev.Key)
				if err != nil {
					return nil, fmt.Errorf("migrate: last sequence: %w", err)
				}
				ev := released[seqRef{d.Destination, m.ev.Provider, m.ev.Key, last}]
				if ev == nil || seen[ev.ID] {
					continue
				}
				seen[ev.ID] = true
				if !add(ev, releasedDs[ev.ID]) {
					return nil, fmt.Errorf("migrate: read events: %w", readErr)
				}
			}
		}
	}
	// The source's commit order, which is per-key order.
	slices.SortStableFunc(evs, func(a, b migrated) int {
		if c := cmp.Compare(a.seq, b.seq); c != 0 {
			return c
		}
		return cmp.Compare(a.ev.ID, b.ev.ID)
	})
	out := &Migrated{}
	for _, m := range evs {
		if err := copyEvent(ctx, dst, m, out); err != nil {
			return out, err
		}
	}
	if err := copyQuarantine(ctx, src, dst, out); err != nil {
		return out, err
	}
	paused, err := src.Paused()
	if err != nil {
		return out, fmt.Errorf("migrate: paused: %w", err)
	}
	for dest, p := range paused {
		if p {
			if err := dst.SetPaused(dest, true); err != nil {
				return out, fmt.Errorf("migrate: pause %s: %w", dest, err)
			}
			out.Paused++
		}
	}
	for _, p := range cfg.Providers {
		err := src.PollKeys(p.Name, func(key string, st *spool.PollState) error {
			if _, err := dst.PollTrack(ctx, []spool.TrackedKey{{Provider: p.Name, Key: key}}); err != nil {
				return err
			}
			out.PollStates++
			return dst.PollSave(ctx, p.Name, key, st)
		})
		if err != nil {
			return out, fmt.Errorf("migrate: poll state of %s: %w", p.Name, err)
		}
	}
	return out, nil
}

// copyEvent appends one event to dst with its deliveries' states.
func copyEvent(ctx context.Context, dst spool.Store, m migrated, out *Migrated) error {
	ev := *m.ev
	ev.Destinations = nil
	for _, d := range m.ds {
		ev.Destinations = append(ev.Destinations, d.Destination)
	}
	// dedup 0: the event passed its dedup check when it came in; its
	// entry is still written, under its own received time.
	_, err := dst.Append(ctx, &ev, 0)
	present := errors.Is(err, spool.ErrExists)
	if err != nil && !present {
		return fmt.Errorf("migrate: event %s: %w", ev.ID, err)
	}
	if present {
		out.Present++
	} else {
		out.Events++
	}
	for _, d := range m.ds {
		if present {
			// Only a delivery an earlier run appended and could not
			// update is written again; one the target relay has worked
			// on since is its own.
			cur, err := dst.Delivery(d.Destination, d.EventID)
			if err != nil {
				return fmt.Errorf("migrate: delivery %s to %s: %w", d.EventID, d.Destination, err)
			}
			if cur.Status != spool.Pending || len(cur.Attempts) > 0 {
				continue
			}
		}
		if d.Status != spool.Pending || len(d.Attempts) > 0 || !d.NextAt.IsZero() {
			if err := dst.Update(ctx, d); err != nil {
				return fmt.Errorf("migrate: delivery %s to %s: %w", d.EventID, d.Destination, err)
			}
		}
		if present {
			continue
		}
		switch d.Status {
		case spool.Pending:
			out.Pending++
		case spool.Dead:
			out.Dead++
		default:
			out.Delivered++
		}
	}
	return nil
}

// copyQuarantine copies the quarantined requests dst lacks.
func copyQuarantine(ctx context.Context, src, dst spool.Store, out *Migrated) error {
	after := ""
	for range 1 << 20 { // bounded: a page of 100 each
		qs, err := src.QuarantineList(after, 100)
		if err != nil {
			return fmt.Errorf("migrate: quarantine: %w", err)
		}
		for _, q := range qs {
			if _, err := dst.Quarantined(q.ID); err == nil {
				continue
			} else if !errors.Is(err, spool.ErrNotFound) {
				return fmt.Errorf("migrate: quarantined %s: %w", q.ID, err)
			}
			if err := dst.Quarantine(ctx, q); err != nil {
				return fmt.Errorf("migrate: quarantined %s: %w", q.ID, err)
			}
			out.Quarantined++
		}
		if len(qs) < 100 {
			return nil
		}
		after = qs[len(qs)-1].ID
	}
	return errors.New("migrate: quarantine: too many pages")
}
