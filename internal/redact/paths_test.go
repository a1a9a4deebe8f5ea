package redact

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestCompilePathsRefusesBadPaths(t *testing.T) {
	for _, bad := range []string{"ssn", "body", "body.", "body..x", "body.a[", "body.a[x]", "query.x", "headers.a.b", "[*].x", "body.a]x"} {
		if _, err := CompilePaths([]string{bad}); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
	if _, err := CompilePaths([]string{"body.ssn", "body.guarantors[*].ssn", "body.a[0]", "headers.authorization", "body.m[*][*]"}); err != nil {
		t.Fatal(err)
	}
}

func TestPathsMaskBodyAndValues(t *testing.T) {
	p, err := CompilePaths([]string{"body.ssn", "body.name", "body.guarantors[*].ssn", "headers.authorization"})
	if err != nil {
		t.Fatal(err)
	}
	var body any
	_ = json.Unmarshal([]byte(`{"ssn":"197001019999","name":"Canary Person","amount":5,"guarantors":[{"ssn":"198002029998","name":"G"},{"ssn":19900303}]}`), &body)
	vals := p.Values(body, map[string][]string{"Authorization": {"token abc"}})
	want := []string{"197001019999", "Canary Person", "198002029998", "19900303", "token abc"}
	if !reflect.DeepEqual(vals, want) {
		t.Fatalf("values %q, want %q", vals, want)
	}
	p.MaskBody(body)
	got, _ := json.Marshal(body)
	if string(got) != `{"amount":5,"guarantors":[{"name":"G","ssn":"***"},{"ssn":"***"}],"name":"***","ssn":"***"}` {
		t.Fatalf("masked body %s", got)
	}
	var data any
	_ = json.Unmarshal([]byte(`{"who":"Mr Canary Person","id":19900303,"n":5,"g":[{"ssn":"198002029998"}]}`), &data)
	MaskValues(data, vals)
	got, _ = json.Marshal(data)
	if string(got) != `{"g":[{"ssn":"***"}],"id":"***","n":5,"who":"***"}` {
		t.Fatalf("masked data %s", got)
	}
	if s := MaskText(`field "ssn": 197001019999 is not a date`, vals); s != `field "ssn": *** is not a date` {
		t.Fatalf("masked text %q", s)
	}
}
