package loadtest

// Ingest throughput on loopback, with two ceilings measured in the same run:
//
//	BenchmarkBaselineHTTP          bare net/http: read the body, answer 200 (g)
//	BenchmarkBaselineBoltPut       the same plus a group-committed, fsynced bbolt put
//	                               before the 200: the ceiling for durable answers (h)
//	BenchmarkIngestHMAC            hookrelay: HMAC verify, map, spool (group commit,
//	                               fsync), answer; deliveries run alongside (b)
//	BenchmarkIngestHMACNoDelivery  the same with the destination rate-limited to
//	                               (almost) nothing, so ingest has the machine to itself
//	BenchmarkIngestHMACPrivacy     (b) with privacy: on (records sealed at rest)
//	BenchmarkIngestHMACPrivacyNoDelivery  the same, ingest alone
//	BenchmarkIngestJWS             as (b), verified as providers.d/resurs.yaml does: an
//	                               RS256 JWS in body.jwsData, keys from a loopback JWKS,
//	                               payload must-match (c)
//	BenchmarkEndToEnd              events ingested, delivered to a loopback destination
//	                               and recorded delivered, per second (d)
//
// Every benchmark sends pre-built requests (for (g), (h), (b), (d) a ~300-byte
// JSON body, an X-Timestamp and an X-Signature header) from 64 goroutines
// over one shared http.Client, so that the client's share of the CPU is the
// same in each. Signing happens before the timer starts. Each reports req/s,
// the p50, p99 and p99.9 latency of one request in ms, and the process CPU
// per request.
//
//	go test -run '^$' -bench 'Baseline|Ingest|EndToEnd' -benchtime 3s -count 3 ./engine/loadtest/
//
// loadtest_test.go runs them all in one process for a table of ratios, and
// the open-loop latency test (HOOKRELAY_BENCH_REPORT=1).

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/hookrelay/hookrelay/engine"
	"github.com/hookrelay/hookrelay/engine/internal/benchkit"
)

// benchClients is how many requests are in flight at once.
const benchClients = 64

// loadSource is what a load generator sends: pre-built requests to one URL.
// A request with a signature gets the X-Timestamp and X-Signature headers of
// benchkit.Provider; one without (a JWS in its body) gets only Content-Type.
type loadSource struct {
	url  string
	ts   string
	reqs []benchkit.Request
}

func (s *loadSource) request(i int) *http.Request {
	req, err := http.NewRequest(http.MethodPost, s.url, bytes.NewReader(s.reqs[i].Body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if s.reqs[i].Sig != "" {
		req.Header.Set("X-Timestamp", s.ts)
		req.Header.Set("X-Signature", s.reqs[i].Sig)
	}
	return req
}

// hmacSource is n requests signed for benchkit.Provider, numbered from `from`, to url.
func hmacSource(url string, from, n int) *loadSource {
	ts := fmt.Sprint(time.Now().Unix())
	return &loadSource{url: url, ts: ts, reqs: benchkit.Requests(from, n, ts)}
}

// loadResult is one load run: how many requests completed, over how long,
// each one's latency (sorted), and the CPU the whole process used meanwhile.
type loadResult struct {
	n        int
	start    time.Time
	elapsed  time.Duration
	lat      []time.Duration // sorted
	cpu      time.Duration
	cpuOK    bool
	failed   int
	firstErr string
}

// pct is the p-quantile of the latencies in ms (0 when there are none).
func (lr *loadResult) pct(p float64) float64 {
	if len(lr.lat) == 0 {
		return 0
	}
	return float64(lr.lat[min(len(lr.lat)-1, int(p*float64(len(lr.lat))))]) / float64(time.Millisecond)
}

func (lr *loadResult) rate() float64 { return float64(lr.n) / lr.elapsed.Seconds() }

// cpuPerReq is the process CPU time per request in µs (0 when unknown).
func (lr *loadResult) cpuPerReq() float64 {
	if !lr.cpuOK || lr.n == 0 {
		return 0
	}
	return float64(lr.cpu) / float64(time.Microsecond) / float64(lr.n)
}

// benchTransport is the client side of every load generator: keep-alive
// connections enough for conns requests in flight, no compression.
func benchTransport(conns int) *http.Transport {
	return &http.Transport{
		MaxIdleConns: 2 * conns, MaxIdleConnsPerHost: 2 * conns,
		IdleConnTimeout: time.Minute, DisableCompression: true,
	}
}

// do sends one request and reports whether it got a 200, with a description
// of what went wrong otherwise.
func do(client *http.Client, req *http.Request) (bool, string) {
	resp, err := client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return false, fmt.Sprintf("status %d (Retry-After %q): %s", resp.StatusCode, resp.Header.Get("Retry-After"), bytes.TrimSpace(msg))
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return true, ""
}

// closedLoop is sendClosed from this process, with benchClients clients of
// a fresh http.Client, over src's first n requests: the Go benchmarks'
// load, whose profiles then show both sides.
func closedLoop(src *loadSource, n int, dur time.Duration, started func()) loadResult {
	tr := benchTransport(benchClients)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	return sendClosed(client, src.slice(0, min(n, len(src.reqs))), benchClients, dur, started).asResult()
}

// drive posts b.N of src's requests with closedLoop, times them, and reports
// req/s, p50-ms, p99-ms, p99.9-ms and cpu-us/req: the CPU time of the whole
// process (clients, server, relay, its deliveries) per request, which other
// load on the machine disturbs far less than req/s. Anything but 200 fails b.
// src must hold at least b.N requests.
func drive(b *testing.B, src *loadSource) loadResult {
	b.Helper()
	b.ReportAllocs()
	lr := closedLoop(src, b.N, 0, b.ResetTimer)
	b.StopTimer()
	if lr.failed > 0 {
		b.Fatalf("%d of %d requests failed; first: %s", lr.failed, b.N, lr.firstErr)
	}
	if lr.n != b.N {
		b.Fatalf("sent %d requests, want %d", lr.n, b.N)
	}
	reportLoad(b, lr)
	return lr
}

// reportLoad reports a run's rate, latency quantiles and CPU per request.
func reportLoad(b *testing.B, lr loadResult) {
	b.ReportMetric(lr.rate(), "req/s")
	b.ReportMetric(lr.pct(0.50), "p50-ms")
	b.ReportMetric(lr.pct(0.99), "p99-ms")
	b.ReportMetric(lr.pct(0.999), "p99.9-ms")
	if lr.cpuOK {
		b.ReportMetric(lr.cpuPerReq(), "cpu-us/req")
	}
}

// okBody is what every benchmark server answers, like the provider's respond.
var okBody = []byte(`{"success":true}`)

func answerOK(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(okBody)
}

// startBaselineHTTP serves the HTTP ceiling (g): read the body, answer 200.
// It returns the ingest URL.
func startBaselineHTTP(tb testing.TB) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		answerOK(w)
	}))
	tb.Cleanup(srv.Close)
	return srv.URL + "/in/example"
}

// BenchmarkBaselineHTTP is the HTTP ceiling (g): read the body, answer 200.
func BenchmarkBaselineHTTP(b *testing.B) {
	drive(b, hmacSource(startBaselineHTTP(b), 0, b.N))
}

// boltPut is one body waiting for its batch's commit.
type boltPut struct {
	body []byte
	done chan error
}

// boltGroup is the smallest group commit: one writer drains the channel into
// one fsynced db.Update per batch (NoSync stays false). It opens bbolt with
// the spool's options. It returns the channel and the count of commits.
func boltGroup(tb testing.TB) (chan<- boltPut, *atomic.Int64) {
	db, err := bolt.Open(filepath.Join(tb.TempDir(), "baseline.db"), 0o600,
		&bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType, NoFreelistSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	bucket := []byte("b")
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	const maxBatch = 512
	ch := make(chan boltPut, maxBatch)
	stopped := make(chan struct{})
	commits := new(atomic.Int64)
	go func() {
		defer close(stopped)
		batch := make([]boltPut, 0, maxBatch)
		for p := range ch {
			batch = append(batch[:0], p)
		fill:
			for len(batch) < maxBatch {
				select {
				case p, ok := <-ch:
					if !ok {
						break fill
					}
					batch = append(batch, p)
				default:
					break fill
				}
			}
			err := db.Update(func(tx *bolt.Tx) error {
				bk := tx.Bucket(bucket)
				for _, p := range batch {
					seq, err := bk.NextSequence()
					if err != nil {
						return err
					}
					if err := bk.Put(binary.BigEndian.AppendUint64(nil, seq), p.body); err != nil {
						return err
					}
				}
				return nil
			})
			commits.Add(1)
			for _, p := range batch {
				p.done <- err
			}
		}
	}()
	tb.Cleanup(func() {
		close(ch)
		<-stopped
		_ = db.Close()
	})
	return ch, commits
}

// startBaselineBoltPut serves the durable-answer ceiling (h): the HTTP
// baseline plus a group-committed bbolt put of the body before the 200. It
// returns the ingest URL and the count of commits.
func startBaselineBoltPut(tb testing.TB) (string, *atomic.Int64) {
	puts, commits := boltGroup(tb)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p := boltPut{body: body, done: make(chan error, 1)}
		puts <- p
		if err := <-p.done; err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		answerOK(w)
	}))
	// Registered after boltGroup's cleanup, so it runs first: no handler is
	// left sending on the closed channel.
	tb.Cleanup(srv.Close)
	return srv.URL + "/in/example", commits
}

// BenchmarkBaselineBoltPut is the durable-answer ceiling (h).
func BenchmarkBaselineBoltPut(b *testing.B) {
	url, commits := startBaselineBoltPut(b)
	drive(b, hmacSource(url, 0, b.N))
	b.ReportMetric(float64(b.N)/float64(max(1, commits.Load())), "req/commit")
}

// destCounter counts what a countingDest received and, while record is
// set, keeps each delivery's age: from the event's ULID time (its ingest,
// to the millisecond) to its arrival.
type destCounter struct {
	n      atomic.Int64
	record atomic.Bool
	mu     sync.Mutex
	ages   []time.Duration
}

// takeAges returns the ages recorded so far, sorted, and forgets them.
func (c *destCounter) takeAges() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	ages := c.ages
	c.ages = nil
	slices.Sort(ages)
	return ages
}

// countingDest is a destination that answers 200 and only counts: the
// harness's recorder keeps every request, which at benchmark volumes would
// measure its own memory growth.
func countingDest(tb testing.TB) (*httptest.Server, *destCounter) {
	c := new(destCounter)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		c.n.Add(1)
		if c.record.Load() {
			if id, err := ulid.ParseStrict(r.Header.Get("X-Hookrelay-Event-Id")); err == nil {
				age := time.Since(ulid.Time(id.Time()))
				c.mu.Lock()
				c.ages = append(c.ages, age)
				c.mu.Unlock()
			}
		}
		w.WriteHeader(http.StatusOK)
	}))
	tb.Cleanup(srv.Close)
	return srv, c
}

// benchRelay starts a relay on a fresh bbolt file in tb.TempDir() with the
// given providers (name -> YAML; benchkit.Provider when nil) and one destination
// "dest" at destURL, and serves its ingest handler. It logs at warn level,
// so no line per request (to stderr with -v).
func benchRelay(tb testing.TB, destURL, destExtra string, providers map[string]string) (*engine.Relay, *httptest.Server) {
	tb.Helper()
	return benchRelayYAML(tb, relayYAML(destURL, destExtra), providers)
}

// benchPrivacyEnv holds the master key of benchRelayPrivacy's relays.
const benchPrivacyEnv = "HOOKRELAY_BENCH_DATA_KEY"

// benchRelayPrivacy is benchRelay with a privacy: block (README, Privacy):
// every record the spool writes is sealed under its event key's data key,
// with the keystore beside the spool. The master key is fixed (32 bytes,
// base64), as only the cost is measured.
func benchRelayPrivacy(tb testing.TB, destURL, destExtra string, providers map[string]string) (*engine.Relay, *httptest.Server) {
	tb.Helper()
	tb.Setenv(benchPrivacyEnv, "YmVuY2gtbWFzdGVyLWtleS0zMi1ieXRlcy1sb25nISE=")
	return benchRelayYAML(tb, relayYAML(destURL, destExtra)+"privacy:\n  key: env:"+benchPrivacyEnv+"\n", providers)
}

// benchRelayYAML is benchRelay with the whole relay.yaml given.
func benchRelayYAML(tb testing.TB, relay string, providers map[string]string) (*engine.Relay, *httptest.Server) {
	tb.Helper()
	if providers == nil {
		providers = map[string]string{"example": benchkit.Provider}
	}
	dir := tb.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "providers.d"), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte(relay), 0o644); err != nil {
		tb.Fatal(err)
	}
	for name, yaml := range providers {
		if err := os.WriteFile(filepath.Join(dir, "providers.d", name+".yaml"), []byte(yaml), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	cfg, err := engine.Load(filepath.Join(dir, "relay.yaml"), true)
	if err != nil {
		tb.Fatalf("load: %v", err)
	}
	for _, p := range cfg.Providers {
		if p.Disabled != "" {
			tb.Fatalf("provider %s disabled: %s", p.Name, p.Disabled)
		}
	}
	out := io.Discard
	if testing.Verbose() {
		out = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := engine.Open(cfg, log)
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	if err := r.Start(); err != nil {
		_ = r.Close(0)
		tb.Fatalf("start: %v", err)
	}
	// Close waits at most a second: nothing here needs the deliveries in
	// flight finished or the queue drained.
	tb.Cleanup(func() { _ = r.Close(time.Second) })
	srv := httptest.NewServer(r.IngestHandler())
	tb.Cleanup(srv.Close)
	return r, srv
}

// BenchmarkIngestHMAC is hookrelay's ingest (b): HMAC-verified, mapped,
// spooled with fsync, then answered, while the dispatcher delivers to a
// destination that answers 200, as in production. deliv/s is how many
// deliveries completed during the timed run.
func BenchmarkIngestHMAC(b *testing.B) {
	dest, delivered := countingDest(b)
	_, srv := benchRelay(b, dest.URL, "", nil)
	src := hmacSource(srv.URL+"/in/example", 0, b.N)
	before := delivered.n.Load()
	lr := drive(b, src)
	b.ReportMetric(float64(delivered.n.Load()-before)/lr.elapsed.Seconds(), "deliv/s")
}

// BenchmarkIngestHMACNoDelivery is BenchmarkIngestHMAC with the destination
// rate-limited to one request per 1000s: the events pile up in the queue, as
// behind a paused destination, and ingest does not share the CPU and the
// spool writer with deliveries.
func BenchmarkIngestHMACNoDelivery(b *testing.B) {
	dest, _ := countingDest(b)
	_, srv := benchRelay(b, dest.URL, noDelivery, nil)
	drive(b, hmacSource(srv.URL+"/in/example", 0, b.N))
}

// BenchmarkIngestHMACPrivacy is BenchmarkIngestHMAC with privacy on: the
// event, its deliveries and their attempts are sealed (AES-256-GCM) under a
// data key per event key before they reach the spool, and opened to deliver.
func BenchmarkIngestHMACPrivacy(b *testing.B) {
	dest, delivered := countingDest(b)
	r, srv := benchRelayPrivacy(b, dest.URL, "", nil)
	primeDataKeys(b, srv.URL+"/in/example")
	waitDelivered(b, r, time.Minute)
	src := hmacSource(srv.URL+"/in/example", 0, b.N)
	before := delivered.n.Load()
	lr := drive(b, src)
	b.ReportMetric(float64(delivered.n.Load()-before)/lr.elapsed.Seconds(), "deliv/s")
}

// BenchmarkIngestHMACPrivacyNoDelivery is BenchmarkIngestHMACNoDelivery with
// privacy on.
func BenchmarkIngestHMACPrivacyNoDelivery(b *testing.B) {
	dest, _ := countingDest(b)
	_, srv := benchRelayPrivacy(b, dest.URL, noDelivery, nil)
	primeDataKeys(b, srv.URL+"/in/example")
	drive(b, hmacSource(srv.URL+"/in/example", 0, b.N))
}

// primeDataKeys sends one event of each of benchkit's 1024 event keys
// before the clock starts, so that the first event of every key, which
// draws the key's data key and stores it with an fsync, is not timed: a
// once-per-key cost that a run of b.N events would otherwise spread over
// them (the report's warm-up does the same).
func primeDataKeys(b *testing.B, url string) {
	b.Helper()
	const keys, from = 1024, 1 << 30 // ids apart from the timed run's
	lr := closedLoop(hmacSource(url, from, keys), keys, 0, nil)
	if lr.failed > 0 {
		b.Fatalf("priming data keys: %d of %d requests failed; first: %s", lr.failed, keys, lr.firstErr)
	}
}

// noDelivery is benchRelay's destExtra for a destination that takes one
// request per 1000 s.
const noDelivery = "    concurrency: 1\n    rate: 0.001\n"

// ---------------------------------------------------------------- JWS (c)

// benchJWSKid is the kid of the benchmark's RS256 key.
const benchJWSKid = "bench-rs256"

// benchJWS holds the RSA key and the signed bodies, shared by every run in
// the process: signing (about 1.4 ms per RS256 signature here) is by far the
// slowest part of the set-up, and each run has a fresh spool, so bodies may
// be sent again in another run without being duplicates.
var benchJWS struct {
	once   sync.Once
	key    *rsa.PrivateKey
	pub    jwk.Key
	err    error
	mu     sync.Mutex
	bodies [][]byte
}

// jwsKey returns the benchmark's signing key and its public JWK.
func jwsKey(tb testing.TB) (*rsa.PrivateKey, jwk.Key) {
	tb.Helper()
	benchJWS.once.Do(func() {
		if benchJWS.key, benchJWS.err = rsa.GenerateKey(rand.Reader, 2048); benchJWS.err != nil {
			return
		}
		if benchJWS.pub, benchJWS.err = jwk.FromRaw(&benchJWS.key.PublicKey); benchJWS.err != nil {
			return
		}
		for _, kv := range []struct {
			k string
			v any
		}{{jwk.KeyIDKey, benchJWSKid}, {jwk.AlgorithmKey, jwa.RS256}, {jwk.KeyUsageKey, "sig"}} {
			if benchJWS.err = benchJWS.pub.Set(kv.k, kv.v); benchJWS.err != nil {
				return
			}
		}
	})
	if benchJWS.err != nil {
		tb.Fatal(benchJWS.err)
	}
	return benchJWS.key, benchJWS.pub
}

// jwsPayload is the signed payload of body i: Resurs' credit decision
// callback (seeds/resurs/credit_decision_approved.json) without jwsData, with
// one of 1024 application references as the key and the approved amount
// varying with i, so that every body is distinct (Resurs' events have no id:
// dedup hashes the body).
func jwsPayload(i int) []byte {
	return fmt.Appendf(nil, `{"externalApplicationEvent":{"applicationReference":"app-%04d",`+
		`"applicationEventType":"CREDIT_DECISION_UPDATED","creditDecision":{"creditDecision":"APPROVED",`+
		`"approvedAmount":%d,"interest":12.3,"tenor":12,"effectiveInterest":23.3,"monthlyCost":1234,`+
		`"consolidationDemand":2300,"adminFee":199,"arrangementFee":599.99,"totalRepaymentAmount":13000,`+
		`"monthlyAccountFee":0,"totalFeesAndInterest":3000.00,"documentTypes":["ID","PAYMENT_SLIP"]}}}`, i%1024, 10000+i)
}

// jwsBodies returns bodies [from, to): each Resurs' callback with jwsData, an
// RS256 compact JWS (kid in its protected header) over its payload, with
// Resurs' leading space. Missing ones are signed on every core.
func jwsBodies(tb testing.TB, from, to int) []benchkit.Request {
	tb.Helper()
	key, _ := jwsKey(tb)
	benchJWS.mu.Lock()
	defer benchJWS.mu.Unlock()
	if have := len(benchJWS.bodies); have < to {
		benchJWS.bodies = slices.Grow(benchJWS.bodies, to-have)[:to]
		var wg sync.WaitGroup
		var next atomic.Int64
		next.Store(int64(have))
		var failed atomic.Pointer[error]
		for range runtime.GOMAXPROCS(0) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				hdr := jws.NewHeaders()
				if err := hdr.Set(jws.KeyIDKey, benchJWSKid); err != nil {
					failed.Store(&err)
					return
				}
				for i := int(next.Add(1)) - 1; i < to; i = int(next.Add(1)) - 1 {
					payload := jwsPayload(i)
					tok, err := jws.Sign(payload, jws.WithKey(jwa.RS256, key, jws.WithProtectedHeaders(hdr)))
					if err != nil {
						failed.Store(&err)
						return
					}
					body := slices.Concat(payload[:len(payload)-1], []byte(`,"jwsData":" `))
					benchJWS.bodies[i] = append(append(body, tok...), `"}`...)
				}
			}()
		}
		wg.Wait()
		if err := failed.Load(); err != nil {
			benchJWS.bodies = benchJWS.bodies[:have]
			tb.Fatalf("sign: %v", *err)
		}
	}
	reqs := make([]benchkit.Request, to-from)
	for i := range reqs {
		reqs[i] = benchkit.Request{Body: benchJWS.bodies[from+i]}
	}
	return reqs
}

// benchJWKS serves the benchmark key's JWK set on loopback, only to requests
// with Resurs' apikey header, and returns its URL and the count of fetches.
func benchJWKS(tb testing.TB) (string, *atomic.Int64) {
	_, pub := jwsKey(tb)
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		tb.Fatal(err)
	}
	js, err := json.Marshal(set)
	if err != nil {
		tb.Fatal(err)
	}
	fetches := new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("apikey") != benchJWKSAPIKey {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(js)
	}))
	tb.Cleanup(srv.Close)
	return srv.URL + "/api/auth_service/jwks", fetches
}

// benchJWSProvider is the shipped providers.d/resurs.yaml (verify, event,
// respond as shipped: RS256 from body.jwsData, payload must-match, the JWKS
// behind an apikey header) with its JWKS at jwksURL, routed to "dest", and
// without its poll and register sections, which need Resurs' web service.
func benchJWSProvider(tb testing.TB, jwksURL string) string {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "providers.d", "resurs.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	y := string(raw)
	if i := strings.Index(y, "\npoll:"); i >= 0 {
		y = y[:i+1]
	}
	for _, r := range []struct{ old, new string }{
		{"env:RESURS_JWKS_URL", strconv.Quote(jwksURL)},
		{"env:RESURS_JWKS_APIKEY", benchJWKSAPIKey},
		{"to: [broker]", "to: [dest]"},
		{"payload: must-match", "payload: must-match"}, // still what is measured
	} {
		if !strings.Contains(y, r.old) {
			tb.Fatalf("providers.d/resurs.yaml has no %q any more: update benchJWSProvider", r.old)
		}
		y = strings.Replace(y, r.old, r.new, 1)
	}
	return y
}

// startIngestJWS starts a relay with benchJWSProvider, delivering to dest,
// sends one request so that the JWK set is fetched and cached, and returns
// the ingest URL.
func startIngestJWS(tb testing.TB, destURL, destExtra string) string {
	tb.Helper()
	jwksURL, fetches := benchJWKS(tb)
	_, srv := benchRelay(tb, destURL, destExtra, map[string]string{"resurs": benchJWSProvider(tb, jwksURL)})
	url := srv.URL + "/in/resurs"
	primeJWS(tb, url)
	if fetches.Load() == 0 {
		tb.Fatal("the relay never fetched the JWK set")
	}
	return url
}

// primeJWS sends request 0 alone, as a lender's first callback, so that the
// relay has fetched the JWK set before the load starts: until a set was
// fetched, all but a few concurrent requests are answered 503 (the lender
// retries), which would count as failures of the load.
func primeJWS(tb testing.TB, url string) {
	tb.Helper()
	warm := &loadSource{url: url, reqs: jwsBodies(tb, 0, 1)}
	if ok, why := do(http.DefaultClient, warm.request(0)); !ok {
		tb.Fatalf("warm-up request: %s", why)
	}
}

// BenchmarkIngestJWS is hookrelay's ingest with Resurs' verification (c):
// an RS256 compact JWS in body.jwsData, checked against a JWK set served on
// loopback (fetched and cached before the timer starts), the signed payload
// matched against the body, then mapped, spooled and answered as in (b),
// with deliveries alongside. The bodies (about 1.1 KB) are signed before the
// timer starts.
func BenchmarkIngestJWS(b *testing.B) {
	dest, delivered := countingDest(b)
	url := startIngestJWS(b, dest.URL, "")
	src := &loadSource{url: url, reqs: jwsBodies(b, 1, 1+b.N)}
	before := delivered.n.Load()
	lr := drive(b, src)
	b.ReportMetric(float64(delivered.n.Load()-before)/lr.elapsed.Seconds(), "deliv/s")
}

// BenchmarkIngestJWSNoDelivery is BenchmarkIngestJWS with ingest alone, as
// BenchmarkIngestHMACNoDelivery is to BenchmarkIngestHMAC.
func BenchmarkIngestJWSNoDelivery(b *testing.B) {
	dest, _ := countingDest(b)
	url := startIngestJWS(b, dest.URL, noDelivery)
	drive(b, &loadSource{url: url, reqs: jwsBodies(b, 1, 1+b.N)})
}

// ---------------------------------------------------------------- end to end (d)

// lanesPending is how many deliveries the relay's lanes still hold: queued
// in memory and not yet recorded final in the spool.
func lanesPending(r *engine.Relay) int {
	pending, _ := r.Backlog()
	return pending
}

// lanesDead is how many of those are dead.
func lanesDead(r *engine.Relay) int {
	_, dead := r.Backlog()
	return dead
}

// waitDelivered polls lanesPending every millisecond until it is 0 and
// returns when it saw it so, or fails tb after timeout.
func waitDelivered(tb testing.TB, r *engine.Relay, timeout time.Duration) time.Time {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if lanesPending(r) == 0 {
			return time.Now()
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d deliveries still pending after %v", lanesPending(r), timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// e2eResult is one end-to-end run: the ingest requests, the time from
// their start until every event was recorded delivered, the process CPU
// meanwhile, and each delivery's age at the destination (sorted).
type e2eResult struct {
	ingest loadResult
	total  time.Duration
	cpu    time.Duration
	cpuOK  bool
	ages   []time.Duration
}

func (e *e2eResult) rate() float64 { return float64(e.ingest.n) / e.total.Seconds() }

// endToEnd ingests with send into r and waits until every event is
// recorded delivered; dest is r's destination. send calls started as its
// measured run begins, and returns its result and the CPU its client used
// outside this process (0 when it runs in this one).
func endToEnd(tb testing.TB, r *engine.Relay, dest *destCounter, send func(started func()) (loadResult, time.Duration)) e2eResult {
	tb.Helper()
	before := dest.n.Load()
	dest.takeAges()
	dest.record.Store(true)
	defer dest.record.Store(false)
	var cpu0 time.Duration
	var e e2eResult
	ingest, clientCPU := send(func() { cpu0, e.cpuOK = benchkit.ProcessCPU() })
	e.ingest = ingest
	if e.ingest.failed > 0 {
		tb.Fatalf("%d of %d requests failed; first: %s", e.ingest.failed, e.ingest.n, e.ingest.firstErr)
	}
	done := waitDelivered(tb, r, 5*time.Minute)
	cpu1, _ := benchkit.ProcessCPU()
	e.total, e.cpu = done.Sub(e.ingest.start), cpu1-cpu0+clientCPU
	if got := dest.n.Load() - before; got < int64(e.ingest.n) {
		tb.Fatalf("destination got %d deliveries, want %d", got, e.ingest.n)
	}
	e.ages = dest.takeAges()
	return e
}

// BenchmarkEndToEnd is hookrelay end to end (d): b.N HMAC-signed events
// ingested by 64 clients and each delivered to a loopback destination that
// answers 200, and recorded delivered in the spool; the clock stops when no
// delivery is pending. delivered/s is b.N over that time; the latencies are
// the ingest requests'; age-p50/p99 are from an event's ingest (its ULID
// time, in ms) to its arrival at the destination.
func BenchmarkEndToEnd(b *testing.B) {
	dest, delivered := countingDest(b)
	r, srv := benchRelay(b, dest.URL, "", nil)
	src := hmacSource(srv.URL+"/in/example", 0, b.N)
	b.ReportAllocs()
	e := endToEnd(b, r, delivered, func(started func()) (loadResult, time.Duration) {
		return closedLoop(src, b.N, 0, func() { b.ResetTimer(); started() }), 0
	})
	b.StopTimer()
	b.ReportMetric(e.rate(), "delivered/s")
	b.ReportMetric(e.ingest.rate(), "ingest-req/s")
	b.ReportMetric(e.ingest.pct(0.50), "p50-ms")
	b.ReportMetric(e.ingest.pct(0.99), "p99-ms")
	b.ReportMetric(e.ingest.pct(0.999), "p99.9-ms")
	age := loadResult{lat: e.ages}
	b.ReportMetric(age.pct(0.50), "age-p50-ms")
	b.ReportMetric(age.pct(0.99), "age-p99-ms")
	if e.cpuOK {
		b.ReportMetric(float64(e.cpu)/float64(time.Microsecond)/float64(b.N), "cpu-us/event")
	}
}
