package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookrelay/hookrelay/engine/admin"
	"github.com/hookrelay/hookrelay/engine/seal"
	"github.com/hookrelay/hookrelay/engine/spool"
)

// Privacy (SPEC 11): the keystore's life beside the spool, the background
// rotation of data keys to the current master key, and erasure by key.

// closeKeys closes the keystore, if any; after the spool, whose writes seal
// with it.
func (r *Relay) closeKeys() error {
	if r.keys == nil {
		return nil
	}
	return r.keys.Close()
}

// rotation is the progress of the background rewrap (seal.Keystore.Rewrap)
// that moves data keys from previous master keys to the current one.
type rotation struct {
	mu    sync.Mutex
	state string // "": none was needed; running, done or failed
	// rewrapped counts the data keys re-wrapped by this process; pending
	// those still wrapped by a previous master key.
	rewrapped, pending int
	err                string
}

func (ro *rotation) snapshot() (state string, rewrapped, pending int, err string) {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	return ro.state, ro.rewrapped, ro.pending, ro.err
}

// rewrapRetry is how long a failed rewrap waits before it tries again.
const rewrapRetry = time.Minute

// startRewrap re-wraps, in the background, every data key that a previous
// master key wraps, when privacy.previous_keys are set: once it is done, they
// can be dropped from relay.yaml. Records are not rewritten (their data keys
// do not change), so it is quick and ingest goes on meanwhile.
func (r *Relay) startRewrap(ctx context.Context) {
	if r.keys == nil || r.keys.Previous() == 0 {
		return
	}
	ro := &r.rotation
	ro.mu.Lock()
	ro.state = "running"
	ro.mu.Unlock()
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		for {
			err := r.rewrapOnce(ctx)
			if err == nil || ctx.Err() != nil {
				return
			}
			r.log.Error("privacy: re-wrapping data keys under the current master key failed; trying again", "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(rewrapRetry):
			}
		}
	}()
}

func (r *Relay) rewrapOnce(ctx context.Context) error {
	ro := &r.rotation
	total, current, err := r.keys.Census()
	if err == nil {
		ro.mu.Lock()
		ro.state, ro.pending, ro.err = "running", total-current, ""
		ro.mu.Unlock()
		start := ro.rewrapped
		var done seal.RewrapProgress
		done, err = r.keys.Rewrap(ctx, func(pr seal.RewrapProgress) {
			ro.mu.Lock()
			ro.rewrapped = start + pr.Rewrapped
			ro.pending = max(0, total-current-pr.Rewrapped)
			ro.mu.Unlock()
		})
		if err == nil {
			// Keys drawn meanwhile are under the current key already; count
			// again, so that pending says what is left for certain.
			if total, current, err = r.keys.Census(); err == nil {
				ro.mu.Lock()
				ro.state, ro.pending = "done", total-current
				ro.mu.Unlock()
				r.log.Info("privacy: data keys re-wrapped under the current master key; the previous keys may be removed from relay.yaml",
					"rewrapped", done.Rewrapped, "master_key_id", r.keys.CurrentID())
				return nil
			}
		}
	}
	if ctx.Err() != nil {
		return err
	}
	ro.mu.Lock()
	ro.state, ro.err = "failed", err.Error()
	ro.mu.Unlock()
	return err
}

// privacyState is what GET /admin/privacy shows.
func (r *Relay) privacyState() admin.Privacy {
	if r.keys == nil {
		return admin.Privacy{Enabled: false}
	}
	out := admin.Privacy{Enabled: true, MasterKeyID: r.keys.CurrentID(), Keystore: r.keys.Path(), PreviousKeys: r.keys.Previous()}
	state, rewrapped, pending, err := r.rotation.snapshot()
	if state != "" {
		out.Rotation = &admin.Rotation{State: state, Rewrapped: rewrapped, Pending: pending, Error: err}
	}
	return out
}

// eraseKey removes every record of provider's key and destroys its data key
// (spool.Eraser), then drops its pending deliveries from the queues in
// memory, as an operator's skip does (lane.release): the spool has them no
// more, so a worker that holds one finds it gone and moves on.
func (r *Relay) eraseKey(ctx context.Context, provider, key string) (spool.Erased, error) {
	er, ok := r.spool.(spool.Eraser)
	if !ok {
		return spool.Erased{}, errors.New("erase: this spool cannot erase by key")
	}
	r.poll.Forget(provider, key) // before the erasure, so that no later poll stores the key again
	out, err := er.EraseKey(ctx, provider, key)
	r.dispatch.Release(out.Dropped)
	r.dispatch.Forget(provider, key)
	if err != nil {
		return out, fmt.Errorf("erase %s/%s: %w", provider, key, err)
	}
	r.log.Info("key erased by operator", "provider", provider, "key", key, "events", out.Events,
		"deliveries", out.Deliveries, "pending", out.Pending, "quarantined", out.Quarantined)
	return out, nil
}

// privacyCollector exposes encryption at rest and a rotation's progress at
// scrape time.
type privacyCollector struct{ r *Relay }

var (
	privacyEnabledDesc = prometheus.NewDesc("hookrelay_privacy_enabled",
		"1 when records are encrypted at rest (relay.yaml has privacy:), 0 when not.", nil, nil)
	rewrappedDesc = prometheus.NewDesc("hookrelay_privacy_rewrapped_keys",
		"Data keys re-wrapped under the current master key since start (a rotation to privacy.key).", nil, nil)
	rewrapPendingDesc = prometheus.NewDesc("hookrelay_privacy_pending_keys",
		"Data keys still wrapped by a previous master key; 0 once a rotation is done.", nil, nil)
)

func (c *privacyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- privacyEnabledDesc
	ch <- rewrappedDesc
	ch <- rewrapPendingDesc
}

func (c *privacyCollector) Collect(ch chan<- prometheus.Metric) {
	on := 0.0
	if c.r.keys != nil {
		on = 1
	}
	ch <- prometheus.MustNewConstMetric(privacyEnabledDesc, prometheus.GaugeValue, on)
	_, rewrapped, pending, _ := c.r.rotation.snapshot()
	ch <- prometheus.MustNewConstMetric(rewrappedDesc, prometheus.GaugeValue, float64(rewrapped))
	ch <- prometheus.MustNewConstMetric(rewrapPendingDesc, prometheus.GaugeValue, float64(pending))
}
