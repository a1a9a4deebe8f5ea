package transforms

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseXML(t *testing.T) {
	cases := map[string]struct {
		doc  string
		want map[string]any
	}{
		"resurs status": {`<getApplicationStatusResponse>
    <waitingForAddition>false</waitingForAddition>
    <signedWithMethod>E_SIGN</signedWithMethod>
    <requestedSigningMethod>E_SIGN</requestedSigningMethod>
    <paidOut>true</paidOut>
</getApplicationStatusResponse>`, map[string]any{"getApplicationStatusResponse": map[string]any{
			"waitingForAddition": "false", "signedWithMethod": "E_SIGN", "requestedSigningMethod": "E_SIGN", "paidOut": "true"}}},
		"soap with namespaces": {`<?xml version="1.0"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ns2="urn:resurs">
  <soap:Header/>
  <soap:Body>
    <ns2:getApplicationStatusResponse><ns2:paidOut>false</ns2:paidOut></ns2:getApplicationStatusResponse>
  </soap:Body>
</soap:Envelope>`, map[string]any{"getApplicationStatusResponse": map[string]any{"paidOut": "false"}}},
		"repeated and attributes": {`<r><doc type="ID">a</doc><doc>b</doc><empty/></r>`,
			map[string]any{"r": map[string]any{"doc": []any{map[string]any{"@type": "ID", "#text": "a"}, "b"}, "empty": ""}}},
		"set callback answer": {`<setCallbackResponse><setCallbackResult><callbackSet>true</callbackSet><message>Set callback successful</message></setCallbackResult></setCallbackResponse>`,
			map[string]any{"setCallbackResponse": map[string]any{"setCallbackResult": map[string]any{"callbackSet": "true", "message": "Set callback successful"}}}},
	}
	for name, c := range cases {
		got, err := ParseXML([]byte(c.doc))
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %#v, %v\nwant %#v", name, got, err, c.want)
		}
	}
	for _, bad := range []string{``, `<a>`, `<a></b>`, `not xml`, strings.Repeat("<a>", 100) + strings.Repeat("</a>", 100),
		`<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>`} {
		if _, err := ParseXML([]byte(bad)); err == nil {
			t.Errorf("%.40q parsed", bad)
		}
	}
}

func FuzzParseXML(f *testing.F) {
	f.Add(`<a><b>1</b><b>2</b></a>`)
	f.Add(`<s:Envelope xmlns:s="x"><s:Body><r a="1">t</r></s:Body></s:Envelope>`)
	f.Fuzz(func(t *testing.T, doc string) {
		_, _ = ParseXML([]byte(doc))
	})
}

// TestParseManyElements: an answer of many tiny elements is refused with a
// clear error, and refusing it costs the same whatever its size: the
// parser stops at MaxElements instead of building them all.
func TestParseManyElements(t *testing.T) {
	doc := func(n int) []byte { return []byte("<r>" + strings.Repeat("<a/>", n) + "</r>") }
	if _, err := ParseXML(doc(MaxElements - 1)); err != nil {
		t.Fatalf("%d elements: %v", MaxElements, err)
	}
	_, err := ParseXML(doc(MaxElements))
	if !errors.Is(err, ErrTooManyElements) || err.Error() != "xml: more than 10000 elements" {
		t.Fatalf("too many elements: %v", err)
	}
	if _, err := ParseXML([]byte(`<r ` + strings.Repeat(`a="1" `, 1) + `>` + strings.Repeat(`<b x="1" y="2"/>`, MaxElements/3) + `</r>`)); !errors.Is(err, ErrTooManyElements) {
		t.Errorf("attributes are not counted: %v", err)
	}
	small, huge := doc(2*MaxElements), doc(1<<20) // 80 KB and 4 MiB
	allocs := func(b []byte) float64 {
		return testing.AllocsPerRun(3, func() {
			if _, err := ParseXML(b); err == nil {
				t.Fatal("parsed")
			}
		})
	}
	a, b := allocs(small), allocs(huge)
	t.Logf("allocations refusing 80 KB: %.0f, 4 MiB: %.0f", a, b)
	if b > a*1.1+100 {
		t.Errorf("refusing 4 MiB took %.0f allocations, 80 KB %.0f: proportional to the input", b, a)
	}

	jdoc := func(n int) []byte { return []byte("[" + strings.Repeat("[],", n) + "0]") }
	if _, err := ParseJSON(jdoc(MaxElements / 3)); err != nil {
		t.Fatalf("json: %v", err)
	}
	if _, err := ParseJSON(jdoc(1 << 20)); !errors.Is(err, ErrTooManyElements) {
		t.Fatalf("json: %v", err)
	}
	if _, err := ParseJSON([]byte(`{"s": "` + strings.Repeat(`,[{`, MaxElements) + `"}`)); err != nil {
		t.Errorf("brackets inside a string counted: %v", err)
	}
	if _, err := ParseJSON([]byte(`{"s": "\"` + strings.Repeat(`,`, MaxElements) + `"}`)); err != nil {
		t.Errorf("an escaped quote ends the string: %v", err)
	}
}
