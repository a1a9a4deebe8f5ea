package verifiers

import (
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// The signed message of the hmac kind: the replay guard's timestamp and the
// `signed:` template that says which parts of a request the MAC covers.

// timestampCheck is the replay guard: where the timestamp is, how it reads
// and how far from the time received it may be.
type timestampCheck struct {
	header    string
	format    string // unix, unix_ms or rfc3339
	tolerance time.Duration
}

func (c *timestampCheck) parse(raw string) (time.Time, error) {
	var (
		n   int64
		t   time.Time
		err error
	)
	switch c.format {
	case "rfc3339":
		t, err = time.Parse(time.RFC3339Nano, raw)
	case "unix_ms":
		n, err = strconv.ParseInt(raw, 10, 64)
		t = time.UnixMilli(n)
	default:
		n, err = strconv.ParseInt(raw, 10, 64)
		t = time.Unix(n, 0)
	}
	if err != nil {
		return t, reject(ErrMalformed, "%s timestamp is not %s", c.header, c.format)
	}
	return t, nil
}

// write renders at in the check's format, as a sender would; rfc3339 is
// written in UTC to the second.
func (c *timestampCheck) write(at time.Time) string {
	switch c.format {
	case "rfc3339":
		return at.UTC().Format(time.RFC3339)
	case "unix_ms":
		return strconv.FormatInt(at.UnixMilli(), 10)
	}
	return strconv.FormatInt(at.Unix(), 10)
}

// fresh checks at against the time received; a zero received means now.
func (c *timestampCheck) fresh(at, received time.Time) error {
	if received.IsZero() {
		received = time.Now()
	}
	switch d := received.Sub(at); {
	case d > c.tolerance:
		return reject(ErrStale, "%s timestamp is %s old, tolerance %s", c.header, d.Round(time.Second), c.tolerance)
	case d < -c.tolerance:
		return reject(ErrStale, "%s timestamp is %s in the future, tolerance %s", c.header, (-d).Round(time.Second), c.tolerance)
	}
	return nil
}

// segment is one piece of a parsed signed template.
type segment struct {
	kind segKind
	lit  []byte // segLiteral: the text
	name string // segHeader (canonical), segQuery, segParam: the name
}

type segKind uint8

const (
	segLiteral segKind = iota
	segBody
	segHeader
	segQuery
	segParam
)

// parseSigned parses a signed template once, at load, into segments.
func parseSigned(tmpl string) ([]segment, error) {
	var segs []segment
	hasBody := false
	for rest := tmpl; rest != ""; {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			segs = append(segs, segment{lit: []byte(rest)})
			break
		}
		if open > 0 {
			segs = append(segs, segment{lit: []byte(rest[:open])})
		}
		name, after, ok := strings.Cut(rest[open+1:], "}")
		if !ok {
			return nil, FieldError("signed", "unclosed { in %q", tmpl)
		}
		seg, err := placeholder(name)
		if err != nil {
			return nil, err
		}
		hasBody = hasBody || seg.kind == segBody
		segs = append(segs, seg)
		rest = after
	}
	// A MAC that does not cover the body would let anyone reuse a captured
	// signature with a body of their own.
	if !hasBody {
		return nil, FieldError("signed", "must contain {body}")
	}
	return segs, nil
}

func placeholder(name string) (segment, error) {
	if name == "body" {
		return segment{kind: segBody}, nil
	}
	if src, key, ok := strings.Cut(name, "."); ok && key != "" {
		switch src {
		case "header":
			return segment{kind: segHeader, name: textproto.CanonicalMIMEHeaderKey(key)}, nil
		case "query":
			return segment{kind: segQuery, name: key}, nil
		case "param":
			return segment{kind: segParam, name: key}, nil
		}
	}
	return segment{}, FieldError("signed", "unknown placeholder {%s}: want {body}, {header.NAME}, {query.NAME} or {param.NAME}", name)
}

// message resolves the signed template against req. A placeholder whose
// value is absent rejects the request, naming it, rather than signing an
// empty string that could only mismatch.
func (v *HMAC) message(req *Request) ([][]byte, error) {
	parts := make([][]byte, 0, len(v.signed))
	for _, s := range v.signed {
		var (
			val string
			ok  bool
		)
		switch s.kind {
		case segLiteral:
			parts = append(parts, s.lit)
			continue
		case segBody:
			parts = append(parts, req.Body)
			continue
		case segHeader:
			if vals := req.Header.Values(s.name); len(vals) > 0 {
				val, ok = vals[0], true
			}
		case segQuery:
			if vals := req.Query[s.name]; len(vals) > 0 {
				val, ok = vals[0], true
			}
		case segParam:
			val, ok = req.Params[s.name]
		}
		if !ok {
			return nil, reject(ErrMissing, "no %s %s for the signed message", segNoun[s.kind], s.name)
		}
		parts = append(parts, []byte(val))
	}
	return parts, nil
}

var segNoun = map[segKind]string{segHeader: "header", segQuery: "query parameter", segParam: "path parameter"}
