package jetstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// An S_poll key is named by a hash (erase.go), in two records: the state,
// rewritten by every poll, and the key's name, written once, which
// PollKeys lists and an erasure overwrites.
func pollKey(provider, key string) string { return enc(provider) + ".s." + nameHash(provider, key) }

func pollNameKey(provider, key string) string { return enc(provider) + ".n." + nameHash(provider, key) }

// pollName records provider's key under its hash, once.
func (s *Store) pollName(ctx context.Context, provider, key string) error {
	_, err := s.poll.Create(ctx, pollNameKey(provider, key), []byte(key))
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("spool: poll key %s: %w", provider, err)
	}
	return nil
}

// pollRead reads the state of provider's key and its revision (0: none).
func (s *Store) pollRead(ctx context.Context, provider, key string) (*spool.PollState, uint64, error) {
	e, err := s.poll.Get(ctx, pollKey(provider, key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("spool: poll state %s/%s: %w", provider, key, err)
	}
	st := new(spool.PollState)
	if err := s.open(provider, key, pollAAD(provider, key), e.Value(), st); err != nil {
		return nil, 0, fmt.Errorf("spool: decode poll state %s/%s: %w", provider, key, err)
	}
	return st, e.Revision(), nil
}

// pollWrite stores st over revision rev (0: a new key), or fails with
// ErrKeyExists when another writer came first.
func (s *Store) pollWrite(ctx context.Context, provider, key string, st *spool.PollState, rev uint64) error {
	v, err := s.seal(provider, key, pollAAD(provider, key), st)
	if err != nil {
		return err
	}
	if rev == 0 {
		if err := s.pollName(ctx, provider, key); err != nil {
			return err
		}
		_, err = s.poll.Create(ctx, pollKey(provider, key), v)
	} else {
		_, err = s.poll.Update(ctx, pollKey(provider, key), v, rev)
	}
	return err
}

// casTries bounds the read-check-write rounds of one write that races
// other instances.
const casTries = 16

// pollMerge reads provider's key, lets merge change it (merge reports
// whether to write) and writes it with a revision check, again on a race.
func (s *Store) pollMerge(ctx context.Context, provider, key string, merge func(cur *spool.PollState) (*spool.PollState, bool)) (*spool.PollState, error) {
	for range casTries {
		cur, rev, err := s.pollRead(ctx, provider, key)
		if err != nil {
			return nil, err
		}
		out, write := merge(cur)
		if !write {
			return out, nil
		}
		err = s.pollWrite(ctx, provider, key, out, rev)
		if err == nil {
			return out, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("spool: poll state %s/%s: %w", provider, key, err)
		}
	}
	return nil, fmt.Errorf("spool: poll state %s/%s: too many concurrent writers", provider, key)
}

// PollTrack makes keys known: a new key is stored with an empty state, a
// known one keeps its state; Final, once set, sticks.
func (s *Store) PollTrack(ctx context.Context, ks []spool.TrackedKey) ([]spool.PollState, error) {
	if len(ks) == 0 {
		return nil, nil
	}
	for _, k := range ks {
		if k.Provider == "" || k.Key == "" {
			return nil, errors.New("spool: poll key: empty provider or key")
		}
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	now := time.Now().UTC()
	out := make([]spool.PollState, 0, len(ks))
	for _, k := range ks {
		st, err := s.pollMerge(ctx, k.Provider, k.Key, func(cur *spool.PollState) (*spool.PollState, bool) {
			if cur == nil {
				return &spool.PollState{Since: now, Final: k.Final}, true
			}
			if k.Final && !cur.Final {
				cur.Final = true
				return cur, true
			}
			return cur, false
		})
		if err != nil {
			return nil, err
		}
		out = append(out, *st)
	}
	return out, nil
}

// PollKeys calls fn, in key order, with every key of provider that is not
// final.
func (s *Store) PollKeys(provider string, fn func(key string, st *spool.PollState) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), scanTimeout)
	defer cancel()
	ks, err := keys(ctx, s.poll, enc(provider)+".n.*")
	if err != nil {
		return fmt.Errorf("spool: poll keys %s: %w", provider, err)
	}
	names := make([]string, 0, len(ks))
	for _, k := range ks {
		e, err := s.poll.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // erased meanwhile
		}
		if err != nil {
			return fmt.Errorf("spool: poll keys %s: %w", provider, err)
		}
		names = append(names, string(e.Value()))
	}
	slices.Sort(names)
	for _, key := range names {
		st, _, err := s.pollRead(ctx, provider, key)
		if err != nil {
			return err
		}
		if st == nil || st.Final {
			continue
		}
		if err := fn(key, st); err != nil {
			return err
		}
	}
	return nil
}

// PollSave stores st as the state of provider's key. Final, once stored,
// sticks; Since keeps its first value.
func (s *Store) PollSave(ctx context.Context, provider, key string, st *spool.PollState) error {
	if provider == "" || key == "" {
		return errors.New("spool: poll key: empty provider or key")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	_, err := s.pollMerge(ctx, provider, key, func(cur *spool.PollState) (*spool.PollState, bool) {
		out := *st
		if cur != nil {
			out.Final = out.Final || cur.Final
			out.Since = cur.Since
		}
		if out.Since.IsZero() {
			out.Since = time.Now().UTC()
		}
		return &out, true
	})
	return err
}
