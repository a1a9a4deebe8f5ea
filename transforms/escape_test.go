package transforms

import (
	"encoding/json"
	"encoding/xml"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestURLTemplatePlaces: data placeholders are refused where they would pick
// the host, and escaped where they are allowed; configuration placeholders
// go anywhere.
func TestURLTemplatePlaces(t *testing.T) {
	for _, src := range []string{
		"{{ event.data.url }}",
		"https://{{ event.type }}.example/x",
		"https://broker.example{{ event.key }}/x",
		"https://broker.example:{{ event.key }}/x",
		"https://{{ key }}@broker.example/x",
		"http{{ event.type }}://broker.example/x",
		"https://broker.example/x#{{ event.key }}",
		`{{ event.key == "a" ? "ftp://x" : "https://y" }}/p`,
		"https://{{ $env.key }}/x",
		"https://{{ let k = values.a + key; k }}/x",
	} {
		if _, err := CompileURLTemplate(src); err == nil {
			t.Errorf("%s: compiled", src)
		}
	}
	for _, src := range []string{
		"https://broker.example/events/{{ event.type }}",
		"https://broker.example/events?type={{ event.type }}&k={{ event.key }}",
		"{{ values.api_url }}/status/{{ key }}", // decided when values are known
		"https://{{ provider }}.internal/x",
		"{{ public_url }}/in/{{ provider }}",
	} {
		if _, err := CompileURLTemplate(src); err != nil {
			t.Errorf("%s: %v", src, err)
		}
	}

	tm, err := CompileURLTemplate("{{ values.api_url }}{{ key }}")
	must(t, err)
	if err := tm.CheckURL(&Env{Values: map[string]string{"api_url": "https://lender.example/status/"}}); err != nil {
		t.Errorf("path after a value: %v", err)
	}
	if err := tm.CheckURL(&Env{Values: map[string]string{"api_url": "https://lender."}}); err == nil {
		t.Error("key in the host after a value: passed")
	}

	tm, err = CompileURLTemplate("https://broker.example:8443/e/{{ event.type }}/k-{{ event.key }}?t={{ event.type }}")
	must(t, err)
	for _, c := range []struct{ typ, key, want string }{
		{"admin/users/42/delete?force=1#", "a/b",
			"https://broker.example:8443/e/admin%2Fusers%2F42%2Fdelete%3Fforce=1%23/k-a%2Fb?t=admin%2Fusers%2F42%2Fdelete%3Fforce%3D1%23"},
		{"%2e%2Ex", "x", "https://broker.example:8443/e/%252e%252Ex/k-x?t=%252e%252Ex"},
		{"a b&c=d", ".", "https://broker.example:8443/e/a%20b&c=d/k-.?t=a+b%26c%3Dd"},
	} {
		e := &Env{Event: &Event{Type: c.typ, Key: c.key}}
		got, err := tm.Execute(e)
		if err != nil || got != c.want {
			t.Errorf("%q %q: got %q, %v\nwant %q", c.typ, c.key, got, err, c.want)
		}
	}
	// A value a server that decodes before it normalises (nginx in front,
	// a handler cleaning r.URL.Path) would read as a dot segment: "/" or
	// "\\" inside it, a path parameter, or escaped once more.
	for _, typ := range []string{"..", ".", "", "../../../admin/users/42/delete?force=1#", "a/../../admin",
		"..\\..\\admin", "x\\..", "..;jsessionid=1", "%2e%2e", "%2E%2e%2Fadmin", "./x"} {
		if got, err := tm.Execute(&Env{Event: &Event{Type: typ, Key: "k"}}); err == nil {
			t.Errorf("type %q rendered %q", typ, got)
		}
	}
}

func TestBodyTemplateEscaping(t *testing.T) {
	const hostile = `x</applicationReference><admin>1</admin>&amp;"'` + "\n\x00"
	e := &Env{Key: hostile, Values: map[string]string{"v": `a"b\c`}}
	for _, c := range []struct{ ct, body, want, escaping string }{
		{"text/xml; charset=utf-8", "<r>{{ key }}</r>", "<r>x&lt;/applicationReference&gt;&lt;admin&gt;1&lt;/admin&gt;&amp;amp;&#34;&#39;&#xA;\uFFFD</r>", "xml"},
		{"application/soap+xml", "<r>{{ values.v }}</r>", "<r>a&#34;b\\c</r>", "xml"},
		{"", " <r>{{ values.v }}</r>", " <r>a&#34;b\\c</r>", "xml"},
		{"application/json", `{"k":"{{ key }}"}`, `{"k":"x</applicationReference><admin>1</admin>&amp;\"'\n\u0000"}`, "json"},
		{"", `{"v":"{{ values.v }}"}`, `{"v":"a\"b\\c"}`, "json"},
		{"text/plain", `{"v":"{{ values.v }}"}`, `{"v":"a"b\c"}`, "none"},
		{"", `{{ values.v }}`, `a"b\c`, "none"},
	} {
		tm, err := CompileBodyTemplate(c.body, c.ct)
		must(t, err)
		got, err := tm.Execute(e)
		if err != nil || got != c.want || tm.BodyEscaping() != c.escaping {
			t.Errorf("%q %q: got %q (%s), %v\nwant %q (%s)", c.ct, c.body, got, tm.BodyEscaping(), err, c.want, c.escaping)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// urlCases are the URL templates FuzzRenderURL renders: the value lands in
// a whole segment, part of a segment, the last segment, and the query.
var urlCases = []struct {
	tmpl, scheme, host string
	segments           int // path segments, "" included for a trailing "/"
}{
	{"https://broker.example:8443/hooks/{{ event.type }}/x?k={{ event.key }}&t={{ event.type }}", "https", "broker.example:8443", 3},
	{"http://127.0.0.1:3000/a/pre-{{ event.key }}-post/b", "http", "127.0.0.1:3000", 3},
	{"http://127.0.0.1/{{ event.key }}", "http", "127.0.0.1", 1},
	{"{{ values.base }}/s/{{ key }}?q={{ key }}", "https", "lender.example", 2},
}

// FuzzRenderURL renders URL templates with hostile values: when a render
// succeeds, scheme, host and port are the template's, the path has the
// template's number of segments, and each placeholder decodes back to the
// value; the query holds the value as one value.
func FuzzRenderURL(f *testing.F) {
	for _, s := range []string{"../../../admin/users/42/delete?force=1#", "..", ".", "", "evil.example", "@evil.example",
		"%2e%2e", "a/b", "a?b=c&d#e", "\\..\\", "x\r\nHost: evil", "::1]:80", "//evil.example/", "\x00", "ä/ö", "%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, c := range urlCases {
			tm, err := CompileURLTemplate(c.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			e := &Env{Key: v, Event: &Event{Key: v, Type: v}, Values: map[string]string{"base": "https://lender.example/api"}}
			out, err := tm.Execute(e)
			if err != nil {
				continue // a dot or empty segment: refused, not sent
			}
			u, err := url.Parse(out)
			if err != nil {
				t.Fatalf("%s with %q: %q does not parse: %v", c.tmpl, v, out, err)
			}
			if u.Scheme != c.scheme || u.Host != c.host || u.User != nil || u.Fragment != "" {
				t.Fatalf("%s with %q: %q goes to %s://%s (user %v, fragment %q)", c.tmpl, v, out, u.Scheme, u.Host, u.User, u.Fragment)
			}
			segs := strings.Split(strings.TrimPrefix(u.EscapedPath(), "/"), "/")
			if c.tmpl[0] == '{' {
				segs = segs[1:] // the value's /api
			}
			if len(segs) != c.segments {
				t.Fatalf("%s with %q: path %q has %d segments, want %d", c.tmpl, v, u.EscapedPath(), len(segs), c.segments)
			}
			for _, s := range segs {
				d, err := url.PathUnescape(s)
				if err != nil || d == "." || d == ".." {
					t.Fatalf("%s with %q: segment %q (%q, %v)", c.tmpl, v, s, d, err)
				}
				// Decoded, as a server that decodes before it normalises
				// reads it: still no dot segment.
				for _, part := range strings.FieldsFunc(d, func(r rune) bool { return r == '/' || r == '\\' }) {
					if part == "." || part == ".." {
						t.Fatalf("%s with %q: segment %q decodes to %q, a dot segment", c.tmpl, v, s, d)
					}
				}
			}
			if strings.Contains(c.tmpl, "?") {
				q, err := url.ParseQuery(u.RawQuery)
				if err != nil {
					t.Fatalf("%s with %q: query %q: %v", c.tmpl, v, u.RawQuery, err)
				}
				for name, vals := range q {
					if len(vals) != 1 || vals[0] != v || (name != "k" && name != "t" && name != "q") {
						t.Fatalf("%s with %q: query %q gives %s=%q", c.tmpl, v, u.RawQuery, name, vals)
					}
				}
			}
		}
	})
}

// FuzzRenderBody renders XML and JSON bodies with a hostile value: the
// document keeps its shape, and the value comes back as text.
func FuzzRenderBody(f *testing.F) {
	for _, s := range []string{`</k><admin>1</admin><k>`, `]]><!--`, `&lt;&#0;`, `", "admin": true, "x": "`, `\`, "\x00\x01\u2028", "\xff"} {
		f.Add(s)
	}
	xt, err := CompileBodyTemplate("<r><k>{{ key }}</k><t>fixed</t></r>", "text/xml")
	if err != nil {
		f.Fatal(err)
	}
	jt, err := CompileBodyTemplate(`{"k": "{{ key }}", "t": "fixed"}`, "application/json")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, v string) {
		e := &Env{Key: v}
		out, err := xt.Execute(e)
		if err != nil {
			t.Fatal(err)
		}
		var x struct {
			XMLName xml.Name `xml:"r"`
			K       []string `xml:"k"`
			T       []string `xml:"t"`
			Other   []struct {
				XMLName xml.Name
			} `xml:",any"`
		}
		if err := xml.Unmarshal([]byte(out), &x); err != nil || len(x.K) != 1 || len(x.T) != 1 || x.T[0] != "fixed" || len(x.Other) != 0 {
			t.Fatalf("xml with %q: %s (%v)", v, out, err)
		}
		if utf8.ValidString(v) && !strings.ContainsFunc(v, func(r rune) bool {
			return r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0xFFFE || r == 0xFFFF
		}) &&
			x.K[0] != v {
			t.Fatalf("xml with %q: k is %q", v, x.K[0])
		}
		out, err = jt.Execute(e)
		if err != nil {
			t.Fatal(err)
		}
		var j map[string]any
		if err := json.Unmarshal([]byte(out), &j); err != nil || len(j) != 2 || j["t"] != "fixed" {
			t.Fatalf("json with %q: %s (%v)", v, out, err)
		}
		if utf8.ValidString(v) && j["k"] != v {
			t.Fatalf("json with %q: k is %q", v, j["k"])
		}
	})
}
