package engine

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
	"go.yaml.in/yaml/v3"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// hostileCase is one entry of testdata/hostile/cases.yaml (see its README.md).
type hostileCase struct {
	Name     string            `yaml:"name"`
	Provider string            `yaml:"provider"`
	Method   string            `yaml:"method"`
	Path     string            `yaml:"path"`
	Body     string            `yaml:"body"`
	Escapes  bool              `yaml:"escapes"`
	Gen      *hostileGen       `yaml:"gen"`
	Sign     *hostileSign      `yaml:"sign"`
	Tamper   []string          `yaml:"tamper"`
	Headers  map[string]string `yaml:"headers"`
	Chunked  bool              `yaml:"chunked"`
	Raw      string            `yaml:"raw"`
	Want     int               `yaml:"want"`
	Reason   string            `yaml:"reason"`
	Outcome  string            `yaml:"outcome"`

	sent, signed []byte // the generated body
}

// hostileGen generates a body: prefix, repeat count times, suffix, close
// count times, end; gzip compresses it (sign_plain: the signature covers the
// uncompressed bytes).
type hostileGen struct {
	Prefix    string `yaml:"prefix"`
	Repeat    string `yaml:"repeat"`
	Count     int    `yaml:"count"`
	Suffix    string `yaml:"suffix"`
	Close     string `yaml:"close"`
	End       string `yaml:"end"`
	Gzip      bool   `yaml:"gzip"`
	SignPlain bool   `yaml:"sign_plain"`
}

type hostileSign struct {
	Kind   string `yaml:"kind"`   // plain | nordiska | resurs
	Secret string `yaml:"secret"` // nordiska: instead of the configured one
	Token  string `yaml:"token"`  // nordiska: instead of the configured one
	TS     string `yaml:"ts"`     // nordiska: offset of the timestamp from now
	Omit   string `yaml:"omit"`   // nordiska: a header left out
	Alg    string `yaml:"alg"`    // resurs: RS256 (default), none, HS256-pubkey
	Key    string `yaml:"key"`    // resurs: good (default) or forger
	Kid    string `yaml:"kid"`    // resurs: instead of the published kid
	Crit   bool   `yaml:"crit"`   // resurs: a crit header
}

// Outcomes of a case.
const (
	outRejected    = "rejected"    // 401, recorded, nothing kept
	outRefused     = "refused"     // not recorded, nothing kept
	outQuarantined = "quarantined" // 200, one quarantine entry, nothing forwarded
	outAccepted    = "accepted"    // 200, one event, forwarded once
)

const hostileKid = "hostile-kid-1"

// hostileEnv is a relay with the three providers and what signs for them.
type hostileEnv struct {
	tr     *testRelay
	rec    *recorder
	key    resursKey // published in the JWKS
	forger resursKey // not published; same kid
	probes int
}

func loadHostileCases(t *testing.T) []hostileCase {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "hostile", "cases.yaml"))
	must(t, err)
	var cases []hostileCase
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	must(t, dec.Decode(&cases))
	seen := map[string]bool{}
	for _, c := range cases {
		switch {
		case c.Name == "" || seen[c.Name]:
			t.Fatalf("case %q: missing or repeated name", c.Name)
		case c.Outcome != outRejected && c.Outcome != outRefused && c.Outcome != outQuarantined && c.Outcome != outAccepted:
			t.Fatalf("case %q: outcome %q", c.Name, c.Outcome)
		case c.Outcome == outRejected && c.Want != http.StatusUnauthorized:
			t.Fatalf("case %q: a rejection is a 401", c.Name)
		}
		seen[c.Name] = true
	}
	return cases
}

// hostileProviders writes the shipped nordiska and resurs files and a plain
// provider routed to broker into a new providers dir.
func hostileProviders(t *testing.T) string {
	return seedProviderCopy(t, map[string]string{
		"nordiska": shippedProvider(t, "nordiska"),
		"resurs":   shippedProvider(t, "resurs"),
		"plain":    strings.Replace(plainProvider, "to: [dest]", "to: [broker]", 1),
	})
}

// useServeListener replaces the test's ingest server by one built as Serve
// builds it, with limits l.
func useServeListener(tr *testRelay, l serverLimits) {
	tr.Ingest.Close()
	srv := httptest.NewUnstartedServer(tr.IngestHandler())
	srv.Config = newServer(tr.IngestHandler(), l)
	srv.Start()
	tr.Ingest = srv
}

func newHostileEnv(t *testing.T) *hostileEnv {
	t.Helper()
	key := newResursKey(t, hostileKid)
	jwks := newJWKSServer(t, key)
	tr, rec := seedRelay(t, hostileProviders(t), map[string]string{
		"RESURS_JWKS_URL": jwks.url, "RESURS_JWKS_APIKEY": resursAPIKey,
	})
	useServeListener(tr, ingestLimits)
	return &hostileEnv{tr: tr, rec: rec, key: key, forger: newResursKey(t, hostileKid)}
}

// unescape decodes \xHH, \r, \n, \t and \\ (YAML cannot hold invalid UTF-8).
func unescape(t *testing.T, s string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'x':
			n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			must(t, err)
			b.WriteByte(byte(n))
			i += 2
		case 'r':
			b.WriteByte('\r')
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case '\\':
			b.WriteByte('\\')
		default: // kept as written
			b.WriteByte('\\')
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func gzipped(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	must(t, err)
	_, err = zw.Write(b)
	must(t, err)
	must(t, zw.Close())
	return buf.Bytes()
}

// body returns what is sent and what is signed (made once: a bomb takes a
// while to compress).
func (c *hostileCase) body(t *testing.T) (sent, signed []byte) {
	if c.sent == nil {
		c.sent, c.signed = c.makeBody(t)
	}
	return c.sent, c.signed
}

func (c *hostileCase) makeBody(t *testing.T) (sent, signed []byte) {
	if c.Gen == nil {
		b := c.Body
		if c.Escapes {
			b = unescape(t, b)
		}
		return []byte(b), []byte(b)
	}
	g := c.Gen
	plain := []byte(g.Prefix + strings.Repeat(g.Repeat, g.Count) + g.Suffix + strings.Repeat(g.Close, g.Count) + g.End)
	if !g.Gzip {
		return plain, plain
	}
	z := gzipped(t, plain)
	if g.SignPlain {
		return z, plain
	}
	return z, z
}

// resursJWS signs body (with "{{jws}}" where the token goes) as sign says and
// returns it with the token in place.
func (e *hostileEnv) resursJWS(t *testing.T, body string, s *hostileSign) string {
	t.Helper()
	var m map[string]any
	must(t, json.Unmarshal([]byte(body), &m))
	delete(m, "jwsData")
	payload, err := json.Marshal(m)
	must(t, err)
	kid := hostileKid
	if s.Kid != "" {
		kid = s.Kid
	}
	k := e.key
	if s.Key == "forger" {
		k = e.forger
	}
	b64 := base64.RawURLEncoding.EncodeToString
	var tok string
	switch s.Alg {
	case "", "RS256":
		hdr := jws.NewHeaders()
		must(t, hdr.Set(jws.KeyIDKey, kid))
		if s.Crit {
			must(t, hdr.Set(jws.CriticalKey, []string{"exp"}))
			must(t, hdr.Set("exp", 4102444800))
		}
		// The raw key: signing with the jwk.Key would write its own kid over ours.
		var raw any
		must(t, k.priv.Raw(&raw))
		b, err := jws.Sign(payload, jws.WithKey(jwa.RS256, raw, jws.WithProtectedHeaders(hdr)))
		must(t, err)
		tok = string(b)
	case "none":
		tok = b64([]byte(`{"alg":"none","kid":"`+kid+`"}`)) + "." + b64(payload) + "."
	case "HS256-pubkey":
		pub, err := json.Marshal(k.pub)
		must(t, err)
		hdr := jws.NewHeaders()
		must(t, hdr.Set(jws.KeyIDKey, kid))
		b, err := jws.Sign(payload, jws.WithKey(jwa.HS256, pub, jws.WithProtectedHeaders(hdr)))
		must(t, err)
		tok = string(b)
	default:
		t.Fatalf("alg %q", s.Alg)
	}
	return strings.Replace(body, "{{jws}}", tok, 1)
}

// request builds the case's request body and headers.
func (e *hostileEnv) request(t *testing.T, c *hostileCase) ([]byte, map[string]string) {
	sent, signed := c.body(t)
	h := map[string]string{"Content-Type": "application/json"}
	if s := c.Sign; s != nil {
		switch s.Kind {
		case "plain":
			h["Authorization"] = "Bearer t0ken"
		case "nordiska":
			secret, token := shippedEnv["NORDISKA_SIGNING_SECRET"], shippedEnv["NORDISKA_AUTH_TOKEN"]
			if s.Secret != "" {
				secret = s.Secret
			}
			if s.Token != "" {
				token = s.Token
			}
			ts := time.Now()
			if s.TS != "" {
				d, err := time.ParseDuration(s.TS)
				must(t, err)
				ts = ts.Add(d)
			}
			h = nordiskaHeaders(string(signed), ts, secret, token)
			if s.Omit != "" {
				delete(h, s.Omit)
			}
		case "resurs":
			sent = []byte(e.resursJWS(t, string(sent), s))
		default:
			t.Fatalf("sign kind %q", s.Kind)
		}
	}
	if len(c.Tamper) == 2 {
		if !bytes.Contains(sent, []byte(c.Tamper[0])) {
			t.Fatalf("tamper: %q not in the body", c.Tamper[0])
		}
		sent = bytes.Replace(sent, []byte(c.Tamper[0]), []byte(c.Tamper[1]), 1)
	}
	for k, v := range c.Headers {
		if c.Escapes {
			v = unescape(t, v)
		}
		if v == "" {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	return sent, h
}

// hostileAnswer is what came back: status 0 when the connection closed
// without an answer.
type hostileAnswer struct {
	status int
	body   string
}

// send sends the case through an http.Client, or as raw bytes.
func (e *hostileEnv) send(t *testing.T, c *hostileCase) hostileAnswer {
	if c.Raw != "" {
		return e.sendRaw(t, c)
	}
	body, headers := e.request(t, c)
	method, path := c.Method, c.Path
	if method == "" {
		method = http.MethodPost
	}
	if path == "" {
		path = "/in/" + c.Provider
	}
	var r io.Reader = bytes.NewReader(body)
	if c.Chunked {
		r = io.MultiReader(r) // unknown length: sent chunked
	}
	req, err := http.NewRequest(method, e.tr.Ingest.URL+path, r)
	must(t, err)
	for k, v := range headers {
		req.Header[k] = []string{v} // as is: Set would not keep invalid bytes out either
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Logf("client: %v", err)
		return hostileAnswer{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return hostileAnswer{resp.StatusCode, string(b)}
}

// rawRequest expands the raw head of a case and appends its body.
func rawRequest(t *testing.T, c *hostileCase) []byte {
	head := unescape(t, c.Raw)
	for {
		i := strings.Index(head, "{{")
		if i < 0 {
			break
		}
		j := strings.Index(head[i:], "}}") + i
		what, n, _ := strings.Cut(head[i+2:j], ":")
		count, err := strconv.Atoi(n)
		must(t, err)
		var fill string
		switch what {
		case "big":
			fill = strings.Repeat("a", count)
		case "headers":
			var b strings.Builder
			for k := range count {
				fmt.Fprintf(&b, "X-Pad-%05d: aaaaaaaaaaaaaaaa\r\n", k)
			}
			fill = b.String()
		default:
			t.Fatalf("raw: unknown {{%s}}", what)
		}
		head = head[:i] + fill + head[j+2:]
	}
	body := c.Body
	if c.Escapes {
		body = unescape(t, body)
	}
	return []byte(head + "Content-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body)
}

// sendRaw writes the case's bytes on a new connection and reads one answer.
func (e *hostileEnv) sendRaw(t *testing.T, c *hostileCase) hostileAnswer {
	return rawExchange(t, e.tr.Ingest.Listener.Addr().String(), rawRequest(t, c))
}

func rawExchange(t *testing.T, addr string, msg []byte) hostileAnswer {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	must(t, err)
	defer func() { _ = conn.Close() }()
	must(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	// Write while reading: the server may answer (431) before it has read all.
	go func() { _, _ = conn.Write(msg) }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Logf("raw: no answer: %v", err)
		return hostileAnswer{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return hostileAnswer{resp.StatusCode, string(b)}
}

// hostileCounts is what the relay kept.
type hostileCounts struct {
	events, quarantined, rejections int
}

func (e *hostileEnv) counts(t *testing.T) hostileCounts {
	t.Helper()
	var n hostileCounts
	must(t, e.tr.spool.Events("", 0, func(*spool.Event, []*spool.Delivery) bool { n.events++; return true }))
	q, err := e.tr.spool.QuarantineList("", 100000)
	must(t, err)
	n.quarantined = len(q)
	n.rejections = len(e.tr.rejections.List("", 100000))
	return n
}

// probe sends a good request and waits for its delivery: the server still
// serves, and the dispatcher still delivers.
func (e *hostileEnv) probe(t *testing.T) {
	t.Helper()
	e.probes++
	id := fmt.Sprintf("probe-%d", e.probes)
	status, resp := seedPost(t, e.tr, "/in/plain", `{"id":"`+id+`","key":"probe","type":"probe"}`, authPlain)
	if status != http.StatusOK {
		t.Fatalf("probe after the case: %d %s, want 200", status, resp)
	}
	waitFor(t, 5*time.Second, "the probe delivered", func() bool {
		for _, r := range e.rec.requests() {
			if bytes.Contains(r.Body, []byte(`"plain:`+id+`"`)) {
				return true
			}
		}
		return false
	})
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return strings.Trim(string(b), `"`)
}

func clipBody(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}
