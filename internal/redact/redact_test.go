package redact

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"https://broker.example/in", "https://broker.example/in"},
		{"https://user:pa55@broker.example/in", "https://***@broker.example/in"},
		{"https://tok@broker.example:8443/in?x=1", "https://***@broker.example:8443/in?x=***"},
		{"http://127.0.0.1:1/a?token=s3cret&b=&flag", "http://127.0.0.1:1/a?token=***&b=***&***"},
		{"https://h/{{ event.type }}?k={{ values.key }}#frag", "https://h/{{ event.type }}?k=***#***"},
		{"https://h/p@q", "https://h/p@q"}, // an @ in the path is not userinfo
		{"https://a@b@h/p", "https://***@h/p"},
		{"not a url?secret", "not a url?***"},
		{"", ""},
	} {
		if got := URL(c.in); got != c.want {
			t.Errorf("URL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestTextMasksURLsInErrors(t *testing.T) {
	err := &url.Error{Op: "Post", URL: "http://relay:hunter2@127.0.0.1:1/x?api_key=hunter3", Err: errors.New("dial tcp 127.0.0.1:1: connect: connection refused")}
	got := Error(fmt.Errorf("send: %w", err))
	if strings.Contains(got, "hunter") {
		t.Fatalf("secret left in %q", got)
	}
	if want := `send: Post "http://***@127.0.0.1:1/x?api_key=***": dial tcp 127.0.0.1:1: connect: connection refused`; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if Error(nil) != "" || Text("no url here") != "no url here" {
		t.Fatal("text without a URL must stay")
	}
}

func TestSecretsDerivedForms(t *testing.T) {
	const secret = "c4nary-S3cret/+="
	var s Secrets
	s.Add(secret, "<values.pw>")
	for _, leak := range []string{
		secret,
		url.QueryEscape(secret),
		url.PathEscape(secret),
		hex.EncodeToString([]byte(secret)),
		strings.ToUpper(hex.EncodeToString([]byte("user:" + secret))),
		base64.StdEncoding.EncodeToString([]byte(secret)),
		base64.RawURLEncoding.EncodeToString([]byte(secret)),
		base64.StdEncoding.EncodeToString([]byte("relay:" + secret)),
		base64.StdEncoding.EncodeToString([]byte("ab:" + secret + ":tail")),
		base64.URLEncoding.EncodeToString([]byte("x" + secret)),
	} {
		got := s.Replace("answer: " + leak + " end")
		for _, form := range []string{secret, leak} {
			if strings.Contains(got, form) {
				t.Errorf("%q still holds %q", got, form)
			}
		}
		if !strings.Contains(got, "<values.pw>") {
			t.Errorf("%q does not say what was masked", got)
		}
	}
	// Escaped for an XML or JSON body by a template, echoed by the lender.
	var esc Secrets
	esc.Add(`pa&ss"<w>rd-\123`, "<values.pw>")
	for _, leak := range []string{`pa&amp;ss&#34;&lt;w&gt;rd-\123`, `pa\u0026ss\"\u003cw\u003erd-\\123`} {
		if got := esc.Replace("<fault>" + leak + "</fault>"); strings.Contains(got, leak) {
			t.Errorf("escaped form %q not masked: %q", leak, got)
		}
	}
	if got := s.Replace("nothing secret"); got != "nothing secret" {
		t.Fatalf("innocent text changed: %q", got)
	}
	var empty *Secrets
	if empty.Replace("x") != "x" || !empty.Empty() {
		t.Fatal("nil Secrets must mask nothing")
	}
}
