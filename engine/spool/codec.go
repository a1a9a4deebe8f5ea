package spool

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Events are stored as a small header followed by the envelope and the raw
// body as they are: JSON-encoding them would base64 the body and
// re-validate the envelope on every write and read, and they are most of an
// event's bytes.
//
//	format | uvarint len(meta) | meta | uvarint len(envelope) | envelope | raw
//
// The meta is binary in format 0x02: str id | str provider | str type |
// str key | varint sequence | str idempotency id | time received |
// uvarint destinations | str each (str and time as in the delivery form
// below). Format 0x01, written before, holds it as JSON; both are read.
// Format 0x03 is 0x02 with a Sealer (privacy.go): the meta stays clear, and
// what follows it is one sealed record of the rest:
//
//	0x03 | uvarint len(meta) | meta | sealed(uvarint len(envelope) | envelope | raw)
const (
	eventFormatJSON   = 0x01
	eventFormat       = 0x02
	eventFormatSealed = 0x03
)

// eventMeta is an Event without its two large fields, as format 0x01 held it.
type eventMeta struct {
	ID            string    `json:"id"`
	Provider      string    `json:"provider"`
	Type          string    `json:"type"`
	Key           string    `json:"key"`
	Sequence      int64     `json:"sequence,omitempty"`
	IdempotencyID string    `json:"idempotency_id"`
	ReceivedAt    time.Time `json:"received_at"`
	Destinations  []string  `json:"destinations"`
}

func encodeEvent(ev *Event) ([]byte, error) {
	n := 7*binary.MaxVarintLen64 + len(ev.ID) + len(ev.Provider) + len(ev.Type) + len(ev.Key) + len(ev.IdempotencyID)
	for _, d := range ev.Destinations {
		n += binary.MaxVarintLen64 + len(d)
	}
	meta := make([]byte, 0, n)
	meta = appendString(meta, ev.ID)
	meta = appendString(meta, ev.Provider)
	meta = appendString(meta, ev.Type)
	meta = appendString(meta, ev.Key)
	meta = binary.AppendVarint(meta, ev.Sequence)
	meta = appendString(meta, ev.IdempotencyID)
	meta = appendTime(meta, ev.ReceivedAt)
	meta = binary.AppendUvarint(meta, uint64(len(ev.Destinations)))
	for _, d := range ev.Destinations {
		meta = appendString(meta, d)
	}
	out := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(meta)+len(ev.Envelope)+len(ev.Raw))
	out = append(out, eventFormat)
	out = binary.AppendUvarint(out, uint64(len(meta)))
	out = append(out, meta...)
	out = binary.AppendUvarint(out, uint64(len(ev.Envelope)))
	out = append(out, ev.Envelope...)
	return append(out, ev.Raw...), nil
}

// decodeEvent reads an event in a plaintext format; the result holds copies,
// never pointers into the mmap.
func decodeEvent(v []byte) (*Event, error) { return openEvent(nil, v) }

// openEvent reads an event in any format, opening a sealed one with s.
func openEvent(s Sealer, v []byte) (*Event, error) {
	m, rest, err := decodeEventMeta(v)
	if err != nil {
		return nil, err
	}
	if v[0] == eventFormatSealed {
		if rest, err = unseal(s, m.Provider, m.Key, rest, eventAAD(m.ID)); err != nil {
			return nil, fmt.Errorf("spool: event %s: %w", m.ID, err)
		}
	}
	envelope, raw, err := chunk(rest)
	if err != nil {
		return nil, err
	}
	return &Event{
		ID: m.ID, Provider: m.Provider, Type: m.Type, Key: m.Key, Sequence: m.Sequence,
		IdempotencyID: m.IdempotencyID, ReceivedAt: m.ReceivedAt, Destinations: m.Destinations,
		Envelope: bytes.Clone(envelope), Raw: bytes.Clone(raw),
	}, nil
}

// decodeEventMeta reads an event's meta and returns what follows it.
func decodeEventMeta(v []byte) (m eventMeta, rest []byte, err error) {
	if len(v) == 0 || (v[0] != eventFormat && v[0] != eventFormatJSON && v[0] != eventFormatSealed) {
		return m, nil, errors.New("spool: unknown event format")
	}
	meta, rest, err := chunk(v[1:])
	if err != nil {
		return m, nil, err
	}
	if v[0] == eventFormatJSON {
		if err := json.Unmarshal(meta, &m); err != nil {
			return m, nil, fmt.Errorf("spool: decode event: %w", err)
		}
		return m, rest, nil
	}
	r := reader{b: meta}
	m = eventMeta{ID: r.string(), Provider: r.string(), Type: r.string(), Key: r.string(), Sequence: r.varint(),
		IdempotencyID: r.string(), ReceivedAt: r.time()}
	m.Destinations = make([]string, r.count())
	for i := range m.Destinations {
		m.Destinations[i] = r.string()
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errors.New("spool: event: trailing bytes in its header")
	}
	return m, rest, r.err
}

// chunk splits a uvarint-length-prefixed chunk off b.
func chunk(b []byte) (c, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return nil, nil, errors.New("spool: truncated event")
	}
	return b[k : k+int(n)], b[k+int(n):], nil
}

// eventReceivedAt reads only an event's receive time, for purging.
func eventReceivedAt(v []byte) (time.Time, error) {
	m, _, err := decodeEventMeta(v)
	return m.ReceivedAt, err
}

// Deliveries are stored in a binary form: every delivery is decoded once
// and re-encoded once per attempt, in the dispatcher and in the writer's
// transaction, and JSON was half the cost of reading one. Spools written
// before hold JSON (starting with '{'); decodeDelivery reads both, and the
// next write of a delivery stores it in the binary form.
//
//	head:  0x03 | str event id | str destination | str provider | str key | uvarint seq | varint sequence
//	state: status (1) | uvarint attempts before | time next at | uvarint attempts |
//	       per attempt: time at | varint status | str error | varint duration ms | str response
//
// The head does not change once written; Update writes a new state after
// it. str is a uvarint length and the bytes; time is a varint of Unix
// nanoseconds, 0 for the zero time. Format 0x02, written before keys were
// scoped by provider (SPEC 5.2), has no provider: it reads with an empty
// one, which Update fills from the event when it next writes the delivery.
// Format 0x04 is 0x03 with a Sealer (privacy.go): the head and the status
// stay clear, for the queue, the purge and erasure; the state is sealed:
//
//	0x04 head | status (1) | sealed(state)
const (
	deliveryFormatNoProvider = 0x02
	deliveryFormat           = 0x03
	deliveryFormatSealed     = 0x04
)

func encodeDelivery(d *Delivery) []byte {
	n := 64 + len(d.EventID) + len(d.Destination) + len(d.Provider) + len(d.Key)
	for i := range d.Attempts {
		n += 40 + len(d.Attempts[i].Error) + len(d.Attempts[i].Response)
	}
	return appendDeliveryState(appendDeliveryHead(make([]byte, 0, n), d), d)
}

func appendDeliveryHead(b []byte, d *Delivery) []byte {
	b = append(b, deliveryFormat)
	b = appendString(b, d.EventID)
	b = appendString(b, d.Destination)
	b = appendString(b, d.Provider)
	b = appendString(b, d.Key)
	b = binary.AppendUvarint(b, d.Seq)
	return binary.AppendVarint(b, d.Sequence)
}

func appendDeliveryState(b []byte, d *Delivery) []byte {
	b = append(b, statusCode[d.Status])
	b = binary.AppendUvarint(b, uint64(d.AttemptsBefore))
	b = appendTime(b, d.NextAt)
	b = binary.AppendUvarint(b, uint64(len(d.Attempts)))
	for i := range d.Attempts {
		a := &d.Attempts[i]
		b = appendTime(b, a.At)
		b = binary.AppendVarint(b, int64(a.Status))
		b = appendString(b, a.Error)
		b = binary.AppendVarint(b, a.DurationMS)
		b = appendString(b, a.Response)
	}
	return b
}

// decodeDelivery reads a delivery in a plaintext form into d; the result
// holds copies, never pointers into the mmap.
func decodeDelivery(v []byte, d *Delivery) error { return openDelivery(nil, v, d) }

// openDelivery reads a delivery in any form into d, opening a sealed one
// with s.
func openDelivery(s Sealer, v []byte, d *Delivery) error {
	if len(v) > 0 && v[0] == '{' {
		return json.Unmarshal(v, d)
	}
	r, err := readDeliveryHead(v, d)
	if err != nil {
		return err
	}
	if v[0] == deliveryFormatSealed {
		r.byte() // the clear status; the sealed state holds it too
		if r.err != nil {
			return r.err
		}
		state, err := unseal(s, d.Provider, d.Key, r.b, deliveryAAD(d.EventID, d.Destination))
		if err != nil {
			return fmt.Errorf("spool: delivery %s to %s: %w", d.EventID, d.Destination, err)
		}
		r = reader{b: state}
	}
	d.Status = r.status()
	d.AttemptsBefore = int(r.uvarint())
	d.NextAt = r.time()
	d.Attempts = make([]Attempt, r.count())
	for i := range d.Attempts {
		d.Attempts[i] = Attempt{At: r.time(), Status: int(r.varint()), Error: r.string(), DurationMS: r.varint(), Response: r.string()}
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errors.New("spool: delivery: trailing bytes")
	}
	return r.err
}

// readDeliveryHead reads a binary delivery's head into d (its other fields
// zero) and returns the reader at its state.
func readDeliveryHead(v []byte, d *Delivery) (reader, error) {
	if len(v) == 0 || (v[0] != deliveryFormat && v[0] != deliveryFormatNoProvider && v[0] != deliveryFormatSealed) {
		return reader{}, errors.New("spool: unknown delivery format")
	}
	r := reader{b: v[1:]}
	*d = Delivery{EventID: r.string(), Destination: r.string()}
	if v[0] != deliveryFormatNoProvider {
		d.Provider = r.string()
	}
	d.Key, d.Seq, d.Sequence = r.string(), r.uvarint(), r.varint()
	return r, r.err
}

// deliveryHead returns a stored delivery's head, in the binary form, with
// d holding its fields: what Update keeps. A delivery written before, as
// JSON, is decoded whole and its head encoded.
func deliveryHead(v []byte, d *Delivery) ([]byte, error) {
	if len(v) > 0 && v[0] == '{' {
		if err := json.Unmarshal(v, d); err != nil {
			return nil, err
		}
		return appendDeliveryHead(nil, d), nil
	}
	r, err := readDeliveryHead(v, d)
	if err != nil {
		return nil, err
	}
	return v[:len(v)-len(r.b)], nil
}

// deliveryStatus reads a delivery's status, for purging and erasure. In
// every binary form the status is the byte after the head (a sealed one's
// is kept clear there), so the attempts are not decoded.
func deliveryStatus(v []byte) (Status, error) {
	var d Delivery
	if len(v) > 0 && v[0] == '{' {
		err := json.Unmarshal(v, &d)
		return d.Status, err
	}
	r, err := readDeliveryHead(v, &d)
	if err != nil {
		return "", err
	}
	st := r.status()
	return st, r.err
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(b, 0)
	}
	return binary.AppendVarint(b, t.UnixNano())
}

// reader takes values off b in order; the first error sticks, and every
// read after it returns the zero value.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errors.New("spool: truncated record")
	}
	r.b = nil
}

func (r *reader) uvarint() uint64 { return readVarint(r, binary.Uvarint) }
func (r *reader) varint() int64   { return readVarint(r, binary.Varint) }

// readVarint takes one varint off r with read (binary.Uvarint or Varint).
func readVarint[T uint64 | int64](r *reader, read func([]byte) (T, int)) T {
	if r.err != nil {
		return 0
	}
	v, n := read(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads how many items follow, each at least a byte long: a count
// beyond the bytes left is a truncated record, not an allocation.
func (r *reader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return 0
	}
	return int(n)
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// status reads a status code (ops.go).
func (r *reader) status() Status {
	st, ok := statusOf(r.byte())
	if !ok && r.err == nil {
		r.err = errors.New("spool: bad status")
	}
	return st
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.fail()
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) time() time.Time {
	if ns := r.varint(); ns != 0 {
		return time.Unix(0, ns).UTC()
	}
	return time.Time{}
}
