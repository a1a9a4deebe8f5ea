package engine

import (
	"fmt"
	"hash/fnv"
	"os"
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
