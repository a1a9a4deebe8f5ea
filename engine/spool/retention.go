package spool

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
)

// Retention per kind of record (SPEC 11): Purge handles delivered events;
// these handle dead events and quarantined requests. Each scans in short
// read transactions and deletes through the writer, as EraseKey does.

// PurgeDead deletes events received before cutoff that have a dead delivery
// and no pending one, with their deliveries (leaving their queues) and
// dedup entries. The answer's Events counts them; Dropped names the dead
// deliveries, for the dispatcher to release their keys.
func (b *Bolt) PurgeDead(ctx context.Context, cutoff time.Time) (Erased, error) {
	var out Erased
	var after []byte
	for {
		var found []doomedEvent
		visited, done := 0, false
		err := b.view(func(tx *bolt.Tx) error {
			deliveries := tx.Bucket(bucketDeliveries)
			c := tx.Bucket(bucketEvents).Cursor()
			for k, v := past(c, after); ; k, v = c.Next() {
				if k == nil || !ulid.Time(ulid.ULID(k).Time()).Before(cutoff) {
					done = true
					return nil
				}
				if visited == eraseChunk {
					return nil
				}
				visited++
				after = append(after[:0], k...)
				dead, err := deadOnly(deliveries, k)
				if err != nil || !dead {
					return err
				}
				m, _, err := decodeEventMeta(v)
				if err != nil {
					return fmt.Errorf("spool: purge: event %s: %w", ulid.ULID(k), err)
				}
				if m.ReceivedAt.Before(cutoff) {
					found = append(found, doomedEvent{bytes.Clone(k), m.Provider, m.IdempotencyID})
				}
			}
		})
		if err != nil {
			return out, err
		}
		// Still only dead: an operator may have retried it meanwhile.
		retried := func(tx *bolt.Tx, id []byte) (bool, error) {
			dead, err := deadOnly(tx.Bucket(bucketDeliveries), id)
			return !dead, err
		}
		if err := b.eraseEvents(ctx, found, retried, &out); err != nil {
			return out, err
		}
		if done {
			break
		}
	}
	b.releaseMapped()
	return out, nil
}

// deadOnly reports whether event id has a dead delivery and every other one
// is final.
func deadOnly(deliveries *bolt.Bucket, id []byte) (bool, error) {
	dead := false
	c := deliveries.Cursor()
	for k, v := c.Seek(id); k != nil && bytes.HasPrefix(k, id); k, v = c.Next() {
		st, err := deliveryStatus(v)
		if err != nil {
			return false, fmt.Errorf("spool: decode delivery of %s: %w", ulid.ULID(id), err)
		}
		switch {
		case st == Dead:
			dead = true
		case !st.Final():
			return false, nil
		}
	}
	return dead, nil
}

// PurgeQuarantined deletes quarantined requests received before cutoff (by
// their id's time, which is when they were received) and returns how many.
func (b *Bolt) PurgeQuarantined(ctx context.Context, cutoff time.Time) (int, error) {
	total := 0
	for {
		var found [][]byte
		err := b.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketQuarantine).Cursor()
			for k, _ := c.First(); k != nil && len(found) < eraseChunk; k, _ = c.Next() {
				if len(k) != 16 || !ulid.Time(ulid.ULID(k).Time()).Before(cutoff) {
					break // ids are ULIDs: in time order
				}
				found = append(found, bytes.Clone(k))
			}
			return nil
		})
		if err != nil || len(found) == 0 {
			return total, err
		}
		if err := b.deleteQuarantined(ctx, found); err != nil {
			return total, err
		}
		total += len(found)
		if len(found) < eraseChunk {
			return total, nil
		}
	}
}

// deleteQuarantined deletes the quarantined requests with the ids keys in one
// write.
func (b *Bolt) deleteQuarantined(ctx context.Context, keys [][]byte) error {
	return b.submit(ctx, func(tx *bolt.Tx) ([]Ref, error) {
		q := tx.Bucket(bucketQuarantine)
		for _, k := range keys {
			if err := q.Delete(k); err != nil {
				return nil, err
			}
		}
		return nil, nil
	})
}
