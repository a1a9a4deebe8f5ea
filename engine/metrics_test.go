package engine

import (
	"testing"

	"github.com/hookrelay/hookrelay/internal/buildinfo"
)

// TestMetricsBuildAndRuntime: /metrics carries hookrelay_build_info with the
// build's labels (the ones `hookrelay version` prints) and the Go and
// process collectors.
func TestMetricsBuildAndRuntime(t *testing.T) {
	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL, ""), map[string]string{"plain": plainProvider})
	mfs := tr.scrape()
	bi := buildinfo.Get()
	wantMetric(t, mfs, "hookrelay_build_info", map[string]string{"version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion}, 1)
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "go_gc_duration_seconds",
		"process_start_time_seconds", "process_open_fds", "process_resident_memory_bytes"} {
		if mfs[name] == nil {
			t.Errorf("%s missing from /metrics", name)
		}
	}
}

// TestMetricsProviderEnabled: hookrelay_provider_enabled is 1 for an enabled
// provider and 0 for one disabled by a missing secret, and follows a reload
// that supplies the secret.
func TestMetricsProviderEnabled(t *testing.T) {
	const missing = "HOOKRELAY_METRICS_TEST_TOKEN"
	t.Setenv(missing, "")
	rec := newRecorder(t, nil)
	off := "paths: [/in/off]\nverify:\n  - kind: bearer\n    token: env:" + missing + "\nevent:\n  key: body.key\n  type: body.type\nroutes:\n  - to: [dest]\n"
	tr := startRelay(t, relayYAML(rec.srv.URL, ""), map[string]string{"plain": plainProvider, "off": off})
	mfs := tr.scrape()
	wantMetric(t, mfs, "hookrelay_provider_enabled", map[string]string{"provider": "plain"}, 1)
	wantMetric(t, mfs, "hookrelay_provider_enabled", map[string]string{"provider": "off"}, 0)

	t.Setenv(missing, "now-set-0123456789")
	tr.do("POST", "/admin/reload", "", 200, nil)
	wantMetric(t, tr.scrape(), "hookrelay_provider_enabled", map[string]string{"provider": "off"}, 1)
}
