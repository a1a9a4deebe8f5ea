package engine

import (
	"fmt"
	"hash/fnv"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream/natstest"
)

// testSpoolEnv, set to "jetstream", runs the relays of the harness on a
// JetStream spool (one embedded server for the package, a stream per
// relay directory) instead of bbolt: `make test-jetstream`.
const testSpoolEnv = "HOOKRELAY_TEST_SPOOL"

// testNATS is that server; nil when the tests run on bbolt.
var testNATS *natstest.Server

func TestMain(m *testing.M) {
	switch kind := os.Getenv(testSpoolEnv); kind {
	case "", config.SpoolBolt:
	case config.SpoolJetStream:
		s, err := natstest.Start("")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		testNATS = s
	default:
		fmt.Fprintf(os.Stderr, "%s: %q is not one of bbolt, jetstream\n", testSpoolEnv, kind)
		os.Exit(2)
	}
	code := m.Run()
	if testNATS != nil {
		testNATS.Close()
	}
	os.Exit(code)
}

// useTestSpool points cfg at the package's JetStream server when the
// tests run on JetStream: the stream is named after dir, so that a relay
// restarted on the same directory finds its events again. In a synctest
// bubble the server is the bubble's own, reached in process
// (fakeNet.natsServer), and the lease lasts an hour: a bubble test has one
// relay at a time on a stream, which lets its partitions go when it stops,
// so the TTL decides nothing there, while a round every TTL/3 through the
// days some of them skip (retry max_age) would take minutes.
func useTestSpool(t *testing.T, cfg *Config, dir string) {
	if testNATS == nil {
		return
	}
	cfg.Spool.Kind = config.SpoolJetStream
	cfg.Spool.NATS = &config.NATS{URLs: []string{testNATS.ClientURL()}, Stream: testStream(dir), Replicas: 1, Partitions: 8}
	if n := netOf(t); n != nil {
		cfg.natsServer = n.natsServer(t)
		cfg.Spool.NATS.URLs = []string{"nats://in-process"}
		cfg.Spool.NATS.LeaseTTL = time.Hour
	}
}

// testStream is the stream of the relay in dir.
func testStream(dir string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(dir))
	return fmt.Sprintf("T%x", h.Sum64())
}

// needBolt skips a test that reads or rewrites the bbolt file itself when
// the tests run on JetStream.
func needBolt(t *testing.T) {
	t.Helper()
	if testNATS != nil {
		t.Skip("reads or rewrites the bbolt spool file itself")
	}
}

// spoolFile reads what the spool of the relay in dir stored on disk: the
// bbolt file, or on JetStream the server's files of the relay's stream and
// of its KV buckets (which the server fsyncs on every write).
func spoolFile(dir string) ([]byte, error) {
	if testNATS == nil {
		return os.ReadFile(filepath.Join(dir, "spool.db"))
	}
	stream := testStream(dir)
	root := filepath.Join(testNATS.Dir, "jetstream", "$G", "streams")
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, e := range entries {
		if e.Name() != stream && !strings.HasPrefix(e.Name(), "KV_"+stream+"_") {
			continue
		}
		err := filepath.WalkDir(filepath.Join(root, e.Name()), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			out = append(out, b...)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no files of stream %s under %s", stream, root)
	}
	return out, nil
}

// TestJetStreamStandbyTakesOver: on a JetStream spool, a second relay with
// its own directory and the same stream, started after the first stopped,
// delivers every event the first took, in per-key order, its attempt
// counts carried over (README, Scale-out: one relay per stream, a standby
// takes over).
func TestJetStreamStandbyTakesOver(t *testing.T) {
	if testNATS == nil {
		t.Skip("a JetStream spool only (make test-jetstream)")
	}
	const keys, perKey = 4, 5
	var down atomic.Bool
	down.Store(true)
	rec := newRecorder(t, func(int, *http.Request) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	yaml := relayYAML(rec.srv.URL, "    retry: {initial: 1ms, max: 20ms, max_attempts: 1000}\n")
	first := startRelay(t, yaml, map[string]string{"plain": plainProvider})
	for n := 1; n <= perKey; n++ {
		for k := range keys {
			first.mustIngest(fmt.Sprintf("key-%d", k), n)
		}
	}
	waitFor(t, 10*time.Second, "every key's head tried twice", func() bool { return len(rec.requests()) >= 2*keys })
	first.stop()
	tried := len(rec.requests())

	dir := t.TempDir()
	writeConfig(t, dir, yaml, map[string]string{"plain": plainProvider})
	cfg, err := Load(filepath.Join(dir, "relay.yaml"), true)
	must(t, err)
	useTestSpool(t, cfg, first.dir) // the first relay's stream
	standby := serveConfig(t, dir, cfg)
	down.Store(false)
	waitFor(t, 30*time.Second, "every event delivered by the standby", func() bool { return len(rec.delivered(t)) >= keys*perKey })
	waitFor(t, 10*time.Second, "the standby settled", standby.settled)

	next := map[string]int{}
	for _, r := range rec.requests() {
		if r.Status != http.StatusOK {
			continue
		}
		_, key, n := envelope(t, r.Body)
		if n != next[key]+1 {
			t.Fatalf("key %s: event %d delivered after %d", key, n, next[key])
		}
		next[key] = n
		if n == 1 {
			if a, _ := strconv.Atoi(r.Header.Get("X-Hookrelay-Attempt")); a < 3 {
				t.Errorf("key %s: its head delivered as attempt %d after at least 2 failed on the first relay", key, a)
			}
		}
	}
	if len(next) != keys || len(rec.delivered(t)) != keys*perKey {
		t.Fatalf("delivered %d events over %d keys, want %d over %d (%d requests before the switch)",
			len(rec.delivered(t)), len(next), keys*perKey, keys, tried)
	}
}
