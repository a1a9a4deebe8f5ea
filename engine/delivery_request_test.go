package engine

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"
)

// TestDeliverHeaders: the headers every delivery carries (SPEC 4.2).
func TestDeliverHeaders(t *testing.T) {
	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL, "    headers: {X-Source: hookrelay-test}\n"), map[string]string{"plain": plainProvider})
	tr.mustIngest("k7", 1)
	waitFor(t, 10*time.Second, "delivery", func() bool { return len(rec.requests()) == 1 })
	r := rec.requests()[0]
	var env map[string]any
	must(t, json.Unmarshal(r.Body, &env))
	for name, want := range map[string]string{
		"Idempotency-Key":        "plain:k7-1",
		"X-Hookrelay-Event-Id":   env["id"].(string),
		"X-Hookrelay-Provider":   "plain",
		"X-Hookrelay-Event-Type": "loan.updated",
		"X-Hookrelay-Attempt":    "1",
		"Content-Type":           "application/json",
		"X-Source":               "hookrelay-test",
	} {
		if got := r.Header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if env["idempotency_id"] != "plain:k7-1" || env["provider"] != "plain" || env["key"] != "k7" || env["source"] != "webhook" {
		t.Errorf("envelope %v", env)
	}
}

// TestDeliverAuth: the four ways we authenticate to a destination.
func TestDeliverAuth(t *testing.T) {
	for _, tc := range []struct {
		name, path, auth string
		check            func(r received) string // "" when fine
	}{
		{"basic", "/hook", "{kind: basic, username: relay, password: s3cret}", func(r received) string {
			req := &http.Request{Header: r.Header}
			if u, p, ok := req.BasicAuth(); !ok || u != "relay" || p != "s3cret" {
				return fmt.Sprintf("basic auth %q %q %v", u, p, ok)
			}
			return ""
		}},
		{"bearer default scheme", "/hook", "{kind: bearer, token: tok}", authIs("Bearer tok")},
		{"bearer custom scheme", "/hook", "{kind: bearer, token: tok, scheme: Token}", authIs("Token tok")},
		{"bearer bare token", "/hook", `{kind: bearer, token: tok, scheme: ""}`, authIs("tok")},
		{"header default name", "/hook", "{kind: header, api_key: k3y}", headerIs("API-KEY", "k3y")},
		{"header custom name", "/hook", "{kind: header, api_key: k3y, name: X-Api-Token}", headerIs("X-Api-Token", "k3y")},
		{"query default name, own query kept", "/hook?tenant=a%20b&x=1", "{kind: query, api_key: k3y}", func(r received) string {
			q, err := url.ParseQuery(r.Query)
			if err != nil || q.Get("API-KEY") != "k3y" || q.Get("tenant") != "a b" || q.Get("x") != "1" || r.Path != "/hook" {
				return fmt.Sprintf("path %q query %q", r.Path, r.Query)
			}
			return ""
		}},
		{"query custom name", "/hook", "{kind: query, api_key: k3y, name: token}", func(r received) string {
			if r.Query != "token=k3y" {
				return fmt.Sprintf("query %q", r.Query)
			}
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(t, nil)
			tr := startRelay(t, relayYAML(rec.srv.URL+tc.path, "    auth: "+tc.auth+"\n"), map[string]string{"plain": plainProvider})
			tr.mustIngest("k", 1)
			waitFor(t, 10*time.Second, "delivery", func() bool { return len(rec.requests()) == 1 })
			if msg := tc.check(rec.requests()[0]); msg != "" {
				t.Error(msg)
			}
		})
	}
}

func authIs(want string) func(received) string { return headerIs("Authorization", want) }

func headerIs(name, want string) func(received) string {
	return func(r received) string {
		if got := r.Header.Values(name); len(got) != 1 || got[0] != want {
			return fmt.Sprintf("%s: %q, want %q", name, got, want)
		}
		return ""
	}
}

// TestDeliverSigned: with sign:, the Standard Webhooks headers verify.
func TestDeliverSigned(t *testing.T) {
	key := []byte("a signing key of some thirty-two bytes")
	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL, "    sign: {secret: whsec_"+base64.StdEncoding.EncodeToString(key)+"}\n"),
		map[string]string{"plain": plainProvider})
	tr.mustIngest("k", 1)
	waitFor(t, 10*time.Second, "delivery", func() bool { return len(rec.requests()) == 1 })
	r := rec.requests()[0]
	id, ts, sig := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
	if id == "" || id != r.Header.Get("X-Hookrelay-Event-Id") {
		t.Errorf("webhook-id %q, want the event id %q", id, r.Header.Get("X-Hookrelay-Event-Id"))
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Minute {
		t.Errorf("webhook-timestamp %q, want unix seconds of now", ts)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(r.Body)
	if want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)); sig != want {
		t.Errorf("webhook-signature %q, want %q", sig, want)
	}
}

// TestDeliverTemplatesAndBody: {{ }} in URL and headers, and the body modes.
func TestDeliverTemplatesAndBody(t *testing.T) {
	const raw = `{ "id": "r-1",  "key": "k/1", "type": "loan.paid", "n": 3 }` // spacing kept in raw mode
	for _, tc := range []struct {
		name, body string
		check      func(t *testing.T, body []byte)
	}{
		{"envelope", "", func(t *testing.T, body []byte) {
			var e map[string]any
			must(t, json.Unmarshal(body, &e))
			if e["key"] != "k/1" || e["type"] != "loan.paid" || e["idempotency_id"] != "plain:r-1" {
				t.Errorf("envelope %s", body)
			}
			var rawField map[string]any
			must(t, json.Unmarshal([]byte(raw), &rawField))
			if fmt.Sprint(e["raw"]) != fmt.Sprint(rawField) {
				t.Errorf("envelope raw %v, want %v", e["raw"], rawField)
			}
		}},
		{"raw", "raw", func(t *testing.T, body []byte) {
			if string(body) != raw {
				t.Errorf("body %q, want the provider's bytes %q", body, raw)
			}
		}},
		{"expression", `'{"t": event.type, "k": event.key, "n": event.data.n, "lender": body.id}'`, func(t *testing.T, body []byte) {
			var e map[string]any
			must(t, json.Unmarshal(body, &e))
			if len(e) != 4 || e["t"] != "loan.paid" || e["k"] != "k/1" || e["n"] != 3.0 || e["lender"] != "r-1" {
				t.Errorf("body %s", body)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(t, nil)
			extra := "    headers: {X-Key: \"{{ event.key }}\", X-Static: plain}\n"
			if tc.body != "" {
				extra += "    body: " + tc.body + "\n"
			}
			tr := startRelay(t, relayYAML(rec.srv.URL+"/events/{{ event.type }}", extra), map[string]string{"plain": plainProvider})
			resp := tr.post("/in/plain", raw, authPlain)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("ingest status %d", resp.StatusCode)
			}
			waitFor(t, 10*time.Second, "delivery", func() bool { return len(rec.requests()) == 1 })
			r := rec.requests()[0]
			if r.Path != "/events/loan.paid" || r.Header.Get("X-Key") != "k/1" || r.Header.Get("X-Static") != "plain" {
				t.Errorf("path %q, X-Key %q, X-Static %q", r.Path, r.Header.Get("X-Key"), r.Header.Get("X-Static"))
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			tc.check(t, r.Body)
		})
	}
}
