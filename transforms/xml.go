package transforms

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxXMLDepth bounds nesting, so that a hostile answer cannot exhaust the stack.
const maxXMLDepth = 64

// MaxElements bounds the elements (and attributes) of a parsed answer, XML
// or JSON values alike: each becomes a map entry or list item, several
// times its size in the document, so 4 MiB of `<a/>` would take hundreds of
// MiB. A status or registration answer has a few dozen.
const MaxElements = 10000

// ErrTooManyElements is returned for a document with more than MaxElements
// elements or values.
var ErrTooManyElements = fmt.Errorf("more than %d elements", MaxElements)

// ParseXML turns an XML document into maps (SPEC 9): elements keyed by their
// local name (namespace prefixes dropped), leaf text as strings, repeated
// elements as lists, attributes as "@name". A SOAP Envelope/Body is
// unwrapped, so the result starts at the element inside Body:
// {"getApplicationStatusResponse": {"paidOut": "true", ...}}.
func ParseXML(data []byte) (map[string]any, error) {
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	// Entities beyond XML's own are not expanded: no billion laughs.
	dec.Entity = map[string]string{}
	root := map[string]any{}
	stack := []*xmlNode{{m: root}}
	elements := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("xml: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) > maxXMLDepth {
				return nil, errors.New("xml: nested too deeply")
			}
			// Counted before anything is kept: a refused document
			// costs no more than MaxElements of them.
			if elements += 1 + len(t.Attr); elements > MaxElements {
				return nil, fmt.Errorf("xml: %w", ErrTooManyElements)
			}
			n := &xmlNode{name: t.Name.Local, m: map[string]any{}}
			for _, a := range t.Attr {
				if a.Name.Space != "xmlns" && a.Name.Local != "xmlns" {
					n.m["@"+a.Name.Local] = a.Value
				}
			}
			stack = append(stack, n)
		case xml.CharData:
			stack[len(stack)-1].text.Write(t)
		case xml.EndElement:
			n := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			parent := stack[len(stack)-1].m
			var v any = n.m
			if len(n.m) == 0 {
				v = strings.TrimSpace(n.text.String())
			} else if text := strings.TrimSpace(n.text.String()); text != "" {
				n.m["#text"] = text
			}
			switch prev := parent[n.name].(type) {
			case nil:
				parent[n.name] = v
			case []any:
				parent[n.name] = append(prev, v)
			default:
				parent[n.name] = []any{prev, v}
			}
		}
	}
	if len(stack) != 1 || len(root) == 0 {
		return nil, errors.New("xml: no document element")
	}
	return unwrapSOAP(root), nil
}

type xmlNode struct {
	name string
	m    map[string]any
	text bytes.Buffer
}

// unwrapSOAP returns the content of Envelope/Body when m is a SOAP envelope.
func unwrapSOAP(m map[string]any) map[string]any {
	env, ok := m["Envelope"].(map[string]any)
	if !ok || len(m) != 1 {
		return m
	}
	if body, ok := env["Body"].(map[string]any); ok {
		return body
	}
	return m
}

// ParseJSON parses an answer as JSON, refusing one with more than
// MaxElements values before it is decoded (see MaxElements).
func ParseJSON(data []byte) (any, error) {
	if n := jsonValues(data); n > MaxElements {
		return nil, fmt.Errorf("json: %w", ErrTooManyElements)
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	return v, nil
}

// jsonValues is an upper bound on the values of a JSON document: one, plus
// one per bracket and comma outside strings. It stops counting past
// MaxElements.
func jsonValues(data []byte) int {
	n, inString, escaped := 1, false, false
	for _, c := range data {
		switch {
		case escaped:
			escaped = false
		case inString:
			switch c {
			case '\\':
				escaped = true
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{' || c == ',':
			if n++; n > MaxElements {
				return n
			}
		}
	}
	return n
}
