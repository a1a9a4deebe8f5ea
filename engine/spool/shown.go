package spool

import "encoding/json"

// Shown is an event as people read it: its canonical event (SPEC 4.2)
// decoded from the envelope, every key the envelope has, raw and data as
// decoded JSON values. The admin API's event views and `try` and `test`
// show this one type; masking (SPEC 11) works on it in place.
type Shown map[string]any

// Shown decodes e's envelope, once for each view of it.
func (e *Event) Shown() Shown {
	m := Shown{}
	_ = json.Unmarshal(e.Envelope, &m)
	return m
}

// Clone is a deep copy of s, so that a masked copy leaves s as it was
// without encoding and decoding it again.
func (s Shown) Clone() Shown {
	if s == nil {
		return nil
	}
	return Shown(cloneValue(map[string]any(s)).(map[string]any))
}

// cloneValue copies a decoded JSON value: maps and slices anew, the rest
// (strings, numbers, booleans, nil) as they are.
func cloneValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = cloneValue(x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = cloneValue(x)
		}
		return out
	}
	return v
}
