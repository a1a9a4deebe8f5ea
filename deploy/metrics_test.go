package deploy

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hookrelay/hookrelay/engine"
)

// TestMetricNamesExist: every metric the alert rules, their unit tests and
// the dashboard name is on a running relay's /metrics, so renaming a metric
// in the code cannot silently blind an alert. The relay is driven until
// every family they use has a series: an accepted, a rejected, a delivered
// and a dead event, and one held behind it.
func TestMetricNamesExist(t *testing.T) {
	families := scrapeBusyRelay(t)

	used := map[string][]string{} // metric name -> where
	var rules struct {
		Groups []struct {
			Rules []struct{ Alert, Record, Expr string }
		}
	}
	yamlInto(t, "alerts.yaml", &rules)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, name := range metricNames(r.Expr) {
				used[name] = append(used[name], "alerts.yaml "+r.Alert+r.Record)
			}
		}
	}
	var tests struct {
		Tests []struct {
			InputSeries []struct{ Series string } `yaml:"input_series"`
		}
	}
	yamlInto(t, "alerts_test.yaml", &tests)
	for _, tc := range tests.Tests {
		for _, s := range tc.InputSeries {
			name, _, _ := strings.Cut(s.Series, "{")
			used[name] = append(used[name], "alerts_test.yaml input series")
		}
	}
	var dash any
	must(t, json.Unmarshal(read(t, "grafana/hookrelay.json"), &dash))
	walkJSON(dash, func(key, value string) {
		if key == "expr" || key == "definition" {
			for _, name := range metricNames(value) {
				used[name] = append(used[name], "grafana/hookrelay.json "+value)
			}
		}
	})
	if len(used) < 12 {
		t.Fatalf("only %d metric names found in the rules and the dashboard: %v", len(used), used)
	}
	for _, want := range []string{"hookrelay_dead", "hookrelay_held_keys", "hookrelay_oldest_pending_seconds",
		"hookrelay_ingest_requests_total", "hookrelay_provider_enabled", "hookrelay_ingest_duration_seconds_bucket",
		"hookrelay_delivery_duration_seconds_bucket", "hookrelay_deliveries_total", "hookrelay_pending"} {
		if used[want] == nil {
			t.Errorf("%s is used by no rule or panel", want)
		}
	}
	for name, where := range used {
		if name == "up" { // Prometheus's own, per scrape target
			continue
		}
		if !exposed(families, name) {
			t.Errorf("%s (used in %s) is not on /metrics", name, strings.Join(where, "; "))
		}
	}
}

// metricNameRE finds metric names in PromQL: this project's and those of the
// Go and process collectors, and `up`.
var metricNameRE = regexp.MustCompile(`\b(?:hookrelay|go|process)_[a-zA-Z0-9_]+\b|\bup\b`)

func metricNames(expr string) []string { return metricNameRE.FindAllString(expr, -1) }

// exposed reports whether name is a family on /metrics, or a histogram's or
// summary's _bucket, _sum or _count series.
func exposed(families map[string]*dto.MetricFamily, name string) bool {
	if families[name] != nil {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && families[base] != nil {
			switch families[base].GetType() {
			case dto.MetricType_HISTOGRAM:
				return true
			case dto.MetricType_SUMMARY:
				return suffix != "_bucket"
			}
		}
	}
	return false
}

// scrapeBusyRelay starts a relay with an enabled and a disabled provider,
// delivers one event, kills another with a permanent 400 and holds a third
// behind it, rejects one request, and returns its /metrics.
func scrapeBusyRelay(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	dest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(`"doomed"`)) {
			w.WriteHeader(http.StatusBadRequest) // permanent: dead at once
		}
	}))
	t.Cleanup(dest.Close)
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "providers.d"), 0o755))
	relay := "listen: 127.0.0.1:18080\nadmin: { listen: 127.0.0.1:19090 }\nspool: { path: " + filepath.Join(dir, "spool.db") + " }\n" +
		"providers_dir: " + filepath.Join(dir, "providers.d") + "\n" +
		"destinations:\n  broker:\n    url: " + dest.URL + "\n"
	must(t, os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte(relay), 0o644))
	provider := func(path, token string) string {
		return "paths: [" + path + "]\nverify:\n  - kind: bearer\n    token: " + token + "\n" +
			"event:\n  id: body.id\n  key: body.key\n  type: body.type\nroutes:\n  - to: [broker]\n"
	}
	must(t, os.WriteFile(filepath.Join(dir, "providers.d", "lender.yaml"), []byte(provider("/in/lender", "lender-token-0123456789")), 0o644))
	t.Setenv("HOOKRELAY_DEPLOY_TEST_MISSING", "")
	must(t, os.WriteFile(filepath.Join(dir, "providers.d", "off.yaml"), []byte(provider("/in/off", "env:HOOKRELAY_DEPLOY_TEST_MISSING")), 0o644))

	cfg, err := engine.Load(filepath.Join(dir, "relay.yaml"), true)
	must(t, err)
	r, err := engine.Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	must(t, err)
	must(t, r.Start())
	ingest, admin := httptest.NewServer(r.IngestHandler()), httptest.NewServer(r.AdminHandler())
	t.Cleanup(func() {
		ingest.Close()
		admin.Close()
		_ = r.Close(5 * time.Second)
	})

	post := func(token, body string, want int) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, ingest.URL+"/in/lender", strings.NewReader(body))
		must(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("POST %s: status %d, want %d", body, resp.StatusCode, want)
		}
	}
	post("lender-token-0123456789", `{"id":"e1","key":"k1","type":"ok"}`, 200)
	post("lender-token-0123456789", `{"id":"e2","key":"k2","type":"doomed"}`, 200)
	post("lender-token-0123456789", `{"id":"e3","key":"k2","type":"waits"}`, 200)
	post("wrong-token", `{"id":"e4","key":"k3","type":"ok"}`, 401)

	var families map[string]*dto.MetricFamily
	deadline := time.Now().Add(10 * time.Second)
	for {
		families = scrape(t, admin.URL)
		if value(families, "hookrelay_held_keys") == 1 && value(families, "hookrelay_deliveries_total") == 2 {
			return families
		}
		if time.Now().After(deadline) {
			t.Fatalf("no delivered, dead and held event after 10s; held_keys %v, deliveries %v",
				value(families, "hookrelay_held_keys"), value(families, "hookrelay_deliveries_total"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func scrape(t *testing.T, adminURL string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(adminURL + "/metrics")
	must(t, err)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	must(t, err)
	return families
}

// value sums a counter's or gauge's series.
func value(families map[string]*dto.MetricFamily, name string) float64 {
	sum := 0.0
	for _, m := range families[name].GetMetric() {
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return sum
}
