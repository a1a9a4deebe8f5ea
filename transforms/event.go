package transforms

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"
)

// Event is the canonical event (SPEC 4.2): what the broker receives in
// envelope mode and what routes and destination templates see as `event`.
type Event struct {
	ID            string    `json:"id" expr:"id"` // ULID given at ingest
	Provider      string    `json:"provider" expr:"provider"`
	Source        string    `json:"source" expr:"source"` // webhook | poll
	Type          string    `json:"type" expr:"type"`
	Key           string    `json:"key" expr:"key"`
	Sequence      int64     `json:"sequence" expr:"sequence"` // 0: none
	IdempotencyID string    `json:"idempotency_id" expr:"idempotency_id"`
	ReceivedAt    time.Time `json:"received_at" expr:"received_at"`
	// OccurredAt is the lender's own time of the event, RFC 3339 when it
	// could be read as a time, otherwise as the lender wrote it.
	OccurredAt string         `json:"occurred_at,omitempty" expr:"occurred_at"`
	Data       map[string]any `json:"data" expr:"data"`
	// Raw is the provider body after decryption: its JSON, or a JSON string when it is not JSON.
	Raw json.RawMessage `json:"raw" expr:"-"`
}

// EventSpec is a provider's `event:` block: an expression per field.
type EventSpec struct {
	// ID is the lender's idempotency id; empty means sha256 of provider and raw body.
	ID string `koanf:"id"`
	// Key is the ordering key. Required; must evaluate to a non-empty value.
	Key string `koanf:"key"`
	// Type is the provider's event type, translated through Types.
	Type string `koanf:"type"`
	// Types maps provider types (as written by the lender) to canonical types; a
	// type not listed passes unchanged.
	Types map[string]string `koanf:"types"`
	// Sequence is the per-key sequence number (SPEC 5.3); empty or 0 means none.
	Sequence string `koanf:"sequence"`
	// OccurredAt is the lender's time of the event.
	OccurredAt string `koanf:"occurred_at"`
	// Data names the fields the broker wants: name -> expression.
	Data map[string]string `koanf:"data"`
}

// Mapping is a compiled EventSpec.
type Mapping struct {
	id, key, typ, sequence, occurredAt *Program
	types                              map[string]string
	data                               []field
}

type field struct {
	name string
	prog *Program
}

// FieldError is a compile error of one field of an EventSpec; Field is its
// path inside the block ("data.decision").
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// CompileMapping compiles every expression of s.
func CompileMapping(s EventSpec) (*Mapping, error) {
	m := &Mapping{types: s.Types}
	for _, f := range []struct {
		name, src string
		dst       **Program
		required  bool
	}{
		{"id", s.ID, &m.id, false},
		{"key", s.Key, &m.key, true},
		{"type", s.Type, &m.typ, false},
		{"sequence", s.Sequence, &m.sequence, false},
		{"occurred_at", s.OccurredAt, &m.occurredAt, false},
	} {
		if f.src == "" {
			if f.required {
				return nil, &FieldError{f.name, fmt.Errorf("required")}
			}
			continue
		}
		p, err := Compile(f.src)
		if err != nil {
			return nil, &FieldError{f.name, err}
		}
		*f.dst = p
	}
	names := make([]string, 0, len(s.Data))
	for name := range s.Data {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p, err := Compile(s.Data[name])
		if err != nil {
			return nil, &FieldError{"data." + name, err}
		}
		m.data = append(m.data, field{name, p})
	}
	return m, nil
}

// HasSequence reports whether the provider maps a sequence number.
func (m *Mapping) HasSequence() bool { return m.sequence != nil }

// Map fills ev's mapped fields (Type, Key, Sequence, OccurredAt, Data) from env
// and returns the lender's idempotency id ("" when none was mapped). A failure
// here means our configuration cannot read this request: the caller quarantines it.
func (m *Mapping) Map(env *Env, ev *Event) (lenderID string, err error) {
	var vm Machine // one VM for every field
	run := func(p *Program) (any, error) {
		if p == nil {
			return nil, nil
		}
		return vm.Run(p, env)
	}
	v, err := run(m.key)
	if err != nil {
		return "", fmt.Errorf("event.key: %w", err)
	}
	switch v.(type) {
	case map[string]any, []any:
		return "", fmt.Errorf("event.key: %s gave a %T, not a single value", m.key, v)
	}
	if ev.Key = stringify(v); ev.Key == "" {
		return "", fmt.Errorf("event.key: %s gave an empty key", m.key)
	}
	if v, err = run(m.typ); err != nil {
		return "", fmt.Errorf("event.type: %w", err)
	}
	ev.Type = stringify(v)
	if t, ok := m.types[ev.Type]; ok {
		ev.Type = t
	}
	if v, err = run(m.sequence); err != nil {
		return "", fmt.Errorf("event.sequence: %w", err)
	}
	if ev.Sequence, err = toInt(v); err != nil {
		return "", fmt.Errorf("event.sequence: %w", err)
	}
	if v, err = run(m.occurredAt); err != nil {
		return "", fmt.Errorf("event.occurred_at: %w", err)
	}
	ev.OccurredAt = occurred(v)
	ev.Data = make(map[string]any, len(m.data))
	for _, f := range m.data {
		if ev.Data[f.name], err = vm.Run(f.prog, env); err != nil {
			return "", fmt.Errorf("event.data.%s: %w", f.name, err)
		}
	}
	if v, err = run(m.id); err != nil {
		return "", fmt.Errorf("event.id: %w", err)
	}
	return stringify(v), nil
}

func toInt(v any) (int64, error) {
	switch x := v.(type) {
	case nil:
		return 0, nil
	case int:
		return int64(x), nil
	case int64:
		return x, nil
	case float64:
		if x != float64(int64(x)) || x < 0 {
			return 0, errors.New("a number that is not whole and non-negative") // the value may be personal data
		}
		return int64(x), nil
	case string:
		if x == "" {
			return 0, nil
		}
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil || n < 0 {
			return 0, errors.New("a string that is not a whole non-negative number") // the value may be personal data
		}
		return n, nil
	}
	return 0, fmt.Errorf("%T is not a number", v)
}

func occurred(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case float64: // unix seconds
		return time.Unix(int64(x), 0).UTC().Format(time.RFC3339)
	case string:
		if t, err := ParseTime(x); err == nil {
			return t.UTC().Format(time.RFC3339Nano)
		}
		return x
	}
	return stringify(v)
}
