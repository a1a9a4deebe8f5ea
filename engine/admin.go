package engine

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/internal/redact"
	"github.com/hookrelay/hookrelay/verifiers"
)

// apiError is an admin error with its HTTP status.
type apiError struct {
	status int
	msg    string
	// problems lists configuration errors of a refused reload.
	problems []string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(msg string) error { return &apiError{status: http.StatusBadRequest, msg: msg} }
func notFound(msg string) error   { return &apiError{status: http.StatusNotFound, msg: msg} }

// adminFunc is an admin handler: it returns a value to render as JSON, or an error.
type adminFunc func(req *http.Request) (any, error)

// list is the shape of every listing (SPEC 6).
type list struct {
	Items      any    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

// AdminHandler serves the admin API (SPEC 6): everything but /healthz and
// /readyz needs the bearer token when one is configured, and nothing answers
// a web page (browserGuard).
func (r *Relay) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		// Anyone who reaches the listener may ask (SPEC 6): names only, never
		// why (a variable's name) nor a lender's answer; /admin/providers,
		// behind the token, says the rest.
		disabled := []string{}
		for _, p := range r.Config().Providers {
			if p.Disabled != "" {
				disabled = append(disabled, p.Name)
			}
		}
		sort.Strings(disabled)
		status := http.StatusOK
		if !r.ready.Load() {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, map[string]any{"ready": status == http.StatusOK, "disabled_providers": disabled})
	})
	mux.Handle("GET /metrics", r.auth(promhttp.HandlerFor(r.m.reg, promhttp.HandlerOpts{})))
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
	} {
		mux.Handle(pattern, r.auth(r.api(f)))
	}
	mux.Handle("/", r.auth(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not found")
	})))
	return r.browserGuard(mux)
}

// auth requires the admin token, compared in constant time.
func (r *Relay) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if token := r.Config().Admin.Token; token != "" {
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

// api adapts an adminFunc: one place renders results and errors.
func (r *Relay) api(f adminFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		req.Body = http.MaxBytesReader(w, req.Body, 1<<20)
		v, err := f(req)
		if err == nil {
			writeJSON(w, http.StatusOK, v)
			return
		}
		var ae *apiError
		if !errors.As(err, &ae) {
			r.log.Error("admin request failed", "path", req.URL.Path, "error", err)
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		if ae.problems != nil {
			writeJSON(w, ae.status, map[string]any{"error": ae.msg, "errors": ae.problems})
			return
		}
		writeError(w, ae.status, ae.msg)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// readBody decodes an optional JSON body (empty and {} are both fine).
func readBody(req *http.Request, v any) error {
	dec := json.NewDecoder(req.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && err.Error() != "EOF" {
		return badRequest("body: " + err.Error())
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
		return 0, badRequest("limit: must be a positive number")
	}
	return min(n, 1000), nil
}

func (r *Relay) listProviders(*http.Request) (any, error) {
	var items []map[string]any
	registrations := r.registrationStatus()
	for _, p := range r.Config().Providers {
		item := map[string]any{
			"name": p.Name, "file": p.File, "paths": p.Paths, "methods": p.methods,
			"disabled": p.Disabled, "config": redactConfig(p.display, false),
		}
		if st, ok := registrations[p.Name]; ok {
			item["registration"] = st
		}
		if p.Disabled == "" {
			if off := p.RegistrationOff(); off != "" {
				item["register_unavailable"] = off
			}
			if off := p.PollingOff(); off != "" {
				item["polling_unavailable"] = off
			}
		}
		items = append(items, item)
	}
	return list{Items: items}, nil
}

func (r *Relay) listDestinations(*http.Request) (any, error) {
	cfg := r.Config()
	shown, _ := cfg.AsWritten()["destinations"].(map[string]any)
	names := make([]string, 0, len(cfg.Dests))
	for name := range cfg.Dests {
		names = append(names, name)
	}
	sort.Strings(names)
	items := []map[string]any{}
	for _, name := range names {
		item := map[string]any{"name": name, "config": redactConfig(shown[name], false)}
		if l := r.dispatch.lane(name); l != nil {
			st := l.stats()
			item["paused"], item["pending"], item["dead"], item["held_keys"] = st.Paused, st.Pending, st.Dead, st.HeldKeys
			item["oldest_pending_seconds"] = st.OldestPendingSeconds
			item["last_failure"] = st.LastFailure
			item["held"] = l.heldKeys(100)
		}
		items = append(items, item)
	}
	return list{Items: items}, nil
}

// secretFields are configuration keys whose values are credentials, inside
// the blocks that hold credentials (credentialBlocks): elsewhere `key` is an
// expression.
var secretFields = map[string]bool{
	"secret": true, "secrets": true, "token": true, "tokens": true, "password": true, "key": true, "keys": true,
	"api_key": true, "users": true, "jwks_headers": true,
}

var credentialBlocks = map[string]bool{"verify": true, "decrypt": true, "auth": true, "sign": true}

// redactConfig copies a configuration map, masking credentials written inline:
// secret fields of credential blocks, register and poll `values`, and header
// values whose names say credential; URLs (url, jwks_url, public_url...) as
// redact.URL shows them. env: and file: references are shown, since they
// name, not hold, a secret.
func redactConfig(v any, inCredentials bool) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			s, isString := val.(string)
			switch {
			case isString && (k == "url" || strings.HasSuffix(k, "_url")):
				out[k] = redact.URL(s)
			case k == "values" || (inCredentials && secretFields[k]):
				out[k] = mask(val)
			case k == "headers":
				out[k] = redactHeaders(val)
			default:
				out[k] = redactConfig(val, inCredentials || credentialBlocks[k])
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = redactConfig(val, inCredentials)
		}
		return out
	}
	return v
}

// redactHeaders masks configured header values whose names say credential.
func redactHeaders(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return redactConfig(v, false)
	}
	out := make(map[string]any, len(m))
	for name, val := range m {
		out[name] = val
		if secretHeader(name) {
			out[name] = mask(val)
		}
	}
	return out
}

func mask(v any) any {
	switch x := v.(type) {
	case string:
		if strings.HasPrefix(x, "env:") || strings.HasPrefix(x, "file:") {
			return x
		}
		return "***"
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = mask(val)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			out[k] = mask(val)
		}
		return out
	}
	return "***"
}

// statuses an event list can be filtered by (SPEC 6).
var eventStatuses = map[string]bool{"pending": true, "delivered": true, "dead": true, "held": true, "quarantined": true, "skipped": true}

// maxScan bounds how many events one listing request reads; a filter that
// matches little returns a cursor to go on from.
const maxScan = 20000

func (r *Relay) listEvents(req *http.Request) (any, error) {
	q := req.URL.Query()
	n, err := limit(req, 50)
	if err != nil {
		return nil, err
	}
	status := q.Get("status")
	if status != "" && !eventStatuses[status] {
		return nil, badRequest("status: must be one of pending, delivered, dead, held, skipped, quarantined")
	}
	if status == "quarantined" {
		return r.quarantineItems(q.Get("provider"), q.Get("cursor"), n)
	}
	items := []map[string]any{}
	next, visited := "", 0
	err = r.spool.Events(q.Get("cursor"), maxScan, func(ev *spool.Event, ds []*spool.Delivery) bool {
		visited++
		next = ev.ID
		if (q.Get("provider") != "" && ev.Provider != q.Get("provider")) || (q.Get("type") != "" && ev.Type != q.Get("type")) ||
			(q.Get("key") != "" && ev.Key != q.Get("key")) {
			return true
		}
		if d := q.Get("destination"); d != "" && !slicesContainsDest(ds, d) {
			return true
		}
		st := r.eventStatus(ev, ds)
		if status != "" && st != status {
			return true
		}
		items = append(items, eventView(ev, st))
		return len(items) < n
	})
	if err != nil {
		return nil, badRequest(err.Error())
	}
	if len(items) < n && visited < maxScan {
		next = "" // reached the oldest event
	}
	return list{Items: items, NextCursor: next}, nil
}

func slicesContainsDest(ds []*spool.Delivery, dest string) bool {
	for _, d := range ds {
		if d.Destination == dest {
			return true
		}
	}
	return false
}

// eventView is the canonical event with its status.
func eventView(ev *spool.Event, status string) map[string]any {
	m := map[string]any{}
	_ = json.Unmarshal(ev.Envelope, &m)
	m["status"] = status
	return m
}

// deliveryStatus is a delivery's status as the admin API shows it: a pending
// one waiting behind another event's dead delivery is held.
func (r *Relay) deliveryStatus(ev *spool.Event, d *spool.Delivery) string {
	if d.Status == spool.Pending {
		if l := r.dispatch.lane(d.Destination); l != nil {
			if by, held := l.heldBy(l.queueKeyOf(ev.ID, ev.Provider, ev.Key)); held && by != ev.ID {
				return "held"
			}
		}
	}
	return string(d.Status)
}

// eventStatus sums up an event's deliveries: dead over held over pending;
// delivered once every delivery is final and one was delivered.
func (r *Relay) eventStatus(ev *spool.Event, ds []*spool.Delivery) string {
	rank := map[string]int{"dead": 4, "held": 3, "pending": 2, "delivered": 1, "skipped": 0}
	best, status := -1, "delivered" // an event routed nowhere has nothing left to do
	for _, d := range ds {
		if s := r.deliveryStatus(ev, d); rank[s] > best {
			best, status = rank[s], s
		}
	}
	return status
}

func (r *Relay) showEvent(req *http.Request) (any, error) {
	ev, ds, err := r.eventWithDeliveries(req.PathValue("id"))
	if err != nil {
		return nil, err
	}
	out := []map[string]any{}
	for _, d := range ds {
		out = append(out, map[string]any{
			"destination": d.Destination, "status": r.deliveryStatus(ev, d), "attempts": attemptViews(d.Attempts),
			"next_attempt_at": d.NextAt, "attempts_before_retry": d.AttemptsBefore,
		})
	}
	return map[string]any{"event": eventView(ev, r.eventStatus(ev, ds)), "deliveries": out}, nil
}

// attemptView is one attempt as SPEC 6 shows it: every field, even when empty.
type attemptView struct {
	At         time.Time `json:"at"`
	Status     int       `json:"status"`
	Error      string    `json:"error"`
	DurationMS int64     `json:"duration_ms"`
	Response   string    `json:"response"`
}

func attemptViews(as []spool.Attempt) []attemptView {
	out := make([]attemptView, len(as))
	for i, a := range as {
		out[i] = attemptView{At: a.At, Status: a.Status, Error: a.Error, DurationMS: a.DurationMS, Response: a.Response}
	}
	return out
}

func (r *Relay) eventWithDeliveries(id string) (*spool.Event, []*spool.Delivery, error) {
	if _, err := ulid.ParseStrict(id); err != nil {
		return nil, nil, notFound("no event " + id) // no event can have it: not a malformed request
	}
	ev, err := r.spool.Event(id)
	if errors.Is(err, spool.ErrNotFound) {
		return nil, nil, notFound("no event " + id)
	}
	if err != nil {
		return nil, nil, badRequest(err.Error())
	}
	ds, err := r.spool.Deliveries(id)
	return ev, ds, err
}

// retryEvent requeues an event's dead deliveries with their attempt count
// reset; the key keeps its order (the delivery keeps its place in the spool).
func (r *Relay) retryEvent(req *http.Request) (any, error) {
	ev, ds, err := r.eventWithDeliveries(req.PathValue("id"))
	if err != nil {
		return nil, err
	}
	n := 0
	for _, d := range ds {
		if d.Status != spool.Dead {
			continue
		}
		if err := r.requeue(ev, d); err != nil {
			return nil, err
		}
		n++
	}
	return map[string]int{"requeued": n}, nil
}

func (r *Relay) requeue(ev *spool.Event, d *spool.Delivery) error {
	d.Status, d.NextAt, d.AttemptsBefore = spool.Pending, time.Time{}, len(d.Attempts)
	if err := r.spool.Update(context.Background(), d); err != nil {
		return err
	}
	if l := r.dispatch.lane(d.Destination); l != nil {
		l.requeue(ev.ID, ev.Provider, ev.Key, ev.Sequence)
	}
	r.log.Info("delivery requeued by operator", "event_id", ev.ID, "destination", d.Destination, "key", ev.Key)
	return nil
}

// skipEvent marks an event's dead and held deliveries skipped, releasing
// their keys.
func (r *Relay) skipEvent(req *http.Request) (any, error) {
	ev, ds, err := r.eventWithDeliveries(req.PathValue("id"))
	if err != nil {
		return nil, err
	}
	n := 0
	for _, d := range ds {
		st := r.deliveryStatus(ev, d)
		if st != "dead" && st != "held" {
			continue
		}
		d.Status = spool.Skipped
		if err := r.spool.Update(context.Background(), d); err != nil {
			return nil, err
		}
		if l := r.dispatch.lane(d.Destination); l != nil {
			l.release(ev.ID, ev.Provider, ev.Key, st == "dead")
		}
		r.m.skipped(d.Destination)
		r.log.Info("delivery skipped by operator", "event_id", ev.ID, "destination", d.Destination, "key", ev.Key)
		n++
	}
	return map[string]int{"skipped": n}, nil
}

// retryDead requeues every dead delivery matching the filter, destination by
// destination in spool (ingest) order.
func (r *Relay) retryDead(req *http.Request) (any, error) {
	var f struct {
		Destination string `json:"destination"`
		Provider    string `json:"provider"`
		Key         string `json:"key"`
	}
	if err := readBody(req, &f); err != nil {
		return nil, err
	}
	n := 0
	for _, l := range r.dispatch.allLanes() {
		name := l.destination().Name
		if f.Destination != "" && name != f.Destination {
			continue
		}
		var dead []*spool.Delivery
		err := r.spool.Queue(name, func(d *spool.Delivery) error {
			if d.Status == spool.Dead && (f.Key == "" || d.Key == f.Key) {
				dead = append(dead, d)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, d := range dead {
			ev, err := r.spool.Event(d.EventID)
			if err != nil {
				return nil, err
			}
			if f.Provider != "" && ev.Provider != f.Provider {
				continue
			}
			if err := r.requeue(ev, d); err != nil {
				return nil, err
			}
			n++
		}
	}
	return map[string]int{"requeued": n}, nil
}

func (r *Relay) listRejections(req *http.Request) (any, error) {
	n, err := limit(req, 100)
	if err != nil {
		return nil, err
	}
	return list{Items: r.rejections.list(req.URL.Query().Get("provider"), n)}, nil
}

func (r *Relay) listQuarantine(req *http.Request) (any, error) {
	n, err := limit(req, 50)
	if err != nil {
		return nil, err
	}
	return r.quarantineItems(req.URL.Query().Get("provider"), req.URL.Query().Get("cursor"), n)
}

// quarantineItems lists quarantined requests with credentials masked and
// the body as a hash (it may hold personal data).
func (r *Relay) quarantineItems(provider, cursor string, n int) (any, error) {
	items := []map[string]any{}
	next := cursor
	cfg := r.Config()
	for {
		page, err := r.spool.QuarantineList(next, n)
		if err != nil {
			return nil, badRequest(err.Error())
		}
		for _, q := range page {
			next = q.ID
			if provider != "" && q.Provider != provider {
				continue
			}
			items = append(items, quarantineView(cfg, q))
			if len(items) == n {
				return list{Items: items, NextCursor: q.ID}, nil
			}
		}
		if len(page) < n {
			return list{Items: items}, nil
		}
	}
}

// quarantineView is a quarantined request with credentials masked and the
// body as a hash (it may hold personal data).
func quarantineView(cfg *Config, q *spool.Quarantined) map[string]any {
	sum := sha256.Sum256(q.Body)
	return map[string]any{
		"id": q.ID, "provider": q.Provider, "reason": q.Reason, "received_at": q.ReceivedAt, "status": "quarantined",
		"method": q.Method, "path": q.Path, "headers": maskHeaders(q.Header, credentialsOf(cfg.Provider(q.Provider))), "body_sha256": hex.EncodeToString(sum[:]),
		"body_bytes": len(q.Body),
	}
}

// showQuarantined is one quarantined request, as the quarantine list shows
// it: an id from `events list --status quarantined` for `events show`.
func (r *Relay) showQuarantined(req *http.Request) (any, error) {
	id := req.PathValue("id")
	if _, err := ulid.ParseStrict(id); err != nil {
		return nil, notFound("no quarantined request " + id)
	}
	q, err := r.spool.Quarantined(id)
	if errors.Is(err, spool.ErrNotFound) {
		return nil, notFound("no quarantined request " + id)
	}
	if err != nil {
		return nil, err
	}
	return quarantineView(r.Config(), q), nil
}

// reprocess runs quarantined requests through the current configuration
// (verification passed when they arrived); those that now map are spooled
// and leave the quarantine.
func (r *Relay) reprocess(req *http.Request) (any, error) {
	var f struct {
		IDs      []string `json:"ids"`
		Provider string   `json:"provider"`
	}
	if err := readBody(req, &f); err != nil {
		return nil, err
	}
	all, err := r.spool.QuarantineList("", 0)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, id := range f.IDs {
		want[id] = true
	}
	type failure struct {
		ID     string `json:"id"`
		Reason string `json:"reason"`
	}
	done, failed := 0, []failure{}
	cfg := r.Config()
	for i := len(all) - 1; i >= 0; i-- { // oldest first: keys keep their order
		q := all[i]
		if (len(want) > 0 && !want[q.ID]) || (f.Provider != "" && q.Provider != f.Provider) {
			continue
		}
		p := cfg.Provider(q.Provider)
		if p == nil {
			failed = append(failed, failure{q.ID, "no provider " + q.Provider + " in the current configuration"})
			continue
		}
		ev, err := p.build(&verified{req: quarantinedRequest(q), body: q.Body, jws: q.JWS, signed: q.JWSSigned})
		if err != nil {
			failed = append(failed, failure{q.ID, err.Error()})
			continue
		}
		if _, err := r.spool.Append(context.Background(), ev, p.dedup); err != nil {
			return nil, err
		}
		if err := r.spool.DeleteQuarantined(q.ID); err != nil {
			return nil, err
		}
		r.log.Info("quarantined request reprocessed", "quarantine_id", q.ID, "provider", p.Name, "event_id", ev.ID, "key", ev.Key)
		done++
	}
	return map[string]any{"reprocessed": done, "failed": failed}, nil
}

func quarantinedRequest(q *spool.Quarantined) *verifiers.Request {
	return &verifiers.Request{
		Method: q.Method, Path: q.Path, Header: q.Header, Query: q.Query, Params: q.Params,
		Body: q.Body, RemoteAddr: q.RemoteAddr, Received: q.ReceivedAt,
	}
}

func (r *Relay) pause(paused bool) adminFunc {
	return func(req *http.Request) (any, error) {
		name := req.PathValue("name")
		l := r.dispatch.lane(name)
		if l == nil {
			return nil, notFound("no destination " + name)
		}
		if err := r.spool.SetPaused(name, paused); err != nil {
			return nil, err
		}
		l.setPaused(paused)
		if paused {
			r.log.Info("destination paused by operator", "destination", name)
		} else {
			r.log.Info("destination resumed by operator", "destination", name)
		}
		return map[string]any{"destination": name, "paused": paused}, nil
	}
}

func (r *Relay) reload(*http.Request) (any, error) {
	if err := r.Reload(); err != nil {
		return nil, &apiError{status: http.StatusUnprocessableEntity, msg: "configuration refused", problems: problems(err)}
	}
	return map[string]bool{"reloaded": true}, nil
}

// addPollKey makes a key known to a provider's poller (SPEC 9).
func (r *Relay) addPollKey(req *http.Request) (any, error) {
	var b struct {
		Key string `json:"key"`
	}
	if err := readBody(req, &b); err != nil {
		return nil, err
	}
	if b.Key == "" {
		return nil, badRequest("key: required")
	}
	name := req.PathValue("name")
	if err := r.pollKey(name, b.Key); err != nil {
		return nil, err
	}
	return map[string]any{"provider": name, "key": b.Key, "polling": true}, nil
}
