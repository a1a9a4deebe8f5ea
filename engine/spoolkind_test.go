package engine

import (
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
// restarted on the same directory finds its events again.
func useTestSpool(cfg *Config, dir string) {
	if testNATS == nil {
		return
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(dir))
	cfg.Spool.Kind = config.SpoolJetStream
	cfg.Spool.NATS = &config.NATS{URLs: []string{testNATS.ClientURL()}, Stream: fmt.Sprintf("T%x", h.Sum64()), Replicas: 1, Partitions: 8}
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
	var cfg Config
	useTestSpool(&cfg, dir)
	stream := cfg.Spool.NATS.Stream
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
