package engine

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// apiError is an admin error with its HTTP status.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// adminFunc is an admin handler: it returns a value to render as JSON, or an error.
type adminFunc func(req *http.Request) (any, error)

// AdminHandler serves the admin API (SPEC 6): everything but /healthz and
// /readyz needs the bearer token when one is configured.
func (r *Relay) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		disabled := map[string]string{}
		for _, p := range r.cfg.Providers {
			if p.Disabled != "" {
				disabled[p.Name] = p.Disabled
			}
		}
		status := http.StatusOK
		if !r.ready.Load() {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, map[string]any{"ready": status == http.StatusOK, "disabled_providers": disabled})
	})
	mux.Handle("GET /metrics", r.auth(promhttp.HandlerFor(r.m.reg, promhttp.HandlerOpts{})))
	mux.Handle("GET /admin/rejections", r.auth(r.api(func(req *http.Request) (any, error) {
		limit := 100
		if s := req.URL.Query().Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return nil, &apiError{http.StatusBadRequest, "limit: must be a positive number"}
			}
			limit = n
		}
		return map[string]any{"items": r.rejections.list(req.URL.Query().Get("provider"), limit), "next_cursor": ""}, nil
	})))
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not found")
	})
	return mux
}

// auth requires the admin token, compared in constant time.
func (r *Relay) auth(next http.Handler) http.Handler {
	want := sha256.Sum256([]byte("Bearer " + r.cfg.Admin.Token))
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.cfg.Admin.Token != "" {
			got := sha256.Sum256([]byte(req.Header.Get("Authorization")))
			if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				writeError(w, http.StatusUnauthorized, "missing or wrong admin token")
				return
			}
		}
		next.ServeHTTP(w, req)
	})
}

// api adapts an adminFunc: one place renders results and errors.
func (r *Relay) api(f adminFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		v, err := f(req)
		if err != nil {
			status := http.StatusInternalServerError
			if ae, ok := err.(*apiError); ok {
				status = ae.status
			}
			writeError(w, status, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, v)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
