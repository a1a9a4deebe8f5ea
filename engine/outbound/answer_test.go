package outbound

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

// TestReadAndParseAnswer: an answer is read up to its limit and parsed as
// JSON and XML, whichever it is, with lower-case header names.
func TestReadAndParseAnswer(t *testing.T) {
	raw, whole, err := ReadAnswer(strings.NewReader("0123456789"), 4)
	if err != nil || whole || string(raw) != "0123" {
		t.Errorf("over the limit: %q %v %v, want the first 4 bytes, not whole", raw, whole, err)
	}
	if raw, whole, _ = ReadAnswer(strings.NewReader("0123"), 4); !whole || string(raw) != "0123" {
		t.Errorf("at the limit: %q %v, want it whole", raw, whole)
	}
	resp := &http.Response{StatusCode: 200, Header: http.Header{"X-Request-Id": {"r1", "r2"}}}
	r, jsonErr, xmlErr := ParseAnswer(resp, []byte(`{"ok": true}`))
	if r.JSON == nil || jsonErr != nil || r.XML != nil || xmlErr == nil || r.Headers["x-request-id"] != "r1" || r.Status != 200 {
		t.Errorf("JSON answer: %+v %v %v", r, jsonErr, xmlErr)
	}
	r, jsonErr, xmlErr = ParseAnswer(resp, []byte(" <a><b>1</b></a>"))
	if r.XML == nil || xmlErr != nil || r.JSON != nil || jsonErr == nil {
		t.Errorf("XML answer: %+v %v %v", r, jsonErr, xmlErr)
	}
	for raw, want := range map[string]error{"https://h/p": nil, "ftp://h/p": ErrNotHTTP, "/p": ErrNotHTTP, "http://h/%zz": ErrNotURL} {
		if _, err := ParseURL(raw); !errors.Is(err, want) {
			t.Errorf("ParseURL(%q): %v, want %v", raw, err, want)
		}
	}
	if CheckHeaderValue("a\r\nb") == nil || CheckHeaderValue("a b") != nil {
		t.Error("CheckHeaderValue: CR LF passes or a space does not")
	}
}
