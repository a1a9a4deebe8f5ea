package spool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// checkIdem fails t unless the memory holds exactly idem_by_time's
// entries, each found by its id with its event.
func checkIdem(t *testing.T, b *Bolt) {
	t.Helper()
	err := b.view(func(tx *bolt.Tx) error {
		byTime := tx.Bucket(bucketIdemByTime)
		n := 0
		err := byTime.ForEach(func(k, v []byte) error {
			n++
			at, of, ok := b.idem.find(byTime, k[8:])
			if !ok || at != int64(binary.BigEndian.Uint64(k)) || string(of) != string(v) {
				t.Errorf("entry %q received %d: found %v at %d for %q", k[8:], binary.BigEndian.Uint64(k), ok, at, of)
			}
			return nil
		})
		if m := len(b.idem.at) + len(b.idem.spill); m != n {
			t.Errorf("memory holds %d entries (spill %d), the file %d", m, len(b.idem.spill), n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDedupIndexSharedFingerprints: with every id given the same
// fingerprint, no id is taken for another, and replacing, purging and
// erasing keep the memory and the file in step.
func TestDedupIndexSharedFingerprints(t *testing.T) {
	b := mustOpen(t)
	b.idem.fp = func([]byte) uint64 { return 7 }
	ctx := context.Background()
	t0 := time.Now().Add(-time.Hour)
	first := map[string]*Event{}
	for i := range 4 {
		ev := event(t0.Add(time.Duration(i)*time.Millisecond), fmt.Sprintf("idem-%d", i), "ledger")
		mustAppend(t, b, ev)
		first[ev.IdempotencyID] = ev
	}
	if len(b.idem.spill) != 3 {
		t.Fatalf("spill holds %d ids, want the 3 whose fingerprint was taken", len(b.idem.spill))
	}
	for idem, ev := range first {
		dup, err := b.Append(ctx, event(t0.Add(time.Second), idem, "ledger"), time.Minute)
		if err != nil || dup != ev.ID {
			t.Errorf("copy of %s: dupOf %q, %v; want %s", idem, dup, err, ev.ID)
		}
	}
	if dup, err := b.Append(ctx, event(t0.Add(time.Second), "idem-new", "ledger"), time.Minute); err != nil || dup != "" {
		t.Errorf("a new id: dupOf %q, %v; want stored", dup, err)
	}
	// Outside the window, idem-0 (the one holding the fingerprint) and
	// idem-2 (in spill) are replaced.
	later := map[string]*Event{}
	for _, idem := range []string{"idem-0", "idem-2"} {
		ev := event(t0.Add(10*time.Minute), idem, "ledger")
		if dup, err := b.Append(ctx, ev, time.Minute); err != nil || dup != "" {
			t.Fatalf("%s after the window: dupOf %q, %v; want stored", idem, dup, err)
		}
		later[idem] = ev
	}
	checkIdem(t, b)
	// Purge what was received before t0+5m: idem-1, idem-3, idem-new.
	if _, err := b.Purge(t0.Add(5 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	checkIdem(t, b)
	for _, idem := range []string{"idem-1", "idem-3"} {
		if dup, err := b.Append(ctx, event(t0.Add(11*time.Minute), idem, "ledger"), time.Hour); err != nil || dup != "" {
			t.Errorf("%s after its purge: dupOf %q, %v; want stored", idem, dup, err)
		}
	}
	for idem, ev := range later {
		if dup, err := b.Append(ctx, event(t0.Add(12*time.Minute), idem, "ledger"), time.Hour); err != nil || dup != ev.ID {
			t.Errorf("%s: dupOf %q, %v; want %s", idem, dup, err, ev.ID)
		}
	}
	if _, err := b.EraseKey(ctx, "acme", "loan-1"); err != nil {
		t.Fatal(err)
	}
	checkIdem(t, b)
	if len(b.idem.at)+len(b.idem.spill) != 0 {
		t.Errorf("after erasing the only key, memory holds %d + %d entries", len(b.idem.at), len(b.idem.spill))
	}
}

// TestDedupIndexRollback: a batch rolled back because one of its writes
// failed leaves the memory as the file, and its other events still dedup.
func TestDedupIndexRollback(t *testing.T) {
	b := mustOpen(t)
	ctx := context.Background()
	taken := event(time.Now(), "taken", "ledger")
	mustAppend(t, b, taken)
	retried := b.retried.Load()
	for round := 0; round < 50 && b.retried.Load() == retried; round++ {
		var wg sync.WaitGroup
		for i := range 32 {
			ev := event(time.Now(), fmt.Sprintf("r%d-%d", round, i), "ledger")
			if i == 16 {
				ev.ID = taken.ID // ErrExists, after its batch wrote the others
			}
			wg.Go(func() {
				_, err := b.Append(ctx, ev, time.Hour)
				if (err != nil) != (i == 16) || (err != nil && !errors.Is(err, ErrExists)) {
					t.Errorf("append %d: %v", i, err)
				}
			})
		}
		wg.Wait()
	}
	if b.retried.Load() == retried {
		t.Skip("the failing write never shared a batch with others")
	}
	checkIdem(t, b)
}

// TestDedupIndexRollbackOfReplace: a rolled-back write that replaced
// entries (removed each, put it back at another time), one of them in
// spill, leaves the memory as the file, each id still the duplicate of
// its own event only.
func TestDedupIndexRollbackOfReplace(t *testing.T) {
	b := mustOpen(t)
	b.idem.fp = func([]byte) uint64 { return 7 } // the second id goes to spill
	ctx := context.Background()
	t0 := time.Now().Add(-time.Minute)
	evs := map[string]*Event{}
	for i, idem := range []string{"held", "spilled"} {
		evs[idem] = event(t0.Add(time.Duration(i)*time.Millisecond), idem, "ledger")
		mustAppend(t, b, evs[idem])
	}
	failed := errors.New("the write failed")
	err := b.submit(ctx, func(tx *bolt.Tx) ([]Ref, error) {
		byTime := tx.Bucket(bucketIdemByTime)
		for _, idem := range []string{"held", "spilled"} {
			ik := idemKey("acme", idem)
			at, _, ok := b.idem.find(byTime, ik)
			if !ok {
				return nil, fmt.Errorf("%s: no entry", idem)
			}
			if err := b.idem.remove(byTime, ik, at); err != nil {
				return nil, err
			}
			if err := b.idem.put(byTime, ik, at+int64(time.Second), "other"); err != nil {
				return nil, err
			}
		}
		return nil, failed
	})
	if !errors.Is(err, failed) {
		t.Fatalf("the write: %v, want it failed", err)
	}
	checkIdem(t, b)
	if len(b.idem.spill) != 1 {
		t.Errorf("spill holds %d ids, want 1", len(b.idem.spill))
	}
	for idem, ev := range evs {
		if dup, err := b.Append(ctx, event(t0.Add(time.Second), idem, "ledger"), time.Hour); err != nil || dup != ev.ID {
			t.Errorf("copy of %s: dupOf %q, %v; want %s", idem, dup, err, ev.ID)
		}
	}
}

// TestDedupIndexMovesFromDisk: a spool written with the index on disk
// (idem: provider + 0x00 + id -> received + event id; idem_by_time entries
// empty) opens with its dedup entries, over several chunks, and the idem
// bucket gone.
func TestDedupIndexMovesFromDisk(t *testing.T) {
	defer func(n int) { migrateIdemChunk = n }(migrateIdemChunk)
	migrateIdemChunk = 3
	b := mustOpen(t)
	t0 := time.Now().Add(-time.Hour)
	var evs []*Event
	for i := range 8 {
		ev := event(t0.Add(time.Duration(i)*time.Second), fmt.Sprintf("idem-%d", i), "ledger")
		mustAppend(t, b, ev)
		evs = append(evs, ev)
	}
	path := b.path
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// Write it back in the old form, with one entry by time whose entry by
	// id is gone (as an old purge could leave it).
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	orphan := append(u64(uint64(t0.Add(-time.Minute).UnixNano())), idemKey("acme", "orphan")...)
	err = db.Update(func(tx *bolt.Tx) error {
		idem, err := tx.CreateBucket(bucketIdemByID)
		if err != nil {
			return err
		}
		byTime := tx.Bucket(bucketIdemByTime)
		for _, ev := range evs {
			ik := idemKey(ev.Provider, ev.IdempotencyID)
			at := u64(uint64(ev.ReceivedAt.UnixNano()))
			if err := idem.Put(ik, append(at, ev.ID...)); err != nil {
				return err
			}
			if err := byTime.Put(append(at, ik...), nil); err != nil {
				return err
			}
		}
		return byTime.Put(orphan, nil)
	})
	if err == nil {
		err = db.Close()
	}
	if err != nil {
		t.Fatal(err)
	}

	b = mustOpenPath(t, path)
	for _, ev := range evs {
		dup, err := b.Append(context.Background(), event(ev.ReceivedAt.Add(time.Millisecond), ev.IdempotencyID, "ledger"), time.Hour)
		if err != nil || dup != ev.ID {
			t.Errorf("copy of %s: dupOf %q, %v; want %s", ev.IdempotencyID, dup, err, ev.ID)
		}
	}
	err = b.view(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketIdemByID) != nil {
			t.Error("the idem bucket is still there")
		}
		if tx.Bucket(bucketIdemByTime).Get(orphan) != nil {
			t.Error("the entry by time without an entry by id is still there")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkIdem(t, b)
}

// TestDedupIndexShrinksAfterPurge: once a purge leaves the memory under a
// quarter of its peak, it moves to a map of its size, and still finds what
// is left.
func TestDedupIndexShrinksAfterPurge(t *testing.T) {
	b := mustOpen(t)
	t0 := time.Now().Add(-time.Hour)
	var n atomic.Int64
	appendAll(t, b, 5000, func() *Event {
		i := n.Add(1)
		return event(t0.Add(time.Duration(i)*time.Microsecond), fmt.Sprintf("old-%d", i), "ledger")
	})
	kept := event(t0.Add(time.Minute), "kept", "ledger")
	mustAppend(t, b, kept)
	if b.idem.peak != 5001 {
		t.Fatalf("peak %d, want 5001", b.idem.peak)
	}
	if _, err := b.Purge(t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if len(b.idem.at) != 1 || b.idem.peak != 1 {
		t.Errorf("after the purge: %d entries, peak %d; want 1 and the map remade at that size", len(b.idem.at), b.idem.peak)
	}
	checkIdem(t, b)
	if dup, err := b.Append(context.Background(), event(t0.Add(2*time.Minute), "kept", "ledger"), time.Hour); err != nil || dup != kept.ID {
		t.Errorf("a copy of the kept id: dupOf %q, %v; want %s", dup, err, kept.ID)
	}
}
