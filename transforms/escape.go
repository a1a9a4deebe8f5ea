package transforms

// Escaping of placeholders (SPEC 2): templates never let sender data change
// where a request goes or what its body means.

import (
	"encoding/xml"
	"fmt"
	"mime"
	"net/url"
	"strings"
)

// CompileURLTemplate compiles a URL template. A placeholder that reads
// request or event data (body, headers, query, params, raw, jws, event, key,
// response) is escaped for its place: in the path it yields exactly one path
// segment (url.PathEscape: "/", "?", "#", "%" stay inside it), in the query one
// query value (url.QueryEscape). It may not stand in the scheme, userinfo,
// host, port or fragment: that is refused here when the literal text before
// it says so, otherwise by CheckURL at load and by every render. A
// placeholder over the operator's configuration only (values, public_url,
// provider, now) is written as it renders, anywhere: it is what lets
// `url: "{{ values.api_url }}"` name the lender.
func CompileURLTemplate(s string) (*Template, error) {
	t, err := CompileTemplate(s)
	if err != nil {
		return nil, err
	}
	t.escape = urlEscaping
	if _, err := t.renderURL(nil, true); err != nil {
		return nil, err
	}
	return t, nil
}

// CheckURL places the data placeholders of a URL template whose
// configuration placeholders render over env (values, public_url, provider):
// the load-time check of CompileURLTemplate for a URL that starts with, say,
// {{ values.api_url }}.
func (t *Template) CheckURL(env *Env) error {
	_, err := t.renderURL(env, true)
	return err
}

// urlPlace is where the next character of a URL would go.
type urlPlace int

const (
	inAuthority urlPlace = iota // scheme, userinfo, host or port
	inPath
	inQuery
	inFragment
)

// placeOf says where text appended to prefix lands.
func placeOf(prefix string) urlPlace {
	i := strings.Index(prefix, "://")
	if i < 0 {
		return inAuthority
	}
	rest := prefix[i+3:]
	j := strings.IndexAny(rest, "/?#")
	switch {
	case j < 0:
		return inAuthority
	case strings.IndexByte(rest[j:], '#') >= 0:
		return inFragment
	case strings.IndexByte(rest[j:], '?') >= 0:
		return inQuery
	}
	return inPath
}

// renderURL renders a URL template. With probe, data placeholders are only
// placed, not run; a configuration placeholder met while env is nil ends the
// probe, since where its text ends is not known before it renders.
func (t *Template) renderURL(env *Env, probe bool) (string, error) {
	var b strings.Builder
	var segs [][2]int // path segments holding data: segment start, end of the placeholder's text
	for _, p := range t.parts {
		switch {
		case p.prog == nil:
			b.WriteString(p.lit)
			continue
		case !p.data:
			if env == nil {
				return "", nil
			}
			v, err := p.prog.Run(env)
			if err != nil {
				return "", err
			}
			b.WriteString(stringify(v))
			continue
		}
		place := placeOf(b.String())
		switch place {
		case inAuthority:
			return "", fmt.Errorf("{{ %s }} is in the scheme, userinfo, host or port: request and event data may only give a path segment or a query value", p.prog)
		case inFragment:
			return "", fmt.Errorf("{{ %s }} is in the fragment, which is never sent: request and event data may only give a path segment or a query value", p.prog)
		}
		s := ""
		if !probe {
			v, err := p.prog.Run(env)
			if err != nil {
				return "", err
			}
			s = stringify(v)
		}
		if place == inPath {
			start := strings.LastIndexByte(b.String(), '/') + 1
			b.WriteString(url.PathEscape(s))
			segs = append(segs, [2]int{start, b.Len()})
		} else {
			b.WriteString(url.QueryEscape(s))
		}
	}
	out := b.String()
	if probe {
		return out, nil
	}
	for _, sg := range segs {
		end := len(out)
		if i := strings.IndexAny(out[sg[1]:], "/?#"); i >= 0 {
			end = sg[1] + i
		}
		seg := out[sg[0]:end]
		// Escaping cannot help here: servers that decode before they
		// normalise read %2E%2E as "..", and an empty segment is "//",
		// which many collapse. Such a URL is not sent.
		if seg == "" || dotSegment(seg) {
			if u, err := url.PathUnescape(seg); err == nil {
				seg = u
			}
			return "", fmt.Errorf("a placeholder made the path segment %q: it would not stay one segment", seg)
		}
	}
	return out, nil
}

// dotSegment reports whether a server that decodes a path before it
// normalises it could read a dot segment in seg (an escaped path segment):
// "%2E%2E", but also "..%2F..%2Fadmin", which such a server (nginx in
// front of the destination, a handler that cleans r.URL.Path) reads as
// "../../admin" and so climbs out of the template's path. Backslashes count
// as slashes (IIS, some frameworks), a ";" ends a segment's name (path
// parameters), and decoding is repeated for servers in a chain that decode
// once each.
func dotSegment(seg string) bool {
	for decodes := 0; ; decodes++ {
		for _, part := range strings.FieldsFunc(seg, func(r rune) bool { return r == '/' || r == '\\' }) {
			part, _, _ = strings.Cut(part, ";")
			if part == "." || part == ".." {
				return true
			}
		}
		u, err := url.PathUnescape(seg)
		if decodes == 2 || err != nil || u == seg {
			return false
		}
		seg = u
	}
}

// CompileBodyTemplate compiles a request body whose placeholders are
// escaped for its content type (SPEC 2). contentType is the request's
// configured Content-Type header ("" when it has none, or it is itself a
// template). An XML type (text/xml, application/xml, any +xml such as
// application/soap+xml), or else a body that starts with "<", is XML:
// placeholders are XML-escaped. A JSON type (application/json, any +json),
// or without a Content-Type a body that starts with "{" or "[", is JSON:
// placeholders are escaped as the inside of a JSON string. Anything else is
// written as it renders.
func CompileBodyTemplate(s, contentType string) (*Template, error) {
	t, err := CompileTemplate(s)
	if err != nil {
		return nil, err
	}
	t.escape = bodyEscaping(contentType, s)
	return t, nil
}

func bodyEscaping(contentType, body string) escaping {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(contentType))
	}
	switch {
	case mt == "text/xml" || mt == "application/xml" || strings.HasSuffix(mt, "+xml"):
		return xmlEscaping
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return jsonEscaping
	}
	lead := strings.TrimLeft(body, " \t\r\n")
	switch {
	case strings.HasPrefix(lead, "<"):
		return xmlEscaping
	case contentType == "" && (strings.HasPrefix(lead, "[") || strings.HasPrefix(lead, "{") && !strings.HasPrefix(lead, "{{")):
		return jsonEscaping
	}
	return asIs
}

// BodyEscaping names how t escapes its placeholders: "xml", "json", "url" or
// "none".
func (t *Template) BodyEscaping() string {
	return [...]string{asIs: "none", urlEscaping: "url", xmlEscaping: "xml", jsonEscaping: "json"}[t.escape]
}

// EscapeXML escapes s as XML character data or an attribute value. A
// character XML cannot carry (NUL, most controls, invalid UTF-8) becomes
// U+FFFD.
func EscapeXML(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder does not fail
	return b.String()
}

// EscapeJSONString escapes s as the inside of a JSON string: quotes,
// backslashes and control characters are escaped; invalid UTF-8 becomes
// U+FFFD.
func EscapeJSONString(s string) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x2028 || r == 0x2029:
			b.WriteString(`\u`)
			b.WriteByte(hex[r>>12&0xf])
			b.WriteByte(hex[r>>8&0xf])
			b.WriteByte(hex[r>>4&0xf])
			b.WriteByte(hex[r&0xf])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
