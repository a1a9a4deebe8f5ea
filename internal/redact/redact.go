// Package redact keeps secrets out of what the relay shows: logs, errors,
// attempt records, admin responses and command output (SPEC 2). It is the one
// place that decides how a URL is shown, and how a known secret and the forms
// derived from it (base64, hex, URL escaping) are found in free text, so that
// the engine and the verifiers mask alike. It serves every step of the flow
// that shows something, below all of them.
//
// It may import the standard library only.
package redact

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// Mask is what a hidden value is replaced by.
const Mask = "***"

// URL returns raw with its userinfo, every query value and its fragment
// replaced by Mask: "https://u:p@host/path?token=abc#x" is shown as
// "https://***@host/path?token=***#***". It works on the text, not on a
// parsed URL, so that a template that does not parse yet ("{{ event.type }}")
// or a malformed URL is masked too; the scheme, host and path stay.
func URL(raw string) string {
	rest, frag, hasFrag := strings.Cut(raw, "#")
	rest, query, hasQuery := strings.Cut(rest, "?")
	if i := strings.Index(rest, "//"); i >= 0 {
		auth := rest[i+2:]
		end := strings.IndexByte(auth, '/')
		if end < 0 {
			end = len(auth)
		}
		if at := strings.LastIndexByte(auth[:end], '@'); at >= 0 {
			rest = rest[:i+2] + Mask + auth[at:]
		}
	}
	var b strings.Builder
	b.WriteString(rest)
	if hasQuery {
		b.WriteByte('?')
		for i, part := range strings.Split(query, "&") {
			if i > 0 {
				b.WriteByte('&')
			}
			name, _, hasValue := strings.Cut(part, "=")
			switch {
			case hasValue:
				b.WriteString(name + "=" + Mask)
			case part != "":
				// A bare part is a value without a name.
				b.WriteString(Mask)
			}
		}
	}
	if hasFrag && frag != "" {
		b.WriteString("#" + Mask)
	}
	return b.String()
}

// urlInText finds absolute URLs in messages: Go's *url.Error writes
// `Post "URL": ...`, parse errors `parse "URL": ...`.
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>\x60]+`)

// Text returns s with every absolute URL in it shown as URL shows it. Use it
// on any error that may quote a URL the relay called (a transport error, a
// timeout) before it is logged, stored or answered.
func Text(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return urlInText.ReplaceAllStringFunc(s, URL)
}

// Error is Text of err's message; "" for nil.
func Error(err error) string {
	if err == nil {
		return ""
	}
	return Text(err.Error())
}

// minForm is the shortest derived form masked on its own: shorter runs of
// base64 or hex would match innocent text.
const minForm = 6

// Secrets replaces known secret values, and the forms derived from them, in
// free text (a lender's answer, an error). The zero value masks nothing.
type Secrets struct {
	forms []form // longest first
}

type form struct{ text, name string }

// Add registers secret, shown as name where it is found, with its derived
// forms: base64 (standard and URL alphabets, padded or not) and hex of it,
// its URL, XML and JSON escapings, and the base64 of any text that holds it (a lender may
// echo `base64(user:secret)` back), found by its three alignments.
func (s *Secrets) Add(secret, name string) {
	if secret == "" {
		return
	}
	add := func(text string) {
		if text != "" {
			s.forms = append(s.forms, form{text, name})
		}
	}
	add(secret)
	add(url.QueryEscape(secret))
	add(url.PathEscape(secret))
	// Templates write a secret into an XML or JSON body escaped (SPEC 2),
	// and a lender may echo that body back.
	var x strings.Builder
	_ = xml.EscapeText(&x, []byte(secret))
	add(x.String())
	if j, err := json.Marshal(secret); err == nil {
		add(string(j[1 : len(j)-1]))
	}
	if len(secret) < 3 {
		sortForms(s.forms)
		return
	}
	add(hex.EncodeToString([]byte(secret)))
	add(strings.ToUpper(hex.EncodeToString([]byte(secret))))
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		add(enc.EncodeToString([]byte(secret)))
		add(enc.WithPadding(base64.NoPadding).EncodeToString([]byte(secret)))
		// Inside a longer encoded text the secret starts at one of three
		// offsets in a 3-byte group; the characters that depend only on
		// its bytes are the same whatever comes before or after it.
		for shift := 0; shift < 3; shift++ {
			pad := strings.Repeat("\x00", shift)
			full := enc.WithPadding(base64.NoPadding).EncodeToString([]byte(pad + secret))
			lead := 0
			if shift > 0 {
				lead = (shift*8 + 5) / 6 // characters that mix in the bytes before
			}
			end := (shift + len(secret)) * 8 / 6 // characters made of its bits alone
			if end-lead >= minForm && end <= len(full) {
				add(full[lead:end])
			}
		}
	}
	sortForms(s.forms)
}

// sortForms puts longer forms first, so that one that contains another is
// replaced whole.
func sortForms(f []form) {
	sort.SliceStable(f, func(i, j int) bool { return len(f[i].text) > len(f[j].text) })
}

// Empty reports whether nothing was added.
func (s *Secrets) Empty() bool { return s == nil || len(s.forms) == 0 }

// Replace returns text with every registered form replaced by its name.
func (s *Secrets) Replace(text string) string {
	if s == nil {
		return text
	}
	for _, f := range s.forms {
		if strings.Contains(text, f.text) {
			text = strings.ReplaceAll(text, f.text, f.name)
		}
	}
	return text
}

// Merge returns a Secrets holding the forms of s and o; neither changes.
func (s *Secrets) Merge(o *Secrets) *Secrets {
	out := &Secrets{}
	if s != nil {
		out.forms = append(out.forms, s.forms...)
	}
	if o != nil {
		out.forms = append(out.forms, o.forms...)
	}
	sortForms(out.forms)
	return out
}
