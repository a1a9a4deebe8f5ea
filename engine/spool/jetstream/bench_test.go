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

// countingFollower counts what a Shared store feeds it and notes when the
// first and the n-th delivery came.
type countingFollower struct {
	follower
	n           int64
	fed         atomic.Int64
	first, last chan struct{}
}

func (f *countingFollower) Queue(string, *spool.QueuedDelivery) {
	switch f.fed.Add(1) {
	case 1:
		close(f.first)
	case f.n:
		close(f.last)
	}
}

// BenchmarkTakeover takes a partition with a backlog of pending events
// (each with a delivery state, as after a failed attempt) and reports how
// long its feed took to hand the dispatcher the first delivery and all of
// them, on the package's JetStream server:
//
//	go test -run '^$' -bench Takeover -benchtime 3x ./engine/spool/jetstream/
func BenchmarkTakeover(b *testing.B) {
	const n = 5000
	stream := newStream()
	s, err := jetstream.Open(context.Background(), jetstream.Options{URLs: []string{srv.ClientURL()}, Stream: stream,
		Replicas: 1, Partitions: 1, LeaseTTL: 3 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	for i := range n {
		id := ulid.Make().String()
		ev := &spool.Event{ID: id, Provider: "bank", Key: fmt.Sprint("k", i%50), ReceivedAt: time.Now(), Envelope: []byte(`{}`), Destinations: []string{"d"}}
		if _, err := s.Append(context.Background(), ev, 0); err != nil {
			b.Fatal(err)
		}
		d := &spool.Delivery{EventID: id, Destination: "d", Status: spool.Pending, NextAt: time.Now(),
			Attempts: []spool.Attempt{{At: time.Now(), Status: 503}}}
		if err := s.Update(context.Background(), d); err != nil {
			b.Fatal(err)
		}
	}
	var first, all time.Duration
	b.ResetTimer()
	for range b.N {
		f := &countingFollower{n: n, first: make(chan struct{}), last: make(chan struct{})}
		start := time.Now()
		ctx, stop := context.WithCancel(context.Background())
		done, err := s.Share(ctx, f)
		if err != nil {
			b.Fatal(err)
		}
		<-f.first
		first += time.Since(start)
		<-f.last
		all += time.Since(start)
		stop()
		<-done
		b.StopTimer()
		// A store shares once: the next round takes the partition anew.
		_ = s.Close()
		if s, err = jetstream.Open(context.Background(), jetstream.Options{URLs: []string{srv.ClientURL()}, Stream: stream,
			Replicas: 1, Partitions: 1, LeaseTTL: 3 * time.Second}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(first.Milliseconds())/float64(b.N), "ms/first")
	b.ReportMetric(float64(all.Milliseconds())/float64(b.N), "ms/all")
}
