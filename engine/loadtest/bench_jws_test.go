package loadtest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
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

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/hookrelay/hookrelay/engine/internal/benchkit"
)

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
