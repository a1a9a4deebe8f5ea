package engine

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const adminToken = "s3cret"

// adminRelayYAML is relayYAML with the admin API behind adminToken.
func adminRelayYAML(url, destExtra string) string {
	return strings.Replace(relayYAML(url, destExtra), "admin: { listen: 127.0.0.1:19090 }",
		"admin: { listen: 127.0.0.1:19090, token: "+adminToken+" }", 1)
}

// callAuth sends one admin request with the given Authorization header
// ("" for none) and returns the status and body.
func (tr *testRelay) callAuth(method, path, body, authz string) (int, []byte) {
	tr.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, tr.Admin.URL+path, rd)
	must(tr.t, err)
	if body != "" { // SPEC 6: a body must be JSON
		req.Header.Set("Content-Type", "application/json")
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := testClient(tr.t).Do(req)
	must(tr.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(tr.t, err)
	return resp.StatusCode, b
}

// call sends one admin request with the token.
func (tr *testRelay) call(method, path, body string) (int, []byte) {
	tr.t.Helper()
	return tr.callAuth(method, path, body, "Bearer "+adminToken)
}

// do sends one admin request with the token, fails unless it answers want,
// and decodes the answer into v (when not nil).
func (tr *testRelay) do(method, path, body string, want int, v any) []byte {
	tr.t.Helper()
	status, b := tr.call(method, path, body)
	if status != want {
		tr.t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			tr.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return b
}

func (tr *testRelay) get(path string, v any) []byte {
	tr.t.Helper()
	return tr.do(http.MethodGet, path, "", http.StatusOK, v)
}

// adminEvent is one item of GET /admin/events.
type adminEvent struct {
	ID       string         `json:"id"`
	Provider string         `json:"provider"`
	Type     string         `json:"type"`
	Key      string         `json:"key"`
	Status   string         `json:"status"`
	Data     map[string]any `json:"data"`
}

func (e adminEvent) n() int { f, _ := e.Data["n"].(float64); return int(f) }

type eventPage struct {
	Items      []adminEvent `json:"items"`
	NextCursor string       `json:"next_cursor"`
}

func (tr *testRelay) events(query string) eventPage {
	tr.t.Helper()
	var p eventPage
	tr.get("/admin/events?"+query, &p)
	return p
}

// eventID is the relay's id of the event with key and data.n.
func (tr *testRelay) eventID(key string, n int) string {
	tr.t.Helper()
	for _, e := range tr.events("limit=1000&key=" + key).Items {
		if e.n() == n {
			return e.ID
		}
	}
	tr.t.Fatalf("no event %s/%d", key, n)
	return ""
}

// eventDetail is GET /admin/events/{id}.
type eventDetail struct {
	Event      adminEvent `json:"event"`
	Deliveries []struct {
		Destination         string           `json:"destination"`
		Status              string           `json:"status"`
		Attempts            []map[string]any `json:"attempts"`
		AttemptsBeforeRetry int              `json:"attempts_before_retry"`
	} `json:"deliveries"`
}

func (tr *testRelay) detail(id string) eventDetail {
	tr.t.Helper()
	var d eventDetail
	tr.get("/admin/events/"+id, &d)
	return d
}

// destView is one item of GET /admin/destinations.
type destView struct {
	Name     string         `json:"name"`
	Config   map[string]any `json:"config"`
	Paused   bool           `json:"paused"`
	Pending  int            `json:"pending"`
	Dead     int            `json:"dead"`
	HeldKeys int            `json:"held_keys"`
	Held     []struct {
		Key       string `json:"key"`
		BlockedBy string `json:"blocked_by"`
		Waiting   int    `json:"waiting"`
	} `json:"held"`
}

// waitDest waits until GET /admin/destinations shows name in a state cond
// accepts: a sink sees a request before the relay has recorded its outcome.
func (tr *testRelay) waitDest(name, what string, cond func(destView) bool) {
	tr.t.Helper()
	var last destView
	deadline := time.Now().Add(5 * time.Second)
	for last = tr.dest(name); !cond(last); last = tr.dest(name) {
		if time.Now().After(deadline) {
			tr.t.Fatalf("destination %s never %s: %+v", name, what, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (tr *testRelay) dest(name string) destView {
	tr.t.Helper()
	var l struct{ Items []destView }
	tr.get("/admin/destinations", &l)
	for _, d := range l.Items {
		if d.Name == name {
			return d
		}
	}
	tr.t.Fatalf("no destination %s in GET /admin/destinations", name)
	return destView{}
}

// writeProvider replaces providers.d/NAME.yaml of a running relay.
func (tr *testRelay) writeProvider(name, body string) {
	tr.t.Helper()
	must(tr.t, os.WriteFile(filepath.Join(tr.dir, "providers.d", name+".yaml"), []byte(body), 0o644))
}

// sent is one 2xx answer of a sink: the event, its data.n and the attempt.
type sent struct {
	id, key string
	n       int
	attempt string
	typ     string
}

// okHits lists the sink's 2xx answers in arrival order.
func okHits(t *testing.T, s *sink) []sent {
	t.Helper()
	var out []sent
	for _, h := range s.requests() {
		if h.status < 200 || h.status > 299 {
			continue
		}
		id, key, n := envelope(t, h.body)
		out = append(out, sent{id: id, key: key, n: n, attempt: h.header.Get("X-Hookrelay-Attempt"),
			typ: h.header.Get("X-Hookrelay-Event-Type")})
	}
	return out
}

// scrape reads /metrics and parses it.
func (tr *testRelay) scrape() map[string]*dto.MetricFamily {
	tr.t.Helper()
	b := tr.get("/metrics", nil)
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		tr.t.Fatalf("parse /metrics: %v\n%s", err, b)
	}
	return mfs
}

// metricValue is the value of the series of name with exactly labels: a
// counter's or gauge's value, a histogram's sample count.
func metricValue(mfs map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, lp := range m.GetLabel() {
			if labels[lp.GetName()] != lp.GetValue() {
				continue next
			}
		}
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), true
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), true
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func wantMetric(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels map[string]string, want float64) {
	t.Helper()
	got, ok := metricValue(mfs, name, labels)
	if !ok {
		t.Errorf("%s%v: missing", name, labels)
	} else if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}
