package redact

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Paths are a provider's `sensitive:` paths (SPEC 11), compiled: each is
// `body.` or `headers.` followed by names, `[*]` (every element of an array)
// or `[N]`. The zero value and nil name nothing.
//
// Masking is one rule for every place a person reads (SPEC 11): the values
// found at the paths in the request are the sensitive values; the request's
// body is masked by the paths, and anything derived from it (an event's
// `data`, a reason, a log line) by those values: a string that contains one,
// or a number equal to one, is shown as Mask. Values are matched rather than
// traced through the mapping so that one function covers every output, even
// a field a template computed from a sensitive one.
type Paths struct {
	paths [][]step
}

// step is one segment of a path: a name, or an array index (-1 for [*]).
type step struct {
	name  string
	index int
	array bool
}

// CompilePaths compiles list; the error names the first bad path.
func CompilePaths(list []string) (*Paths, error) {
	p := &Paths{}
	for _, s := range list {
		steps, err := compilePath(s)
		if err != nil {
			return nil, fmt.Errorf("sensitive path %q: %w", s, err)
		}
		p.paths = append(p.paths, steps)
	}
	return p, nil
}

func compilePath(s string) ([]step, error) {
	var steps []step
	rest := s
	for rest != "" {
		switch rest[0] {
		case '[':
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return nil, fmt.Errorf("unclosed [")
			}
			in := rest[1:end]
			st := step{array: true, index: -1}
			if in != "*" {
				n, err := strconv.Atoi(in)
				if err != nil || n < 0 {
					return nil, fmt.Errorf("[%s]: want [*] or an index", in)
				}
				st.index = n
			}
			if len(steps) == 0 {
				return nil, errors.New("must start with body.NAME or headers.NAME")
			}
			steps = append(steps, st)
			rest = rest[end+1:]
			if rest != "" && rest[0] != '.' && rest[0] != '[' {
				return nil, fmt.Errorf("want . or [ after ]")
			}
			rest = strings.TrimPrefix(rest, ".")
		default:
			end := strings.IndexAny(rest, ".[")
			if end < 0 {
				end = len(rest)
			}
			name := rest[:end]
			if name == "" || strings.ContainsAny(name, "]* ") {
				return nil, fmt.Errorf("bad name %q", name)
			}
			steps = append(steps, step{name: name})
			rest = rest[end:]
			if strings.HasPrefix(rest, ".") {
				rest = rest[1:]
				if rest == "" {
					return nil, errors.New("ends with a dot")
				}
			}
		}
	}
	if len(steps) < 2 || steps[0].array || (steps[0].name != "body" && steps[0].name != "headers") {
		return nil, errors.New("must start with body.NAME or headers.NAME")
	}
	if steps[0].name == "headers" && (len(steps) != 2 || steps[1].array) {
		return nil, fmt.Errorf("headers.NAME names one header")
	}
	return steps, nil
}

// Empty reports whether p names nothing.
func (p *Paths) Empty() bool { return p == nil || len(p.paths) == 0 }

// HeaderNames are the headers p names, as written.
func (p *Paths) HeaderNames() []string {
	if p == nil {
		return nil
	}
	var out []string
	for _, steps := range p.paths {
		if steps[0].name == "headers" {
			out = append(out, steps[1].name)
		}
	}
	return out
}

// Values returns the sensitive values of one request: the leaves found at
// p's paths in body (decoded JSON, may be nil) and header (first value of
// each, matched without regard to case).
func (p *Paths) Values(body any, header map[string][]string) []string {
	if p.Empty() {
		return nil
	}
	var vals []string
	for _, steps := range p.paths {
		if steps[0].name == "headers" {
			for k, vs := range header {
				if strings.EqualFold(k, steps[1].name) {
					for _, v := range vs {
						if v != "" {
							vals = append(vals, v)
						}
					}
				}
			}
			continue
		}
		walk(body, steps[1:], func(v any) any {
			leaves(v, func(s string) { vals = append(vals, s) })
			return v
		})
	}
	return vals
}

// MaskBody replaces, in the decoded JSON body (changed in place, returned
// for a body that is itself the value), every value at p's body paths with Mask.
func (p *Paths) MaskBody(body any) any {
	if p.Empty() {
		return body
	}
	for _, steps := range p.paths {
		if steps[0].name == "body" {
			body = walk(body, steps[1:], func(any) any { return Mask })
		}
	}
	return body
}

// walk calls fn on every value at steps under v, replacing it by fn's result.
func walk(v any, steps []step, fn func(any) any) any {
	if len(steps) == 0 {
		if v == nil {
			return nil
		}
		return fn(v)
	}
	st := steps[0]
	switch c := v.(type) {
	case map[string]any:
		if st.array {
			return v
		}
		if child, ok := c[st.name]; ok {
			c[st.name] = walk(child, steps[1:], fn)
		}
	case []any:
		if !st.array {
			return v
		}
		for i := range c {
			if st.index < 0 || st.index == i {
				c[i] = walk(c[i], steps[1:], fn)
			}
		}
	}
	return v
}

// leaves calls fn with the text of every string and number under v.
func leaves(v any, fn func(string)) {
	switch c := v.(type) {
	case map[string]any:
		for _, x := range c {
			leaves(x, fn)
		}
	case []any:
		for _, x := range c {
			leaves(x, fn)
		}
	case string:
		if c != "" {
			fn(c)
		}
	case bool, nil:
	default:
		fn(number(c))
	}
}

// number is a JSON number's text: a float64 from encoding/json written
// without an exponent, so that 19800101 matches "19800101".
func number(v any) string {
	if f, ok := v.(float64); ok {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

// minValue is the shortest value matched inside a longer string: a shorter
// one (a "1", an "ab") would mask innocent text; it is still masked where a
// whole field equals it.
const minValue = 3

// MaskValues replaces, in v (decoded JSON, changed in place), every string
// that equals or contains a value of vals, and every number equal to one
// (of minValue digits or more), with Mask, and returns v.
func MaskValues(v any, vals []string) any {
	if len(vals) == 0 {
		return v
	}
	switch c := v.(type) {
	case map[string]any:
		for k, x := range c {
			c[k] = MaskValues(x, vals)
		}
	case []any:
		for i, x := range c {
			c[i] = MaskValues(x, vals)
		}
	case string:
		for _, s := range vals {
			if c == s || (len(s) >= minValue && strings.Contains(c, s)) {
				return Mask
			}
		}
	case bool, nil:
	default:
		// A short number (a 0, a 12) equals too many innocent fields.
		text := number(c)
		for _, s := range vals {
			if text == s && len(s) >= minValue {
				return Mask
			}
		}
	}
	return v
}

// MaskText replaces every value of vals (minValue bytes or longer) found in
// free text, a reason or an error, with Mask.
func MaskText(text string, vals []string) string {
	for _, s := range vals {
		if len(s) >= minValue && strings.Contains(text, s) {
			text = strings.ReplaceAll(text, s, Mask)
		}
	}
	return text
}
