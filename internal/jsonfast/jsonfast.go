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
// encoding/json gives; the tests and FuzzDecodeJSON hold them to it.
package jsonfast

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
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

// fastDecoder decodes JSON into map[string]any, []any, string, float64, bool
// and nil, as encoding/json does. Any failure (ok false) means "not on the
// fast path", never "invalid": the caller asks encoding/json.
type fastDecoder struct {
	data    string
	pos     int
	depth   int
	buf     []byte // unescaped string scratch
	numbers bool   // numbers as json.Number (DecodeNumbers)
	// repeated is set when an object repeats a name (numbers mode only).
	repeated bool
}

func (d *fastDecoder) document() (any, bool) {
	v, ok := d.value()
	if !ok {
		return nil, false
	}
	d.space()
	return v, d.pos == len(d.data)
}

// space skips JSON whitespace.
func (d *fastDecoder) space() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *fastDecoder) value() (any, bool) {
	d.space()
	if d.pos >= len(d.data) {
		return nil, false
	}
	switch c := d.data[d.pos]; c {
	case '{':
		return d.object()
	case '[':
		return d.array()
	case '"':
		s, ok := d.str()
		return s, ok
	case 't':
		return true, d.literal("true")
	case 'f':
		return false, d.literal("false")
	case 'n':
		return nil, d.literal("null")
	default:
		if c == '-' || c >= '0' && c <= '9' {
			return d.number()
		}
		return nil, false
	}
}

func (d *fastDecoder) literal(lit string) bool {
	if len(d.data)-d.pos < len(lit) || d.data[d.pos:d.pos+len(lit)] != lit {
		return false
	}
	d.pos += len(lit)
	return true
}

func (d *fastDecoder) object() (any, bool) {
	if d.depth++; d.depth > maxFastDepth {
		return nil, false
	}
	d.pos++ // {
	m := make(map[string]any)
	d.space()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		d.depth--
		return m, true
	}
	for {
		d.space()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return nil, false
		}
		k, ok := d.str()
		if !ok {
			return nil, false
		}
		d.space()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return nil, false
		}
		d.pos++
		v, ok := d.value()
		if !ok {
			return nil, false
		}
		if d.numbers && !d.repeated {
			_, d.repeated = m[k]
		}
		m[k] = v // a repeated key: the last one wins, as in encoding/json
		if done, ok := d.next('}'); !ok || done {
			return m, ok
		}
	}
}

func (d *fastDecoder) array() (any, bool) {
	if d.depth++; d.depth > maxFastDepth {
		return nil, false
	}
	d.pos++ // [
	d.space()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		d.depth--
		return make([]any, 0), true // empty, not nil, as encoding/json has it
	}
	a := make([]any, 0, 4) // rather than growing from 1, 2 and 4

	for {
		v, ok := d.value()
		if !ok {
			return nil, false
		}
		a = append(a, v)
		if done, ok := d.next(']'); !ok || done {
			return a, ok
		}
	}
}

// next reads what follows a member or an element: a comma (more to come),
// or end, which closes the object or array (done).
func (d *fastDecoder) next(end byte) (done, ok bool) {
	d.space()
	if d.pos >= len(d.data) {
		return false, false
	}
	switch d.data[d.pos] {
	case ',':
		d.pos++
		return false, true
	case end:
		d.pos++
		d.depth--
		return true, true
	}
	return false, false
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? (strconv
// accepts more, such as "0x1p3" or "Inf") and converts it with
// strconv.ParseFloat, as encoding/json does.
func (d *fastDecoder) number() (any, bool) {
	start, i, data := d.pos, d.pos, d.data
	neg := data[i] == '-'
	if neg {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
			n++
		}
		return n
	}
	intStart := i
	n := digits()
	if n == 0 || n > 1 && data[intStart] == '0' {
		return nil, false
	}
	simple := true
	if i < len(data) && data[i] == '.' {
		i++
		if digits() == 0 {
			return nil, false
		}
		simple = false
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if digits() == 0 {
			return nil, false
		}
		simple = false
	}
	d.pos = i
	if d.numbers {
		return json.Number(data[start:i]), true
	}
	if simple && n <= 15 {
		// An integer below 2^53 converts exactly; ParseFloat gives the same.
		var u uint64
		for j := intStart; j < i; j++ {
			u = u*10 + uint64(data[j]-'0')
		}
		f := float64(u)
		if neg {
			f = -f // "-0" is -0, as ParseFloat has it
		}
		return f, true
	}
	f, err := strconv.ParseFloat(data[start:i], 64)
	if err != nil { // out of range: encoding/json's error
		return nil, false
	}
	return f, true
}

// str reads a string at d.pos (its opening quote). Escapes are unescaped as
// encoding/json does, except \u surrogates, which are left to it, as is
// invalid UTF-8 (which it replaces).
func (d *fastDecoder) str() (string, bool) {
	data := d.data
	start := d.pos + 1
	i := start
	high := false
	for i < len(data) {
		c := data[i]
		switch {
		case c == '"':
			s := data[start:i]
			if high && !utf8.ValidString(s) {
				return "", false
			}
			d.pos = i + 1
			return s, true // no copy: a slice of data
		case c == '\\':
			return d.escaped(start, i, high)
		case c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			high = true
		}
		i++
	}
	return "", false
}

// escaped finishes a string that has an escape at i.
func (d *fastDecoder) escaped(start, i int, high bool) (string, bool) {
	data := d.data
	buf := d.buf[:0] // reused across strings; stored back below
	buf = append(buf, data[start:i]...)
	for i < len(data) {
		c := data[i]
		switch {
		case c == '"':
			// Escapes are ASCII, so the raw text is valid UTF-8 exactly
			// when the unescaped one is.
			if high && !utf8.ValidString(data[start:i]) {
				return "", false
			}
			d.pos = i + 1
			d.buf = buf
			return string(buf), true
		case c == '\\':
			if i+1 >= len(data) {
				return "", false
			}
			switch e := data[i+1]; e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, ok := hex4(data[i+2:])
				if !ok || r >= 0xD800 && r < 0xE000 { // surrogates: encoding/json pairs them
					return "", false
				}
				buf = utf8.AppendRune(buf, r)
				i += 4
			default:
				return "", false
			}
			i += 2
			continue
		case c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			high = true
		}
		buf = append(buf, c)
		i++
	}
	return "", false
}

func hex4(b string) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for i := range 4 {
		c := b[i]
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// Append appends what json.Marshal(v) gives, or returns its error
// (then dst is to be dropped). The types Decode and expressions give
// most (maps, slices, strings, numbers, booleans) are written directly;
// any other is handed to json.Marshal.
func Append(dst []byte, v any) ([]byte, error) {
	return appendValue(dst, v, 0)
}

func appendValue(dst []byte, v any, depth int) ([]byte, error) {
	if depth > maxFastDepth {
		return appendMarshal(dst, v)
	}
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case string:
		return AppendString(dst, x), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return appendMarshal(dst, v) // its error
		}
		return appendFloat(dst, x), nil
	case int:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case map[string]any:
		if x == nil {
			return append(dst, "null"...), nil
		}
		var buf [16]member
		members := buf[:0]
		for k, v := range x {
			members = append(members, member{k, v})
		}
		sortMembers(members) // encoding/json sorts map keys
		dst = append(dst, '{')
		for i, m := range members {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendString(dst, m.k)
			dst = append(dst, ':')
			var err error
			if dst, err = appendValue(dst, m.v, depth+1); err != nil {
				return nil, err
			}
		}
		return append(dst, '}'), nil
	case []any:
		if x == nil {
			return append(dst, "null"...), nil
		}
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendValue(dst, e, depth+1); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	}
	return appendMarshal(dst, v)
}

// member is one key and value of a map being written.
type member struct {
	k string
	v any
}

// sortMembers sorts by key: by insertion for the few keys of most objects
// (slices.SortFunc's calls through a func value cost more there).
func sortMembers(ms []member) {
	if len(ms) > 12 {
		slices.SortFunc(ms, func(a, b member) int { return strings.Compare(a.k, b.k) })
		return
	}
	for i := 1; i < len(ms); i++ {
		for j := i; j > 0 && ms[j].k < ms[j-1].k; j-- {
			ms[j], ms[j-1] = ms[j-1], ms[j]
		}
	}
}

func appendMarshal(dst []byte, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(dst, b...), nil
}

// appendFloat is encoding/json's float64 encoding: like ES6's number to
// string, %f or %e by magnitude, exponents unpadded. f is finite.
func appendFloat(dst []byte, f float64) []byte {
	abs := math.Abs(f)
	if abs < 1e15 && f == math.Trunc(f) && (f != 0 || !math.Signbit(f)) {
		// A whole number below 2^53 (not -0): %f writes its digits, as
		// AppendInt does, without the shortest-float search.
		return strconv.AppendInt(dst, int64(f), 10)
	}
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as json.Marshal writes a string: HTML
// characters, U+2028 and U+2029 escaped, invalid UTF-8 as U+FFFD.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
