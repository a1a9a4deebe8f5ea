package transforms

import (
	"fmt"
	"strings"

	"github.com/expr-lang/expr/ast"
)

// Template is a string with {{ expression }} placeholders, compiled once.
// How a placeholder's value is written depends on what the template is
// (SPEC 2): as is (CompileTemplate), escaped for its place in a URL
// (CompileURLTemplate), or escaped for a body's content type
// (CompileBodyTemplate).
type Template struct {
	parts  []part
	escape escaping
}

type part struct {
	lit  string
	prog *Program // nil for a literal
	// data: the placeholder reads what a sender controls (the request, the
	// event, a polled key, an answer), not only the operator's configuration
	// (values, public_url, provider, now).
	data bool
}

// escaping is how placeholders are written into the output.
type escaping int

const (
	asIs escaping = iota
	urlEscaping
	xmlEscaping
	jsonEscaping
)

// dataNames are the variables of Env that a sender controls, directly or
// through the event made from its request. $env reaches all of them.
var dataNames = map[string]bool{
	"body": true, "raw": true, "headers": true, "query": true, "params": true, "jws": true,
	"event": true, "key": true, "response": true, "$env": true,
}

// CompileTemplate parses and compiles s. A string without "{{" is a constant.
// Placeholders are written as they render.
func CompileTemplate(s string) (*Template, error) {
	t := &Template{}
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			if s != "" {
				t.parts = append(t.parts, part{lit: s})
			}
			return t, nil
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("template: unclosed {{ in %q", s)
		}
		if i > 0 {
			t.parts = append(t.parts, part{lit: s[:i]})
		}
		p, err := Compile(strings.TrimSpace(s[i+2 : i+j]))
		if err != nil {
			return nil, fmt.Errorf("template: %w", err)
		}
		t.parts = append(t.parts, part{prog: p, data: readsData(p)})
		s = s[i+j+2:]
	}
}

// readsData reports whether p names a variable a sender controls. A
// variable of the expression's own (let) with such a name counts too: the
// answer errs on the safe side.
func readsData(p *Program) bool {
	v := &dataVisitor{}
	node := p.prog.Node()
	ast.Walk(&node, v)
	return v.found
}

type dataVisitor struct{ found bool }

func (v *dataVisitor) Visit(n *ast.Node) {
	if id, ok := (*n).(*ast.IdentifierNode); ok && dataNames[id.Value] {
		v.found = true
	}
}

// Constant reports whether the template has no placeholders.
func (t *Template) Constant() bool {
	for _, p := range t.parts {
		if p.prog != nil {
			return false
		}
	}
	return true
}

// Execute renders the template over env, each placeholder escaped as the
// template's kind says.
func (t *Template) Execute(env *Env) (string, error) {
	if len(t.parts) == 1 && t.parts[0].prog == nil {
		return t.parts[0].lit, nil
	}
	if t.escape == urlEscaping {
		return t.renderURL(env, false)
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.prog == nil {
			b.WriteString(p.lit)
			continue
		}
		v, err := p.prog.Run(env)
		if err != nil {
			return "", err
		}
		switch t.escape {
		case xmlEscaping:
			b.WriteString(EscapeXML(stringify(v)))
		case jsonEscaping:
			b.WriteString(EscapeJSONString(stringify(v)))
		default:
			b.WriteString(stringify(v))
		}
	}
	return b.String(), nil
}
