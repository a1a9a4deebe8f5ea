package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
)

// queueChunk bounds how many deliveries Queue reads per read transaction:
// a long read transaction stops bbolt from growing its mmap, which would
// stall the writer.
const queueChunk = 256

// Append stores ev and its pending deliveries in one group-committed
// transaction. Dedup is scoped by provider: the same idempotency id from two
// providers is two events. ev.ReceivedAt is the time compared with the dedup
// window (now, when zero).
func (b *Bolt) Append(ctx context.Context, ev *Event, dedup time.Duration) (string, error) {
	id, err := parseID(ev.ID)
	if err != nil {
		return "", err
	}
	dests, recv, err := Targets(ev)
	if err != nil {
		return "", err
	}
	// Encode outside the writer, in the caller's goroutine: it is the
	// largest piece of work and needs no transaction.
	var evJSON []byte
	if b.sealer != nil {
		evJSON, err = sealEvent(b.sealer, ev)
	} else {
		evJSON, err = encodeEvent(ev)
	}
	if err != nil {
		return "", fmt.Errorf("spool: encode event %s: %w", ev.ID, err)
	}
	var ik []byte
	if ev.IdempotencyID != "" {
		ik = idemKey(ev.Provider, ev.IdempotencyID)
	}

	var dupOf string
	err = b.submit(ctx, func(tx *bolt.Tx) ([]Ref, error) {
		dupOf = ""
		byTime := tx.Bucket(bucketIdemByTime)
		// The dedup check reads inside the writer's transaction, so that two
		// copies of one webhook in the same batch see each other.
		if ik != nil {
			if at, dup, ok := b.idem.find(byTime, ik); ok {
				if dedup > 0 && recv.Sub(time.Unix(0, at)) < dedup {
					dupOf = string(dup)
					return nil, nil
				}
				// Outside the window: this event replaces the old entry.
				if err := b.idem.remove(byTime, ik, at); err != nil {
					return nil, err
				}
			}
		}
		events := tx.Bucket(bucketEvents)
		if events.Get(id) != nil {
			return nil, fmt.Errorf("%w: event %s", ErrExists, ev.ID)
		}
		if err := events.Put(id, evJSON); err != nil {
			return nil, err
		}
		refs, err := putDeliveries(tx, id, ev, dests)
		if err != nil {
			return nil, err
		}
		if ik != nil {
			if err := b.idem.put(byTime, ik, recv.UnixNano(), ev.ID); err != nil {
				return nil, err
			}
		}
		return refs, nil
	})
	if err != nil {
		return "", err
	}
	return dupOf, nil
}

// Targets is what every Store's Append takes from ev besides its content:
// its destinations, each once (a destination listed twice still gets one
// delivery), and the time compared with the dedup window, now when
// ev.ReceivedAt is zero.
func Targets(ev *Event) (dests []string, received time.Time, err error) {
	dests = make([]string, 0, len(ev.Destinations))
	for _, d := range ev.Destinations {
		if d == "" {
			return nil, time.Time{}, fmt.Errorf("spool: event %s: empty destination name", ev.ID)
		}
		// The lists are short: a scan is cheaper than a map.
		if !slices.Contains(dests, d) {
			dests = append(dests, d)
		}
	}
	received = ev.ReceivedAt
	if received.IsZero() {
		received = time.Now()
	}
	return dests, received, nil
}

// putDeliveries stores one pending delivery per destination and queues it
// under one new Seq.
func putDeliveries(tx *bolt.Tx, id []byte, ev *Event, dests []string) ([]Ref, error) {
	if len(dests) == 0 {
		return nil, nil
	}
	queue := tx.Bucket(bucketQueue)
	seq, err := queue.NextSequence()
	if err != nil {
		return nil, err
	}
	deliveries := tx.Bucket(bucketDeliveries)
	refs := make([]Ref, 0, len(dests))
	for _, dest := range dests {
		d := Delivery{EventID: ev.ID, Destination: dest, Provider: ev.Provider, Key: ev.Key, Seq: seq, Sequence: ev.Sequence, Status: Pending}
		if err := deliveries.Put(deliveryKey(id, dest), encodeDelivery(&d)); err != nil {
			return nil, err
		}
		q, err := queue.CreateBucketIfNotExists([]byte(dest))
		if err != nil {
			return nil, err
		}
		if err := q.Put(u64(seq), queueValue(id, &d)); err != nil {
			return nil, err
		}
		refs = append(refs, Ref{Seq: seq, EventID: ev.ID, Destination: dest, Provider: ev.Provider, Key: ev.Key, Sequence: ev.Sequence, Event: ev})
	}
	return refs, nil
}

// Quarantine stores q under its ULID.
func (b *Bolt) Quarantine(ctx context.Context, q *Quarantined) error {
	id, err := parseID(q.ID)
	if err != nil {
		return err
	}
	js, err := encodeQuarantined(b.sealer, q)
	if err != nil {
		return fmt.Errorf("spool: encode quarantined %s: %w", q.ID, err)
	}
	return b.submit(ctx, func(tx *bolt.Tx) ([]Ref, error) {
		return nil, tx.Bucket(bucketQuarantine).Put(id, js)
	})
}

// Update stores d's status, attempts and NextAt over the stored delivery;
// the other fields of d are ignored. A final status removes the delivery from
// its queue; any other puts it back (an operator's retry of a dead one). It
// returns ErrNotFound when the delivery is not stored.
func (b *Bolt) Update(ctx context.Context, d *Delivery) error {
	switch d.Status {
	case Pending, Delivered, Dead, Skipped:
	default:
		return fmt.Errorf("spool: delivery %s/%s: unknown status %q", d.EventID, d.Destination, d.Status)
	}
	id, err := parseID(d.EventID)
	if err != nil {
		return err
	}
	k := deliveryKey(id, d.Destination)
	// The state is encoded here, in the caller's goroutine; the writer only
	// puts it after the stored head, which it need not decode past.
	state := appendDeliveryState(nil, d)
	return b.submit(ctx, func(tx *bolt.Tx) ([]Ref, error) {
		deliveries := tx.Bucket(bucketDeliveries)
		v := deliveries.Get(k)
		if v == nil {
			return nil, fmt.Errorf("%w: delivery %s to %s", ErrNotFound, d.EventID, d.Destination)
		}
		var cur Delivery
		head, err := deliveryHead(v, &cur)
		if err != nil {
			return nil, fmt.Errorf("spool: decode delivery %s to %s: %w", d.EventID, d.Destination, err)
		}
		if cur.Provider == "" {
			// Written before keys were scoped by provider: the head takes
			// the event's provider now, for the queue entry and the sequence.
			cur.Provider = providerOf(tx, id)
			head = appendDeliveryHead(nil, &cur)
		}
		// Sealing here, in the writer, uses the data key the event's
		// Append drew; only a delivery written before privacy was on may
		// draw one here.
		dv, err := deliveryValue(b.sealer, head, &cur, state)
		if err != nil {
			return nil, fmt.Errorf("spool: seal delivery %s to %s: %w", d.EventID, d.Destination, err)
		}
		if err := deliveries.Put(k, dv); err != nil {
			return nil, err
		}
		cur.Status, cur.NextAt = d.Status, d.NextAt
		if cur.Sequence > 0 && cur.Status != Pending {
			if err := raiseLastSequence(tx, d.Destination, cur.Provider, cur.Key, cur.Sequence); err != nil {
				return nil, err
			}
		}
		// The stored Seq, not the caller's, names the queue entry.
		q, err := tx.Bucket(bucketQueue).CreateBucketIfNotExists([]byte(d.Destination))
		if err != nil {
			return nil, err
		}
		if cur.Status.Final() {
			return nil, q.Delete(u64(cur.Seq))
		}
		return nil, q.Put(u64(cur.Seq), queueValue(id, &cur))
	})
}

// Queue calls fn, in Seq order, for every delivery to dest that is not final.
// It reads in chunks of short read transactions and calls fn outside them, so
// fn may take its time; a delivery updated meanwhile is seen as it was when
// its chunk was read.
func (b *Bolt) Queue(dest string, fn func(d *Delivery) error) error {
	return scanQueue(b, dest, queueChunk, func(tx *bolt.Tx, k, id []byte) (*Delivery, error) {
		v := tx.Bucket(bucketDeliveries).Get(deliveryKey(id[:16], dest))
		if v == nil {
			return nil, fmt.Errorf("spool: queue %s: seq %d has no delivery", dest, binary.BigEndian.Uint64(k))
		}
		d := new(Delivery)
		if err := openDelivery(b.sealer, v, d); err != nil {
			return nil, fmt.Errorf("spool: decode delivery in queue %s: %w", dest, err)
		}
		return d, nil
	}, func(d **Delivery) error { return fn(*d) })
}

// scanQueue reads dest's queue in Seq order, size entries per short read
// transaction, each decoded by decode inside it, and calls fn on each
// outside it. fn must not keep its argument: the chunk is reused.
func scanQueue[T any](b *Bolt, dest string, size int, decode func(tx *bolt.Tx, k, v []byte) (T, error), fn func(*T) error) error {
	var after []byte // last Seq key visited
	chunk := make([]T, 0, size)
	for {
		chunk = chunk[:0]
		err := b.view(func(tx *bolt.Tx) error {
			q := tx.Bucket(bucketQueue).Bucket([]byte(dest))
			if q == nil {
				return nil
			}
			c := q.Cursor()
			for k, v := past(c, after); k != nil && len(chunk) < size; k, v = c.Next() {
				e, err := decode(tx, k, v)
				if err != nil {
					return err
				}
				chunk = append(chunk, e)
				after = append(after[:0], k...)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for i := range chunk {
			if err := fn(&chunk[i]); err != nil {
				return err
			}
		}
		if len(chunk) < size {
			return nil
		}
	}
}

// Delivery returns the delivery of event eventID to dest, or ErrNotFound.
func (b *Bolt) Delivery(dest, eventID string) (*Delivery, error) {
	id, err := parseID(eventID)
	if err != nil {
		return nil, err
	}
	d := new(Delivery)
	if err := b.get(bucketDeliveries, deliveryKey(id, dest), func(v []byte) error { return openDelivery(b.sealer, v, d) }); err != nil {
		return nil, err
	}
	return d, nil
}

// Event returns the event with the given ULID, or ErrNotFound.
func (b *Bolt) Event(id string) (*Event, error) {
	k, err := parseID(id)
	if err != nil {
		return nil, err
	}
	var ev *Event
	err = b.get(bucketEvents, k, func(v []byte) (err error) {
		ev, err = openEvent(b.sealer, v)
		return err
	})
	return ev, err
}

// Quarantined returns the quarantined request with the given ULID, or ErrNotFound.
func (b *Bolt) Quarantined(id string) (*Quarantined, error) {
	k, err := parseID(id)
	if err != nil {
		return nil, err
	}
	q := new(Quarantined)
	if err := b.get(bucketQuarantine, k, func(v []byte) error { return decodeQuarantined(b.sealer, k, v, q) }); err != nil {
		return nil, err
	}
	return q, nil
}

// get decodes the value stored under k in bucket with decode, or returns
// ErrNotFound. v points into the mmap and is valid only during the read
// transaction: decode must copy what it keeps.
func (b *Bolt) get(bucket, k []byte, decode func(v []byte) error) error {
	return b.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucket).Get(k)
		if v == nil {
			return ErrNotFound
		}
		return decode(v)
	})
}

func lastSeqKey(dest, provider, key string) []byte {
	return []byte(dest + "\x00" + provider + "\x00" + key)
}

// raiseLastSequence records that seq was released to dest for provider's
// key: delivered, skipped, or dead (the key then waits on it, or moved on
// past it).
func raiseLastSequence(tx *bolt.Tx, dest, provider, key string, seq int64) error {
	b := tx.Bucket(bucketLastSeq)
	k := lastSeqKey(dest, provider, key)
	if v := b.Get(k); len(v) == 8 && int64(binary.BigEndian.Uint64(v)) >= seq {
		return nil
	}
	return b.Put(k, u64(uint64(seq)))
}

// LastSequence returns the highest sequence released to dest for
// provider's key, 0 when none. A key with no entry yet takes the one
// written before keys were scoped by provider, which every provider's key
// of that name shared: at worst too high, which only shortens a wait for a
// gap, where none would make the key wait for numbers already released.
func (b *Bolt) LastSequence(dest, provider, key string) (int64, error) {
	var seq int64
	err := b.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketLastSeq).Get(lastSeqKey(dest, provider, key))
		if v == nil {
			v = tx.Bucket(bucketLastSeqShared).Get([]byte(dest + "\x00" + key))
		}
		if len(v) == 8 {
			seq = int64(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	return seq, err
}

// providerOf reads the provider of the event with ULID bytes id, "" when
// the event cannot be read: for records written before keys were scoped by
// provider.
func providerOf(tx *bolt.Tx, id []byte) string {
	v := tx.Bucket(bucketEvents).Get(id[:16])
	if v == nil {
		return ""
	}
	m, _, err := decodeEventMeta(v)
	if err != nil {
		return ""
	}
	return m.Provider
}

// A queue entry's value is the event's ULID followed by what the dispatcher
// needs to queue the delivery, so that a restart rebuilds its queues from
// the queue bucket alone, without reading (and decoding) every delivery:
//
//	ULID (16) | status|0x80 (1) | NextAt (8, unix ns BE, 0: none) | uvarint sequence | str provider | key
//
// Entries written before keys were scoped by provider have the status byte
// without 0x80 and no provider; spools older still hold the bare ULID (16
// bytes). Pending reads the provider of the first from the event, and the
// whole of the second from its delivery; the next Update of the delivery
// rewrites its entry.
const queueValueMin = 16 + 1 + 8 + 1

// queueHasProvider is set on an entry's status byte when a provider follows
// the sequence.
const queueHasProvider = 0x80

var (
	statusCode = map[Status]byte{Pending: 1, Dead: 2, Delivered: 3, Skipped: 4}
	codeStatus = [...]Status{1: Pending, 2: Dead, 3: Delivered, 4: Skipped}
)

// statusOf is the status a stored code stands for.
func statusOf(c byte) (Status, bool) {
	if int(c) < len(codeStatus) && codeStatus[c] != "" {
		return codeStatus[c], true
	}
	return "", false
}

// queueValue encodes d's queue entry; id is its event's ULID (16 bytes).
func queueValue(id []byte, d *Delivery) []byte {
	v := make([]byte, 0, queueValueMin+2*binary.MaxVarintLen64+len(d.Provider)+len(d.Key))
	v = append(v, id[:16]...)
	v = append(v, statusCode[d.Status]|queueHasProvider)
	var at uint64
	if !d.NextAt.IsZero() {
		at = uint64(d.NextAt.UnixNano())
	}
	v = binary.BigEndian.AppendUint64(v, at)
	v = binary.AppendUvarint(v, uint64(d.Sequence))
	v = appendString(v, d.Provider)
	return append(v, d.Key...)
}

// QueuedDelivery is a delivery as its queue entry records it: what the
// dispatcher needs to queue it (not its attempts).
type QueuedDelivery struct {
	Seq      uint64
	EventID  ulid.ULID
	Provider string // scopes Key (SPEC 5.2)
	Key      string
	Sequence int64
	Status   Status
	NextAt   time.Time // zero: now
}

// pendingChunk bounds how many queue entries Pending reads per read
// transaction (see queueChunk); the entries are small and decoded quickly.
const pendingChunk = 4096

// releaseEvery is how many chunks' worth of entries Pending reads between
// releaseMapped calls.
const releaseEvery = 16

// Pending calls fn, in Seq order, for every delivery to dest that is not
// final, as its queue entry records it. It reads the queue bucket alone,
// except for entries in the format before (a bare ULID), whose delivery it
// reads. Like Queue, it reads in chunks of short read transactions and calls
// fn outside them. fn must not keep q: it is reused.
func (b *Bolt) Pending(dest string, fn func(q *QueuedDelivery) error) error {
	n := 0
	err := scanQueue(b, dest, pendingChunk, func(tx *bolt.Tx, k, v []byte) (QueuedDelivery, error) {
		return decodeQueueValue(tx, b.sealer, dest, k, v)
	}, func(q *QueuedDelivery) error {
		if n++; n%(releaseEvery*pendingChunk) == 0 {
			b.releaseMapped() // bounds the peak as well (mapped_linux.go)
		}
		return fn(q)
	})
	if n >= pendingChunk { // a short scan maps little; spare the call
		b.releaseMapped()
	}
	return err
}

// decodeQueueValue reads the queue entry k -> v of dest; an entry in a
// format before (see queueValue) is completed from its event or delivery.
func decodeQueueValue(tx *bolt.Tx, s Sealer, dest string, k, v []byte) (QueuedDelivery, error) {
	seq := binary.BigEndian.Uint64(k)
	e := QueuedDelivery{Seq: seq}
	if len(v) < 16 {
		return e, fmt.Errorf("spool: queue %s: seq %d: short entry", dest, seq)
	}
	copy(e.EventID[:], v[:16])
	if len(v) == 16 {
		dv := tx.Bucket(bucketDeliveries).Get(deliveryKey(v, dest))
		if dv == nil {
			return e, fmt.Errorf("spool: queue %s: seq %d has no delivery", dest, seq)
		}
		var d Delivery
		if err := openDelivery(s, dv, &d); err != nil {
			return e, fmt.Errorf("spool: decode delivery in queue %s: %w", dest, err)
		}
		e.Provider, e.Key, e.Sequence, e.Status, e.NextAt = d.Provider, d.Key, d.Sequence, d.Status, d.NextAt
		if e.Provider == "" {
			e.Provider = providerOf(tx, v)
		}
		return e, nil
	}
	var ok bool
	if len(v) >= queueValueMin {
		e.Status, ok = statusOf(v[16] &^ queueHasProvider)
	}
	if !ok {
		return e, fmt.Errorf("spool: queue %s: seq %d: bad entry", dest, seq)
	}
	if at := binary.BigEndian.Uint64(v[17:25]); at != 0 {
		e.NextAt = time.Unix(0, int64(at))
	}
	sq, n := binary.Uvarint(v[25:])
	if n <= 0 {
		return e, fmt.Errorf("spool: queue %s: seq %d: bad entry", dest, seq)
	}
	e.Sequence = int64(sq)
	rest := v[25+n:]
	if v[16]&queueHasProvider == 0 {
		e.Provider = providerOf(tx, v)
	} else {
		r := reader{b: rest}
		if e.Provider = r.string(); r.err != nil {
			return e, fmt.Errorf("spool: queue %s: seq %d: bad entry", dest, seq)
		}
		rest = r.b
	}
	e.Key = string(rest)
	return e, nil
}

// past positions c on the first key after `after` (the first of all when
// after is nil), for listings that resume where a read transaction ended.
func past(c *bolt.Cursor, after []byte) (k, v []byte) {
	if after == nil {
		return c.First()
	}
	if k, v = c.Seek(after); bytes.Equal(k, after) {
		return c.Next()
	}
	return k, v
}
