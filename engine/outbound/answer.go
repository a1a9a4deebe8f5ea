package outbound

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/hookrelay/hookrelay/internal/httpout"
	"github.com/hookrelay/hookrelay/internal/redact"
	"github.com/hookrelay/hookrelay/transforms"
)

// The errors of ParseURL. Neither quotes the URL: it may hold a secret.
var (
	ErrNotURL  = errors.New("not a URL")
	ErrNotHTTP = errors.New("not an absolute http or https URL")
)

// ParseURL parses a rendered URL, which must be absolute http(s) with a
// host.
func ParseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, ErrNotURL
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, ErrNotHTTP
	}
	return u, nil
}

// errControl is the error of a header value net/http would refuse.
var errControl = errors.New("the value holds a control character")

// CheckHeaderValue refuses a header value holding a control character:
// net/http would refuse it on every attempt, as if the network failed, and a
// CR or LF would start another header. Callers prefix the header's name.
func CheckHeaderValue(v string) error {
	if !validHeaderValue(v) {
		return errControl
	}
	return nil
}

// MaskText masks s's secrets in text, then what redact.Text masks (URL
// userinfo and query values): the form of every error and answer shown.
func MaskText(s *redact.Secrets, text string) string { return redact.Text(s.Replace(text)) }

// ReadAnswer reads an answer's body up to limit bytes. whole is false when
// the body is longer: raw then holds its first limit bytes.
func ReadAnswer(r io.Reader, limit int64) (raw []byte, whole bool, err error) {
	return httpout.ReadAnswer(r, limit)
}

// ParseAnswer is an answer as templates and expressions see it: status,
// headers (lower-case names, first values), the text, and the text parsed
// as JSON and as XML, each nil when it is not (jsonErr and xmlErr say why).
// Body is left to the caller, who knows which form it asked for. Both
// parsers refuse more than transforms.MaxElements elements before they
// build them: an answer's size is bounded, its parsed form would not be.
func ParseAnswer(resp *http.Response, raw []byte) (r *transforms.Response, jsonErr, xmlErr error) {
	r = &transforms.Response{Status: resp.StatusCode, Headers: make(map[string]string, len(resp.Header)), Raw: string(raw)}
	for k, v := range resp.Header {
		if len(v) > 0 {
			r.Headers[strings.ToLower(k)] = v[0]
		}
	}
	if js, err := transforms.ParseJSON(raw); err == nil {
		r.JSON = js
	} else {
		jsonErr = err
	}
	if t := strings.TrimSpace(string(raw)); strings.HasPrefix(t, "<") {
		if m, err := transforms.ParseXML(raw); err == nil {
			r.XML = m
		} else {
			xmlErr = err
		}
	} else {
		xmlErr = errors.New("not an XML document")
	}
	return r, jsonErr, xmlErr
}
