// Package transforms turns a verified request into the canonical event: the
// expression environment, compiled programs, the event mapping, and the
// {{ expression }} templates of destinations. Everything is compiled when the
// configuration loads; a request only runs programs. It is the map step of
// the flow (engine/provider runs its mappings) and renders the outgoing
// templates (engine/outbound).
//
// It may import expr and the standard library; nothing of hookrelay, since
// the config, provider and outbound rooms all build on it.
package transforms

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// Env is what an expression sees (SPEC 4.1).
type Env struct {
	// Body is the parsed JSON body (decrypted when the provider decrypts), nil when not JSON.
	Body any `expr:"body"`
	// Raw is the body as a string.
	Raw string `expr:"raw"`
	// Headers holds the first value of each header, by lower-case name.
	Headers map[string]string `expr:"headers"`
	// Query holds the first value of each query parameter.
	Query map[string]string `expr:"query"`
	// Params holds the route's {param} segments.
	Params map[string]string `expr:"params"`
	// Provider is the provider's name.
	Provider string `expr:"provider"`
	// JWS is the verified JWS payload, parsed, when a jws verifier ran.
	JWS any `expr:"jws"`
	// Now is the time the request was received.
	Now time.Time `expr:"now"`
	// Event is the canonical event; set for routes, destination templates and body expressions.
	Event *Event `expr:"event"`

	// The variables of registration and polling templates (SPEC 9).

	// PublicURL is how the lender reaches this relay (register templates).
	PublicURL string `expr:"public_url"`
	// Values are a provider's named secrets for register and poll templates.
	Values map[string]string `expr:"values"`
	// Key is the key being polled (poll templates).
	Key string `expr:"key"`
	// Response is the lender's answer (register success, poll event mapping).
	Response *Response `expr:"response"`
}

// Response is an HTTP answer as expressions see it.
type Response struct {
	Status  int               `expr:"status"`
	Headers map[string]string `expr:"headers"` // lower-case names, first value
	// Body is the answer parsed as the configuration says (json or xml), or
	// the text when it says nothing.
	Body any `expr:"body"`
	// JSON and XML are the answer parsed as each, nil when it is not.
	JSON any    `expr:"json"`
	XML  any    `expr:"xml"`
	Raw  string `expr:"raw"`
}

// Program is one compiled expression.
type Program struct {
	src  string
	prog *vm.Program
}

// maxNodes bounds the size of one expression, so that a provider file cannot
// make the relay compile or run something huge.
const maxNodes = 10000

var options = []expr.Option{
	expr.Env(Env{}),
	expr.MaxNodes(maxNodes),
	// `now` is a variable here (the receive time), not expr's builtin function.
	expr.DisableBuiltin("now"),
	expr.Function("sha256", func(p ...any) (any, error) {
		sum := sha256.Sum256([]byte(p[0].(string)))
		return hex.EncodeToString(sum[:]), nil
	}, new(func(string) string)),
	expr.Function("base64", func(p ...any) (any, error) {
		return base64.StdEncoding.EncodeToString([]byte(p[0].(string))), nil
	}, new(func(string) string)),
	expr.Function("unbase64", func(p ...any) (any, error) {
		s := p[0].(string)
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			b, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
		}
		if err != nil {
			return nil, fmt.Errorf("unbase64: %w", err)
		}
		return string(b), nil
	}, new(func(string) string)),
	expr.Function("parseTime", func(p ...any) (any, error) {
		return ParseTime(p[0].(string))
	}, new(func(string) time.Time)),
}

// Compile compiles src against Env.
func Compile(src string) (*Program, error) {
	p, err := expr.Compile(src, options...)
	if err != nil {
		return nil, err
	}
	return &Program{src: src, prog: p}, nil
}

// CompileBool compiles src, which must yield a boolean.
func CompileBool(src string) (*Program, error) {
	p, err := expr.Compile(src, append(options[:len(options):len(options)], expr.AsBool())...)
	if err != nil {
		return nil, err
	}
	return &Program{src: src, prog: p}, nil
}

// Run evaluates the program over env.
func (p *Program) Run(env *Env) (any, error) {
	var m Machine
	return m.Run(p, env)
}

// Machine runs programs one after another on one expr VM, which keeps its
// stack and scopes between runs instead of allocating them for each (expr
// resets a VM's state at the start of every run). A Machine is not safe for
// concurrent use.
type Machine struct {
	vm vm.VM
}

// Run evaluates p over env, as p.Run(env) does.
func (m *Machine) Run(p *Program, env *Env) (any, error) {
	out, err := m.vm.Run(p.prog, env)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.src, err)
	}
	return out, nil
}

// String returns the source.
func (p *Program) String() string { return p.src }

// ParseTime reads the time formats lenders use: RFC 3339 with or without
// fractional seconds and zone, or unix seconds.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05Z07:00", time.RFC1123} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("parseTime: %q is not an RFC 3339 time", s)
}

// stringify renders an expression result as text for keys, types and templates.
func stringify(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		if x == float64(int64(x)) {
			return fmt.Sprintf("%d", int64(x))
		}
		return fmt.Sprintf("%g", x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	default:
		return fmt.Sprint(x)
	}
}
