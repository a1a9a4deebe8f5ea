package transforms

import (
	"strings"
	"testing"
)

// maxTemplate bounds a fuzzed template: destination templates are short, and
// expr's own MaxNodes limit is what stops a huge one.
const maxTemplate = 1 << 10

// FuzzTemplate compiles arbitrary templates and renders the ones that
// compile over a fixed request: neither may panic, and a template without
// "{{" renders as itself.
func FuzzTemplate(f *testing.F) {
	f.Add(`{"key":"{{ event.key }}"}`)
	f.Add(`{{ body.a }}-{{ headers["x-ts"] }}-{{ query.a }}-{{ params.event }}-{{ provider }}`)
	f.Add(`/hooks/{{ lower(body.type ?? "none") }}?at={{ now.Unix() }}`)
	f.Add(`{{ sha256(raw) }} {{ base64(raw) }} {{ unbase64("aGk=") }}`)
	f.Add(`{{ body.list[0] }}{{ body.list[99] }}{{ body.n / 0 }}`)
	f.Add(`{{ }}`)
	f.Add(`{{ {{ }} }}`)
	f.Add(`{{ "}}" }}`)
	f.Add(`plain text, no placeholders`)
	f.Add(`{{ map(1..3, # * 2) }} {{ toJSON(body) }}`)
	f.Add("{{ event.data.reason }}{{ jws }}{{ values.x }}{{ key }}{{ response.status }}")
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > maxTemplate {
			return
		}
		tmpl, err := CompileTemplate(s)
		if err != nil {
			if !strings.Contains(s, "{{") {
				t.Fatalf("%q has no placeholder but does not compile: %v", s, err)
			}
			return
		}
		e := env(`{"a":"x","type":"Order.Paid","n":1,"list":[1,"two",{"three":3}],"nested":{"k":[null,true]}}`)
		e.Event = &Event{ID: "ev1", Key: "k1", Type: "t", Data: map[string]any{"reason": "r"}}
		out, err := tmpl.Execute(e)
		if !strings.Contains(s, "{{") && (err != nil || out != s || !tmpl.Constant()) {
			t.Fatalf("constant %q rendered %q, %v (constant %v)", s, out, err, tmpl.Constant())
		}
	})
}
