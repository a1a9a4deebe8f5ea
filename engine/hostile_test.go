package engine

// Hostile input (issue "Proof", parts 2 and 4): every case of
// testdata/hostile/cases.yaml goes through a real ingest listener, built as
// Serve builds it (newServer with ingestLimits), in front of the
// shipped nordiska.yaml (HMAC + bearer + timestamp) and resurs.yaml (JWS,
// keys from a loopback JWKS) and a plain bearer provider. Each must get its
// status, keep nothing it should not (no event, no quarantine entry), forward
// nothing, be recorded when a verifier refused it, and leave the server
// serving: a good request right after it is answered 200 and delivered.
// Slow senders and a hanging destination have tests of their own.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
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
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

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

func TestHostileCorpus(t *testing.T) {
	cases := loadHostileCases(t)
	e := newHostileEnv(t)
	e.probe(t)
	delivered := 1
	for i := range cases {
		c := &cases[i]
		t.Run(c.Name, func(t *testing.T) {
			before := e.counts(t)
			start := time.Now()
			got := e.send(t, c)
			took := time.Since(start)
			// A bound against a hang or work on the scale of an expanded
			// body, not a speed target (that is the benchmarks'): 0.7 s is
			// usual for the slowest case under -race, and it took 4.2 s on
			// a CI machine busy with other tests.
			if took > 10*time.Second {
				t.Errorf("took %v", took)
			}
			if got.status != c.Want {
				t.Errorf("status %d %q, want %d", got.status, clipBody(got.body), c.Want)
			}
			if c.Reason != "" {
				var ans struct{ Error string }
				_ = json.Unmarshal([]byte(got.body), &ans)
				if !strings.Contains(ans.Error, c.Reason) {
					t.Errorf("reason %q, want it to contain %q", ans.Error, c.Reason)
				}
			}
			after := e.counts(t)
			want := before
			switch c.Outcome {
			case outRejected:
				want.rejections++
			case outQuarantined:
				want.quarantined++
			case outAccepted:
				want.events++
				delivered++
			}
			if after != want {
				t.Errorf("kept %+v, want %+v (before %+v)", after, want, before)
			}
			if c.Outcome == outRejected {
				rj := e.tr.rejections.List("", 1)[0]
				if rj.Provider != c.Provider || rj.Reason == "" || !strings.Contains(got.body, jsonString(rj.Reason)) {
					t.Errorf("rejection recorded as %+v; answer %s", rj, clipBody(got.body))
				}
			}
			if c.Outcome == outQuarantined {
				q, err := e.tr.spool.QuarantineList("", 1)
				must(t, err)
				sent, _ := c.body(t)
				if len(q) != 1 || q[0].Provider != c.Provider {
					t.Fatalf("quarantine %+v", q)
				}
				// Kept as sent: a compressed body is never expanded.
				if !bytes.Equal(q[0].Body, sent) {
					t.Errorf("quarantined body of %d bytes, sent %d", len(q[0].Body), len(sent))
				}
				t.Logf("quarantined: %s", q[0].Reason)
			}
			e.probe(t)
		})
	}
	// Everything delivered was a probe or an accepted case, once: nothing
	// is left to come.
	waitFor(t, 5*time.Second, "nothing queued", e.tr.settled)
	if got, want := len(e.rec.requests()), e.probes+delivered-1; got != want {
		for _, r := range e.rec.requests() {
			t.Logf("delivered: %s", clipBody(string(r.Body)))
		}
		t.Errorf("%d deliveries, want %d (%d probes, %d accepted cases)", got, want, e.probes, delivered-1)
	}
	for _, r := range e.rec.requests() {
		switch {
		case !json.Valid(r.Body):
			t.Errorf("delivered a body that is not JSON: %q", clipBody(string(r.Body)))
		case !utf8.Valid(r.Body):
			t.Errorf("delivered a body that is not UTF-8 (RFC 8259 8.1): %q", clipBody(string(r.Body)))
		}
	}
	// The rejections, with their invalid bytes, still render in the admin API.
	status, body := e.tr.call(http.MethodGet, "/admin/rejections", "")
	if status != http.StatusOK || !json.Valid(body) {
		t.Errorf("GET /admin/rejections: %d %s", status, clipBody(string(body)))
	}
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

// ---------------------------------------------------------------- slow senders

// TestHostileServeLimits: Serve's ingest listener has every limit set.
func TestHostileServeLimits(t *testing.T) {
	srv := newServer(http.NotFoundHandler(), ingestLimits)
	if srv.ReadHeaderTimeout != 10*time.Second || srv.ReadTimeout != 30*time.Second || srv.WriteTimeout != 30*time.Second ||
		srv.IdleTimeout != 2*time.Minute || srv.MaxHeaderBytes != 64<<10 {
		t.Errorf("ingest server limits %v %v %v %v %d", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout,
			srv.IdleTimeout, srv.MaxHeaderBytes)
	}
}

// TestHostileSlowLoris: connections that trickle their headers one byte per
// 100ms, or their body, are cut at the listener's ReadHeader and Read
// timeouts (shortened here from 10s and 30s), keep nothing, and other
// clients are served all the while.
func TestHostileSlowLoris(t *testing.T) {
	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL, ""), map[string]string{"plain": plainProvider})
	limits := ingestLimits
	limits.ReadHeader, limits.Read = 300*time.Millisecond, time.Second
	useServeListener(tr, limits)
	addr := tr.Ingest.Listener.Addr().String()

	const slow = 40
	head := "POST /in/plain HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer t0ken\r\nContent-Type: application/json\r\n" +
		"X-Slow: " + strings.Repeat("s", 200) + "\r\n"
	body := `{"id":"slow-body","key":"k","type":"t"}`
	var wg sync.WaitGroup
	var cut atomic.Int64
	errs := make(chan string, 2*slow)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 2 * slow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer func() { _ = conn.Close() }()
			msg := head
			if i%2 == 1 { // headers at once, then the body one byte at a time
				if _, err := io.WriteString(conn, head+"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"); err != nil {
					errs <- err.Error()
					return
				}
				msg = body
			}
			closed := make(chan time.Time, 1)
			go func() {
				_, _ = io.Copy(io.Discard, conn) // until the server closes it
				closed <- time.Now()
			}()
			start := time.Now()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for j := 0; ; j++ {
				select {
				case at := <-closed:
					if d := at.Sub(start); d > 3*time.Second {
						errs <- fmt.Sprintf("slow sender %d cut only after %v", i, d)
					}
					cut.Add(1)
					return
				case <-ctx.Done():
					errs <- fmt.Sprintf("slow sender %d never cut", i)
					return
				case <-tick.C:
					if j < len(msg)-1 { // never the last byte
						_, _ = conn.Write([]byte{msg[j]})
					}
				}
			}
		}()
	}
	// Meanwhile, good requests are answered at once.
	deadline := time.Now().Add(1500 * time.Millisecond)
	n := 0
	for ; time.Now().Before(deadline); n++ {
		start := time.Now()
		status, resp := seedPost(t, tr, "/in/plain", fmt.Sprintf(`{"id":"good-%d","key":"good","type":"t"}`, n), authPlain)
		if status != http.StatusOK {
			t.Fatalf("good request during the slow senders: %d %s", status, resp)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("good request took %v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop := time.AfterFunc(8*time.Second, cancel) // a slow sender never cut fails, not hangs
	defer stop.Stop()
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if cut.Load() != 2*slow {
		t.Errorf("%d of %d slow senders cut", cut.Load(), 2*slow)
	}
	waitFor(t, 5*time.Second, "the good requests delivered and nothing queued", func() bool { return len(rec.requests()) >= n && tr.settled() })
	if got := len(rec.requests()); got != n {
		t.Errorf("%d deliveries, want the %d good ones", got, n)
	}
}

// ---------------------------------------------------------------- a hanging destination

// TestHostileHangingDestination: a destination that never answers (timeout
// 30s) holds up neither its other keys nor another destination.
func TestHostileHangingDestination(t *testing.T) {
	hang := make(chan struct{})
	var hangMu sync.Mutex
	hangGot := map[string]time.Time{}
	hangSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hangMu.Lock()
		hangGot[r.Header.Get("X-Key")] = time.Now()
		hangMu.Unlock()
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hangSrv.Close)
	rec := newRecorder(t, nil)
	relay := relayYAML(rec.srv.URL, "") +
		"  hang:\n    url: \"" + hangSrv.URL + "\"\n    timeout: 30s\n    headers: {X-Key: \"{{ event.key }}\"}\n"
	provider := strings.Replace(plainProvider, "to: [dest]", "to: [dest, hang]", 1)
	tr := startRelay(t, relay, map[string]string{"plain": provider})
	t.Cleanup(func() { close(hang) }) // before the relay stops (cleanups run last first)

	post := func(id, key string) time.Time {
		t.Helper()
		status, resp := seedPost(t, tr, "/in/plain", `{"id":"`+id+`","key":"`+key+`","type":"t"}`, authPlain)
		if status != http.StatusOK {
			t.Fatalf("POST %s: %d %s", id, status, resp)
		}
		return time.Now()
	}
	hangs := func(key string) bool {
		hangMu.Lock()
		defer hangMu.Unlock()
		_, ok := hangGot[key]
		return ok
	}
	delivered := func(id string) bool {
		for _, r := range rec.requests() {
			if bytes.Contains(r.Body, []byte(`"plain:`+id+`"`)) {
				return true
			}
		}
		return false
	}

	post("a1", "a")
	waitFor(t, 2*time.Second, "the hanging destination to hold key a", func() bool { return hangs("a") })
	start := post("a2", "a") // same key: waits at hang, not at dest
	post("b1", "b")
	post("c1", "c")
	waitFor(t, time.Second, "dest to get every event while hang hangs", func() bool {
		return delivered("a1") && delivered("a2") && delivered("b1") && delivered("c1")
	})
	waitFor(t, time.Second, "hang to get keys b and c while key a hangs", func() bool { return hangs("b") && hangs("c") })
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v", d)
	}
	if n := tr.queued("hang"); len(n) != 4 {
		t.Errorf("%d deliveries pending at hang, want 4", len(n))
	}
}

// TestHostileHeaderInjectionIntoDestination: a verified body whose mapped key
// holds CR-LF, rendered into a destination header, never splits the request
// to the destination: net/http refuses the value, nothing is sent, and the
// delivery ends dead (KNOWN ISSUE: as a network error, retried up to
// max_attempts, rather than dead at once as a render error).
func TestHostileHeaderInjectionIntoDestination(t *testing.T) {
	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL, "    headers: {X-Key: \"{{ event.key }}\"}\n"+
		"    retry: {max_attempts: 2, initial: 10ms, max: 10ms}\n"), map[string]string{"plain": plainProvider})
	useServeListener(tr, ingestLimits)
	status, resp := seedPost(t, tr, "/in/plain", `{"id":"inj","key":"a\r\nX-Injected: 1","type":"t"}`, authPlain)
	if status != http.StatusOK {
		t.Fatalf("ingest: %d %s", status, resp)
	}
	var d *spool.Delivery
	waitFor(t, 5*time.Second, "the delivery dead", func() bool {
		q := tr.queued("dest")
		if len(q) == 1 && q[0].Status == spool.Dead {
			d = q[0]
		}
		return d != nil
	})
	for _, a := range d.Attempts {
		if a.Status != 0 || !strings.Contains(a.Error, "X-Key") {
			t.Errorf("attempt %+v, want no request made", a)
		}
	}
	t.Logf("%d attempts: %s", len(d.Attempts), d.Attempts[0].Error)
	if n := len(rec.requests()); n != 0 {
		t.Errorf("the destination got %d requests", n)
	}
}
