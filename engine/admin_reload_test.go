package engine

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// TestAdminReload: a refused reload changes nothing; one that takes effect
// under traffic loses no request; destinations come and go.
func TestAdminReload(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		s := newSink(t, nil)
		tr := startRelay(t, adminRelayYAML(s.srv.URL, ""), map[string]string{"plain": plainProvider})
		bad := strings.Replace(plainProvider, "key: body.key", "key: body.key +", 1)
		bad = strings.Replace(bad, "to: [dest]", "to: [dest, nowhere]", 1)
		tr.writeProvider("plain", bad)
		var res struct {
			Error  string
			Errors []string
		}
		tr.do("POST", "/admin/reload", "", http.StatusUnprocessableEntity, &res)
		if res.Error == "" || len(res.Errors) < 2 {
			t.Fatalf("refusal %+v, want an error and both problems", res)
		}
		line := regexp.MustCompile(`plain\.yaml:\d+: `)
		var key, route bool
		for _, p := range res.Errors {
			if !line.MatchString(p) {
				t.Errorf("problem %q is not file:line: message", p)
			}
			key = key || strings.Contains(p, "event.key")
			route = route || strings.Contains(p, "nowhere")
		}
		if !key || !route {
			t.Errorf("problems %q, want the bad expression and the unknown destination", res.Errors)
		}
		// Nothing changed: the old provider serves, as shown.
		tr.mustIngest("k", 1)
		waitFor(t, 5*time.Second, "delivery", func() bool { return len(okHits(t, s)) == 1 })
		if body := string(tr.get("/admin/providers", nil)); !strings.Contains(body, `"key":"body.key"`) {
			t.Errorf("providers after a refused reload: %s", body)
		}
		if status, _ := tr.callAuth("GET", "/readyz", "", ""); status != 200 {
			t.Errorf("readyz %d after a refused reload", status)
		}
	})

	t.Run("under traffic", func(t *testing.T) {
		s := newSink(t, nil)
		tr := startRelay(t, adminRelayYAML(s.srv.URL, ""), map[string]string{"plain": plainProvider})
		const posters, perPoster = 3, 100
		type req struct {
			start, end time.Time
			err        error
		}
		reqs := make([]req, posters*perPoster)
		var acked atomic.Int32
		var wg sync.WaitGroup
		for p := 0; p < posters; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < perPoster; i++ {
					n := p*perPoster + i
					start := time.Now()
					// Each poster owns its keys, so that each key's order is defined.
					err := tr.ingest(fmt.Sprintf(`{"id":"t-%d","key":"p%d-%d","type":"loan.updated","n":%d}`, n, p, i%4, n))
					reqs[n] = req{start, time.Now(), err}
					acked.Add(1)
				}
			}()
		}
		waitFor(t, 20*time.Second, "100 requests", func() bool { return acked.Load() >= 100 })
		tr.writeProvider("plain", strings.Replace(plainProvider, "  type: body.type\n",
			"  type: body.type\n  types: { loan.updated: loan.changed }\n", 1))
		reloadStart := time.Now()
		tr.do("POST", "/admin/reload", "", 200, nil)
		reloadEnd := time.Now()
		wg.Wait()

		for n, r := range reqs {
			if r.err != nil {
				t.Errorf("request %d: %v", n, r.err)
			}
		}
		total := posters * perPoster
		// Nothing is ingested after the posters: once the relay holds no
		// delivery, none can come.
		waitFor(t, 20*time.Second, "every event delivered and nothing queued", func() bool {
			return len(okHits(t, s)) >= total && tr.settled()
		})
		hits := okHits(t, s)
		if len(hits) != total {
			t.Errorf("%d deliveries of %d events", len(hits), total)
		}
		seen := map[int]int{}
		lastOfKey := map[string]int{}
		before, after := 0, 0
		for _, h := range hits {
			seen[h.n]++
			if prev, ok := lastOfKey[h.key]; ok && prev > h.n {
				t.Errorf("key %s: %d delivered after %d", h.key, h.n, prev)
			}
			lastOfKey[h.key] = h.n
			switch r := reqs[h.n]; {
			case r.start.After(reloadEnd):
				after++
				if h.typ != "loan.changed" {
					t.Errorf("event %d sent after the reload has type %q", h.n, h.typ)
				}
			case r.end.Before(reloadStart):
				before++
				if h.typ != "loan.updated" {
					t.Errorf("event %d acknowledged before the reload has type %q", h.n, h.typ)
				}
			}
		}
		for n := 0; n < total; n++ {
			if seen[n] != 1 {
				t.Errorf("event %d delivered %d times", n, seen[n])
			}
		}
		if before == 0 || after == 0 {
			t.Errorf("%d events before and %d after the reload: the reload did not happen mid-stream", before, after)
		}
	})

	t.Run("destinations added and removed", bubbled(func(t *testing.T) {
		s := newSink(t, nil)
		extra := newSink(t, nil)
		tr := startRelay(t, adminRelayYAML(s.srv.URL, ""), map[string]string{"plain": plainProvider})
		withExtra := "  extra:\n    url: \"" + extra.srv.URL + "\"\n"
		writeConfig(t, tr.dir, adminRelayYAML(s.srv.URL, withExtra),
			map[string]string{"plain": strings.Replace(plainProvider, "to: [dest]", "to: [dest, extra]", 1)})
		tr.do("POST", "/admin/reload", "", 200, nil)
		tr.mustIngest("k", 1)
		waitFor(t, 5*time.Second, "delivery to the new destination", func() bool {
			return len(okHits(t, extra)) == 1 && len(okHits(t, s)) == 1
		})
		tr.dest("extra")

		// Queue two for extra, then remove it: they stay in the spool.
		tr.do("POST", "/admin/destinations/extra/pause", "", 200, nil)
		tr.mustIngest("k", 2)
		tr.mustIngest("k", 3)
		waitFor(t, 5*time.Second, "dest delivered", func() bool { return len(okHits(t, s)) == 3 })
		writeConfig(t, tr.dir, adminRelayYAML(s.srv.URL, ""), map[string]string{"plain": plainProvider})
		tr.do("POST", "/admin/reload", "", 200, nil)
		var l struct{ Items []destView }
		tr.get("/admin/destinations", &l)
		if len(l.Items) != 1 || l.Items[0].Name != "dest" {
			t.Errorf("destinations after removal %+v", l.Items)
		}
		tr.do("POST", "/admin/destinations/extra/resume", "", 404, nil)
		if q := tr.queued("extra"); len(q) != 2 {
			t.Errorf("%d deliveries to the removed destination in the spool, want 2", len(q))
		}
		if p := tr.events("destination=extra&status=pending"); len(p.Items) != 2 {
			t.Errorf("events pending for the removed destination: %+v", p.Items)
		}
		tr.mustIngest("k", 4)
		synctest.Wait()
		if n := len(okHits(t, s)); n != 4 {
			t.Errorf("%d deliveries to dest after the removal, want 4", n)
		}
		advance(time.Hour)
		if n := len(okHits(t, extra)); n != 1 {
			t.Errorf("%d deliveries to the removed destination in an hour, want the one before", n)
		}
	}))
}

// TestAdminMetrics: after a known run the Prometheus text parses and counts
// it; no label value is an event id or key.
func TestAdminMetrics(t *testing.T) { inBubble(t, testAdminMetrics) }

func testAdminMetrics(t *testing.T) {
	s := newSink(t, statuses(http.StatusServiceUnavailable))
	tr := startRelay(t, adminRelayYAML(s.srv.URL, "    retry: {initial: 1ms, max: 5ms}\n"),
		map[string]string{"plain": plainProvider})
	keys := []string{"cust-7781", "cust-9902"}
	tr.mustIngest(keys[0], 1)
	tr.mustIngest(keys[0], 2)
	tr.mustIngest(keys[1], 1)
	tr.mustIngest(keys[0], 1) // duplicate
	for i := 0; i < 2; i++ {
		tr.post("/in/plain", eventBody("cust-rejected", i), map[string]string{"Authorization": "Bearer wrong"})
	}
	tr.post("/in/plain", `{"id":"cust-q-1"}`, authPlain) // quarantined
	waitFor(t, 5*time.Second, "3 deliveries", func() bool { return len(okHits(t, s)) == 3 })
	tr.waitDest("dest", "empty", func(d destView) bool { return d.Pending == 0 })

	mfs := tr.scrape()
	for outcome, want := range map[string]float64{"accepted": 3, "duplicate": 1, "rejected": 2, "quarantined": 1} {
		wantMetric(t, mfs, "hookrelay_ingest_requests_total", map[string]string{"provider": "plain", "outcome": outcome}, want)
	}
	dest := map[string]string{"destination": "dest"}
	wantMetric(t, mfs, "hookrelay_deliveries_total", map[string]string{"destination": "dest", "outcome": "success"}, 3)
	wantMetric(t, mfs, "hookrelay_deliveries_total", map[string]string{"destination": "dest", "outcome": "retry"}, 1)
	wantMetric(t, mfs, "hookrelay_ingest_duration_seconds", map[string]string{"provider": "plain"}, 7)
	wantMetric(t, mfs, "hookrelay_delivery_duration_seconds", dest, 4)
	for _, name := range []string{"hookrelay_pending", "hookrelay_dead", "hookrelay_held_keys", "hookrelay_oldest_pending_seconds"} {
		wantMetric(t, mfs, name, dest, 0)
	}
	if mf := mfs["hookrelay_ingest_duration_seconds"]; mf == nil || mf.GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("hookrelay_ingest_duration_seconds is not a histogram")
	}
	if mf := mfs["hookrelay_delivery_duration_seconds"]; mf == nil || mf.GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("hookrelay_delivery_duration_seconds is not a histogram")
	}
	if v, ok := metricValue(mfs, "hookrelay_spool_bytes", map[string]string{}); !ok || v <= 0 {
		t.Errorf("hookrelay_spool_bytes = %v (present %v), want > 0", v, ok)
	}

	// While a delivery waits, the queue gauges show it.
	tr.do("POST", "/admin/destinations/dest/pause", "", 200, nil)
	tr.mustIngest(keys[1], 2)
	advance(20 * time.Millisecond)
	mfs = tr.scrape()
	wantMetric(t, mfs, "hookrelay_pending", dest, 1)
	// Its age is 20ms, and under a millisecond more: event ids keep milliseconds.
	if v, _ := metricValue(mfs, "hookrelay_oldest_pending_seconds", dest); v < 0.020 || v >= 0.021 {
		t.Errorf("hookrelay_oldest_pending_seconds = %v with a delivery waiting 20ms", v)
	}

	forbidden := append([]string{}, keys...)
	for _, e := range tr.events("limit=1000").Items {
		forbidden = append(forbidden, e.ID)
	}
	forbidden = append(forbidden, "cust-7781-1", "cust-7781-2", "cust-9902-1", "cust-q-1", "cust-rejected")
	if len(forbidden) < 6 {
		t.Fatalf("only %d ids and keys to look for", len(forbidden))
	}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				for _, f := range forbidden {
					if strings.Contains(lp.GetValue(), f) {
						t.Errorf("%s{%s=%q} carries the event id or key %s", name, lp.GetName(), lp.GetValue(), f)
					}
				}
			}
		}
	}
}
