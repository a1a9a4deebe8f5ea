package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/internal/benchkit"
	"github.com/hookrelay/hookrelay/engine/provider"
	"github.com/hookrelay/hookrelay/transforms"
	"github.com/hookrelay/hookrelay/verifiers"
)

// loadBenchProvider loads benchkit.Provider as the relay would, without serving it.
func loadBenchProvider(tb testing.TB) *Provider {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "providers.d"), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte(relayYAML("http://127.0.0.1:1/", "")), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "providers.d", "example.yaml"), []byte(benchkit.Provider), 0o644); err != nil {
		tb.Fatal(err)
	}
	cfg, err := Load(filepath.Join(dir, "relay.yaml"), true)
	if err != nil {
		tb.Fatal(err)
	}
	return cfg.Providers[0]
}

// BenchmarkVerifyBuild is ingest's CPU work between reading the body and
// the spool (verify, decode, map, route, envelope), without the network.
func BenchmarkVerifyBuild(b *testing.B) {
	p := loadBenchProvider(b)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	reqs := benchkit.Requests(0, 64, ts)
	b.ReportAllocs()
	i := 0
	cpu0, cpuOK := benchkit.ProcessCPU()
	defer func() {
		// CPU time is steadier than ns/op on a machine shared with other work.
		if cpu1, _ := benchkit.ProcessCPU(); cpuOK && b.N > 0 {
			b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
		}
	}()
	for b.Loop() {
		r := reqs[i%len(reqs)]
		i++
		h := http.Header{
			"Content-Type": {"application/json"}, "Content-Length": {strconv.Itoa(len(r.Body))},
			"User-Agent": {"Go-http-client/1.1"}, "X-Timestamp": {ts}, "X-Signature": {r.Sig},
		}
		vr := &verifiers.Request{Method: "POST", Path: "/in/example", Header: h, Body: r.Body, Received: time.Now()}
		v, err := p.Verify(context.Background(), vr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Build(v); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMarshalEnvelopeIsEncodingJSON checks that the envelope is byte for
// byte what json.Marshal writes when the raw body is compact JSON, and that
// what it cannot write fails as json.Marshal does.
func TestMarshalEnvelopeIsEncodingJSON(t *testing.T) {
	base := transforms.Event{ID: "01JDX", Provider: "p<&>", Source: "webhook", Type: "t\u2028", Key: "k\"\\\x01",
		Sequence: 42, IdempotencyID: "p:\xff", ReceivedAt: time.Date(2026, 11, 25, 9, 59, 59, 123000000, time.UTC),
		Raw: json.RawMessage(`{"a":[1,2,3]}`)}
	for i, mod := range []func(ev *transforms.Event){
		func(*transforms.Event) {},
		func(ev *transforms.Event) { ev.OccurredAt = "2026-11-25T09:59:59Z" },
		func(ev *transforms.Event) { ev.Data = map[string]any{} },
		func(ev *transforms.Event) {
			ev.Data = map[string]any{"b": map[string]any{"y": []any{1.5, "x", nil, true}}, "a": 3, "t": ev.ReceivedAt}
		},
		func(ev *transforms.Event) { ev.Raw = json.RawMessage(`"text"`) },
		func(ev *transforms.Event) { ev.Raw = nil },
		func(ev *transforms.Event) {
			ev.Sequence = -7
			ev.ReceivedAt = time.Unix(0, 1).In(time.FixedZone("x", 3600))
		},
	} {
		ev := base
		mod(&ev)
		want, _ := json.Marshal(&ev)
		got, err := provider.MarshalEnvelope(&ev)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%d:\n got %s %v\nwant %s", i, got, err, want)
		}
	}
	for i, mod := range []func(ev *transforms.Event){
		func(ev *transforms.Event) { ev.Data = map[string]any{"n": math.NaN()} },
		func(ev *transforms.Event) { ev.ReceivedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
	} {
		ev := base
		mod(&ev)
		_, want := json.Marshal(&ev)
		_, err := provider.MarshalEnvelope(&ev)
		if err == nil || want == nil || err.Error() != want.Error() {
			t.Errorf("bad %d: error %v, want %v", i, err, want)
		}
	}
}

// TestFirstValuesLowerCases checks firstValues against strings.ToLower.
func TestFirstValuesLowerCases(t *testing.T) {
	h := map[string][]string{"Content-Type": {"a", "b"}, "x-lower": {"c"}, "X-Empty": {}, "X-Ünï": {"d"},
		"ABC-Def": {"e"}, "": {"f"}}
	got := provider.FirstValues(h, true)
	want := map[string]string{"content-type": "a", "x-lower": "c", "x-ünï": "d", "abc-def": "e", "": "f"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if got := provider.FirstValues(h, false); got["Content-Type"] != "a" || got["x-lower"] != "c" || len(got) != 5 {
		t.Fatalf("not lower: %v", got)
	}
}
