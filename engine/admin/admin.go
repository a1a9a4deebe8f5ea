package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"strconv"

	"github.com/hookrelay/hookrelay/engine/internal/httpjson"
	"github.com/hookrelay/hookrelay/engine/spool"
)

// adminFunc is an admin handler: it returns a value to render as JSON, or an error.
type adminFunc func(req *http.Request) (any, error)

// list is the shape of every listing (SPEC 6).
type list struct {
	Items      any    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

// api is the admin API over one running relay.
type api struct {
	relay Relay
	spool Reader
	log   *slog.Logger
}

// Handler serves the admin API (SPEC 6) of relay, reading sp: everything but
// /healthz, /readyz and the console's pages needs the bearer token when one
// is configured, and nothing answers another site's web page
// (browserGuard). console, when not nil, serves the operator console
// (SPEC 13) under /ui/: its files hold no data, and every call it makes
// goes through the token like any other client's.
func Handler(relay Relay, sp Reader, log *slog.Logger, console http.Handler) http.Handler {
	r := &api{relay: relay, spool: sp, log: log}
	mux := http.NewServeMux()
	if console != nil {
		mux.Handle("GET /ui/", console)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		// Anyone who reaches the listener may ask (SPEC 6): names only, never
		// why (a variable's name) nor a lender's answer; /admin/providers,
		// behind the token, says the rest.
		disabled := []string{}
		for _, p := range r.relay.Providers() {
			if p.Disabled != "" {
				disabled = append(disabled, p.Name)
			}
		}
		sort.Strings(disabled)
		status := http.StatusOK
		if !r.relay.Ready() {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, map[string]any{"ready": status == http.StatusOK, "disabled_providers": disabled})
	})
	mux.Handle("GET /metrics", r.auth(r.relay.Metrics()))
	for pattern, f := range map[string]adminFunc{
		"GET /admin/providers":                   r.listProviders,
		"GET /admin/destinations":                r.listDestinations,
		"GET /admin/events":                      r.listEvents,
		"GET /admin/events/{id}":                 r.showEvent,
		"POST /admin/events/{id}/retry":          r.retryEvent,
		"POST /admin/events/{id}/skip":           r.skipEvent,
		"POST /admin/dead/retry":                 r.retryDead,
		"GET /admin/rejections":                  r.listRejections,
		"GET /admin/quarantine":                  r.listQuarantine,
		"GET /admin/quarantine/{id}":             r.showQuarantined,
		"POST /admin/quarantine/reprocess":       r.reprocess,
		"POST /admin/destinations/{name}/pause":  r.pause(true),
		"POST /admin/destinations/{name}/resume": r.pause(false),
		"POST /admin/reload":                     r.reload,
		"POST /admin/providers/{name}/poll":      r.addPollKey,
		"GET /admin/privacy":                     r.privacy,
		"DELETE /admin/keys/{provider}/{key}":    r.eraseKey,
	} {
		mux.Handle(pattern, r.auth(r.serve(f)))
	}
	mux.Handle("/", r.auth(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not found")
	})))
	return r.browserGuard(mux)
}

// auth requires the admin token, compared in constant time.
func (r *api) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if token, _, _ := r.relay.Listener(); token != "" {
			want := sha256.Sum256([]byte("Bearer " + token))
			got := sha256.Sum256([]byte(req.Header.Get("Authorization")))
			if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="hookrelay admin"`)
				writeError(w, http.StatusUnauthorized, "missing or wrong admin token")
				return
			}
		}
		next.ServeHTTP(w, req)
	})
}

// serve adapts an adminFunc: one place renders results and errors.
func (r *api) serve(f adminFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		req.Body = http.MaxBytesReader(w, req.Body, 1<<20)
		v, err := f(req)
		if err == nil {
			writeJSON(w, http.StatusOK, v)
			return
		}
		var ae *Error
		if !errors.As(err, &ae) {
			r.log.Error("admin request failed", "path", req.URL.Path, "error", err)
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		if ae.Problems != nil {
			writeJSON(w, ae.Status, map[string]any{"error": ae.Msg, "errors": ae.Problems})
			return
		}
		writeError(w, ae.Status, ae.Msg)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) { httpjson.Write(w, status, v) }

func writeError(w http.ResponseWriter, status int, reason string) { httpjson.Error(w, status, reason) }

// readBody decodes an optional JSON body (empty and {} are both fine).
func readBody(req *http.Request, v any) error {
	dec := json.NewDecoder(req.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && err.Error() != "EOF" {
		return BadRequest("body: " + err.Error())
	}
	return nil
}

// limit reads ?limit=, default def, at most 1000.
func limit(req *http.Request, def int) (int, error) {
	s := req.URL.Query().Get("limit")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, BadRequest("limit: must be a positive number")
	}
	return min(n, 1000), nil
}

func (r *api) listProviders(*http.Request) (any, error) {
	var items []map[string]any
	for _, p := range r.relay.Providers() {
		item := map[string]any{
			"name": p.Name, "file": p.File, "paths": p.Paths, "methods": p.Methods,
			"disabled": p.Disabled, "config": redactConfig(p.Config, false),
		}
		if p.Registration != nil {
			item["registration"] = *p.Registration
		}
		if p.Disabled == "" {
			if p.RegisterOff != "" {
				item["register_unavailable"] = p.RegisterOff
			}
			if p.PollOff != "" {
				item["polling_unavailable"] = p.PollOff
			}
		}
		if p.Poll != nil {
			item["poll"] = p.Poll
		}
		items = append(items, item)
	}
	return list{Items: items}, nil
}

func (r *api) listDestinations(*http.Request) (any, error) {
	items := []map[string]any{}
	for _, d := range r.relay.Destinations() {
		item := map[string]any{"name": d.Name, "config": redactConfig(d.Config, false)}
		if l := d.Lane; l != nil {
			item["paused"], item["pending"], item["dead"], item["held_keys"] = l.Paused, l.Pending, l.Dead, l.HeldKeys
			item["oldest_pending_seconds"] = l.OldestPendingSeconds
			item["last_failure"] = l.LastFailure
			item["held"] = l.Held
		}
		items = append(items, item)
	}
	return list{Items: items}, nil
}

func (r *api) listRejections(req *http.Request) (any, error) {
	n, err := limit(req, 100)
	if err != nil {
		return nil, err
	}
	return list{Items: r.relay.Rejections(req.URL.Query().Get("provider"), n)}, nil
}

func (r *api) pause(paused bool) adminFunc {
	return func(req *http.Request) (any, error) {
		name := req.PathValue("name")
		if err := r.relay.Pause(name, paused); err != nil {
			return nil, err
		}
		return map[string]any{"destination": name, "paused": paused}, nil
	}
}

func (r *api) reload(*http.Request) (any, error) {
	if err := r.relay.Reload(); err != nil {
		return nil, err
	}
	return map[string]bool{"reloaded": true}, nil
}

// addPollKey makes a key known to a provider's poller (SPEC 9).
func (r *api) addPollKey(req *http.Request) (any, error) {
	var b struct {
		Key string `json:"key"`
	}
	if err := readBody(req, &b); err != nil {
		return nil, err
	}
	if b.Key == "" {
		return nil, BadRequest("key: required")
	}
	name := req.PathValue("name")
	if err := r.relay.PollKey(name, b.Key); err != nil {
		return nil, err
	}
	return map[string]any{"provider": name, "key": b.Key, "polling": true}, nil
}

func (r *api) privacy(*http.Request) (any, error) { return r.relay.Privacy(), nil }

// eraseKey removes everything of one key and destroys its data key (SPEC
// 11): the answer counts what went.
func (r *api) eraseKey(req *http.Request) (any, error) {
	provider, key := req.PathValue("provider"), req.PathValue("key")
	if provider == "" || key == "" {
		return nil, BadRequest("provider and key: required")
	}
	erased, err := r.relay.EraseKey(provider, key)
	if err != nil {
		return nil, err
	}
	return struct {
		Provider string `json:"provider"`
		Key      string `json:"key"`
		spool.Erased
	}{provider, key, erased}, nil
}
