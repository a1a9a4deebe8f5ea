package engine

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// openRelayLogging is openRelay with the log, at debug, written to logs.
func openRelayLogging(t *testing.T, dir string, logs *syncBuffer) *testRelay {
	t.Helper()
	cfg, err := Load(filepath.Join(dir, "relay.yaml"), true)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	useTestSpool(t, cfg, dir)
	r, err := Open(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if err := r.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	tr := &testRelay{Relay: r, t: t, dir: dir, Ingest: httptest.NewServer(r.IngestHandler()), Admin: httptest.NewServer(r.AdminHandler())}
	t.Cleanup(tr.stop)
	return tr
}

// TestSensitiveMaskedWherePeopleRead is SPEC 11's masking: the seed's Kompar
// application with canary personal data goes through the real listener;
// the broker gets the real values, while the admin event detail and list,
// the quarantine list and detail, the rejection log and the debug log show
// "***" for each of kompar.yaml's sensitive paths and hold no canary.
func TestSensitiveMaskedWherePeopleRead(t *testing.T) {
	for k, v := range shippedEnv {
		t.Setenv(k, v)
	}
	t.Setenv("HOOKRELAY_TEST_DATA_KEY", newDataKey(t))
	rec := newRecorder(t, nil)
	// The broker first fails, echoing the event in its answer (kept as the
	// attempt's response), then takes it.
	var echoed sync.Once
	broker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first := false
		echoed.Do(func() { first = true })
		if first {
			b, _ := io.ReadAll(r.Body)
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write(b)
			return
		}
		rec.srv.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(broker.Close)
	dir := t.TempDir()
	writeConfig(t, dir, "spool: { path: ./data/spool.db }\n"+
		"providers_dir: "+strconv.Quote(mustAbs(t, "../providers.d"))+"\n"+
		"privacy: { key: env:HOOKRELAY_TEST_DATA_KEY }\n"+
		"destinations:\n  broker:\n    url: "+strconv.Quote(broker.URL+"/lender-events")+"\n    retry: { schedule: [1ms] }\n", nil)
	logs := &syncBuffer{}
	tr := openRelayLogging(t, dir, logs)

	const appID = "KMP-2026-MASKED"
	ssn, guarantor, name, company := "195505055555", "196606066666", "Kanarie Maskeradsson", "Maskerad Kanarie AB"
	canaries := []string{ssn, guarantor, name, company, "556677-8899", "Construction and renovation in Goteborg", "annual-report-2023.pdf"}
	application := komparApplication(appID, name, ssn, guarantor, company)
	seedAccept(t, tr, "/in/kompar/applications", komparBody(t, komparKey, application), komparHeaders)
	// A request to a wrong hook is quarantined; one with a wrong token rejected.
	seedAccept(t, tr, "/in/kompar/elsewhere", komparBody(t, komparKey, application), komparHeaders)
	bad := map[string]string{"Authorization": "token wrong", "Content-Type": "application/json"}
	if status, _ := seedPost(t, tr, "/in/kompar/applications", `{"ssn":"`+ssn+`","name":"`+name+`"}`, bad); status != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d, want 401", status)
	}
	waitFor(t, seedWait, "the delivery", func() bool { return len(rec.delivered(t)) >= 1 })

	// The broker gets the real values.
	got, _ := json.Marshal(rec.delivered(t))
	for _, c := range canaries[:4] {
		if !bytes.Contains(got, []byte(c)) {
			t.Errorf("the broker did not get %q", c)
		}
	}

	var page struct{ Items []map[string]any }
	adminDo(t, tr, http.MethodGet, "/admin/events?key="+appID, &page)
	if len(page.Items) != 1 {
		t.Fatalf("events of %s: %v", appID, page.Items)
	}
	id, _ := page.Items[0]["id"].(string)
	var detail struct {
		Event struct {
			Raw  map[string]any `json:"raw"`
			Data map[string]any `json:"data"`
		} `json:"event"`
	}
	var rawDetail json.RawMessage
	adminDo(t, tr, http.MethodGet, "/admin/events/"+id, &rawDetail)
	must(t, json.Unmarshal(rawDetail, &detail))
	if !strings.Contains(string(rawDetail), `"status":500`) || !strings.Contains(string(rawDetail), `\"ssn\":\"***\"`) {
		t.Errorf("event detail: want the failed attempt with its echoed response masked: %s", rawDetail)
	}
	raw, data := detail.Event.Raw, detail.Event.Data
	for _, f := range []string{"ssn", "name", "company_id", "company_name", "company_revenue", "company_last_year_revenue", "company_description", "description_of_property"} {
		if raw[f] != "***" {
			t.Errorf("event detail raw.%s = %v, want ***", f, raw[f])
		}
		if data[f] != "***" {
			t.Errorf("event detail data.%s = %v, want ***", f, data[f])
		}
	}
	if g, _ := raw["guarantors"].([]any); len(g) != 1 || g[0].(map[string]any)["ssn"] != "***" {
		t.Errorf("event detail raw.guarantors = %v, want [{ssn: ***}]", raw["guarantors"])
	}
	if g, _ := data["guarantors"].([]any); len(g) != 1 || g[0].(map[string]any)["ssn"] != "***" {
		t.Errorf("event detail data.guarantors = %v, want [{ssn: ***}]", data["guarantors"])
	}
	if data["amount"] != float64(500000) || data["application_id"] != appID || raw["company_type"] != "AB" {
		t.Errorf("unmasked fields changed: amount %v, application_id %v, company_type %v", data["amount"], data["application_id"], raw["company_type"])
	}

	var quarantine, rejections json.RawMessage
	adminDo(t, tr, http.MethodGet, "/admin/quarantine?provider=kompar", &quarantine)
	if !strings.Contains(string(quarantine), `"/in/kompar/elsewhere"`) {
		t.Errorf("quarantine list: %s, want the request to /in/kompar/elsewhere", quarantine)
	}
	adminDo(t, tr, http.MethodGet, "/admin/rejections?provider=kompar", &rejections)
	if !strings.Contains(string(rejections), `"/in/kompar/applications"`) {
		t.Errorf("rejection log: %s, want the wrong token's request", rejections)
	}
	events, _ := json.Marshal(page.Items)
	shown := map[string]string{"event detail": string(rawDetail), "event list": string(events),
		"quarantine list": string(quarantine), "rejection log": string(rejections), "debug log": logs.String()}
	for where, text := range shown {
		for _, c := range canaries {
			if strings.Contains(text, c) {
				t.Errorf("%s shows %q", where, c)
			}
		}
	}
}

// TestSensitivePathsRefused: a sensitive path that does not parse is a
// configuration error at its line.
func TestSensitivePathsRefused(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "destinations:\n  dest: { url: http://127.0.0.1:1/x }\n", map[string]string{"p": `paths: [/in/p]
verify: none
sensitive:
  - body.ssn
  - body.guarantors[x].ssn
event:
  key: body.key
routes:
  - to: [dest]
`})
	_, err := Load(filepath.Join(dir, "relay.yaml"), true)
	if err == nil || !strings.Contains(err.Error(), "p.yaml:5: sensitive[1]") {
		t.Fatalf("load: %v, want an error at p.yaml:5 naming sensitive[1]", err)
	}
}

// TestSensitiveQuarantineReasonMasked: a quarantine reason that quotes a
// sensitive value (here a type the mapping computed from the name) shows
// "***" in the admin API and the log; the rejection of a refused `require`
// quoting one likewise.
func TestSensitiveQuarantineReasonMasked(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "destinations:\n  dest: { url: http://127.0.0.1:1/x }\n", map[string]string{"p": `paths: [/in/p]
verify: none
sensitive: [body.name, headers.x-customer]
event:
  key: body.key
  type: 'body.key == "bad" ? int(body.name) : "ok"'
routes:
  - to: [dest]
`})
	logs := &syncBuffer{}
	tr := openRelayLogging(t, dir, logs)
	const name = "Kanarie Orsaksson"
	resp := tr.post("/in/p", `{"key":"bad","name":"`+name+`"}`, map[string]string{"X-Customer": "Kund Kanarie"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("quarantined request: %d", resp.StatusCode)
	}
	var q struct{ Items []map[string]any }
	adminDo(t, tr, http.MethodGet, "/admin/quarantine", &q)
	if len(q.Items) != 1 {
		t.Fatalf("quarantine: %v", q.Items)
	}
	reason, _ := q.Items[0]["reason"].(string)
	hdrs, _ := json.Marshal(q.Items[0]["headers"])
	if strings.Contains(reason, name) || strings.Contains(logs.String(), name) || strings.Contains(string(hdrs), "Kund Kanarie") {
		t.Errorf("the name is shown: reason %q, headers %s, log %s", reason, hdrs, logs.String())
	}
	t.Logf("reason: %s", reason)
}
