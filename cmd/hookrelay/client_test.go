package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
)

const clientToken = "s3cret-admin-token"

// reply is what the fake admin API expects of one request and answers to it.
type reply struct {
	query  url.Values // expected query; nil: none
	body   string     // expected JSON body; "": none
	status int        // 0: 200
	answer string
}

// fakeAdmin serves routes ("METHOD /path" to reply), checking the query, the
// body and the bearer token of every request; hits counts the requests.
func fakeAdmin(t *testing.T, token string, routes map[string]reply) (srv *httptest.Server, hits *atomic.Int64) {
	t.Helper()
	hits = new(atomic.Int64)
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		want := "Bearer " + token
		if token == "" {
			want = ""
		}
		if got := req.Header.Get("Authorization"); got != want {
			t.Errorf("%s %s: Authorization %q, want %q", req.Method, req.URL.Path, got, want)
		}
		r, ok := routes[req.Method+" "+req.URL.EscapedPath()]
		if !ok {
			t.Errorf("unexpected request %s %s", req.Method, req.URL.EscapedPath())
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error": "not found"}`)
			return
		}
		if q := req.URL.Query(); (len(q) != 0 || len(r.query) != 0) && !reflect.DeepEqual(q, r.query) {
			t.Errorf("%s %s: query %v, want %v", req.Method, req.URL.Path, q, r.query)
		}
		body, _ := io.ReadAll(req.Body)
		switch {
		case r.body == "" && len(body) > 0:
			t.Errorf("%s %s: unexpected body %s", req.Method, req.URL.Path, body)
		case r.body != "":
			var got, want any
			if err := json.Unmarshal(body, &got); err != nil {
				t.Errorf("%s %s: body %q: %v", req.Method, req.URL.Path, body, err)
			}
			_ = json.Unmarshal([]byte(r.body), &want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s: body %s, want %s", req.Method, req.URL.Path, body, r.body)
			}
			if ct := req.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s %s: Content-Type %q", req.Method, req.URL.Path, ct)
			}
		}
		if r.status != 0 {
			w.WriteHeader(r.status)
		}
		io.WriteString(w, r.answer)
	}))
	t.Cleanup(srv.Close)
	return srv, hits
}

// runClient runs the command line against the admin API at adminURL
// (HOOKRELAY_ADMIN_URL) with the token set, and fails the test if the token
// shows in any output.
func runClient(t *testing.T, adminURL string, args ...string) (int, string, string) {
	t.Helper()
	t.Setenv(adminURLEnv, adminURL)
	t.Setenv(adminTokenEnv, clientToken)
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	if strings.Contains(out.String()+errOut.String(), clientToken) {
		t.Errorf("%v: the token was printed:\n%s%s", args, out.String(), errOut.String())
	}
	return code, out.String(), errOut.String()
}

const listAnswer = `{"items": [
  {"id": "01JD6X1S0Y8Z0F6C1A6R5K0ZQH", "provider": "resurs", "source": "webhook", "type": "credit_decision.updated",
   "key": "abc-123-def-567", "sequence": 0, "idempotency_id": "resurs:9f86d081", "received_at": "2026-11-25T10:00:00.123Z",
   "occurred_at": "2026-11-25T09:59:59Z", "data": {"decision": "APPROVED"}, "raw": {"id": 1}, "status": "dead"},
  {"id": "01JD6WZZZZ0000000000000000", "provider": "kompar", "source": "poll", "type": "application.created",
   "key": "", "sequence": 7, "idempotency_id": "kompar:1", "received_at": "2026-11-25T10:59:58+01:00",
   "occurred_at": null, "data": {}, "raw": null, "status": "delivered"}
], "next_cursor": "MDFKRDZX+/="}`

func TestClientEventsList(t *testing.T) {
	srv, _ := fakeAdmin(t, clientToken, map[string]reply{
		"GET /admin/events": {
			query:  url.Values{"status": {"dead"}, "provider": {"resurs"}, "destination": {"broker"}, "type": {"t.x"}, "key": {"k 1"}, "limit": {"2"}, "cursor": {"c1"}},
			answer: listAnswer,
		},
	})
	code, out, errOut := runClient(t, srv.URL, "events", "list", "--status", "dead", "--provider", "resurs",
		"--destination", "broker", "--type", "t.x", "--key", "k 1", "--limit", "2", "--cursor", "c1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := `ID                          RECEIVED                  PROVIDER  TYPE                     KEY              STATUS
01JD6X1S0Y8Z0F6C1A6R5K0ZQH  2026-11-25T10:00:00.123Z  resurs    credit_decision.updated  abc-123-def-567  dead
01JD6WZZZZ0000000000000000  2026-11-25T09:59:58.000Z  kompar    application.created      -                delivered

next: hookrelay events list --status dead --provider resurs --destination broker --type t.x --key 'k 1' --limit 2 --cursor MDFKRDZX+/=
`
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
}

func TestClientEventsListEmpty(t *testing.T) {
	srv, _ := fakeAdmin(t, clientToken, map[string]reply{
		"GET /admin/events": {answer: `{"items": [], "next_cursor": ""}`},
	})
	code, out, errOut := runClient(t, srv.URL, "events", "list")
	if code != 0 || out != "no events\n" {
		t.Fatalf("exit %d, output %q %s", code, out, errOut)
	}
}

// --admin wins over HOOKRELAY_ADMIN_URL and is repeated in the next page's hint.
func TestClientAdminFlag(t *testing.T) {
	srv, _ := fakeAdmin(t, clientToken, map[string]reply{
		"GET /admin/events": {answer: `{"items": [], "next_cursor": "c2"}`},
	})
	host := strings.TrimPrefix(srv.URL, "http://")
	code, out, errOut := runClient(t, "http://127.0.0.1:1", "events", "list", "--admin", host)
	if want := "no events\n\nnext: hookrelay events list --admin " + host + " --cursor c2\n"; code != 0 || out != want {
		t.Fatalf("exit %d, output %q, want %q %s", code, out, want, errOut)
	}
}

func TestClientJSON(t *testing.T) {
	const detail = `{"event": {"id": "E1", "status": "dead"}, "deliveries": []}`
	srv, _ := fakeAdmin(t, clientToken, map[string]reply{
		"GET /admin/events":          {query: url.Values{"status": {"dead"}}, answer: listAnswer},
		"GET /admin/events/E1":       {answer: detail},
		"POST /admin/events/E1/skip": {answer: `{"skipped":2}`},
		"POST /admin/reload":         {answer: `{"reloaded":true}`},
	})
	for _, tc := range []struct {
		args   []string
		answer string
	}{
		{[]string{"events", "list", "--json", "--status", "dead"}, listAnswer},
		{[]string{"events", "--json", "show", "E1"}, detail},
		{[]string{"events", "skip", "E1", "--json"}, `{"skipped":2}`},
		{[]string{"reload", "--json"}, `{"reloaded":true}`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := runClient(t, srv.URL, tc.args...)
			var want bytes.Buffer
			if err := json.Indent(&want, []byte(tc.answer), "", "  "); err != nil {
				t.Fatal(err)
			}
			want.WriteByte('\n')
			if code != 0 || out != want.String() {
				t.Fatalf("exit %d, output:\n%s\nwant:\n%s%s", code, out, want.String(), errOut)
			}
		})
	}
}

var showAnswer = `{"event": {"id": "01JD6X1S0Y8Z0F6C1A6R5K0ZQH", "provider": "resurs", "source": "webhook",
  "type": "credit_decision.updated", "key": "abc-123-def-567", "sequence": 4, "idempotency_id": "resurs:9f86d081",
  "received_at": "2026-11-25T10:00:00.123Z", "occurred_at": "2026-11-25T09:59:59Z",
  "data": {"decision": "APPROVED", "approved_amount": 10000}, "raw": {"note": "\u001b[31mred"},
  "status": "dead", "paused": false},
 "deliveries": [
  {"destination": "broker", "status": "dead", "attempts": [
    {"at": "2026-11-25T10:00:01.5Z", "status": 503, "error": "server error", "duration_ms": 120, "response": "{\"error\": \"down\"}"},
    {"at": "2026-11-25T10:00:03Z", "status": 0, "error": "dial tcp: connection refused\n", "duration_ms": 1500.4, "response": ""},
    {"at": "2026-11-25T10:00:09Z", "status": 500, "error": "", "duration_ms": 3, "response": "` + strings.Repeat("x", 100) + `"}]},
  {"destination": "audit", "status": "delivered", "attempts": [
    {"at": "2026-11-25T10:00:01Z", "status": 204, "error": "", "duration_ms": 8, "response": ""}]},
  {"destination": "slow", "status": "held", "attempts": []}
 ]}`

func TestClientEventsShow(t *testing.T) {
	srv, _ := fakeAdmin(t, clientToken, map[string]reply{
		"GET /admin/events/01JD6X1S0Y8Z0F6C1A6R5K0ZQH": {answer: showAnswer},
	})
	code, out, errOut := runClient(t, srv.URL, "events", "show", "01JD6X1S0Y8Z0F6C1A6R5K0ZQH")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := `id              01JD6X1S0Y8Z0F6C1A6R5K0ZQH
status          dead
provider        resurs
source          webhook
type            credit_decision.updated
key             abc-123-def-567
sequence        4
idempotency_id  resurs:9f86d081
received_at     2026-11-25T10:00:00.123Z
occurred_at     2026-11-25T09:59:59Z
data            {"decision":"APPROVED","approved_amount":10000}
raw             {"note":"\u001b[31mred"}
paused          false

delivery broker: dead, 3 attempts
  AT                        STATUS  DURATION  ERROR                         RESPONSE
  2026-11-25T10:00:01.500Z  503     120ms     server error                  {"error": "down"}
  2026-11-25T10:00:03.000Z  -       1.5s      dial tcp: connection refused  -
  2026-11-25T10:00:09.000Z  500     3ms       -                             ` + strings.Repeat("x", 80) + `...

delivery audit: delivered, 1 attempt
  AT                        STATUS  DURATION  ERROR  RESPONSE
  2026-11-25T10:00:01.000Z  204     8ms       -      -

delivery slow: held, 0 attempts
`
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
}

// Text from lenders must not reach the terminal as escape sequences.
func TestClientCleansControlCharacters(t *testing.T) {
	srv, _ := fakeAdmin(t, clientToken, map[string]reply{
		"GET /admin/events": {answer: `{"items": [{"id": "E1", "key": "a\u001b]0;pwned\u0007b", "type": "x\ny"}], "next_cursor": ""}`},
	})
	code, out, _ := runClient(t, srv.URL, "events", "list")
	if code != 0 || strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, "a\uFFFD]0;pwned\uFFFDb") || !strings.Contains(out, "x y") {
		t.Fatalf("exit %d, output %q", code, out)
	}
}

func TestClientCounts(t *testing.T) {
	srv, _ := fakeAdmin(t, clientToken, map[string]reply{
		"POST /admin/events/E1/retry":   {answer: `{"requeued": 2}`},
		"POST /admin/events/E%2F2/skip": {answer: `{"skipped": 1}`},
		"POST /admin/dead/retry":        {body: `{"destination": "broker", "key": "k1"}`, answer: `{"requeued": 0}`},
		"POST /admin/reload":            {answer: `{"reloaded": true}`},
	})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"events", "retry", "E1"}, "requeued 2 deliveries\n"},
		{[]string{"events", "skip", "E/2"}, "skipped 1 delivery\n"},
		{[]string{"dead", "retry", "--destination", "broker", "--key", "k1"}, "requeued 0 deliveries\n"},
		{[]string{"reload"}, "configuration reloaded\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := runClient(t, srv.URL, tc.args...)
			if code != 0 || out != tc.want || errOut != "" {
				t.Fatalf("exit %d, output %q, want %q; stderr %q", code, out, tc.want, errOut)
			}
		})
	}
}

func TestClientDeadRetryAll(t *testing.T) {
	srv, _ := fakeAdmin(t, clientToken, map[string]reply{
		"POST /admin/dead/retry": {body: `{}`, answer: `{"requeued": 12}`},
	})
	code, out, errOut := runClient(t, srv.URL, "dead", "retry")
	if code != 0 || out != "requeued 12 deliveries\n" {
		t.Fatalf("exit %d, output %q %s", code, out, errOut)
	}
}

func TestClientAPIErrors(t *testing.T) {
	srv, _ := fakeAdmin(t, clientToken, map[string]reply{
		"GET /admin/events/nope":      {status: http.StatusNotFound, answer: `{"error": "event nope: not found"}`},
		"GET /admin/events":           {query: url.Values{"status": {"bogus"}}, status: http.StatusBadRequest, answer: `{"error": "status: must be one of pending, delivered, dead, held, quarantined"}`},
		"POST /admin/events/E1/retry": {status: http.StatusBadGateway, answer: `<html>bad gateway</html>`},
		"GET /admin/events/E2":        {answer: `not json`},
		"POST /admin/reload": {status: http.StatusUnprocessableEntity, answer: `{"error": "configuration refused", "errors": [
			"relay.yaml:4: destinations.broker.url: required", "providers.d/acme.yaml:9: verify[0].secret: unknown env ACME"]}`},
	})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"events", "show", "nope"}, "hookrelay: event nope: not found\n"},
		{[]string{"events", "list", "--status", "bogus"}, "hookrelay: status: must be one of pending, delivered, dead, held, quarantined\n"},
		{[]string{"events", "retry", "E1"}, "hookrelay: admin API answered 502 Bad Gateway\n"},
		{[]string{"events", "show", "E2"}, "hookrelay: admin API: unexpected answer: invalid character 'o' in literal null (expecting 'u')\n"},
		{[]string{"reload"}, "hookrelay: configuration refused\nrelay.yaml:4: destinations.broker.url: required\nproviders.d/acme.yaml:9: verify[0].secret: unknown env ACME\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := runClient(t, srv.URL, tc.args...)
			if code != 1 || out != "" || errOut != tc.want {
				t.Fatalf("exit %d, stdout %q, stderr %q, want %q", code, out, errOut, tc.want)
			}
		})
	}
}

func TestClientWithoutToken(t *testing.T) {
	srv, _ := fakeAdmin(t, "", map[string]reply{
		"POST /admin/reload": {status: http.StatusUnauthorized, answer: `{"error": "missing or wrong admin token"}`},
	})
	t.Setenv(adminTokenEnv, "")
	var out, errOut bytes.Buffer
	code := run([]string{"reload", "--admin", srv.URL}, &out, &errOut)
	if want := "hookrelay: missing or wrong admin token (HOOKRELAY_ADMIN_TOKEN is not set)\n"; code != 1 || errOut.String() != want {
		t.Fatalf("exit %d, stderr %q, want %q", code, errOut.String(), want)
	}
}

// A redirect is followed on the admin API's own host only, so that the token
// goes nowhere else.
func TestClientRedirects(t *testing.T) {
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		t.Errorf("request reached another host, Authorization %q", req.Header.Get("Authorization"))
		io.WriteString(w, `{"reloaded": true}`)
	}))
	defer elsewhere.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /here/admin/reload", func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, "/admin/reload", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("POST /away/admin/reload", func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, elsewhere.URL+"/admin/reload", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("POST /admin/reload", func(w http.ResponseWriter, req *http.Request) {
		if got := req.Header.Get("Authorization"); got != "Bearer "+clientToken {
			t.Errorf("after the redirect: Authorization %q", got)
		}
		io.WriteString(w, `{"reloaded": true}`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	code, out, errOut := runClient(t, srv.URL+"/here/", "reload")
	if code != 0 || out != "configuration reloaded\n" {
		t.Errorf("same-host redirect: exit %d, output %q %s", code, out, errOut)
	}
	code, _, errOut = runClient(t, srv.URL+"/away", "reload")
	if code != 1 || !strings.Contains(errOut, "refusing a redirect to "+elsewhere.URL) {
		t.Errorf("cross-host redirect: exit %d, stderr %q", code, errOut)
	}
}

func TestClientUsageErrors(t *testing.T) {
	srv, hits := fakeAdmin(t, clientToken, nil)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"events"}, "missing subcommand"},
		{[]string{"events", "tail"}, `unknown subcommand "tail"`},
		{[]string{"events", "show"}, "show: want one event ID"},
		{[]string{"events", "retry", "E1", "E2"}, "retry: want one event ID"},
		{[]string{"events", "skip", ""}, "skip: want one event ID"},
		{[]string{"events", "list", "extra"}, `list: unexpected argument "extra"`},
		{[]string{"events", "show", "E1", "--status", "dead"}, "show does not take --status"},
		{[]string{"events", "list", "--config", "relay.yaml"}, "list does not take --config"},
		{[]string{"events", "list", "--limit", "0"}, "--limit: must be a positive number"},
		{[]string{"events", "list", "--limit", "ten"}, "invalid value"},
		{[]string{"events", "list", "--nope"}, "flag provided but not defined"},
		{[]string{"dead"}, "want the subcommand retry"},
		{[]string{"dead", "retry", "--status", "dead"}, "flag provided but not defined"},
		{[]string{"dead", "retry", "X"}, `retry: unexpected argument "X"`},
		{[]string{"reload", "now"}, `reload: unexpected argument "now"`},
		{[]string{"reload", "--admin", "ftp://example.com"}, "is not an http(s) URL"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := runClient(t, srv.URL, tc.args...)
			if code != 2 || out != "" || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q, want %q", code, out, errOut, tc.want)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("usage errors sent %d requests", n)
	}
}
