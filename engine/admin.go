package engine

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hookrelay/hookrelay/engine/admin"
	"github.com/hookrelay/hookrelay/engine/console"
	"github.com/hookrelay/hookrelay/engine/dispatch"
	"github.com/hookrelay/hookrelay/engine/provider"
	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/verifiers"
)

// AdminHandler serves the admin API (SPEC 6, engine/admin) of this relay.
func (r *Relay) AdminHandler() http.Handler {
	return admin.Handler(adminRelay{r}, r.spool, r.log, console.Handler())
}

// adminRelay is the relay as the admin API sees it (admin.Relay): what it
// shows of the configuration and queues in force, and the operator's
// commands, each of which writes the spool and then the queue's memory.
type adminRelay struct{ r *Relay }

var _ admin.Relay = adminRelay{}

func (a adminRelay) Ready() bool { return a.r.ready.Load() }

func (a adminRelay) Listener() (token, listen string, hosts []string) {
	cfg := a.r.Config()
	return cfg.Admin.Token, cfg.Admin.Listen, cfg.Admin.Hosts
}

func (a adminRelay) Metrics() http.Handler {
	return promhttp.HandlerFor(a.r.m.reg, promhttp.HandlerOpts{})
}

func (a adminRelay) Providers() []admin.Provider {
	registrations := a.r.registrationStatus()
	var out []admin.Provider
	for _, p := range a.r.Config().Providers {
		v := admin.Provider{
			Name: p.Name, File: p.File, Paths: p.Paths, Methods: p.Methods, Disabled: p.Disabled,
			Config: p.Display, RegisterOff: p.RegistrationOff(), PollOff: p.PollingOff(),
		}
		if st, ok := registrations[p.Name]; ok {
			v.Registration = &st
		}
		if p.poll != nil {
			v.Poll = a.pollSummary(p.Name)
		}
		out = append(out, v)
	}
	return out
}

// pollSummary counts a provider's polled keys from the spool, at most
// admin.MaxPollKeys of them: the console asks every few seconds.
func (a adminRelay) pollSummary(provider string) *admin.PollSummary {
	var s admin.PollSummary
	errEnough := errors.New("enough")
	err := a.r.spool.PollKeys(provider, func(_ string, st *spool.PollState) error {
		if s.Keys == admin.MaxPollKeys {
			s.More = true
			return errEnough
		}
		s.Keys++
		if st.Errors > 0 {
			s.Failing++
		}
		if !st.NextAt.IsZero() && (s.NextAt.IsZero() || st.NextAt.Before(s.NextAt)) {
			s.NextAt = st.NextAt
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		a.r.log.Warn("poll keys not counted", "provider", provider, "error", err)
	}
	return &s
}

func (a adminRelay) Destinations() []admin.Destination {
	cfg := a.r.Config()
	shown, _ := cfg.AsWritten()["destinations"].(map[string]any)
	names := make([]string, 0, len(cfg.Destinations))
	for name := range cfg.Destinations {
		names = append(names, name)
	}
	sort.Strings(names)
	totals, shared := a.queueTotals()
	out := make([]admin.Destination, 0, len(names))
	for _, name := range names {
		d := admin.Destination{Name: name, Config: shown[name]}
		if st, ok := a.r.dispatch.Stats(name); ok {
			d.Lane = &admin.Lane{
				Paused: st.Paused, Pending: st.Pending, Dead: st.Dead, HeldKeys: st.HeldKeys,
				OldestPendingSeconds: st.OldestPendingSeconds, LastFailure: st.LastFailure,
			}
			if shared {
				// Every partition's queues, not only this relay's.
				t := totals[name]
				if t == nil {
					t = &spool.QueueStats{}
				}
				d.Lane.Pending, d.Lane.Dead, d.Lane.HeldKeys, d.Lane.OldestPendingSeconds = t.Pending, t.Dead, t.HeldKeys, 0
				if !t.Oldest.IsZero() {
					d.Lane.OldestPendingSeconds = max(0, time.Since(t.Oldest).Seconds())
				}
				held := t.Held
				if held == nil {
					held = []spool.HeldKey{}
				}
				d.Lane.Held = held
			} else {
				d.Lane.Held = a.r.dispatch.HeldKeys(name, spool.MaxHeldKeys)
			}
		}
		out = append(out, d)
	}
	return out
}

// queueTotals are every partition's queues on a shared spool, by
// destination; shared false on a spool of one relay, whose dispatcher
// holds every queue. A failed read falls back to this relay's queues.
func (a adminRelay) queueTotals() (map[string]*spool.QueueStats, bool) {
	qt, ok := a.r.spool.(spool.Totaler)
	if !ok {
		return nil, false
	}
	totals, shared, err := qt.QueueTotals(a.r.dispatch)
	if err != nil {
		a.r.log.Warn("admin: partition counts not read; showing this relay's queues", "error", err)
		return nil, false
	}
	return totals, shared
}

func (a adminRelay) Lanes() []string { return a.r.dispatch.Lanes() }

// DeliveryStatus: a pending delivery waiting behind another event's dead
// delivery is held, as the dispatcher knows.
func (a adminRelay) DeliveryStatus(ev *spool.Event, d *spool.Delivery) string {
	if a.r.dispatch.Held(ev, d) {
		return "held"
	}
	return string(d.Status)
}

func (a adminRelay) MaskHeaders(provider string, h map[string][]string) map[string]string {
	return a.r.Config().compiled(provider).MaskHeaders(h)
}

func (a adminRelay) MaskEvent(provider string, ev spool.Shown) []string {
	return a.r.Config().compiled(provider).MaskEnvelope(ev)
}

func (a adminRelay) MaskReason(q *spool.Quarantined) string {
	return a.r.Config().compiled(q.Provider).MaskText(q.Reason, q.Body, q.Header)
}

func (a adminRelay) Rejections(provider string, n int) any { return a.r.rejections.List(provider, n) }

// Requeue, Skip and Pause are the dispatcher's: it writes the spool and
// its queues in one place.
func (a adminRelay) Requeue(ev *spool.Event, d *spool.Delivery) error {
	return a.r.dispatch.Requeue(ev, d)
}

func (a adminRelay) Skip(ev *spool.Event, d *spool.Delivery, dead bool) error {
	return a.r.dispatch.Skip(ev, d, dead)
}

func (a adminRelay) Pause(name string, paused bool) error {
	err := a.r.dispatch.Pause(name, paused)
	if errors.Is(err, dispatch.ErrNoDestination) {
		return admin.NotFound("no destination " + name)
	}
	return err
}

func (a adminRelay) Reload() error {
	if err := a.r.Reload(); err != nil {
		return &admin.Error{Status: http.StatusUnprocessableEntity, Msg: "configuration refused", Problems: problems(err)}
	}
	return nil
}

func (a adminRelay) PollKey(provider, key string) error { return a.r.pollKey(provider, key) }

// Reprocess maps a quarantined request again (its verification passed when
// it arrived); one that now maps is spooled and leaves the quarantine.
func (a adminRelay) Reprocess(q *spool.Quarantined) (string, error) {
	r := a.r
	p := r.Config().Provider(q.Provider)
	if p == nil {
		return "no provider " + q.Provider + " in the current configuration", nil
	}
	ev, err := p.Build(&provider.Verified{Req: quarantinedRequest(q), Body: q.Body, JWS: q.JWS, Signed: q.JWSSigned})
	if err != nil {
		return err.Error(), nil
	}
	if _, err := r.spool.Append(context.Background(), ev, p.Dedup); err != nil {
		return "", err
	}
	if err := r.spool.DeleteQuarantined(q.ID); err != nil {
		return "", err
	}
	r.log.Info("quarantined request reprocessed", "quarantine_id", q.ID, "provider", p.Name, "event_id", ev.ID, "key", ev.Key)
	return "", nil
}

func quarantinedRequest(q *spool.Quarantined) *verifiers.Request {
	return &verifiers.Request{
		Method: q.Method, Path: q.Path, Header: q.Header, Query: q.Query, Params: q.Params,
		Body: q.Body, RemoteAddr: q.RemoteAddr, Received: q.ReceivedAt,
	}
}

func (a adminRelay) Privacy() admin.Privacy { return a.r.privacyState() }

func (a adminRelay) EraseKey(provider, key string) (spool.Erased, error) {
	return a.r.eraseKey(context.Background(), provider, key)
}
