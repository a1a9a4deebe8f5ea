package admin

import (
	"errors"
	"net/http"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/internal/redact"
)

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

// statusRank orders a delivery's statuses for eventStatus; built once, not
// per event of a listing (up to maxScan of them).
var statusRank = map[string]int{"dead": 4, "held": 3, "pending": 2, "delivered": 1, "skipped": 0}

// eventStatus sums up an event's deliveries: dead over held over pending;
// delivered once every delivery is final and one was delivered.
func (r *api) eventStatus(ev *spool.Event, ds []*spool.Delivery) string {
	best, status := -1, "delivered" // an event routed nowhere has nothing left to do
	for _, d := range ds {
		if s := r.relay.DeliveryStatus(ev, d); statusRank[s] > best {
			best, status = statusRank[s], s
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
