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
				// Without Origin, a browser still names the site a request comes from.
				{"cross-site GET", browserReq{method: "GET", path: "/admin/events",
					header: with(map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"})}, http.StatusForbidden},
				{"cross-site navigation to the API", browserReq{method: "GET", path: "/admin/events",
					header: with(map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"})}, http.StatusForbidden},
				{"same-site POST", browserReq{method: "POST", path: pause,
					header: with(map[string]string{"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"})}, http.StatusForbidden},
				{"cross-site console script", browserReq{method: "GET", path: "/ui/app.js",
					header: map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}}, http.StatusForbidden},
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
				// The console's own calls: same-origin, with Origin on a POST.
				{"console GET", browserReq{method: "GET", path: "/admin/events",
					header: with(map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"})}},
				{"console POST", browserReq{method: "POST", path: "/admin/dead/retry", body: `{"dry_run":true}`,
					header: with(map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": tr.Admin.URL, "Content-Type": "application/json"})}},
				{"typed-in URL", browserReq{method: "GET", path: "/admin/events",
					header: with(map[string]string{"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"})}},
				{"console opened from a link elsewhere, no token", browserReq{method: "GET", path: "/ui/",
					header: map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}}},
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

// TestConsoleFiles: the console's files are served under /ui/ without the
// token (they hold no data) and with headers that keep them from loading
// anything from elsewhere or being framed; the API beside them still wants
// the token.
func TestConsoleFiles(t *testing.T) {
	tr := startRelay(t, adminRelayYAML("http://127.0.0.1:1/x", ""), map[string]string{"plain": plainProvider})
	for _, c := range []struct{ path, ctype, has string }{
		{"/ui/", "text/html", `<script src="app.js"`},
		{"/ui/app.js", "javascript", "sessionStorage"},
		{"/ui/app.css", "text/css", "table"},
	} {
		resp, err := http.Get(tr.Admin.URL + c.path)
		must(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != http.StatusOK || !strings.Contains(h.Get("Content-Type"), c.ctype) || !strings.Contains(string(b), c.has) {
			t.Errorf("GET %s: %d %s, want 200 %s with %q", c.path, resp.StatusCode, h.Get("Content-Type"), c.ctype, c.has)
		}
		csp := h.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: Content-Security-Policy %q", c.path, csp)
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: X-Frame-Options %q, X-Content-Type-Options %q", c.path, h.Get("X-Frame-Options"), h.Get("X-Content-Type-Options"))
		}
	}
	resp, err := http.Get(tr.Admin.URL + "/ui")
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/ui/" {
		t.Errorf("GET /ui: %d at %s, want the console at /ui/", resp.StatusCode, resp.Request.URL.Path)
	}
	if status, _ := tr.browser(browserReq{method: "GET", path: "/admin/destinations",
		header: map[string]string{"Sec-Fetch-Site": "same-origin"}}); status != http.StatusUnauthorized {
		t.Errorf("the API without the token, from the console's origin: %d, want 401", status)
	}
	if status, _ := tr.browser(browserReq{method: "GET", path: "/ui/../admin/destinations"}); status != http.StatusUnauthorized {
		t.Errorf("a path out of /ui/: %d, want 401", status)
	}
}
