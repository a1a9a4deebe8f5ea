package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
)

// purgeChunk bounds how many entries one Purge transaction visits, so that
// Purge never holds the writer, and the appenders behind it, for long.
const purgeChunk = 1000

// Purge deletes events whose ULID time and ReceivedAt are both before cutoff
// and whose deliveries are all final, with their deliveries; then the dedup
// entries received before cutoff. Each chunk of purgeChunk entries is its own
// write through the writer, so appends interleave with a long purge.
func (b *Bolt) Purge(cutoff time.Time) (int, error) {
	ctx := context.Background()
	total := 0
	var after []byte // last event key visited
	for done := false; !done; {
		var n int
		var last []byte
		from := after // the closure may run twice; it must not move its own start
		err := b.submit(ctx, func(tx *bolt.Tx) ([]Ref, error) {
			var err error
			n, last, done, err = purgeEvents(tx, cutoff, from)
			return nil, err
		})
		if err != nil {
			return total, err
		}
		total += n
		after = last
	}
	for done := false; !done; {
		err := b.submit(ctx, func(tx *bolt.Tx) ([]Ref, error) {
			var err error
			done, err = purgeIdem(tx, b.idem, cutoff)
			if done {
				b.idem.shrink()
			}
			return nil, err
		})
		if err != nil {
			return total, err
		}
	}
	b.releaseMapped()
	return total, nil
}

// purgeEvents visits up to purgeChunk events after the key after, deletes
// the purgeable ones and returns how many, the last key visited and whether
// it reached the cutoff or the end.
func purgeEvents(tx *bolt.Tx, cutoff time.Time, after []byte) (n int, last []byte, done bool, err error) {
	events, deliveries := tx.Bucket(bucketEvents), tx.Bucket(bucketDeliveries)
	c := events.Cursor()
	k, v := past(c, after)
	// Collect, then delete: deleting under a moving cursor can skip keys.
	var doomed [][]byte
	visited := 0
	for ; ; k, v = c.Next() {
		if k == nil || !ulid.Time(ulid.ULID(k).Time()).Before(cutoff) {
			done = true
			break
		}
		if visited == purgeChunk {
			break
		}
		visited++
		last = append(last[:0], k...)
		final, err := allFinal(deliveries, k)
		if err != nil {
			return 0, nil, false, err
		}
		if !final {
			continue
		}
		at, err := eventReceivedAt(v)
		if err != nil {
			return 0, nil, false, fmt.Errorf("spool: decode event %s: %w", ulid.ULID(k), err)
		}
		if at.Before(cutoff) {
			doomed = append(doomed, bytes.Clone(k))
		}
	}
	for _, id := range doomed {
		var dk [][]byte
		dc := deliveries.Cursor()
		for k, _ := dc.Seek(id); k != nil && bytes.HasPrefix(k, id); k, _ = dc.Next() {
			dk = append(dk, bytes.Clone(k))
		}
		for _, k := range dk {
			if err := deliveries.Delete(k); err != nil {
				return 0, nil, false, err
			}
		}
		if err := events.Delete(id); err != nil {
			return 0, nil, false, err
		}
	}
	return len(doomed), last, done, nil
}

// allFinal reports whether every delivery of event id is final.
func allFinal(deliveries *bolt.Bucket, id []byte) (bool, error) {
	c := deliveries.Cursor()
	for k, v := c.Seek(id); k != nil && bytes.HasPrefix(k, id); k, v = c.Next() {
		st, err := deliveryStatus(v)
		if err != nil {
			return false, fmt.Errorf("spool: decode delivery of %s: %w", ulid.ULID(id), err)
		}
		if !st.Final() {
			return false, nil
		}
	}
	return true, nil
}

// purgeIdem deletes up to purgeChunk dedup entries received before cutoff
// and reports whether none are left.
func purgeIdem(tx *bolt.Tx, idem *idemIndex, cutoff time.Time) (done bool, err error) {
	if cutoff.UnixNano() <= 0 {
		return true, nil // nothing was received before 1970
	}
	byTime := tx.Bucket(bucketIdemByTime)
	limit := u64(uint64(cutoff.UnixNano()))
	var doomed [][]byte
	c := byTime.Cursor()
	for k, _ := c.First(); ; k, _ = c.Next() {
		if k == nil || bytes.Compare(k[:8], limit) >= 0 {
			done = true
			break
		}
		if len(doomed) == purgeChunk {
			break
		}
		doomed = append(doomed, bytes.Clone(k))
	}
	for _, k := range doomed {
		if err := idem.remove(byTime, k[8:], int64(binary.BigEndian.Uint64(k))); err != nil {
			return false, err
		}
	}
	return done, nil
}
