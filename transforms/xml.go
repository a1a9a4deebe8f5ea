package transforms

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxXMLDepth bounds nesting, so that a hostile answer cannot exhaust the stack.
const maxXMLDepth = 64

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
