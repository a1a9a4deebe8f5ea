package engine

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// Retention per kind of record (SPEC 11): delivered and dead events,
// quarantined requests and the rejection log are each purged once older
// than their retention (config.Config.Retention), and counted by kind.

// purgedTotal is hookrelay_purged_total{kind}; registered with the relay's
// other metrics.
func newPurgedTotal() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hookrelay_purged_total",
		Help: "Records deleted past their retention, by kind: delivered, dead (events), quarantined (requests), rejections.",
	}, []string{"kind"})
}

// deadPurger is a spool that purges dead events and quarantined requests
// (bbolt does).
type deadPurger interface {
	PurgeDead(ctx context.Context, cutoff time.Time) (spool.Erased, error)
	PurgeQuarantined(ctx context.Context, cutoff time.Time) (int, error)
}

// purge deletes, as of now, every record past its retention.
func (r *Relay) purge(now time.Time) {
	cfg := r.Config()
	ret := cfg.Retention()
	keep := ret.Delivered
	for _, p := range cfg.Providers {
		keep = max(keep, p.Dedup) // dedup entries must outlive their window
	}
	// One cutoff for delivered events and dedup entries: a delivered event
	// is kept at least as long as its provider's dedup window.
	if n, err := r.spool.Purge(now.Add(-keep)); err != nil {
		r.log.Error("purge failed", "kind", "delivered", "error", err)
	} else {
		r.counted("delivered", n)
	}
	if dp, ok := r.spool.(deadPurger); ok {
		if ret.Dead > 0 {
			out, err := dp.PurgeDead(context.Background(), now.Add(-ret.Dead))
			r.dispatch.Release(out.Dropped)
			if err != nil {
				r.log.Error("purge failed", "kind", "dead", "error", err)
			}
			r.counted("dead", out.Events)
		}
		if ret.Quarantined > 0 {
			n, err := dp.PurgeQuarantined(context.Background(), now.Add(-ret.Quarantined))
			if err != nil {
				r.log.Error("purge failed", "kind", "quarantined", "error", err)
			}
			r.counted("quarantined", n)
		}
	}
	if ret.Rejections > 0 {
		r.counted("rejections", r.rejections.Purge(now.Add(-ret.Rejections)))
	}
}

// counted adds n purged records of kind to the metric and the log.
func (r *Relay) counted(kind string, n int) {
	if n <= 0 {
		return
	}
	r.purged.WithLabelValues(kind).Add(float64(n))
	r.log.Info("purged past retention", "kind", kind, "count", n)
}
