package spool_test

import (
	"path/filepath"
	"testing"

	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/engine/spool/spooltest"
)

// TestConformance runs the Store conformance suite on bbolt; the JetStream
// backend runs the same (engine/spool/jetstream).
func TestConformance(t *testing.T) {
	spooltest.Run(t, func(t *testing.T, opts spool.Options) (spool.Store, func() spool.Store) {
		path := filepath.Join(t.TempDir(), "spool.db")
		open := func() *spool.Bolt {
			b, err := spool.Open(path, opts)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		cur := open()
		t.Cleanup(func() { _ = cur.Close() })
		return cur, func() spool.Store {
			if err := cur.Close(); err != nil {
				t.Fatal(err)
			}
			cur = open()
			return cur
		}
	})
}
