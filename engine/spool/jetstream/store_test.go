package jetstream_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream/natstest"
	"github.com/hookrelay/hookrelay/engine/spool/spooltest"
)

// srv is the package's one server; each test takes a stream of its own.
var srv *natstest.Server

func TestMain(m *testing.M) {
	s, err := natstest.Start("")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv = s
	code := m.Run()
	s.Close()
	os.Exit(code)
}

var streams atomic.Int64

// newStream names a stream no other test uses.
func newStream() string { return fmt.Sprintf("T%d", streams.Add(1)) }

func open(t *testing.T, urls []string, stream string, replicas int, opts spool.Options) *jetstream.Store {
	t.Helper()
	s, err := jetstream.Open(context.Background(), jetstream.Options{URLs: urls, Stream: stream, Replicas: replicas, Partitions: 8, Spool: opts})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConformance runs the Store conformance suite on one JetStream server.
func TestConformance(t *testing.T) {
	spooltest.Run(t, func(t *testing.T, opts spool.Options) (spool.Store, func() spool.Store) {
		stream := newStream()
		cur := open(t, []string{srv.ClientURL()}, stream, 1, opts)
		t.Cleanup(func() { _ = cur.Close() })
		return cur, func() spool.Store {
			if err := cur.Close(); err != nil {
				t.Fatal(err)
			}
			cur = open(t, []string{srv.ClientURL()}, stream, 1, opts)
			return cur
		}
	})
}
