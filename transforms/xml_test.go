package transforms

import (
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
