package engine

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestIngestStatusCodes(t *testing.T) {
	rec := newRecorder(t, nil)
	disabled := strings.Replace(strings.Replace(plainProvider, "t0ken", "env:HOOKRELAY_TEST_UNSET_VAR", 1), "/in/plain", "/in/off", 1)
	small := strings.Replace(plainProvider, "/in/plain", "/in/small", 1) + "max_body: 64\n"
	tr := startRelay(t, relayYAML(rec.srv.URL, ""), map[string]string{"plain": plainProvider, "off": disabled, "small": small})
	big := `{"key":"k","pad":"` + strings.Repeat("x", 100) + `"}`

	cases := []struct {
		name, method, path, body string
		headers                  map[string]string
		chunked                  bool
		want                     int
		wantErr                  string
	}{
		{"accepted", "POST", "/in/plain", `{"id":"a","key":"k"}`, authPlain, false, 200, ""},
		{"unknown path", "POST", "/in/nope", `{}`, authPlain, false, 404, "no provider at this path"},
		{"wrong method", "GET", "/in/plain", ``, authPlain, false, 405, "method not allowed"},
		{"no credentials", "POST", "/in/plain", `{"key":"k"}`, nil, false, 401, "missing credentials"},
		{"wrong credentials", "POST", "/in/plain", `{"key":"k"}`, map[string]string{"Authorization": "Bearer nope"}, false, 401, "invalid credentials"},
		{"too large", "POST", "/in/small", big, authPlain, false, 413, "body larger than 64 bytes"},
		{"too large, chunked", "POST", "/in/small", big, authPlain, true, 413, "body larger than 64 bytes"},
		{"disabled provider", "POST", "/in/off", `{"key":"k"}`, authPlain, false, 503, "provider disabled"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(c.body)
			if c.chunked {
				body = io.MultiReader(strings.NewReader(c.body)) // unknown length: sent chunked
			}
			req, _ := http.NewRequest(c.method, tr.Ingest.URL+c.path, body)
			for k, v := range c.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			must(t, err)
			defer resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.want)
			}
			var got map[string]string
			if c.wantErr != "" {
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("content type %q", ct)
				}
				must(t, json.NewDecoder(resp.Body).Decode(&got))
				if !strings.Contains(got["error"], c.wantErr) {
					t.Errorf("error %q, want it to contain %q", got["error"], c.wantErr)
				}
			}
			if c.want == 405 && resp.Header.Get("Allow") != "POST" {
				t.Errorf("Allow %q", resp.Header.Get("Allow"))
			}
			if c.want == 503 && resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		})
	}
	waitFor(t, 5*time.Second, "the one accepted event", func() bool { return len(rec.requests()) == 1 })
	if rj := tr.rejections.List("", 100); len(rj) != 2 {
		t.Errorf("%d rejections recorded, want 2", len(rj))
	} else if rj[0].Headers["Authorization"] != "***" {
		t.Errorf("rejection log shows the credential: %q", rj[0].Headers["Authorization"])
	}
}

func TestIngestSpoolFailureIs503(t *testing.T) {
	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL, ""), map[string]string{"plain": plainProvider})
	must(t, tr.spool.Close()) // the disk is gone
	resp := tr.post("/in/plain", `{"id":"x","key":"k"}`, authPlain)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// TestIngestVerifierKinds sends, for each verifier kind, a good request and
// tampered, missing and (where there is a timestamp) stale ones through the
// real listener; only the good one may reach the destination.
func TestIngestVerifierKinds(t *testing.T) {
	const body = `{"id":"e1","key":"k1","type":"t"}`
	now := time.Now()
	ts := strconv.FormatInt(now.Unix(), 10)
	stale := strconv.FormatInt(now.Add(-time.Hour).Unix(), 10)
	basic := func(u, p string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p)) }
	type req struct {
		name    string
		path    string // appended to /in/p
		body    string
		headers map[string]string
		want    int
	}
	cases := []struct {
		kind   string
		verify string
		reqs   []req
	}{
		{"hmac", `
  - kind: hmac
    secret: s3cret
    signed: "{header.X-Timestamp}.{body}"
    signature: { header: X-Signature, encoding: hex, prefix: "sha256=" }
    timestamp: { header: X-Timestamp, format: unix, tolerance: 5m }`, []req{
			{"good", "", body, map[string]string{"X-Timestamp": ts, "X-Signature": "sha256=" + hmacHex("s3cret", ts+"."+body)}, 200},
			{"tampered body", "", strings.Replace(body, "k1", "k2", 1), map[string]string{"X-Timestamp": ts, "X-Signature": "sha256=" + hmacHex("s3cret", ts+"."+body)}, 401},
			{"wrong secret", "", body, map[string]string{"X-Timestamp": ts, "X-Signature": "sha256=" + hmacHex("guess", ts+"."+body)}, 401},
			{"missing signature", "", body, map[string]string{"X-Timestamp": ts}, 401},
			{"missing timestamp", "", body, map[string]string{"X-Signature": "sha256=" + hmacHex("s3cret", ts+"."+body)}, 401},
			{"stale", "", body, map[string]string{"X-Timestamp": stale, "X-Signature": "sha256=" + hmacHex("s3cret", stale+"."+body)}, 401},
		}},
		{"token", `
  - kind: token
    prefix: "token "
    tokens: [old-one, new-one]`, []req{
			{"good", "", body, map[string]string{"Authorization": "token new-one"}, 200},
			{"rotated", "", strings.Replace(body, "e1", "e2", 1), map[string]string{"Authorization": "token old-one"}, 200},
			{"tampered", "", body, map[string]string{"Authorization": "token new-onf"}, 401},
			{"missing", "", body, nil, 401},
			{"no prefix", "", body, map[string]string{"Authorization": "new-one"}, 401},
		}},
		{"bearer", `
  - kind: bearer
    token: b34rer`, []req{
			{"good", "", body, map[string]string{"Authorization": "Bearer b34rer"}, 200},
			{"tampered", "", body, map[string]string{"Authorization": "Bearer b34reR"}, 401},
			{"missing", "", body, nil, 401},
		}},
		{"basic", `
  - kind: basic
    users: { relay: pa55 }`, []req{
			{"good", "", body, map[string]string{"Authorization": basic("relay", "pa55")}, 200},
			{"wrong password", "", body, map[string]string{"Authorization": basic("relay", "pa56")}, 401},
			{"unknown user", "", body, map[string]string{"Authorization": basic("eve", "pa55")}, 401},
			{"missing", "", body, nil, 401},
		}},
		{"apikey header", `
  - kind: apikey
    key: k3y`, []req{
			{"good", "", body, map[string]string{"API-KEY": "k3y"}, 200},
			{"tampered", "", body, map[string]string{"API-KEY": "k3z"}, 401},
			{"missing", "", body, nil, 401},
		}},
		{"apikey query", `
  - kind: apikey
    in: query
    name: apikey
    key: k3y`, []req{
			{"good", "?apikey=k3y", body, nil, 200},
			{"tampered", "?apikey=k3", body, nil, 401},
			{"missing", "", body, nil, 401},
		}},
		{"ip", `
  - kind: ip
    allow: [127.0.0.0/8]`, []req{
			{"loopback allowed", "", body, nil, 200},
		}},
		{"ip refused", `
  - kind: ip
    allow: [192.0.2.0/24]`, []req{
			{"outside the list", "", body, nil, 401},
		}},
	}
	for _, c := range cases {
		t.Run(c.kind, func(t *testing.T) {
			rec := newRecorder(t, nil)
			provider := "paths: [/in/p]\nverify:" + c.verify + "\nevent:\n  id: body.id\n  key: body.key\n  type: body.type\nroutes:\n  - to: [dest]\n"
			tr := startRelay(t, relayYAML(rec.srv.URL, ""), map[string]string{"p": provider})
			accepted := 0
			for _, r := range c.reqs {
				resp := tr.post("/in/p"+r.path, r.body, r.headers)
				if resp.StatusCode != r.want {
					t.Errorf("%s: status %d, want %d", r.name, resp.StatusCode, r.want)
				}
				if r.want == 200 {
					accepted++
				}
			}
			waitFor(t, 5*time.Second, "deliveries and nothing queued", func() bool { return len(rec.requests()) >= accepted && tr.settled() })
			if n := len(rec.requests()); n != accepted {
				t.Errorf("%d deliveries, want %d: a refused request got through", n, accepted)
			}
			if rj := tr.rejections.List("p", 100); len(rj) != len(c.reqs)-accepted {
				t.Errorf("%d rejections recorded, want %d", len(rj), len(c.reqs)-accepted)
			}
		})
	}
}

func TestIngestMappingAndRouting(t *testing.T) {
	broker, alerts := newRecorder(t, nil), newRecorder(t, nil)
	relay := relayYAML(broker.srv.URL, "  alerts:\n    url: \""+alerts.srv.URL+"\"\n")
	provider := `
paths: ["/in/lender/{event}"]
verify: none
event:
  id: body.eventId ?? ""
  key: body.app.ref
  type: params.event
  types:
    document-signed: application.signed
  occurred_at: headers["x-sent-at"]
  data:
    amount: body.app.amount
    reason: body.reason ?? "none"
    who: query.agent
routes:
  - when: event.type == "application.declined"
    to: [alerts, dest]
  - to: [dest]
`
	tr := startRelay(t, relay, map[string]string{"lender": provider})
	hdr := map[string]string{"X-Sent-At": "2026-11-25T09:59:59+01:00"}
	for _, r := range []struct{ path, body string }{
		{"/in/lender/document-signed?agent=a7", `{"eventId":"1","app":{"ref":"R-1","amount":10000}}`},
		{"/in/lender/application.declined", `{"eventId":"2","app":{"ref":"R-1","amount":0},"reason":"KYC"}`},
	} {
		if resp := tr.post(r.path, r.body, hdr); resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", r.path, resp.StatusCode)
		}
	}
	waitFor(t, 5*time.Second, "deliveries", func() bool { return len(broker.requests()) == 2 && len(alerts.requests()) == 1 })
	got := broker.delivered(t)
	first := got[0]
	for k, want := range map[string]any{
		"provider": "lender", "source": "webhook", "type": "application.signed", "key": "R-1",
		"idempotency_id": "lender:1", "occurred_at": "2026-11-25T08:59:59Z", "sequence": float64(0),
	} {
		if first[k] != want {
			t.Errorf("event.%s = %v, want %v", k, first[k], want)
		}
	}
	data := first["data"].(map[string]any)
	if data["amount"] != float64(10000) || data["reason"] != "none" || data["who"] != "a7" {
		t.Errorf("data = %v", data)
	}
	if raw := first["raw"].(map[string]any); raw["eventId"] != "1" {
		t.Errorf("raw = %v", raw)
	}
	if len(first["id"].(string)) != 26 {
		t.Errorf("id %q is not a ULID", first["id"])
	}
	var alert map[string]any
	must(t, json.Unmarshal(alerts.requests()[0].Body, &alert))
	if alert["type"] != "application.declined" || alert["data"].(map[string]any)["reason"] != "KYC" {
		t.Errorf("alert = %v", alert)
	}
}

func TestIngestDedup(t *testing.T) {
	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL, ""), map[string]string{"plain": plainProvider})
	for _, body := range []string{
		`{"id":"same","key":"k","n":1}`,
		`{"id":"same","key":"k","n":2}`, // same lender id: a repeat, whatever the body
		`{"key":"k","n":3}`,             // no id: the body is the identity
		`{"key":"k","n":3}`,
		`{"key":"k","n":4}`,
	} {
		if resp := tr.post("/in/plain", body, authPlain); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	waitFor(t, 5*time.Second, "deliveries and nothing queued", func() bool { return len(rec.requests()) >= 3 && tr.settled() })
	got := rec.delivered(t)
	if len(got) != 3 {
		t.Fatalf("%d deliveries, want 3", len(got))
	}
	for i, want := range []float64{1, 3, 4} {
		if n := got[i]["data"].(map[string]any)["n"]; n != want {
			t.Errorf("delivery %d has n=%v, want %v", i, n, want)
		}
	}
	if got[1]["idempotency_id"] == got[2]["idempotency_id"] {
		t.Error("different bodies without ids share an idempotency id")
	}
	// A restart keeps the dedup window.
	tr = tr.restart()
	tr.post("/in/plain", `{"id":"same","key":"k","n":5}`, authPlain)
	waitFor(t, 5*time.Second, "nothing queued", tr.settled)
	if n := len(rec.requests()); n != 3 {
		t.Errorf("a repeat after restart was forwarded (%d deliveries)", n)
	}
}

func TestIngestQuarantine(t *testing.T) {
	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL, ""), map[string]string{"plain": plainProvider})
	for _, body := range []string{`{"id":"q1"}`, `not json`, `{"key":{"nested":true}, "id":"q3"}`} {
		resp := tr.post("/in/plain", body, authPlain)
		if resp.StatusCode != 200 {
			t.Errorf("%s: status %d, want the provider's success answer", body, resp.StatusCode)
		}
	}
	waitFor(t, 5*time.Second, "nothing queued", tr.settled)
	if n := len(rec.requests()); n != 0 {
		t.Errorf("%d deliveries of requests that cannot be mapped", n)
	}
	qs, err := tr.spool.QuarantineList("", 0)
	must(t, err)
	for _, q := range qs {
		if !strings.Contains(q.Reason, "event.key") || q.Provider != "plain" || len(q.Header["Authorization"]) == 0 {
			t.Errorf("quarantined %+v", q)
		}
	}
	if len(qs) != 3 {
		t.Errorf("%d quarantined, want 3", len(qs))
	}
}

// TestIngestShedsOverload: past max_inflight, ingest answers 503 with
// Retry-After at once rather than queueing, and stores nothing.
func TestIngestShedsOverload(t *testing.T) {
	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL, "")+"max_inflight: 1\n", map[string]string{"plain": plainProvider})
	if !tr.admit() { // one request is in its verification, mapping or spool write
		t.Fatal("the first place was refused")
	}
	resp := tr.post("/in/plain", `{"id":"s1","key":"k"}`, authPlain)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("status %d, Retry-After %q; want 503 and 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	tr.release()
	if resp := tr.post("/in/plain", `{"id":"s2","key":"k"}`, authPlain); resp.StatusCode != 200 {
		t.Fatalf("after the place freed: status %d", resp.StatusCode)
	}
	waitFor(t, 5*time.Second, "the accepted event and nothing queued", func() bool { return len(rec.requests()) == 1 && tr.settled() })
	if got := rec.delivered(t); len(got) != 1 || got[0]["idempotency_id"] != "plain:s2" {
		t.Errorf("delivered %v; the shed request must not be stored", got)
	}
}
