package spool

// Privacy (SPEC 11). With Options.Sealer set, everything the spool stores
// that holds request or response content is sealed under its event's
// provider and key; without it, records are stored in plaintext, in the
// forms they always had. Plaintext records stay readable with a Sealer (a
// spool written before privacy was turned on), and a delivery or poll state
// is sealed when it is next written.
//
// What is sealed: an event's envelope and raw body (event format 0x03), a
// delivery's state, i.e. its attempts with their error text and response
// snippet (delivery format 0x04), a quarantined request whole, reason
// included (quarantine format 0x02), and a poll state (poll format 0x02).
//
// What stays clear, because the spool must find, order and purge records
// without opening them: ULIDs and times, provider and destination names,
// event types and sequence numbers, delivery statuses, queue entries,
// idempotency ids, and event keys. Event keys are identifiers chosen by the
// provider file (an application or loan id, a lender's reference), not the
// personal data the events carry: they name a record, the way its ULID
// does, and only the lender's own records tie one to a person. They stay
// clear so that the queues can order by key, the poller can track keys and
// erasure can find every record of a key without a keystore secret; erasure
// removes them from the spool with the records (last_sequence entries
// included). A provider file must therefore not choose a personal number
// (an ssn) as its key: see the report of issue #15 for the check that will
// warn about it.
//
// Every sealed record is bound (the AAD) to its bucket and id, so a record
// pasted under another id does not open:
//
//	event        "events" 0x00 event ULID (text)
//	delivery     "deliveries" 0x00 event ULID 0x00 destination
//	quarantined  "quarantine" 0x00 ULID
//	poll state   "poll" 0x00 provider 0x00 key

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hookrelay/hookrelay/engine/internal/scrub"
	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
)

// Sealer encrypts and decrypts the spool's records under a data key of
// their provider and key (engine/seal implements it). Seal may store a new
// data key durably before it returns; the spool calls it for a new key
// outside its writer goroutine.
type Sealer interface {
	// Seal encrypts plaintext for provider's key, bound to aad.
	Seal(provider, key string, plaintext, aad []byte) ([]byte, error)
	// Open decrypts a record Seal made for provider's key with the same aad.
	Open(provider, key string, record, aad []byte) ([]byte, error)
	// Destroy removes the data key of provider's key, so that no copy of
	// its records can be opened any more.
	Destroy(provider, key string) error
}

func eventAAD(id string) []byte { return []byte("events\x00" + id) }

func deliveryAAD(eventID, dest string) []byte {
	return []byte("deliveries\x00" + eventID + "\x00" + dest)
}

func quarantineAAD(id string) []byte { return []byte("quarantine\x00" + id) }

func pollAAD(provider, key string) []byte { return []byte("poll\x00" + provider + "\x00" + key) }

// unseal opens a sealed record, or says that no Sealer was given.
func unseal(s Sealer, provider, key string, record, aad []byte) ([]byte, error) {
	if s == nil {
		return nil, ErrSealed
	}
	return s.Open(provider, key, record, aad)
}

// sealEvent encodes ev in format 0x03.
func sealEvent(s Sealer, ev *Event) ([]byte, error) {
	plain, err := encodeEvent(ev)
	if err != nil {
		return nil, err
	}
	_, rest, err := chunk(plain[1:]) // the meta, as format 0x02 writes it
	if err != nil {
		return nil, err
	}
	sealed, err := s.Seal(ev.Provider, ev.Key, rest, eventAAD(ev.ID))
	if err != nil {
		return nil, err
	}
	head := plain[:len(plain)-len(rest)]
	out := make([]byte, 0, len(head)+len(sealed))
	out = append(out, head...)
	out[0] = eventFormatSealed
	return append(out, sealed...), nil
}

// deliveryValue is what Update stores: head (as stored, in whatever format)
// and state, sealed when s is set.
func deliveryValue(s Sealer, head []byte, d *Delivery, state []byte) ([]byte, error) {
	if s == nil {
		out := append(make([]byte, 0, len(head)+len(state)), head...)
		if out[0] == deliveryFormatSealed {
			out[0] = deliveryFormat // the head is the same; the state is clear
		}
		return append(out, state...), nil
	}
	sealed, err := s.Seal(d.Provider, d.Key, state, deliveryAAD(d.EventID, d.Destination))
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(head)+1+len(sealed))
	out = append(out, head...)
	out[0] = deliveryFormatSealed
	out = append(out, state[0]) // the status, first of the state
	return append(out, sealed...), nil
}

// Quarantined requests are stored as JSON; with a Sealer, as
//
//	0x02 | str provider | str key | time received | sealed(JSON)
const quarantineFormatSealed = 0x02

func encodeQuarantined(s Sealer, q *Quarantined) ([]byte, error) {
	js, err := json.Marshal(q)
	if err != nil || s == nil {
		return js, err
	}
	sealed, err := s.Seal(q.Provider, q.Key, js, quarantineAAD(q.ID))
	if err != nil {
		return nil, err
	}
	out := []byte{quarantineFormatSealed}
	out = appendString(out, q.Provider)
	out = appendString(out, q.Key)
	out = appendTime(out, q.ReceivedAt)
	return append(out, sealed...), nil
}

// quarantinedHead reads the clear part of a stored quarantined request: a
// plaintext one is decoded whole.
func quarantinedHead(v []byte) (provider, key string, sealed []byte, err error) {
	if len(v) > 0 && v[0] == quarantineFormatSealed {
		r := reader{b: v[1:]}
		provider, key = r.string(), r.string()
		r.time()
		return provider, key, r.b, r.err
	}
	var q Quarantined
	if err := json.Unmarshal(v, &q); err != nil {
		return "", "", nil, err
	}
	return q.Provider, q.Key, nil, nil
}

func decodeQuarantined(s Sealer, id []byte, v []byte, q *Quarantined) error {
	if len(v) > 0 && v[0] == quarantineFormatSealed {
		provider, key, sealed, err := quarantinedHead(v)
		if err != nil {
			return err
		}
		js, err := unseal(s, provider, key, sealed, quarantineAAD(ulid.ULID(id).String()))
		if err != nil {
			return fmt.Errorf("spool: quarantined %s: %w", ulid.ULID(id), err)
		}
		v = js
	}
	return json.Unmarshal(v, q)
}

// Poll states are stored as JSON; with a Sealer, as 0x02 | sealed(JSON).
const pollFormatSealed = 0x02

func encodePollState(s Sealer, provider, key string, st *PollState) ([]byte, error) {
	js, err := json.Marshal(st)
	if err != nil || s == nil {
		return js, err
	}
	sealed, err := s.Seal(provider, key, js, pollAAD(provider, key))
	if err != nil {
		return nil, err
	}
	return append([]byte{pollFormatSealed}, sealed...), nil
}

func decodePollState(s Sealer, provider, key string, v []byte, st *PollState) error {
	if len(v) > 0 && v[0] == pollFormatSealed {
		js, err := unseal(s, provider, key, v[1:], pollAAD(provider, key))
		if err != nil {
			return err
		}
		v = js
	}
	return json.Unmarshal(v, st)
}

// prepare makes sure provider's key has a data key before a write that
// seals inside the writer's transaction: drawing a new one writes the
// keystore with an fsync, which must not stall every write queued behind it.
func (b *Bolt) prepare(provider, key string) error {
	if b.sealer == nil {
		return nil
	}
	_, err := b.sealer.Seal(provider, key, nil, nil)
	return err
}

// Eraser removes everything of one key (SPEC 11, erasure). A store that
// holds personal data implements it; Bolt does.
type Eraser interface {
	// EraseKey removes every record of provider's key and destroys its data
	// key; it answers what it removed.
	EraseKey(ctx context.Context, provider, key string) (Erased, error)
}

var _ Eraser = (*Bolt)(nil)

// Erased is what EraseKey removed.
type Erased struct {
	// Events is how many events of the key were deleted.
	Events int `json:"events"`
	// Deliveries is how many of their deliveries were deleted, Pending
	// included.
	Deliveries int `json:"deliveries"`
	// Pending is how many of those were not final: queued, dead and held,
	// or waiting for a retry. Dropped names them, for the dispatcher.
	Pending int       `json:"pending"`
	Dropped []Dropped `json:"-"`
	// Quarantined is how many quarantined requests of the key were deleted
	// (those stored with the key: a request that could not be mapped has
	// none, and is kept under its provider only).
	Quarantined int `json:"quarantined"`
	// PollStates is 1 when the poller's state of the key was deleted.
	PollStates int `json:"poll_states"`
	// Dedup is how many dedup entries of its events were deleted.
	Dedup int `json:"dedup"`
}

// addEvents adds what one batch of event deletions removed.
func (e *Erased) addEvents(n Erased) {
	e.Events += n.Events
	e.Deliveries += n.Deliveries
	e.Pending += n.Pending
	e.Dropped = append(e.Dropped, n.Dropped...)
	e.Dedup += n.Dedup
}

// Dropped is a pending delivery that EraseKey deleted: the dispatcher
// removes it from its queues in memory. Dead says it was dead (the
// destination counts its dead deliveries).
type Dropped struct {
	Ref
	Dead bool
}

// eraseChunk bounds how many records one read or write transaction of
// EraseKey visits.
const eraseChunk = 1000

// EraseKey removes every event of provider's key with its deliveries (pending
// ones too), dedup entries and sequence records, every quarantined request
// stored with the key, and its poll state; with a Sealer it first destroys
// the key's data key, so that copies of these records elsewhere (a backup of
// the spool) can no longer be opened. Events appended while it runs may
// survive it, under a new data key. It scans the events and quarantine
// buckets in short transactions and deletes through the writer, so ingest
// goes on meanwhile.
func (b *Bolt) EraseKey(ctx context.Context, provider, key string) (Erased, error) {
	var out Erased
	if provider == "" {
		return out, errors.New("spool: erase: empty provider")
	}
	if b.sealer != nil {
		if err := b.sealer.Destroy(provider, key); err != nil {
			return out, fmt.Errorf("spool: erase %s/%s: %w", provider, key, err)
		}
	}
	// Events: the meta is clear in every format.
	var after []byte
	for {
		var found []doomedEvent
		visited := 0
		err := b.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketEvents).Cursor()
			for k, v := past(c, after); k != nil && visited < eraseChunk; k, v = c.Next() {
				visited++
				after = append(after[:0], k...)
				m, _, err := decodeEventMeta(v)
				if err != nil {
					return fmt.Errorf("spool: erase: event %s: %w", ulid.ULID(k), err)
				}
				if m.Provider == provider && m.Key == key {
					found = append(found, doomedEvent{bytes.Clone(k), provider, m.IdempotencyID})
				}
			}
			return nil
		})
		if err != nil {
			return out, err
		}
		if err := b.eraseEvents(ctx, found, nil, &out); err != nil {
			return out, err
		}
		if visited < eraseChunk {
			break
		}
	}
	// Quarantined requests stored with the key; those without one are kept
	// under their provider only, so an empty key has none to scan for.
	after = nil
	for key != "" {
		var found [][]byte
		visited := 0
		err := b.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketQuarantine).Cursor()
			for k, v := past(c, after); k != nil && visited < eraseChunk; k, v = c.Next() {
				visited++
				after = append(after[:0], k...)
				p, qk, _, err := quarantinedHead(v)
				if err != nil {
					return fmt.Errorf("spool: erase: quarantined %s: %w", ulid.ULID(k), err)
				}
				if p == provider && qk == key {
					found = append(found, bytes.Clone(k))
				}
			}
			return nil
		})
		if err != nil {
			return out, err
		}
		if len(found) > 0 {
			if err := b.deleteQuarantined(ctx, found); err != nil {
				return out, err
			}
			out.Quarantined += len(found)
		}
		if visited < eraseChunk {
			break
		}
	}
	// The poll state and the sequence records of the key.
	err := b.submit(ctx, func(tx *bolt.Tx) ([]Ref, error) {
		out.PollStates = 0
		if pb := tx.Bucket(bucketPoll).Bucket([]byte(provider)); pb != nil && pb.Get([]byte(key)) != nil {
			out.PollStates = 1
			if err := pb.Delete([]byte(key)); err != nil {
				return nil, err
			}
		}
		if err := deleteDestKeys(tx.Bucket(bucketLastSeq), provider+"\x00"+key); err != nil {
			return nil, err
		}
		// A spool written before keys were scoped by provider keeps one
		// record per destination and key name, shared by the providers: it
		// names the key too, so it goes, and a same-named key of another
		// provider falls back to its own record.
		if err := deleteDestKeys(tx.Bucket(bucketLastSeqShared), key); err != nil {
			return nil, err
		}
		return nil, nil
	})
	if err != nil {
		return out, err
	}
	// The deleted records' bytes, the key's name among them, stay on the
	// pages the deletions freed until bbolt reuses them: overwrite them now.
	if _, err := scrub.Free(b.db); err != nil {
		return out, fmt.Errorf("spool: erase %s/%s: scrub: %w", provider, key, err)
	}
	return out, nil
}

// deleteDestKeys deletes the records of b keyed destination 0x00 rest, for
// every destination.
func deleteDestKeys(b *bolt.Bucket, rest string) error {
	suffix := []byte("\x00" + rest)
	var doomed [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if bytes.HasSuffix(k, suffix) && bytes.IndexByte(k[:len(k)-len(suffix)], 0) < 0 {
			doomed = append(doomed, bytes.Clone(k))
		}
	}
	for _, k := range doomed {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// doomedEvent is an event found for deletion, with what eraseEvent needs.
type doomedEvent struct {
	id             []byte
	provider, idem string
}

// eraseEvents deletes the events found in one write, except those that
// skip (when not nil) says no longer qualify, and adds what it removed to
// out.
func (b *Bolt) eraseEvents(ctx context.Context, found []doomedEvent, skip func(tx *bolt.Tx, id []byte) (bool, error), out *Erased) error {
	if len(found) == 0 {
		return nil
	}
	var n Erased
	err := b.submit(ctx, func(tx *bolt.Tx) ([]Ref, error) {
		n = Erased{}
		for _, d := range found {
			if skip != nil {
				no, err := skip(tx, d.id)
				if err != nil {
					return nil, err
				}
				if no {
					continue
				}
			}
			if err := b.eraseEvent(tx, d.provider, d.id, d.idem, &n); err != nil {
				return nil, err
			}
		}
		return nil, nil
	})
	if err != nil {
		return err
	}
	out.addEvents(n)
	return nil
}

// eraseEvent deletes one event with its deliveries, their queue entries and
// its dedup entries, counting into n.
func (b *Bolt) eraseEvent(tx *bolt.Tx, provider string, id []byte, idem string, n *Erased) error {
	deliveries, queue := tx.Bucket(bucketDeliveries), tx.Bucket(bucketQueue)
	var dk [][]byte
	c := deliveries.Cursor()
	for k, v := c.Seek(id); k != nil && bytes.HasPrefix(k, id); k, v = c.Next() {
		var d Delivery
		if _, err := readDeliveryHeadAny(v, &d); err != nil {
			return fmt.Errorf("spool: erase: delivery of %s: %w", ulid.ULID(id), err)
		}
		st, err := deliveryStatus(v)
		if err != nil {
			return fmt.Errorf("spool: erase: delivery of %s: %w", ulid.ULID(id), err)
		}
		dk = append(dk, bytes.Clone(k))
		n.Deliveries++
		if st.Final() {
			continue
		}
		n.Pending++
		n.Dropped = append(n.Dropped, Dropped{Ref{Seq: d.Seq, EventID: d.EventID, Destination: d.Destination, Provider: provider, Key: d.Key, Sequence: d.Sequence}, st == Dead})
		if q := queue.Bucket([]byte(d.Destination)); q != nil {
			if v := q.Get(u64(d.Seq)); len(v) >= 16 && bytes.Equal(v[:16], id) {
				if err := q.Delete(u64(d.Seq)); err != nil {
					return err
				}
			}
		}
	}
	for _, k := range dk {
		if err := deliveries.Delete(k); err != nil {
			return err
		}
	}
	if idem != "" {
		ik := idemKey(provider, idem)
		byTime := tx.Bucket(bucketIdemByTime)
		if at, of, ok := b.idem.find(byTime, ik); ok && string(of) == ulid.ULID(id).String() {
			if err := b.idem.remove(byTime, ik, at); err != nil {
				return err
			}
			n.Dedup++
		}
	}
	n.Events++
	return tx.Bucket(bucketEvents).Delete(id)
}

// readDeliveryHeadAny reads the head of a delivery in any form (a JSON one
// whole).
func readDeliveryHeadAny(v []byte, d *Delivery) (reader, error) {
	if len(v) > 0 && v[0] == '{' {
		return reader{}, json.Unmarshal(v, d)
	}
	return readDeliveryHead(v, d)
}
