package spool

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// eventsChunk bounds how many events one read transaction of Events visits.
const eventsChunk = 256

// Events implements Admin.
func (b *Bolt) Events(after string, scanned int, fn func(ev *Event, ds []*Delivery) bool) error {
	var from []byte
	if after != "" {
		id, err := parseID(after)
		if err != nil {
			return err
		}
		from = id
	}
	type item struct {
		ev *Event
		ds []*Delivery
	}
	visited := 0
	for {
		var chunk []item
		err := b.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketEvents).Cursor()
			for k, v := before(c, from); k != nil && len(chunk) < eventsChunk; k, v = c.Prev() {
				ev, err := openEvent(b.sealer, v)
				if err != nil {
					return err
				}
				ds, err := deliveriesOf(tx, b.sealer, k)
				if err != nil {
					return err
				}
				chunk = append(chunk, item{ev, ds})
				from = append(from[:0], k...)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, it := range chunk {
			visited++
			if !fn(it.ev, it.ds) || (scanned > 0 && visited >= scanned) {
				return nil
			}
		}
		if len(chunk) < eventsChunk {
			return nil
		}
	}
}

// before positions c on the newest key older than from (the newest of all
// when from is nil), for listings that go newest first.
func before(c *bolt.Cursor, from []byte) (k, v []byte) {
	if from == nil {
		return c.Last()
	}
	if k, _ = c.Seek(from); k == nil {
		return c.Last()
	}
	return c.Prev() // Seek lands on from, or just after it
}

// deliveriesOf reads the deliveries of the event with ULID bytes id.
func deliveriesOf(tx *bolt.Tx, s Sealer, id []byte) ([]*Delivery, error) {
	var ds []*Delivery
	c := tx.Bucket(bucketDeliveries).Cursor()
	for k, v := c.Seek(id); k != nil && len(k) > len(id) && string(k[:len(id)]) == string(id); k, v = c.Next() {
		d := new(Delivery)
		if err := openDelivery(s, v, d); err != nil {
			return nil, fmt.Errorf("spool: decode delivery: %w", err)
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// Deliveries implements Admin.
func (b *Bolt) Deliveries(eventID string) ([]*Delivery, error) {
	id, err := parseID(eventID)
	if err != nil {
		return nil, err
	}
	var ds []*Delivery
	err = b.view(func(tx *bolt.Tx) error {
		ds, err = deliveriesOf(tx, b.sealer, id)
		return err
	})
	return ds, err
}

// QuarantineList implements Admin.
func (b *Bolt) QuarantineList(after string, limit int) ([]*Quarantined, error) {
	return b.quarantinePage(after, limit, false)
}

// QuarantineOldest implements Admin.
func (b *Bolt) QuarantineOldest(after string, limit int) ([]*Quarantined, error) {
	return b.quarantinePage(after, limit, true)
}

// quarantinePage returns up to limit quarantined requests past after,
// newest first, or oldest first.
func (b *Bolt) quarantinePage(after string, limit int, oldestFirst bool) ([]*Quarantined, error) {
	var from []byte
	if after != "" {
		id, err := parseID(after)
		if err != nil {
			return nil, err
		}
		from = id
	}
	first, next := before, (*bolt.Cursor).Prev
	if oldestFirst {
		first, next = past, (*bolt.Cursor).Next
	}
	var out []*Quarantined
	err := b.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketQuarantine).Cursor()
		for k, v := first(c, from); k != nil && (limit <= 0 || len(out) < limit); k, v = next(c) {
			q := new(Quarantined)
			if err := decodeQuarantined(b.sealer, k, v, q); err != nil {
				return fmt.Errorf("spool: decode quarantined: %w", err)
			}
			out = append(out, q)
		}
		return nil
	})
	return out, err
}

// DeleteQuarantined implements Admin.
func (b *Bolt) DeleteQuarantined(id string) error {
	k, err := parseID(id)
	if err != nil {
		return err
	}
	return b.submit(context.Background(), func(tx *bolt.Tx) ([]Ref, error) {
		return nil, tx.Bucket(bucketQuarantine).Delete(k)
	})
}

// SetPaused implements Admin.
func (b *Bolt) SetPaused(dest string, paused bool) error {
	return b.submit(context.Background(), func(tx *bolt.Tx) ([]Ref, error) {
		if paused {
			return nil, tx.Bucket(bucketPaused).Put([]byte(dest), nil)
		}
		return nil, tx.Bucket(bucketPaused).Delete([]byte(dest))
	})
}

// Paused implements Admin.
func (b *Bolt) Paused() (map[string]bool, error) {
	out := map[string]bool{}
	err := b.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPaused).ForEach(func(k, _ []byte) error {
			out[string(k)] = true
			return nil
		})
	})
	return out, err
}
