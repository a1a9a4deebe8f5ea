package engine

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// browserReq is one request to the admin listener as a browser (or a
// client) might send it: host "" keeps the listener's own address.
type browserReq struct {
	method, path, body string
	header             map[string]string
	host               string
	chunked            bool // send the body without a Content-Length
}

func (tr *testRelay) browser(r browserReq) (int, string) {
	tr.t.Helper()
	var rd io.Reader
	if r.body != "" {
		rd = strings.NewReader(r.body)
		if r.chunked {
			rd = io.MultiReader(rd) // a length net/http cannot see: chunked
		}
	}
	req, err := http.NewRequest(r.method, tr.Admin.URL+r.path, rd)
	must(tr.t, err)
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	if r.host != "" {
		req.Host = r.host
	}
	resp, err := http.DefaultClient.Do(req)
	must(tr.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAdminBrowserGuard: a web page in the operator's browser cannot drive
// the admin API (SPEC 6), with or without a token: a text/plain or form POST
// (no CORS preflight) is 415 and pauses nothing, a foreign Origin is 403, a
// foreign Host (DNS rebinding) is 403 on every path, /healthz and /readyz
// included; loopback names, admin.hosts and same-origin requests still work.
func TestAdminBrowserGuard(t *testing.T) {
	for _, withToken := range []bool{false, true} {
		name := "without token"
		yaml := relayYAML("http://127.0.0.1:1/x", "")
		authz := map[string]string{}
		if withToken {
			name = "with token"
			yaml = adminRelayYAML("http://127.0.0.1:1/x", "")
			authz["Authorization"] = "Bearer " + adminToken
		}
		yaml = strings.Replace(yaml, "admin: { listen: 127.0.0.1:19090", "admin: { hosts: [relay.internal], listen: 127.0.0.1:19090", 1)
		t.Run(name, func(t *testing.T) {
			tr := startRelay(t, yaml, map[string]string{"plain": plainProvider})
			port := tr.Admin.URL[strings.LastIndex(tr.Admin.URL, ":")+1:]
			with := func(h map[string]string) map[string]string {
				out := map[string]string{}
				for k, v := range authz {
					out[k] = v
				}
				for k, v := range h {
					out[k] = v
				}
				return out
			}
			pause := "/admin/destinations/dest/pause"
			refused := []struct {
				name string
				req  browserReq
				want int
			}{
				{"text/plain POST", browserReq{method: "POST", path: pause, body: `{}`,
					header: with(map[string]string{"Content-Type": "text/plain"})}, http.StatusUnsupportedMediaType},
				{"form POST", browserReq{method: "POST", path: pause, body: `a=b`,
					header: with(map[string]string{"Content-Type": "application/x-www-form-urlencoded"})}, http.StatusUnsupportedMediaType},
				{"body without a type", browserReq{method: "POST", path: pause, body: `{}`, header: with(nil)}, http.StatusUnsupportedMediaType},
				{"chunked text/plain", browserReq{method: "POST", path: pause, body: `{}`, chunked: true,
					header: with(map[string]string{"Content-Type": "text/plain"})}, http.StatusUnsupportedMediaType},
				{"foreign Origin", browserReq{method: "POST", path: pause,
					header: with(map[string]string{"Origin": "http://evil.example"})}, http.StatusForbidden},
				{"foreign Origin, JSON", browserReq{method: "POST", path: pause, body: `{}`,
					header: with(map[string]string{"Origin": "https://evil.example", "Content-Type": "application/json"})}, http.StatusForbidden},
				{"Origin null", browserReq{method: "POST", path: pause, header: with(map[string]string{"Origin": "null"})}, http.StatusForbidden},
				{"rebound Host", browserReq{method: "POST", path: pause, host: "evil.example:" + port, header: with(nil)}, http.StatusForbidden},
				{"rebound Host, events", browserReq{method: "GET", path: "/admin/events", host: "evil.example:" + port, header: with(nil)}, http.StatusForbidden},
				{"rebound Host, healthz", browserReq{method: "GET", path: "/healthz", host: "evil.example:" + port}, http.StatusForbidden},
				{"rebound Host, readyz", browserReq{method: "GET", path: "/readyz", host: "evil.example"}, http.StatusForbidden},
				{"rebound Host, localhost suffix", browserReq{method: "GET", path: "/readyz", host: "localhost.evil.example"}, http.StatusForbidden},
			}
			for _, c := range refused {
				if status, body := tr.browser(c.req); status != c.want || !strings.Contains(body, `"error"`) {
					t.Errorf("%s: %d %s, want %d with an error", c.name, status, body, c.want)
				}
			}
			if tr.dest("dest").Paused {
				t.Fatal("a refused request paused the destination")
			}

			allowed := []struct {
				name string
				req  browserReq
			}{
				{"localhost", browserReq{method: "GET", path: "/admin/events", host: "localhost:" + port, header: with(nil)}},
				{"localhost without port", browserReq{method: "GET", path: "/readyz", host: "localhost"}},
				{"[::1]", browserReq{method: "GET", path: "/healthz", host: "[::1]:" + port}},
				{"127.0.0.1 without port", browserReq{method: "GET", path: "/healthz", host: "127.0.0.1"}},
				{"admin.hosts", browserReq{method: "GET", path: "/admin/events", host: "relay.internal:" + port, header: with(nil)}},
				{"same Origin", browserReq{method: "GET", path: "/admin/events",
					header: with(map[string]string{"Origin": tr.Admin.URL})}},
				{"empty POST", browserReq{method: "POST", path: "/admin/dead/retry", header: with(nil)}},
				{"empty text/plain POST", browserReq{method: "POST", path: "/admin/dead/retry",
					header: with(map[string]string{"Content-Type": "text/plain"})}},
				{"JSON POST", browserReq{method: "POST", path: "/admin/dead/retry", body: `{}`,
					header: with(map[string]string{"Content-Type": "application/json; charset=utf-8"})}},
				{"chunked JSON POST", browserReq{method: "POST", path: "/admin/dead/retry", body: `{}`, chunked: true,
					header: with(map[string]string{"Content-Type": "application/json"})}},
				{"JSON pause", browserReq{method: "POST", path: pause, body: `{}`,
					header: with(map[string]string{"Content-Type": "application/json"})}},
			}
			for _, c := range allowed {
				if status, body := tr.browser(c.req); status != http.StatusOK {
					t.Errorf("%s: %d %s, want 200", c.name, status, body)
				}
			}
			if !tr.dest("dest").Paused {
				t.Error("a JSON pause from the CLI's side did not pause")
			}
		})
	}
}
