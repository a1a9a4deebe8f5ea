package spool

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestDedup(t *testing.T) {
	const window = time.Minute
	t0 := time.Now().Add(-time.Hour)
	tests := []struct {
		name    string
		second  func() *Event
		dedup   time.Duration
		wantDup bool
	}{
		{"within window", func() *Event { return event(t0.Add(30*time.Second), "idem-1", "ledger") }, window, true},
		{"outside window", func() *Event { return event(t0.Add(2*window), "idem-1", "ledger") }, window, false},
		{"dedup disabled", func() *Event { return event(t0.Add(time.Second), "idem-1", "ledger") }, 0, false},
		{"other id", func() *Event { return event(t0.Add(time.Second), "idem-2", "ledger") }, window, false},
		{"other provider", func() *Event {
			ev := event(t0.Add(time.Second), "idem-1", "ledger")
			ev.Provider = "other"
			return ev
		}, window, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustOpen(t)
			first := event(t0, "idem-1", "ledger")
			mustAppend(t, b, first)
			second := tt.second()
			dup, err := b.Append(context.Background(), second, tt.dedup)
			if err != nil {
				t.Fatal(err)
			}
			_, getErr := b.Event(second.ID)
			if tt.wantDup {
				if dup != first.ID {
					t.Errorf("dupOf = %q, want %q", dup, first.ID)
				}
				if !errors.Is(getErr, ErrNotFound) {
					t.Errorf("duplicate was stored: %v", getErr)
				}
				if q := queued(t, b, "ledger"); len(q) != 1 {
					t.Errorf("queue = %v, want only the first", q)
				}
				return
			}
			if dup != "" || getErr != nil {
				t.Errorf("dupOf = %q, Event = %v; want stored", dup, getErr)
			}
			if q := queued(t, b, "ledger"); len(q) != 2 {
				t.Errorf("queue = %v, want both", q)
			}
		})
	}
}

func TestDedupWindowRestartsFromNewest(t *testing.T) {
	b := mustOpen(t)
	t0 := time.Now().Add(-time.Hour)
	ctx := context.Background()
	mustAppend(t, b, event(t0, "idem-1"))
	second := event(t0.Add(2*time.Minute), "idem-1")
	// Outside the window: stored, and it replaces the dedup entry.
	if dup, err := b.Append(ctx, second, time.Minute); err != nil || dup != "" {
		t.Fatalf("dupOf = %q, %v; want stored", dup, err)
	}
	third := event(t0.Add(150*time.Second), "idem-1")
	dup, err := b.Append(ctx, third, time.Minute)
	if err != nil || dup != second.ID {
		t.Fatalf("dupOf = %q, %v; want %q", dup, err, second.ID)
	}
	err = b.view(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketIdemByTime).Stats().KeyN; n != 1 {
			t.Errorf("idem_by_time holds %d entries, want 1 (the replaced one dropped)", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentDuplicates(t *testing.T) {
	b := mustOpen(t)
	const n = 64
	at := time.Now()
	evs := make([]*Event, n)
	dups := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		evs[i] = event(at, "same", "ledger")
		wg.Go(func() { dups[i], errs[i] = b.Append(context.Background(), evs[i], time.Hour) })
	}
	wg.Wait()
	winner := ""
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if dups[i] == "" {
			if winner != "" {
				t.Fatalf("two appends stored: %s and %s", winner, evs[i].ID)
			}
			winner = evs[i].ID
		}
	}
	if winner == "" {
		t.Fatal("no append stored")
	}
	for i := range n {
		if dups[i] != "" && dups[i] != winner {
			t.Errorf("dupOf = %s, want %s", dups[i], winner)
		}
	}
	if got := countEvents(t, b); got != 1 {
		t.Errorf("%d events stored, want 1", got)
	}
}
