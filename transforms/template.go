package transforms

import (
	"fmt"
	"strings"
)

// Template is a string with {{ expression }} placeholders, compiled once.
type Template struct {
	parts []part
}

type part struct {
	lit  string
	prog *Program // nil for a literal
}

// CompileTemplate parses and compiles s. A string without "{{" is a constant.
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
		t.parts = append(t.parts, part{prog: p})
		s = s[i+j+2:]
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

// Execute renders the template over env.
func (t *Template) Execute(env *Env) (string, error) {
	if len(t.parts) == 1 && t.parts[0].prog == nil {
		return t.parts[0].lit, nil
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
		b.WriteString(stringify(v))
	}
	return b.String(), nil
}
