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
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

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

// ---------------------------------------------------------------- end to end (d)
