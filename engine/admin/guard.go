package admin

import (
	"bytes"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// browserGuard refuses, token or not, what only a web page in the
// operator's browser would send (SPEC 6). Without it a page of any site can
// drive a token-less loopback admin API: a cross-site form or text/plain POST
// needs no CORS preflight, so it pauses a destination; and DNS rebinding (the
// page's own name re-pointed at 127.0.0.1) makes every GET same-origin, so it
// reads events. It runs before the token check and covers /healthz and
// /readyz too.
func (r *api) browserGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, listen, hosts := r.relay.Listener()
		if !adminHostAllowed(req.Host, listen, hosts) {
			writeError(w, http.StatusForbidden, "Host is not this admin listener's address, a loopback name or one of admin.hosts")
			return
		}
		if o := req.Header.Get("Origin"); o != "" && !sameOrigin(o, req.Host) {
			writeError(w, http.StatusForbidden, "requests from another origin (a web page) are refused")
			return
		}
		// A browser names the site a request comes from even where it sends
		// no Origin (a GET, an <img>): only the console's own pages
		// (same-origin) and what the operator typed (none) pass. Opening
		// the console from a link elsewhere is a navigation to pages that
		// hold no data, so it may be cross-site.
		if !fetchSiteAllowed(req) {
			writeError(w, http.StatusForbidden, "requests from another site (a web page) are refused")
			return
		}
		// A browser can send a body cross-site without asking first only as
		// a form or text/plain; JSON needs a preflight, which gets no CORS
		// answer here. 415 rather than 403: the client sent the wrong type.
		if !isJSON(req.Header.Get("Content-Type")) && hasBody(req) {
			writeError(w, http.StatusUnsupportedMediaType, "a request body must be application/json")
			return
		}
		next.ServeHTTP(w, req)
	})
}

// adminHostAllowed reports whether a request's Host header names this admin
// listener: a loopback name (localhost, 127.0.0.1, [::1]), the host of
// admin.listen, any IP address when admin.listen binds every interface
// (rebinding needs a DNS name, and an address names the machine itself), or
// an entry of admin.hosts (a name, or a name:port). Ports are not compared,
// since a proxy in front may use another. A request without Host (HTTP/1.0)
// cannot come from a browser.
func adminHostAllowed(host, listen string, hosts []string) bool {
	if host == "" {
		return true
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	name = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(name, "["), "]"))
	ip := net.ParseIP(name)
	if name == "localhost" || (ip != nil && ip.IsLoopback()) {
		return true
	}
	if lh, _, err := net.SplitHostPort(listen); err == nil {
		lip := net.ParseIP(lh)
		if strings.EqualFold(lh, name) || (ip != nil && lip != nil && lip.Equal(ip)) {
			return true
		}
		if ip != nil && (lh == "" || (lip != nil && lip.IsUnspecified())) {
			return true
		}
	}
	for _, h := range hosts {
		if strings.EqualFold(h, name) || strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}

// fetchSiteAllowed reports whether Sec-Fetch-Site (sent by browsers only)
// allows the request: absent, same-origin, none (typed in), or a navigation
// to the console's pages under /ui/.
func fetchSiteAllowed(req *http.Request) bool {
	switch req.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return true
	}
	return req.Method == http.MethodGet && req.Header.Get("Sec-Fetch-Mode") == "navigate" &&
		(req.URL.Path == "/ui" || strings.HasPrefix(req.URL.Path, "/ui/"))
}

// sameOrigin reports whether an Origin header names the host the request
// was sent to (any scheme: TLS may end at a proxy in front).
func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, host)
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}

// hasBody reports whether req carries at least one byte of body, peeking
// when the length is not announced (chunked) and putting the byte back.
func hasBody(req *http.Request) bool {
	if req.ContentLength >= 0 || req.Body == nil || req.Body == http.NoBody {
		return req.ContentLength > 0
	}
	var b [1]byte
	n, _ := io.ReadFull(req.Body, b[:])
	if n == 0 {
		return false
	}
	req.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b[:n]), req.Body), req.Body}
	return true
}
