// Package jsonfast decodes JSON into any and encodes such values exactly as
// encoding/json does, without its reflection for the common cases.
//
// Every request's body is decoded into `any` for the expressions (and, for
// a JWS, body and payload again to compare them), and the mapped event is
// encoded into its envelope. encoding/json does both through reflection,
// with an allocation per map key and value read back; with the syntax check
// it scans each body twice. Together they were about a tenth of ingest's
// CPU. Decode and Append do the common cases directly and leave everything
// else to encoding/json, so that the result is always exactly what
// encoding/json gives; the tests and FuzzDecodeJSON hold them to it. It
// serves the verify and map steps (verifiers, engine/provider).
//
// It may import the standard library only.
package jsonfast

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
)

// maxFastDepth is the nesting past which Decode and Append leave the
// rest to encoding/json (which bounds depth and detects cycles itself).
const maxFastDepth = 500

// Decode returns what json.Unmarshal([]byte(data), &v) leaves in v of
// type any, and its error. Input that the fast path does not handle exactly
// as encoding/json does (a syntax error, a number out of range, a surrogate
// \u escape, invalid UTF-8, deep nesting) goes to json.Unmarshal.
//
// Strings of the result without escapes, keys included, are slices of
// data, not copies: one that is kept beyond data's use keeps all of data
// in memory, so clone such a string (strings.Clone) before keeping it.
func Decode(data string) (any, error) {
	d := fastDecoder{data: data}
	if v, ok := d.document(); ok {
		return v, nil
	}
	var v any
	err := json.Unmarshal([]byte(data), &v)
	return v, err
}

// DecodeNumbers is Decode with numbers as json.Number, exactly as written,
// as encoding/json's Decoder with UseNumber gives them: for comparing two
// documents, where float64 would make distinct large numbers equal. It also
// reports whether an object repeats a name (compared as decoded), which the
// value cannot show: the last one wins, as in encoding/json, but not in
// every parser.
func DecodeNumbers(data string) (v any, repeated bool, err error) {
	d := fastDecoder{data: data, numbers: true}
	if v, ok := d.document(); ok {
		return v, d.repeated, nil
	}
	dec := json.NewDecoder(strings.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, false, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false, errors.New("data after the JSON value")
	}
	return v, repeatedName(data), nil
}

// repeatedName reports whether an object in data, valid JSON, has a name
// twice. It reads tokens with encoding/json, for the inputs the fast path
// leaves to it.
func repeatedName(data string) bool {
	dec := json.NewDecoder(strings.NewReader(data))
	type level struct {
		names map[string]bool // nil in an array
		name  bool            // the next string is a name
	}
	var stack []level
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, level{names: map[string]bool{}, name: true})
				continue
			case '[':
				stack = append(stack, level{})
				continue
			}
			stack = stack[:len(stack)-1]
		case string:
			if n := len(stack); n > 0 && stack[n-1].name {
				if stack[n-1].names[t] {
					return true
				}
				stack[n-1].names[t], stack[n-1].name = true, false
				continue
			}
		}
		// A value ended: in an object, a name comes next.
		if n := len(stack); n > 0 && stack[n-1].names != nil {
			stack[n-1].name = true
		}
	}
}
