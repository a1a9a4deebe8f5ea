package engine

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hookrelay/hookrelay/internal/buildinfo"
)

// metrics are the series of SPEC 8. Labels are provider, destination and
// outcome only: never an event id or key, which grow without bound.
type metrics struct {
	reg        *prometheus.Registry
	ingest     *prometheus.CounterVec
	ingestDur  *prometheus.HistogramVec
	deliveries *prometheus.CounterVec
	deliverDur *prometheus.HistogramVec
	gaps       *prometheus.CounterVec
	sheds      *prometheus.CounterVec
	// pollRefused counts what polling refuses: reason key_pattern or too_large.
	pollRefused *prometheus.CounterVec
}

func newMetrics(r *Relay) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		ingest: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookrelay_ingest_requests_total", Help: "Inbound requests by provider and outcome.",
		}, []string{"provider", "outcome"}),
		ingestDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hookrelay_ingest_duration_seconds", Help: "Time from request to answer, spool sync included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"provider"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookrelay_deliveries_total", Help: "Delivery attempts by destination and outcome.",
		}, []string{"destination", "outcome"}),
		deliverDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hookrelay_delivery_duration_seconds", Help: "Duration of one delivery attempt.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"destination"}),
		gaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookrelay_sequence_gaps_total", Help: "Sequenced events sent after their reorder window with earlier numbers missing.",
		}, []string{"destination"}),
	}
	m.sheds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hookrelay_ingest_shed_total", Help: "Requests answered 503 because max_inflight was reached.",
	}, []string{"provider"})
	m.pollRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hookrelay_poll_refused_total", Help: "Keys not polled (reason key_pattern) and polled events not spooled (reason too_large), by provider.",
	}, []string{"provider", "reason"})
	m.reg.MustRegister(m.ingest, m.ingestDur, m.deliveries, m.deliverDur, m.gaps, m.sheds, m.pollRefused, &queueCollector{r}, &privacyCollector{r})
	// The build and the runtime, so that a dashboard shows which version runs
	// and an alert can tell a leak (goroutines, memory, open files) from load.
	bi := buildinfo.Get()
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hookrelay_build_info", Help: "Always 1; its labels say which build runs.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion},
	})
	buildInfo.Set(1)
	m.reg.MustRegister(buildInfo, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) ingested(provider, outcome string, d time.Duration) {
	m.ingest.WithLabelValues(provider, outcome).Inc()
	m.ingestDur.WithLabelValues(provider).Observe(d.Seconds())
}

// Delivered counts one recorded attempt (dispatch.Metrics).
func (m *metrics) Delivered(dest, outcome string, d time.Duration) {
	m.deliveries.WithLabelValues(dest, outcome).Inc()
	m.deliverDur.WithLabelValues(dest).Observe(d.Seconds())
}

// Skipped counts a delivery an operator gave up on: an outcome, not an
// attempt, so no duration is observed.
func (m *metrics) Skipped(dest string) { m.deliveries.WithLabelValues(dest, "skipped").Inc() }

// SequenceGap counts an event sent past a gap (dispatch.Metrics).
func (m *metrics) SequenceGap(dest string) { m.gaps.WithLabelValues(dest).Inc() }

func (m *metrics) shed(provider string) { m.sheds.WithLabelValues(provider).Inc() }

func (m *metrics) pollRefusal(provider, reason string) {
	m.pollRefused.WithLabelValues(provider, reason).Inc()
}

// queueCollector reads the queue gauges from the dispatcher at scrape time.
type queueCollector struct{ r *Relay }

var (
	pendingDesc = prometheus.NewDesc("hookrelay_pending", "Deliveries waiting (neither final nor dead), by destination.", []string{"destination"}, nil)
	deadDesc    = prometheus.NewDesc("hookrelay_dead", "Dead deliveries waiting for an operator, by destination.", []string{"destination"}, nil)
	heldDesc    = prometheus.NewDesc("hookrelay_held_keys", "Keys blocked behind a dead event, by destination.", []string{"destination"}, nil)
	oldestDesc  = prometheus.NewDesc("hookrelay_oldest_pending_seconds", "Age of the oldest waiting delivery, by destination.", []string{"destination"}, nil)
	spoolDesc   = prometheus.NewDesc("hookrelay_spool_bytes", "Size of the spool file.", nil, nil)
	// enabledDesc exposes what /readyz lists, so that an alert fires on a
	// provider left disabled by a missing secret: it answers every lender 503.
	// partsDesc is, on a shared JetStream spool, how many partitions this
	// relay delivers (README, Scale-out): 0 on every relay is an outage.
	partsDesc   = prometheus.NewDesc("hookrelay_partitions_held", "Partitions of a shared JetStream spool this relay delivers.", nil, nil)
	enabledDesc = prometheus.NewDesc("hookrelay_provider_enabled", "1 when the provider is enabled, 0 when disabled (its configuration is incomplete).", []string{"provider"}, nil)
)

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{pendingDesc, deadDesc, heldDesc, oldestDesc, spoolDesc, partsDesc, enabledDesc} {
		ch <- d
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	// The configuration in force, so a reload that enables a provider shows
	// at the next scrape.
	if cfg := c.r.Config(); cfg != nil {
		for _, p := range cfg.Providers {
			enabled := 1.0
			if p.Disabled != "" {
				enabled = 0
			}
			ch <- prometheus.MustNewConstMetric(enabledDesc, prometheus.GaugeValue, enabled, p.Name)
		}
	}
	if c.r.dispatch == nil {
		return
	}
	for _, name := range c.r.dispatch.Lanes() {
		st, ok := c.r.dispatch.Stats(name)
		if !ok {
			continue // removed by a reload meanwhile
		}
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(st.Pending), name)
		ch <- prometheus.MustNewConstMetric(deadDesc, prometheus.GaugeValue, float64(st.Dead), name)
		ch <- prometheus.MustNewConstMetric(heldDesc, prometheus.GaugeValue, float64(st.HeldKeys), name)
		ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, st.OldestPendingSeconds, name)
	}
	ch <- prometheus.MustNewConstMetric(spoolDesc, prometheus.GaugeValue, float64(c.r.spool.Size()))
	if sh, ok := c.r.spool.(interface{ Held() []uint32 }); ok {
		ch <- prometheus.MustNewConstMetric(partsDesc, prometheus.GaugeValue, float64(len(sh.Held())))
	}
}
