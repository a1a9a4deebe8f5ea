package jsonfast

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

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
