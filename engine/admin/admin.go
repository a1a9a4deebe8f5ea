package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/internal/httpjson"
	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/internal/redact"
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

// statuses an event list can be filtered by (SPEC 6).
var eventStatuses = map[string]bool{"pending": true, "delivered": true, "dead": true, "held": true, "quarantined": true, "skipped": true}

// maxScan bounds how many events one listing request reads; a filter that
// matches little returns a cursor to go on from.
const maxScan = 20000

func (r *api) listEvents(req *http.Request) (any, error) {
	q := req.URL.Query()
	n, err := limit(req, 50)
	if err != nil {
		return nil, err
	}
	status := q.Get("status")
	if status != "" && !eventStatuses[status] {
		return nil, BadRequest("status: must be one of pending, delivered, dead, held, skipped, quarantined")
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
		items = append(items, r.eventView(ev, st))
		return len(items) < n
	})
	if err != nil {
		return nil, BadRequest(err.Error())
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

// eventView is the canonical event with its status, its provider's
// sensitive values masked (SPEC 11).
func (r *api) eventView(ev *spool.Event, status string) spool.Shown {
	m, _ := r.maskedEvent(ev, status)
	return m
}

// maskedEvent is eventView and the sensitive values it masked: the
// envelope is decoded once for the view, and masked in place.
func (r *api) maskedEvent(ev *spool.Event, status string) (spool.Shown, []string) {
	m := ev.Shown()
	vals := r.relay.MaskEvent(ev.Provider, m)
	m["status"] = status
	return m, vals
}

// eventStatus sums up an event's deliveries: dead over held over pending;
// delivered once every delivery is final and one was delivered.
func (r *api) eventStatus(ev *spool.Event, ds []*spool.Delivery) string {
	rank := map[string]int{"dead": 4, "held": 3, "pending": 2, "delivered": 1, "skipped": 0}
	best, status := -1, "delivered" // an event routed nowhere has nothing left to do
	for _, d := range ds {
		if s := r.relay.DeliveryStatus(ev, d); rank[s] > best {
			best, status = rank[s], s
		}
	}
	return status
}

func (r *api) showEvent(req *http.Request) (any, error) {
	ev, ds, err := r.eventWithDeliveries(req.PathValue("id"))
	if err != nil {
		return nil, err
	}
	view, vals := r.maskedEvent(ev, r.eventStatus(ev, ds))
	out := []map[string]any{}
	for _, d := range ds {
		out = append(out, map[string]any{
			"destination": d.Destination, "status": r.relay.DeliveryStatus(ev, d), "attempts": attemptViews(d.Attempts, vals),
			"next_attempt_at": d.NextAt, "attempts_before_retry": d.AttemptsBefore,
		})
	}
	return map[string]any{"event": view, "deliveries": out}, nil
}

// attemptView is one attempt as SPEC 6 shows it: every field, even when empty.
type attemptView struct {
	At         time.Time `json:"at"`
	Status     int       `json:"status"`
	Error      string    `json:"error"`
	DurationMS int64     `json:"duration_ms"`
	Response   string    `json:"response"`
}

// attemptViews shows attempts with the event's sensitive values masked: a
// destination may echo the event in its answer.
func attemptViews(as []spool.Attempt, sensitive []string) []attemptView {
	out := make([]attemptView, len(as))
	for i, a := range as {
		out[i] = attemptView{At: a.At, Status: a.Status, Error: redact.MaskText(a.Error, sensitive), DurationMS: a.DurationMS,
			Response: redact.MaskText(a.Response, sensitive)}
	}
	return out
}

func (r *api) eventWithDeliveries(id string) (*spool.Event, []*spool.Delivery, error) {
	if _, err := ulid.ParseStrict(id); err != nil {
		return nil, nil, NotFound("no event " + id) // no event can have it: not a malformed request
	}
	ev, err := r.spool.Event(id)
	if errors.Is(err, spool.ErrNotFound) {
		return nil, nil, NotFound("no event " + id)
	}
	if err != nil {
		return nil, nil, BadRequest(err.Error())
	}
	ds, err := r.spool.Deliveries(id)
	return ev, ds, err
}

// retryEvent requeues an event's dead deliveries with their attempt count
// reset; the key keeps its order (the delivery keeps its place in the spool).
func (r *api) retryEvent(req *http.Request) (any, error) {
	ev, ds, err := r.eventWithDeliveries(req.PathValue("id"))
	if err != nil {
		return nil, err
	}
	n := 0
	for _, d := range ds {
		if r.relay.DeliveryStatus(ev, d) != "dead" {
			continue
		}
		if err := r.relay.Requeue(ev, d); err != nil {
			return nil, err
		}
		n++
	}
	return map[string]int{"requeued": n}, nil
}

// skipEvent marks an event's dead and held deliveries skipped, releasing
// their keys.
func (r *api) skipEvent(req *http.Request) (any, error) {
	ev, ds, err := r.eventWithDeliveries(req.PathValue("id"))
	if err != nil {
		return nil, err
	}
	n := 0
	for _, d := range ds {
		st := r.relay.DeliveryStatus(ev, d)
		if st != "dead" && st != "held" {
			continue
		}
		if err := r.relay.Skip(ev, d, st == "dead"); err != nil {
			return nil, err
		}
		n++
	}
	return map[string]int{"skipped": n}, nil
}

// retryDead requeues every dead delivery matching the filter, destination by
// destination in spool (ingest) order.
func (r *api) retryDead(req *http.Request) (any, error) {
	var f struct {
		Destination string `json:"destination"`
		Provider    string `json:"provider"`
		Key         string `json:"key"`
		// DryRun counts what would be requeued: the console shows the
		// count before the operator confirms.
		DryRun bool `json:"dry_run"`
	}
	if err := readBody(req, &f); err != nil {
		return nil, err
	}
	n := 0
	for _, name := range r.relay.Lanes() {
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
			if f.DryRun {
				n++
				continue
			}
			if err := r.relay.Requeue(ev, d); err != nil {
				return nil, err
			}
			n++
		}
	}
	if f.DryRun {
		return map[string]any{"dry_run": true, "matching": n}, nil
	}
	return map[string]int{"requeued": n}, nil
}

func (r *api) listRejections(req *http.Request) (any, error) {
	n, err := limit(req, 100)
	if err != nil {
		return nil, err
	}
	return list{Items: r.relay.Rejections(req.URL.Query().Get("provider"), n)}, nil
}

func (r *api) listQuarantine(req *http.Request) (any, error) {
	n, err := limit(req, 50)
	if err != nil {
		return nil, err
	}
	return r.quarantineItems(req.URL.Query().Get("provider"), req.URL.Query().Get("cursor"), n)
}

// quarantineItems lists quarantined requests with credentials masked and
// the body as a hash (it may hold personal data).
func (r *api) quarantineItems(provider, cursor string, n int) (any, error) {
	items := []map[string]any{}
	next := cursor
	for {
		page, err := r.spool.QuarantineList(next, n)
		if err != nil {
			return nil, BadRequest(err.Error())
		}
		for _, q := range page {
			next = q.ID
			if provider != "" && q.Provider != provider {
				continue
			}
			items = append(items, r.quarantineView(q))
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
func (r *api) quarantineView(q *spool.Quarantined) map[string]any {
	sum := sha256.Sum256(q.Body)
	return map[string]any{
		"id": q.ID, "provider": q.Provider, "reason": r.relay.MaskReason(q), "received_at": q.ReceivedAt, "status": "quarantined",
		"method": q.Method, "path": q.Path, "headers": r.relay.MaskHeaders(q.Provider, q.Header), "body_sha256": hex.EncodeToString(sum[:]),
		"body_bytes": len(q.Body),
	}
}

// showQuarantined is one quarantined request, as the quarantine list shows
// it: an id from `events list --status quarantined` for `events show`.
func (r *api) showQuarantined(req *http.Request) (any, error) {
	id := req.PathValue("id")
	if _, err := ulid.ParseStrict(id); err != nil {
		return nil, NotFound("no quarantined request " + id)
	}
	q, err := r.spool.Quarantined(id)
	if errors.Is(err, spool.ErrNotFound) {
		return nil, NotFound("no quarantined request " + id)
	}
	if err != nil {
		return nil, err
	}
	return r.quarantineView(q), nil
}

// reprocess runs quarantined requests through the current configuration
// (verification passed when they arrived); those that now map are spooled
// and leave the quarantine.
func (r *api) reprocess(req *http.Request) (any, error) {
	var f struct {
		IDs      []string `json:"ids"`
		Provider string   `json:"provider"`
	}
	if err := readBody(req, &f); err != nil {
		return nil, err
	}
	// The requests there when it starts: one that comes meanwhile waits
	// for the next reprocess, as it did when the whole list was read first.
	newest, err := r.spool.QuarantineList("", 1)
	if err != nil || len(newest) == 0 {
		return map[string]any{"reprocessed": 0, "failed": []failure{}}, err
	}
	last := newest[0].ID
	want := map[string]bool{}
	for _, id := range f.IDs {
		want[id] = true
	}
	done, failed := 0, []failure{}
	// Oldest first, so keys keep their order, a page at a time: the
	// quarantine may hold far more than memory should.
	for cursor := ""; ; {
		page, err := r.spool.QuarantineOldest(cursor, reprocessPage)
		if err != nil {
			return nil, err
		}
		for _, q := range page {
			if q.ID > last {
				return map[string]any{"reprocessed": done, "failed": failed}, nil
			}
			cursor = q.ID
			if (len(want) > 0 && !want[q.ID]) || (f.Provider != "" && q.Provider != f.Provider) {
				continue
			}
			why, err := r.relay.Reprocess(q)
			if err != nil {
				return nil, err
			}
			if why != "" {
				failed = append(failed, failure{q.ID, why})
				continue
			}
			done++
		}
		if len(page) < reprocessPage {
			return map[string]any{"reprocessed": done, "failed": failed}, nil
		}
	}
}

// reprocessPage is how many quarantined requests reprocess reads at a time.
var reprocessPage = 100

// failure is a quarantined request reprocess could not map, and why.
type failure struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
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
