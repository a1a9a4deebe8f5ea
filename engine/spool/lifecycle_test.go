package spool

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
)

func TestClosed(t *testing.T) {
	b := mustOpen(t)
	ev := event(time.Now(), "x", "ledger")
	mustAppend(t, b, ev)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	checks := map[string]error{
		"Append":     func() error { _, err := b.Append(ctx, event(time.Now(), "y", "ledger"), 0); return err }(),
		"Update":     b.Update(ctx, &Delivery{EventID: ev.ID, Destination: "ledger", Status: Delivered}),
		"Quarantine": b.Quarantine(ctx, &Quarantined{ID: ulid.Make().String()}),
		"Purge":      func() error { _, err := b.Purge(time.Now()); return err }(),
		"Event":      func() error { _, err := b.Event(ev.ID); return err }(),
		"Queue":      b.Queue("ledger", func(*Delivery) error { return nil }),
		"Close":      b.Close(),
	}
	for name, err := range checks {
		want := ErrClosed
		if name == "Close" {
			want = nil
		}
		if !errors.Is(err, want) {
			t.Errorf("%s after Close = %v, want %v", name, err, want)
		}
	}
}

func TestCloseDrainsWrites(t *testing.T) {
	b := mustOpen(t)
	const n = 200
	evs := make([]*Event, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		evs[i] = event(time.Now(), "", "ledger")
		wg.Go(func() { _, errs[i] = b.Append(context.Background(), evs[i], 0) })
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	b = mustOpenPath(t, b.path)
	for i, ev := range evs {
		_, err := b.Event(ev.ID)
		switch {
		case errs[i] == nil && err != nil:
			t.Errorf("acknowledged append %d lost: %v", i, err)
		case errs[i] != nil && !errors.Is(errs[i], ErrClosed):
			t.Errorf("append %d: %v, want nil or ErrClosed", i, errs[i])
		}
	}
}

func TestSecondOpenTimesOut(t *testing.T) {
	b := mustOpen(t)
	start := time.Now()
	if b2, err := Open(b.path, Options{}); err == nil {
		_ = b2.Close() // the test fails either way
		t.Fatal("second Open of a locked file succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second Open took %v", d)
	}
}

// TestBatchOneFails holds the writer so that good and bad writes land in one
// batch, and checks that only the bad ones fail.
func TestBatchOneFails(t *testing.T) {
	b := mustOpen(t)
	ctx := context.Background()
	existing := event(time.Now(), "", "ledger")
	mustAppend(t, b, existing)

	started, release := make(chan struct{}), make(chan struct{})
	go func() {
		// Only holds the writer; its own commit is not what is tested.
		_ = b.submit(ctx, func(*bolt.Tx) ([]Ref, error) {
			select {
			case <-started: // a rerun
			default:
				close(started)
				<-release
			}
			return nil, nil
		})
	}()
	<-started

	const good = 20
	evs := make([]*Event, good)
	errs := make([]error, good)
	var badAppend, badUpdate error
	var wg sync.WaitGroup
	for i := range good {
		evs[i] = event(time.Now(), fmt.Sprint("good-", i), "ledger")
		wg.Go(func() { _, errs[i] = b.Append(ctx, evs[i], time.Hour) })
		if i == good/2 {
			wg.Go(func() { _, badAppend = b.Append(ctx, existing, 0) })
			wg.Go(func() {
				badUpdate = b.Update(ctx, &Delivery{EventID: ulid.Make().String(), Destination: "ledger", Status: Dead})
			})
		}
	}
	for len(b.ops) < good+2 {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()

	for i, err := range errs {
		if err != nil {
			t.Errorf("good append %d failed: %v", i, err)
		}
	}
	if !errors.Is(badAppend, ErrExists) {
		t.Errorf("duplicate id: %v, want ErrExists", badAppend)
	}
	if !errors.Is(badUpdate, ErrNotFound) {
		t.Errorf("unknown delivery: %v, want ErrNotFound", badUpdate)
	}
	if b.retried.Load() == 0 {
		t.Error("the bad ops were not in the good ones' batch")
	}
	if got := countEvents(t, b); got != good+1 {
		t.Errorf("%d events stored, want %d", got, good+1)
	}
	if q := queued(t, b, "ledger"); len(q) != good+1 {
		t.Errorf("queue has %d, want %d", len(q), good+1)
	}
}
