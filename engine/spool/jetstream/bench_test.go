package jetstream_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream"
)

// BenchmarkAppend appends events with their idempotency ids, from parallel
// callers as ingest does, on bbolt and on the package's JetStream server
// (R1, fsync on every write), in the same run:
//
//	go test -run '^$' -bench Append -benchtime 3000x ./engine/spool/jetstream/
func BenchmarkAppend(b *testing.B) {
	var mu sync.Mutex
	entropy := ulid.Monotonic(rand.Reader, 0)
	var n atomic.Int64
	envelope := []byte(`{"type":"loan.offer","data":{"pad":"` + strings.Repeat("x", 900) + `"}}`)
	newEvent := func() *spool.Event {
		mu.Lock()
		id := ulid.MustNew(ulid.Now(), entropy).String()
		mu.Unlock()
		return &spool.Event{ID: id, Provider: "bank", Key: fmt.Sprint("app-", n.Add(1)%50), IdempotencyID: "cb-" + id,
			Envelope: envelope, Destinations: []string{"crm"}}
	}
	run := func(b *testing.B, s spool.Store) {
		b.SetParallelism(8)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Append(context.Background(), newEvent(), time.Hour); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.Run("bbolt", func(b *testing.B) {
		s, err := spool.Open(filepath.Join(b.TempDir(), "spool.db"), spool.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = s.Close() }()
		run(b, s)
	})
	b.Run("jetstream-R1", func(b *testing.B) {
		s, err := jetstream.Open(context.Background(), jetstream.Options{URLs: []string{srv.ClientURL()}, Stream: newStream(), Partitions: 64})
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = s.Close() }()
		run(b, s)
	})
}
