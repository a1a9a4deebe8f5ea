package spool

import (
	"bytes"
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// PollState is what the status poller keeps for one key of one provider
// (SPEC 9), so that a restart neither forgets the key nor repeats an event.
type PollState struct {
	// Final is set once the key reached one of the provider's final types,
	// by webhook or by poll; it never goes back. A final key is not polled.
	Final bool `json:"final,omitempty"`
	// Last is the sha256 (hex) of the last poll result's canonical type and
	// data; empty until a poll was mapped. A new result makes an event only
	// when its sum differs.
	Last string `json:"last,omitempty"`
	// LastType is the canonical type of that result, for display.
	LastType string `json:"last_type,omitempty"`
	// NextAt is when the key is due; zero means not scheduled yet. It is
	// written with the other fields only, so it may lie in the past after a
	// restart: the poller then spreads the key over one interval.
	NextAt time.Time `json:"next_at,omitzero"`
	// Errors counts consecutive failed polls; it sets the backoff.
	Errors int `json:"errors,omitempty"`
	// Since is when the key became known.
	Since time.Time `json:"since"`
}

// TrackedKey is a key made known to a provider's poller.
type TrackedKey struct {
	Provider string
	Key      string
	// Final marks the key final (it reached a final type).
	Final bool
}

// pollChunk bounds how many keys one read transaction of PollKeys visits.
const pollChunk = 1024

// PollTrack implements Poller.
func (b *Bolt) PollTrack(ctx context.Context, keys []TrackedKey) ([]PollState, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	for _, k := range keys {
		if k.Provider == "" || k.Key == "" {
			return nil, fmt.Errorf("spool: poll key: empty provider or key")
		}
	}
	for _, k := range keys {
		if err := b.prepare(k.Provider, k.Key); err != nil {
			return nil, fmt.Errorf("spool: poll key %s/%s: %w", k.Provider, k.Key, err)
		}
	}
	now := time.Now().UTC()
	var states []PollState
	err := b.submit(ctx, func(tx *bolt.Tx) ([]Ref, error) {
		states = states[:0]
		for _, k := range keys {
			pb, err := tx.Bucket(bucketPoll).CreateBucketIfNotExists([]byte(k.Provider))
			if err != nil {
				return nil, err
			}
			st := PollState{Since: now}
			v := pb.Get([]byte(k.Key))
			if v != nil {
				if err := decodePollState(b.sealer, k.Provider, k.Key, v, &st); err != nil {
					return nil, fmt.Errorf("spool: decode poll state %s/%s: %w", k.Provider, k.Key, err)
				}
			}
			if v == nil || (k.Final && !st.Final) {
				st.Final = st.Final || k.Final
				if err := putPollState(b.sealer, pb, k.Provider, k.Key, &st); err != nil {
					return nil, err
				}
			}
			states = append(states, st)
		}
		return nil, nil
	})
	if err != nil {
		return nil, err
	}
	return states, nil
}

// PollKeys implements Poller.
func (b *Bolt) PollKeys(provider string, fn func(key string, st *PollState) error) error {
	type item struct {
		key string
		st  *PollState
	}
	var after []byte
	for {
		var chunk []item
		visited := 0
		err := b.view(func(tx *bolt.Tx) error {
			pb := tx.Bucket(bucketPoll).Bucket([]byte(provider))
			if pb == nil {
				return nil
			}
			c := pb.Cursor()
			k, v := c.First()
			if after != nil {
				if k, v = c.Seek(after); bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && visited < pollChunk; k, v = c.Next() {
				visited++
				after = append(after[:0], k...)
				st := new(PollState)
				if err := decodePollState(b.sealer, provider, string(k), v, st); err != nil {
					return fmt.Errorf("spool: decode poll state %s/%s: %w", provider, k, err)
				}
				if !st.Final {
					chunk = append(chunk, item{string(k), st})
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, it := range chunk {
			if err := fn(it.key, it.st); err != nil {
				return err
			}
		}
		if visited < pollChunk {
			return nil
		}
	}
}

// PollSave implements Poller.
func (b *Bolt) PollSave(ctx context.Context, provider, key string, st *PollState) error {
	if provider == "" || key == "" {
		return fmt.Errorf("spool: poll key: empty provider or key")
	}
	// Only a tracked key has a state to save: one erased while it was being
	// polled stays erased, and gets no new data key either.
	tracked := false
	err := b.view(func(tx *bolt.Tx) error {
		pb := tx.Bucket(bucketPoll).Bucket([]byte(provider))
		tracked = pb != nil && pb.Get([]byte(key)) != nil
		return nil
	})
	if err != nil || !tracked {
		return err
	}
	if err := b.prepare(provider, key); err != nil {
		return fmt.Errorf("spool: poll key %s/%s: %w", provider, key, err)
	}
	save := *st
	return b.submit(ctx, func(tx *bolt.Tx) ([]Ref, error) {
		pb := tx.Bucket(bucketPoll).Bucket([]byte(provider))
		var v []byte
		if pb != nil {
			v = pb.Get([]byte(key))
		}
		if v == nil {
			return nil, nil
		}
		var cur PollState
		if err := decodePollState(b.sealer, provider, key, v, &cur); err != nil {
			return nil, fmt.Errorf("spool: decode poll state %s/%s: %w", provider, key, err)
		}
		out := save
		// A webhook may have made the key final while it was being polled.
		out.Final = out.Final || cur.Final
		out.Since = cur.Since
		if out.Since.IsZero() {
			out.Since = time.Now().UTC()
		}
		return nil, putPollState(b.sealer, pb, provider, key, &out)
	})
}

func putPollState(s Sealer, pb *bolt.Bucket, provider, key string, st *PollState) error {
	js, err := encodePollState(s, provider, key, st)
	if err != nil {
		return err
	}
	return pb.Put([]byte(key), js)
}
