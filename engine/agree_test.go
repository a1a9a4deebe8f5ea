package engine

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"

	"github.com/hookrelay/hookrelay/engine/ingest"
	"github.com/hookrelay/hookrelay/engine/provider"
)

// TestOutcomesAgree: ingest (through the listener), `try` (Provider.Try)
// and `test` (a recorded case run by CaseResults) make the same of one
// request, status and outcome, because all three render the one pipeline's
// Result: accepted, rejected for a bad signature, rejected by `require`,
// unmappable (quarantined, answered with success) and, with the JWKS server
// down, unavailable keys: 503 "error" for all three (try used to say 401).
func TestOutcomesAgree(t *testing.T) {
	key := newResursKey(t, "k1")
	jwksDown := newLoopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	})) + "/jwks"
	hmacProvider := `
paths: [/in/hm]
verify:
  - kind: hmac
    secret: agree-s3cr3t
    signed: "{body}"
    signature: { header: X-Sig, encoding: hex }
require:
  - body.n > 1
event:
  key: body.key
  type: body.type
routes:
  - to: [dest]
`
	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL, ""), map[string]string{"hm": hmacProvider, "jw": jwsProvider(jwksDown)})

	signed := func(body string) map[string]string {
		return map[string]string{"X-Sig": hmacHex("agree-s3cr3t", body), "Content-Type": "application/json"}
	}
	tok := key.sign(t, "k1", []byte(`{"key":"x"}`))
	cases := []struct {
		name, provider, path, body string
		headers                    map[string]string
		status                     int
		outcome                    provider.Outcome
	}{
		{"accepted", "hm", "/in/hm", `{"key":"a","type":"t","n":2}`, signed(`{"key":"a","type":"t","n":2}`), http.StatusOK, provider.Accepted},
		{"bad signature", "hm", "/in/hm", `{"key":"a","type":"t","n":2}`, signed(`{"key":"b","type":"t","n":2}`), http.StatusUnauthorized, provider.Rejected},
		{"require failed", "hm", "/in/hm", `{"key":"a","type":"t","n":1}`, signed(`{"key":"a","type":"t","n":1}`), http.StatusUnauthorized, provider.Rejected},
		{"unmappable", "hm", "/in/hm", `{"key":{"not":"a string"},"type":"t","n":2}`, signed(`{"key":{"not":"a string"},"type":"t","n":2}`), http.StatusOK, provider.Quarantined},
		{"keys unavailable", "jw", "/in/signed", `{"key":"x","jwsData":"` + tok + `"}`, map[string]string{"Content-Type": "application/json"}, http.StatusServiceUnavailable, provider.Unavailable},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// ingest, through the listener; its outcome is the metric it counts.
			before := ingestCounts(t, tr, c.provider)
			resp := tr.post(c.path, c.body, c.headers)
			if resp.StatusCode != c.status {
				t.Errorf("ingest: %d, want %d", resp.StatusCode, c.status)
			}
			after := ingestCounts(t, tr, c.provider)
			var ingested []string
			for label, n := range after {
				if n != before[label] {
					ingested = append(ingested, label)
				}
			}
			if len(ingested) != 1 || ingested[0] != c.outcome.String() {
				t.Errorf("ingest counted %v, want [%s]", ingested, c.outcome)
			}

			// try.
			req, err := ingest.NewRequest(http.MethodPost, c.path, c.headers, []byte(c.body))
			must(t, err)
			got := ingest.Try(context.Background(), tr.Config().Provider(c.provider).Provider, req, []byte(c.body), time.Now(), true)
			if got.Status != c.status || got.Outcome != c.outcome {
				t.Errorf("try: %d %s (%s), want %d %s", got.Status, got.Outcome, got.Reason, c.status, c.outcome)
			}

			// test: a recorded case expecting what ingest answered.
			tests := filepath.Join(tr.dir, "providers.d", c.provider+".tests")
			must(t, os.MkdirAll(tests, 0o755))
			doc, err := yaml.Marshal(map[string]any{
				"request": map[string]any{"path": c.path, "headers": c.headers, "body": c.body},
				"expect":  map[string]any{"status": resp.StatusCode, "outcome": c.outcome.String()},
			})
			must(t, err)
			file := filepath.Join(tests, strings.ReplaceAll(c.name, " ", "-")+".yaml")
			must(t, os.WriteFile(file, doc, 0o644))
			defer func() { _ = os.Remove(file) }()
			results, err := CaseResults(filepath.Join(tr.dir, "relay.yaml"), true, []string{c.provider})
			must(t, err)
			if len(results) != 1 || !results[0].Passed() {
				t.Errorf("test (case %d): %+v", i, results)
			}
		})
	}
}

// ingestCounts reads hookrelay_ingest_requests_total for provider by outcome.
func ingestCounts(t *testing.T, tr *testRelay, name string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, o := range []provider.Outcome{provider.Accepted, provider.Duplicate, provider.Rejected, provider.Quarantined, provider.Failed} {
		var m dto.Metric
		must(t, tr.m.ingest.WithLabelValues(name, o.String()).Write(&m))
		out[o.String()] = m.GetCounter().GetValue()
	}
	return out
}
