package jsonfast

import "testing"

// TestRepeatedName holds both readers, the fast path and the token one, to
// the same answers.
func TestRepeatedName(t *testing.T) {
	for _, c := range []struct {
		json string
		want bool
	}{
		{`{"a":1,"b":2}`, false},
		{`{"a":1,"a":1}`, true},
		{`{"a":"a","b":"a"}`, false},                  // a value equal to a name
		{`{"a":{"a":1},"b":{"a":2}}`, false},          // the same name in two objects
		{`{"a":{"b":1,"b":2}}`, true},                 // nested
		{`[{"a":1},{"a":1}]`, false},                  // objects in an array
		{`[{"a":1,"c":[1,{"x":1}],"a":2}]`, true},     // after an array value
		{`{"a":1,"\u0061":2}`, true},                  // compared as decoded
		{`{"a":[{"a":1}],"b":{"c":{"d":{}}}}`, false}, // deep, no repeat
		{`["a","a"]`, false},
	} {
		if got := repeatedName(c.json); got != c.want {
			t.Errorf("repeatedName(%s) = %v, want %v", c.json, got, c.want)
		}
		if _, got, err := DecodeNumbers(c.json); err != nil || got != c.want {
			t.Errorf("DecodeNumbers(%s) repeated = %v, %v; want %v", c.json, got, err, c.want)
		}
	}
}
