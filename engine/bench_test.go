package engine

// Ingest throughput on loopback, with two ceilings measured in the same run:
//
//	BenchmarkBaselineHTTP          bare net/http: read the body, answer 200 (g)
//	BenchmarkBaselineBoltPut       the same plus a group-committed, fsynced bbolt put
//	                               before the 200: the ceiling for durable answers (h)
//	BenchmarkIngestHMAC            hookrelay: HMAC verify, map, spool (group commit,
//	                               fsync), answer; deliveries run alongside (b)
//	BenchmarkIngestHMACNoDelivery  the same with the destination rate-limited to
//	                               (almost) nothing, so ingest has the machine to itself
//
// Every benchmark sends the same pre-built requests (a ~300-byte JSON body, an
// X-Timestamp and an X-Signature header) from 64 goroutines over one shared
// http.Client, so that the client's share of the CPU is the same in each.
// Signing happens before the timer starts. Each reports req/s and the p50 and
// p99 latency of one request in ms.
//
//	go test -run '^$' -bench 'Baseline|Ingest' -benchtime 3s -count 3 ./engine/

import (
	"bytes"
	"encoding/binary"
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

	bolt "go.etcd.io/bbolt"
)

// benchClients is how many requests are in flight at once.
const benchClients = 64

// benchSecret signs the benchmark requests; benchProvider verifies them.
const benchSecret = "bench-secret"

// benchProvider is providers.d/example.yaml with a literal secret, routed to
// the test destination "dest".
const benchProvider = `
name: example
paths: [/in/example]
methods: [POST]
max_body: 256KiB
verify:
  - kind: hmac
    secret: ` + benchSecret + `
    algorithm: sha256
    signed: "{header.X-Timestamp}.{body}"
    signature: { header: X-Signature, encoding: hex, prefix: "sha256=" }
    timestamp: { header: X-Timestamp, format: unix, tolerance: 5m }
event:
  id: body.id ?? ""
  key: body.key
  type: body.type
  types:
    order.paid: payment.completed
  data:
    payload: body.data
routes:
  - to: [dest]
dedup: 72h
respond: { status: 200, body: '{"success":true}', content_type: application/json }
`

// benchRequest is one pre-built request.
type benchRequest struct {
	body []byte
	sig  string
}

// benchRequests builds n signed requests, each with its own event id (so that
// dedup never answers early) and one of 1024 ordering keys.
func benchRequests(n int, ts string) []benchRequest {
	reqs := make([]benchRequest, n)
	for i := range reqs {
		body := fmt.Appendf(nil, `{"id":"evt_%012d","key":"order-%04d","type":"order.paid",`+
			`"created_at":"2026-11-25T09:59:59Z","data":{"amount":10000,"currency":"EUR",`+
			`"customer":{"id":"cus_8f3a2b","email":"jane.doe@example.com"},"items":[{"sku":"SKU-1001",`+
			`"qty":2,"price":2500},{"sku":"SKU-2002","qty":1,"price":5000}],"status":"paid",`+
			`"reference":"INV-2026-000123"}}`, i, i%1024)
		reqs[i] = benchRequest{body: body, sig: "sha256=" + hmacHex(benchSecret, ts+"."+string(body))}
	}
	return reqs
}

// drive posts b.N pre-built requests to url from benchClients goroutines,
// times them, and reports req/s, p50-ms, p99-ms and cpu-us/req: the CPU time
// of the whole process (clients, server, relay, its deliveries) per request,
// which other load on the machine disturbs far less than req/s. Anything but
// 200 fails b.
func drive(b *testing.B, url string) {
	b.Helper()
	ts := fmt.Sprint(time.Now().Unix())
	reqs := benchRequests(b.N, ts)
	tr := &http.Transport{
		MaxIdleConns: 2 * benchClients, MaxIdleConnsPerHost: 2 * benchClients,
		IdleConnTimeout: time.Minute, DisableCompression: true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute}

	var next atomic.Int64
	var failed atomic.Int64
	lat := make([][]time.Duration, benchClients)
	var wg sync.WaitGroup
	b.ReportAllocs()
	cpu0, cpuOK := processCPU()
	b.ResetTimer()
	for w := range benchClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, b.N/benchClients+1)
			for {
				i := int(next.Add(1)) - 1
				if i >= len(reqs) {
					break
				}
				req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(reqs[i].body))
				if err != nil {
					panic(err)
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Timestamp", ts)
				req.Header.Set("X-Signature", reqs[i].sig)
				start := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				mine = append(mine, time.Since(start))
				if err != nil || resp.StatusCode != http.StatusOK {
					if failed.Add(1) == 1 {
						status := 0
						if resp != nil {
							status = resp.StatusCode
						}
						b.Errorf("request %d: status %d, error %v", i, status, err)
					}
				}
			}
			lat[w] = mine
		}()
	}
	wg.Wait()
	b.StopTimer()
	cpu1, _ := processCPU()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d requests failed", n, b.N)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) float64 {
		return float64(all[min(len(all)-1, int(p*float64(len(all))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	if cpuOK {
		b.ReportMetric(float64(cpu1-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-us/req")
	}
}

// okBody is what every benchmark server answers, like the provider's respond.
var okBody = []byte(`{"success":true}`)

func answerOK(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(okBody)
}

// BenchmarkBaselineHTTP is the HTTP ceiling (g): read the body, answer 200.
func BenchmarkBaselineHTTP(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		answerOK(w)
	}))
	defer srv.Close()
	drive(b, srv.URL+"/in/example")
}

// boltPut is one body waiting for its batch's commit.
type boltPut struct {
	body []byte
	done chan error
}

// boltGroup is the smallest group commit: one writer drains the channel into
// one fsynced db.Update per batch (NoSync stays false). It opens bbolt with
// the spool's options. It returns the channel and the count of commits.
func boltGroup(b *testing.B) (chan<- boltPut, *atomic.Int64) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "baseline.db"), 0o600,
		&bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType, NoFreelistSync: true})
	if err != nil {
		b.Fatal(err)
	}
	bucket := []byte("b")
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		b.Fatal(err)
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
	b.Cleanup(func() {
		close(ch)
		<-stopped
		db.Close()
	})
	return ch, commits
}

// BenchmarkBaselineBoltPut is the durable-answer ceiling (h): the HTTP
// baseline plus a group-committed bbolt put of the body before the 200.
func BenchmarkBaselineBoltPut(b *testing.B) {
	puts, commits := boltGroup(b)
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
	defer srv.Close()
	drive(b, srv.URL+"/in/example")
	b.ReportMetric(float64(b.N)/float64(max(1, commits.Load())), "req/commit")
}

// countingDest is a destination that answers 200 and only counts: the
// harness's recorder keeps every request, which at benchmark volumes would
// measure its own memory growth.
func countingDest(b *testing.B) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		n.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	b.Cleanup(srv.Close)
	return srv, &n
}

// benchRelay starts a relay on a fresh bbolt file in b.TempDir() with
// benchProvider and one destination at destURL, and serves its ingest
// handler. It logs at warn level, so no line per request (to stderr with -v).
func benchRelay(b *testing.B, destURL, destExtra string) (*Relay, *httptest.Server) {
	b.Helper()
	dir := b.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "providers.d"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte(relayYAML(destURL, destExtra)), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "providers.d", "example.yaml"), []byte(benchProvider), 0o644); err != nil {
		b.Fatal(err)
	}
	cfg, err := Load(filepath.Join(dir, "relay.yaml"), true)
	if err != nil {
		b.Fatalf("load: %v", err)
	}
	out := io.Discard
	if testing.Verbose() {
		out = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := Open(cfg, log)
	if err != nil {
		b.Fatalf("open: %v", err)
	}
	if err := r.Start(); err != nil {
		r.Close(0)
		b.Fatalf("start: %v", err)
	}
	// Close waits at most a second: nothing here needs the deliveries in
	// flight finished or the queue drained.
	b.Cleanup(func() { _ = r.Close(time.Second) })
	srv := httptest.NewServer(r.IngestHandler())
	b.Cleanup(srv.Close)
	return r, srv
}

// BenchmarkIngestHMAC is hookrelay's ingest (b): HMAC-verified, mapped,
// spooled with fsync, then answered, while the dispatcher delivers to a
// destination that answers 200, as in production. deliv/s is how many
// deliveries completed during the timed run.
func BenchmarkIngestHMAC(b *testing.B) {
	dest, delivered := countingDest(b)
	_, srv := benchRelay(b, dest.URL, "")
	before := delivered.Load()
	drive(b, srv.URL+"/in/example")
	b.ReportMetric(float64(delivered.Load()-before)/b.Elapsed().Seconds(), "deliv/s")
}

// BenchmarkIngestHMACNoDelivery is BenchmarkIngestHMAC with the destination
// rate-limited to one request per 1000s: the events pile up in the queue, as
// behind a paused destination, and ingest does not share the CPU and the
// spool writer with deliveries.
func BenchmarkIngestHMACNoDelivery(b *testing.B) {
	dest, _ := countingDest(b)
	_, srv := benchRelay(b, dest.URL, "    concurrency: 1\n    rate: 0.001\n")
	drive(b, srv.URL+"/in/example")
}
