package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// liveBytes is the sum of the key and value bytes stored in the spool, over
// all buckets: the data a perfectly packed file would hold.
func liveBytes(t testing.TB, db *bolt.DB) int64 {
	t.Helper()
	var n int64
	var walk func(b *bolt.Bucket) error
	walk = func(b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			n += int64(len(k) + len(v))
			if v == nil {
				return walk(b.Bucket(k))
			}
			return nil
		})
	}
	err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			n += int64(len(name))
			return walk(b)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// parallel runs fn(i) for i in [0, n) on workers goroutines, so that the
// writes share commits.
func parallel(n, workers int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		})
	}
	wg.Wait()
}

func compactScale() int {
	if os.Getenv("HOOKRELAY_SCALE") != "1" {
		return 20_000
	}
	if n, err := strconv.Atoi(os.Getenv("HOOKRELAY_SCALE_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

// TestCompactAfterPurge is the "spool size after purging" figure: N events to
// two destinations, all delivered but one in 100, purged, then compacted.
// HOOKRELAY_SCALE=1 runs it with a million events (BENCHMARKS.md).
func TestCompactAfterPurge(t *testing.T) {
	n := compactScale()
	const keepEvery = 100 // one event in 100 keeps a pending delivery
	path := filepath.Join(t.TempDir(), "data", "spool.db")
	var maxSeq atomic.Uint64
	opts := Options{Committed: func(refs []Ref) {
		for _, r := range refs {
			if r.Seq > maxSeq.Load() {
				maxSeq.Store(r.Seq)
			}
		}
	}}
	b, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	old := time.Now().Add(-48 * time.Hour)
	body := strings.Repeat("x", 400)
	evs := make([]*Event, n)
	start := time.Now()
	parallel(n, 256, func(i int) {
		ev := event(old.Add(time.Duration(i)*time.Millisecond), fmt.Sprintf("evt_%d", i), "ledger", "crm")
		ev.Key = fmt.Sprintf("loan-%d", i%1000)
		ev.Envelope = []byte(`{"type":"payment.settled","data":"` + body + `"}`)
		ev.Raw = []byte(`{"id":"evt_` + fmt.Sprint(i) + `"}`)
		evs[i] = ev
		if _, err := b.Append(ctx, ev, time.Hour); err != nil {
			t.Error(err)
		}
	})
	appendTime := time.Since(start)
	if t.Failed() {
		t.FailNow()
	}
	start = time.Now()
	parallel(n, 256, func(i int) {
		for _, dest := range []string{"ledger", "crm"} {
			st := Delivered
			if i%keepEvery == 0 && dest == "crm" {
				continue // stays pending
			}
			d := &Delivery{EventID: evs[i].ID, Destination: dest, Status: st, Attempts: []Attempt{{At: time.Now(), Status: 200, DurationMS: 12}}}
			if err := b.Update(ctx, d); err != nil {
				t.Error(err)
			}
		}
	})
	updateTime := time.Since(start)
	if t.Failed() {
		t.FailNow()
	}
	peak := b.Size()
	peakLive := liveBytes(t, b.db)

	start = time.Now()
	purged, err := b.Purge(time.Now().Add(-24 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	purgeTime := time.Since(start)
	kept := (n + keepEvery - 1) / keepEvery
	if purged != n-kept {
		t.Fatalf("purged %d, want %d", purged, n-kept)
	}
	afterPurge := b.Size()
	live := liveBytes(t, b.db)
	if afterPurge < peak {
		t.Errorf("file shrank on purge: %d -> %d (bbolt does not shrink; the figure is wrong)", peak, afterPurge)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	start = time.Now()
	before, after, err := Compact(path, CompactOptions{HoldLock: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	compactTime := time.Since(start)
	if before != afterPurge {
		t.Errorf("Compact before = %d, want %d", before, afterPurge)
	}
	if _, err := os.Stat(path + compactSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left: %v", err)
	}

	b = mustOpenPath(t, path, opts)
	if got := b.Size(); got != after {
		t.Errorf("Size after reopen = %d, Compact said %d", got, after)
	}
	if err := b.Check(); err != nil {
		t.Fatalf("check after compaction: %v", err)
	}
	if l := liveBytes(t, b.db); l != live {
		t.Errorf("live bytes %d after compaction, %d before", l, live)
	}
	if after > 2*live {
		t.Errorf("compacted file %d bytes > 2 x live data %d", after, live)
	}
	t.Logf("events %d (kept %d): peak file %d B (live %d B), after purge %d B (live %d B), after compaction %d B = %.2f x live, %.4f x peak live; append %v, update %v, purge %v, compact %v",
		n, kept, peak, peakLive, afterPurge, live, after, float64(after)/float64(live), float64(after)/float64(peakLive),
		appendTime.Round(time.Millisecond), updateTime.Round(time.Millisecond), purgeTime.Round(time.Millisecond), compactTime.Round(time.Millisecond))

	// The remaining events, their deliveries and queues are intact.
	if got := countEvents(t, b); got != kept {
		t.Errorf("%d events after compaction, want %d", got, kept)
	}
	if q := queued(t, b, "ledger"); len(q) != 0 {
		t.Errorf("ledger queue has %d entries, want 0", len(q))
	}
	var want []string
	for i := 0; i < n; i += keepEvery {
		want = append(want, evs[i].ID)
	}
	q := queued(t, b, "crm")
	if len(q) != len(want) {
		t.Fatalf("crm queue has %d entries, want %d", len(q), len(want))
	}
	inQueue := map[string]bool{}
	for _, id := range q {
		inQueue[id] = true
	}
	for _, id := range want {
		if !inQueue[id] {
			t.Fatalf("event %s missing from the crm queue", id)
		}
	}
	for _, i := range []int{0, keepEvery, (kept - 1) * keepEvery} {
		ev, err := b.Event(evs[i].ID)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if !bytes.Equal(ev.Envelope, evs[i].Envelope) || ev.Key != evs[i].Key {
			t.Errorf("event %d changed: %+v", i, ev)
		}
		d, err := b.Delivery("ledger", evs[i].ID)
		if err != nil || d.Status != Delivered || len(d.Attempts) != 1 {
			t.Errorf("ledger delivery of %d: %+v, %v", i, d, err)
		}
		if d, err := b.Delivery("crm", evs[i].ID); err != nil || d.Status != Pending {
			t.Errorf("crm delivery of %d: %+v, %v", i, d, err)
		}
	}
	if _, err := b.Event(evs[1].ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("purged event back: %v", err)
	}
	// The queue's sequence survives (bolt.Compact copies bucket sequences):
	// a new event queues after every earlier one.
	last := maxSeq.Load()
	mustAppend(t, b, event(time.Now(), "after-compact", "crm"))
	if maxSeq.Load() <= last {
		t.Errorf("seq after compaction %d, not above %d", maxSeq.Load(), last)
	}
	if q := queued(t, b, "crm"); len(q) != len(want)+1 || q[len(q)-1] == want[len(want)-1] {
		t.Errorf("new event not last in the crm queue")
	}
	// Dedup entries that were not purged still catch a repeat... all were old
	// enough to purge, so a repeat of an old id is new again.
	if dup, err := b.Append(ctx, event(time.Now(), "evt_1"), time.Hour); err != nil || dup != "" {
		t.Errorf("repeat of a purged idempotency id: dupOf %q, %v", dup, err)
	}
	if dup, err := b.Append(ctx, event(time.Now(), "after-compact"), time.Hour); err != nil || dup == "" {
		t.Errorf("dedup lost after compaction: dupOf %q, %v", dup, err)
	}
}

func TestCompactRefusesLockedSpool(t *testing.T) {
	b := mustOpen(t)
	mustAppend(t, b, event(time.Now(), "one", "ledger"))
	orig, err := os.ReadFile(b.path)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, _, err = Compact(b.path)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("Compact of a locked spool: %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Compact waited %v for the lock", d)
	}
	now, err := os.ReadFile(b.path)
	if err != nil || !bytes.Equal(now, orig) {
		t.Errorf("locked spool changed by a refused Compact (%v)", err)
	}
	if _, err := os.Stat(b.path + compactSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file created: %v", err)
	}
}

// TestCompactCrashLeftovers: a crash during Compact leaves a partial
// temporary file next to an untouched spool. Open ignores it; the next Compact
// replaces it.
func TestCompactCrashLeftovers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ev := event(time.Now(), "one", "ledger")
	mustAppend(t, b, ev)
	must(t, b.Close())
	if err := os.WriteFile(path+compactSuffix, []byte("half a bbolt file"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("Open with a stale temporary file: %v", err)
	}
	if _, err := b.Event(ev.ID); err != nil {
		t.Fatal(err)
	}
	must(t, b.Close())
	if _, _, err := Compact(path, CompactOptions{HoldLock: time.Millisecond}); err != nil {
		t.Fatalf("Compact over a stale temporary file: %v", err)
	}
	b = mustOpenPath(t, path)
	if _, err := b.Event(ev.ID); err != nil {
		t.Fatalf("event lost: %v", err)
	}
	if _, err := os.Stat(path + compactSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left: %v", err)
	}
}

// TestCompactFailureLeavesOriginal: when the new file cannot be written, the
// spool is untouched.
func TestCompactFailureLeavesOriginal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, b, event(time.Now(), "one", "ledger"))
	must(t, b.Close())
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A non-empty directory where the temporary file goes: it cannot be removed.
	must(t, os.MkdirAll(filepath.Join(path+compactSuffix, "x"), 0o700))
	if _, _, err := Compact(path); err == nil {
		t.Fatal("Compact succeeded with an unusable temporary path")
	}
	now, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(now, orig) {
		t.Errorf("spool changed by a failed Compact (%v)", err)
	}
	b = mustOpenPath(t, path)
	if got := countEvents(t, b); got != 1 {
		t.Errorf("%d events, want 1", got)
	}
}

func TestCompactMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	if _, _, err := Compact(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Compact of a missing file: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Compact created a spool: %v", err)
	}
}

// TestCompactKeepsOpenOptions: Compact's bbolt options are Open's.
func TestCompactKeepsOpenOptions(t *testing.T) {
	b := mustOpen(t)
	o := boltOptions()
	if b.db.NoFreelistSync != o.NoFreelistSync || b.db.FreelistType != o.FreelistType {
		t.Errorf("Open uses NoFreelistSync=%v FreelistType=%v, Compact %v %v",
			b.db.NoFreelistSync, b.db.FreelistType, o.NoFreelistSync, o.FreelistType)
	}
}
