package spool

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Events are stored as a small JSON header followed by the envelope and the
// raw body as they are: JSON-encoding them would base64 the body and
// re-validate the envelope on every write and read, and they are most of an
// event's bytes.
//
//	0x01 | uvarint len(meta) | meta JSON | uvarint len(envelope) | envelope | raw
const eventFormat = 0x01

// eventMeta is an Event without its two large fields.
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
	meta, err := json.Marshal(eventMeta{ev.ID, ev.Provider, ev.Type, ev.Key, ev.Sequence, ev.IdempotencyID, ev.ReceivedAt, ev.Destinations})
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(meta)+len(ev.Envelope)+len(ev.Raw))
	out = append(out, eventFormat)
	out = binary.AppendUvarint(out, uint64(len(meta)))
	out = append(out, meta...)
	out = binary.AppendUvarint(out, uint64(len(ev.Envelope)))
	out = append(out, ev.Envelope...)
	return append(out, ev.Raw...), nil
}

// decodeEvent reads an event; the result holds copies, never pointers into
// the mmap.
func decodeEvent(v []byte) (*Event, error) {
	if len(v) == 0 || v[0] != eventFormat {
		return nil, errors.New("spool: unknown event format")
	}
	rest := v[1:]
	meta, rest, err := chunk(rest)
	if err != nil {
		return nil, err
	}
	var m eventMeta
	if err := json.Unmarshal(meta, &m); err != nil {
		return nil, fmt.Errorf("spool: decode event: %w", err)
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
	if len(v) == 0 || v[0] != eventFormat {
		return time.Time{}, errors.New("spool: unknown event format")
	}
	meta, _, err := chunk(v[1:])
	if err != nil {
		return time.Time{}, err
	}
	var m struct {
		ReceivedAt time.Time `json:"received_at"`
	}
	err = json.Unmarshal(meta, &m)
	return m.ReceivedAt, err
}
