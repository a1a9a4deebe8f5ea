package spool

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/seal"
	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
)

// Canary personal data: Swedish test personal numbers and names, which
// must never appear in the spool file once a Sealer is set.
var canaries = []string{"19121212-1212", "Tolvan Tolvansson", "20080808-8888", "Britta Brittasdotter", "550000 SEK"}

func masterKey(t testing.TB) *seal.MasterKey {
	t.Helper()
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	m, err := seal.NewMasterKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func keystore(t testing.TB, path string, cur *seal.MasterKey, prev ...*seal.MasterKey) *seal.Keystore {
	t.Helper()
	ks, err := seal.Open(path, cur, prev...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ks.Close() })
	return ks
}

// personal is an event of key whose envelope and raw body carry the canaries.
func personal(key string, i int, dests ...string) *Event {
	body := fmt.Sprintf(`{"ssn":%q,"name":%q,"guarantors":[{"ssn":%q,"name":%q}],"revenue":%q,"n":%d}`,
		canaries[0], canaries[1], canaries[2], canaries[3], canaries[4], i)
	id := ulid.Make().String()
	return &Event{
		ID: id, Provider: "kompar", Type: "application.approved", Key: key, IdempotencyID: "idem-" + id,
		ReceivedAt: time.Now().UTC().Round(0), Envelope: []byte(`{"data":` + body + `}`), Raw: []byte(body),
		Destinations: dests,
	}
}

func scanFile(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, c := range canaries {
		if bytes.Contains(raw, []byte(c)) {
			found = append(found, c)
		}
	}
	return found
}

// writePersonal writes, through the Spool API, every kind of record that
// holds request or response content, for key, with the canaries in it; it
// returns the event and the quarantined request.
func writePersonal(t *testing.T, b *Bolt, key string) (*Event, *Quarantined) {
	t.Helper()
	ctx := context.Background()
	ev := personal(key, 1, "lender-crm", "archive")
	mustAppend(t, b, ev)
	mustUpdate(t, b, &Delivery{EventID: ev.ID, Destination: "lender-crm", Status: Pending, NextAt: time.Now().Add(time.Hour),
		Attempts: []Attempt{{At: time.Now().UTC().Round(0), Status: 422, Error: "rejected " + canaries[0], Response: `{"error":"unknown ` + canaries[1] + `"}`}}})
	mustUpdate(t, b, &Delivery{EventID: ev.ID, Destination: "archive", Status: Delivered,
		Attempts: []Attempt{{At: time.Now().UTC().Round(0), Status: 200, Response: canaries[3]}}})
	q := &Quarantined{ID: ulid.Make().String(), Provider: "kompar", Key: key, Reason: "map: ssn " + canaries[2] + " not valid",
		ReceivedAt: time.Now().UTC().Round(0), Method: "POST", Path: "/hooks/kompar",
		Header: map[string][]string{"X-Applicant": {canaries[1]}}, Query: map[string][]string{"name": {canaries[3]}},
		Body: ev.Raw, JWS: ev.Raw}
	must(t, b.Quarantine(ctx, q))
	mustTrack(t, b, TrackedKey{Provider: "kompar", Key: key})
	must(t, b.PollSave(ctx, "kompar", key, &PollState{Last: "x", LastType: "approved for " + canaries[1]}))
	return ev, q
}

func TestSealedSpoolHoldsNoCanary(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "spool.db")
	ks := keystore(t, filepath.Join(dir, "keys.db"), masterKey(t))
	b := mustOpenPath(t, path, Options{Sealer: ks})
	ev, q := writePersonal(t, b, "APP-1")
	// Everything reads back whole through the API.
	got, err := b.Event(ev.ID)
	if err != nil || !bytes.Equal(got.Envelope, ev.Envelope) || !bytes.Equal(got.Raw, ev.Raw) || got.Key != "APP-1" {
		t.Fatalf("event = %+v, %v", got, err)
	}
	d, err := b.Delivery("lender-crm", ev.ID)
	if err != nil || d.Status != Pending || len(d.Attempts) != 1 || d.Attempts[0].Error != "rejected "+canaries[0] {
		t.Fatalf("delivery = %+v, %v", d, err)
	}
	gq, err := b.Quarantined(q.ID)
	if err != nil || gq.Reason != q.Reason || gq.Header["X-Applicant"][0] != canaries[1] || !bytes.Equal(gq.Body, q.Body) {
		t.Fatalf("quarantined = %+v, %v", gq, err)
	}
	if qs, err := b.QuarantineList("", 10); err != nil || len(qs) != 1 || qs[0].Query["name"][0] != canaries[3] {
		t.Fatalf("quarantine list = %v, %v", qs, err)
	}
	if st := pollKeys(t, b, "kompar")["APP-1"]; st.LastType != "approved for "+canaries[1] {
		t.Fatalf("poll state = %+v", st)
	}
	var pend []string
	must(t, b.Pending("lender-crm", func(q *QueuedDelivery) error { pend = append(pend, q.Key); return nil }))
	if len(pend) != 1 || pend[0] != "APP-1" {
		t.Fatalf("pending = %v", pend)
	}
	must(t, b.Close())
	if found := scanFile(t, path); len(found) > 0 {
		t.Fatalf("the spool file holds %q in clear", found)
	}
	// Without the Sealer the records do not read.
	plain, err := Open(path, Options{})
	must(t, err)
	if _, err := plain.Event(ev.ID); !errors.Is(err, ErrSealed) {
		t.Errorf("event without a sealer: %v", err)
	}
	must(t, plain.Close())
	// Control: the same writes without a Sealer leave the canaries in clear.
	cpath := filepath.Join(dir, "plain.db")
	c := mustOpenPath(t, cpath)
	writePersonal(t, c, "APP-1")
	must(t, c.Close())
	if found := scanFile(t, cpath); len(found) != len(canaries) {
		t.Fatalf("control spool holds %q only: the scan would miss plaintext", found)
	}
}

func TestMixedSpoolSealsOnRewrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "spool.db")
	b := mustOpenPath(t, path)
	ev := personal("APP-1", 1, "crm")
	mustAppend(t, b, ev)
	must(t, b.Quarantine(context.Background(), &Quarantined{ID: ulid.Make().String(), Provider: "kompar", Body: []byte("q")}))
	ks := keystore(t, filepath.Join(dir, "keys.db"), masterKey(t))
	b = reopen(t, b, Options{Sealer: ks})
	if got, err := b.Event(ev.ID); err != nil || !bytes.Equal(got.Raw, ev.Raw) {
		t.Fatalf("plaintext event with a sealer: %v", err)
	}
	if qs, err := b.QuarantineList("", 0); err != nil || len(qs) != 1 {
		t.Fatalf("plaintext quarantine with a sealer: %v %v", qs, err)
	}
	mustUpdate(t, b, &Delivery{EventID: ev.ID, Destination: "crm", Status: Pending, Attempts: []Attempt{{Response: canaries[1]}}})
	if d, err := b.Delivery("crm", ev.ID); err != nil || d.Attempts[0].Response != canaries[1] {
		t.Fatalf("delivery = %+v %v", d, err)
	}
	var raw []byte
	must(t, b.get(bucketDeliveries, deliveryKey(ulid.MustParse(ev.ID).Bytes(), "crm"), func(v []byte) error {
		raw = bytes.Clone(v)
		return nil
	}))
	if raw[0] != deliveryFormatSealed || bytes.Contains(raw, []byte(canaries[1])) {
		t.Fatalf("rewritten delivery is not sealed: %q", raw)
	}
}

func TestEraseKeyShredsBackups(t *testing.T) {
	dir := t.TempDir()
	path, keys := filepath.Join(dir, "spool.db"), filepath.Join(dir, "keys.db")
	m := masterKey(t)
	ks := keystore(t, keys, m)
	b := mustOpenPath(t, path, Options{Sealer: ks})
	evA, qA := writePersonal(t, b, "APP-A")
	evB, _ := writePersonal(t, b, "APP-B")
	evA2 := personal("APP-A", 2, "crm")
	mustAppend(t, b, evA2)
	// A backup copy of the spool, taken before the erasure.
	must(t, b.Close())
	backup := filepath.Join(dir, "backup.db")
	raw, err := os.ReadFile(path)
	must(t, err)
	must(t, os.WriteFile(backup, raw, 0o600))
	b = mustOpenPath(t, path, Options{Sealer: ks})

	got, err := b.EraseKey(context.Background(), "kompar", "APP-A")
	must(t, err)
	want := Erased{Events: 2, Deliveries: 3, Pending: 2, Quarantined: 1, PollStates: 1, Dedup: 2}
	if got.Events != want.Events || got.Deliveries != want.Deliveries || got.Pending != want.Pending ||
		got.Quarantined != want.Quarantined || got.PollStates != want.PollStates || got.Dedup != want.Dedup || len(got.Dropped) != 2 {
		t.Fatalf("erased %+v, want %+v", got, want)
	}
	if _, err := b.Event(evA.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("erased event: %v", err)
	}
	if _, err := b.Quarantined(qA.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("erased quarantined: %v", err)
	}
	if q := queued(t, b, "lender-crm"); len(q) != 1 || q[0] != evB.ID {
		t.Errorf("queue after erasure = %v, want only %s", q, evB.ID)
	}
	if _, ok := pollKeys(t, b, "kompar")["APP-A"]; ok {
		t.Error("poll state of the erased key is left")
	}
	if ev, err := b.Event(evB.ID); err != nil || !bytes.Equal(ev.Raw, evB.Raw) {
		t.Errorf("other key: %v", err)
	}
	// Nothing of the erased key is left in the file, not even its name on
	// the pages the deletions freed; the other key's records are there.
	if raw, err := os.ReadFile(path); err != nil || bytes.Contains(raw, []byte("APP-A")) || !bytes.Contains(raw, []byte("APP-B")) {
		t.Errorf("after the erasure the file holds APP-A: %t, APP-B: %t (%v)", bytes.Contains(raw, []byte("APP-A")), bytes.Contains(raw, []byte("APP-B")), err)
	}
	// The same idempotency id is new again.
	again := personal("APP-A", 3, "crm")
	again.IdempotencyID = evA.IdempotencyID
	mustAppend(t, b, again)
	must(t, b.Close())
	if found := scanFile(t, path); len(found) > 0 {
		t.Fatalf("spool holds %q after erasure", found)
	}
	// Compacted, the file no longer holds the erased key's records in freed pages either.
	_, _, err = Compact(path)
	must(t, err)

	// The backup, opened with the keystore as it is after the erasure (read
	// afresh, with the master key): nothing of APP-A opens, APP-B still does.
	must(t, ks.Close())
	ks = keystore(t, keys, m)
	old := mustOpenPath(t, backup, Options{Sealer: ks})
	for _, id := range []string{evA.ID, evA2.ID} {
		if _, err := old.Event(id); !errors.Is(err, seal.ErrShredded) {
			t.Errorf("backup event %s of the erased key: %v", id, err)
		}
	}
	if _, err := old.Delivery("lender-crm", evA.ID); !errors.Is(err, seal.ErrShredded) {
		t.Errorf("backup delivery of the erased key: %v", err)
	}
	if _, err := old.Quarantined(qA.ID); !errors.Is(err, seal.ErrShredded) {
		t.Errorf("backup quarantined of the erased key: %v", err)
	}
	if ev, err := old.Event(evB.ID); err != nil || !bytes.Equal(ev.Raw, evB.Raw) {
		t.Errorf("backup event of another key: %v", err)
	}
}

// TestRotationUnderLoad rotates the master key while events are appended
// and delivered: nothing is lost, and once Rewrap is done every record
// opens with the new master key alone.
func TestRotationUnderLoad(t *testing.T) {
	dir := t.TempDir()
	path, keys := filepath.Join(dir, "spool.db"), filepath.Join(dir, "keys.db")
	oldKey, newKey := masterKey(t), masterKey(t)
	ks, err := seal.Open(keys, oldKey)
	must(t, err)
	b := mustOpenPath(t, path, Options{Sealer: ks})
	var ids sync.Map
	write := func(n, keys int) {
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := range n {
					ev := personal(fmt.Sprintf("APP-%d", (w*n+i)%keys), i, "crm")
					if _, err := b.Append(context.Background(), ev, 0); err != nil {
						t.Error(err)
						return
					}
					ids.Store(ev.ID, ev)
					if err := b.Update(context.Background(), &Delivery{EventID: ev.ID, Destination: "crm", Status: Delivered,
						Attempts: []Attempt{{Status: 200, Response: canaries[1]}}}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	write(50, 300) // under the old master key
	must(t, b.Close())
	must(t, ks.Close())

	// The restart with the new key, the old one among the previous keys.
	ks = keystore(t, keys, newKey, oldKey)
	b = mustOpenPath(t, path, Options{Sealer: ks})
	// Rewrap runs again and again while the writers below append, to keys
	// old and new, and once more after them.
	stop, done := make(chan struct{}), make(chan int)
	go func() {
		runs := 0
		for {
			select {
			case <-stop:
				done <- runs
				return
			default:
			}
			if _, err := ks.Rewrap(context.Background(), nil); err != nil {
				t.Error(err)
			}
			runs++
		}
	}()
	write(100, 600)
	close(stop)
	if runs := <-done; runs == 0 {
		t.Error("no rewrap ran during the writes")
	}
	p, err := ks.Rewrap(context.Background(), nil)
	must(t, err)
	if p.Total != 600 || p.Current != 600 {
		t.Errorf("rewrap after the writes: %+v, want 600 keys all current", p)
	}
	must(t, b.Close())
	must(t, ks.Close())

	// Only the new master key now.
	ks = keystore(t, keys, newKey)
	b = mustOpenPath(t, path, Options{Sealer: ks})
	n := 0
	ids.Range(func(k, v any) bool {
		n++
		want := v.(*Event)
		ev, err := b.Event(k.(string))
		if err != nil || !bytes.Equal(ev.Raw, want.Raw) {
			t.Errorf("event %s after rotation: %v", k, err)
			return false
		}
		if d, err := b.Delivery("crm", want.ID); err != nil || d.Status != Delivered || d.Attempts[0].Response != canaries[1] {
			t.Errorf("delivery %s after rotation: %+v %v", k, d, err)
			return false
		}
		return true
	})
	if n != 8*150 || countEvents(t, b) != n {
		t.Fatalf("%d events written, %d stored, want %d", n, countEvents(t, b), 8*150)
	}
}

// BenchmarkAppendPrivacy measures Append with its commit, without and with
// a Sealer, over keys that already have their data keys (a key's events
// after its first). Compare ns/op of the two: the ratio is the cost of
// privacy on the hot path.
func BenchmarkAppendPrivacy(b *testing.B) {
	body := []byte(`{"type":"application.approved","data":{"ssn":"19121212-1212","name":"Tolvan Tolvansson","guarantors":[{"ssn":"20080808-8888"}],"revenue":"550000","loan":"L-1","amount":"1250.00","currency":"SEK"}}`)
	for _, sealed := range []bool{false, true} {
		name := "plain"
		if sealed {
			name = "sealed"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			var opts Options
			if sealed {
				opts.Sealer = keystore(b, filepath.Join(dir, "keys.db"), masterKey(b))
			}
			s := mustOpenPath(b, filepath.Join(dir, "spool.db"), opts)
			const keys = 256
			if sealed {
				for i := range keys {
					_, _ = opts.Sealer.Seal("kompar", fmt.Sprintf("L-%d", i), nil, nil)
				}
			}
			var n atomic.Int64
			ctx := context.Background()
			b.ReportAllocs()
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := ulid.Make()
					ev := &Event{ID: id.String(), Provider: "kompar", Type: "application.approved",
						Key: fmt.Sprintf("L-%d", n.Add(1)%keys), IdempotencyID: id.String(), ReceivedAt: time.Now(),
						Envelope: body, Raw: body, Destinations: []string{"crm"}}
					if _, err := s.Append(ctx, ev, time.Hour); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkEncodeEventPrivacy is the CPU side of BenchmarkAppendPrivacy
// without the commit: encoding an event, without and with sealing.
func BenchmarkEncodeEventPrivacy(b *testing.B) {
	ev := personal("L-1", 1, "crm")
	ev.Envelope = bytes.Repeat(ev.Envelope, 8) // about 2 KiB, a Kompar callback
	ks := keystore(b, filepath.Join(b.TempDir(), "keys.db"), masterKey(b))
	b.Run("plain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := encodeEvent(ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sealed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := sealEvent(ks, ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestEraseKeyPlaintext: without a Sealer erasure still removes every record
// of the key (there is no data key to destroy).
func TestEraseKeyPlaintext(t *testing.T) {
	b := mustOpen(t)
	evA, _ := writePersonal(t, b, "APP-A")
	evB, _ := writePersonal(t, b, "APP-B")
	got, err := b.EraseKey(context.Background(), "kompar", "APP-A")
	must(t, err)
	if got.Events != 1 || got.Deliveries != 2 || got.Pending != 1 || got.Quarantined != 1 || got.PollStates != 1 || got.Dedup != 1 {
		t.Fatalf("erased %+v", got)
	}
	if _, err := b.Event(evA.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("erased event: %v", err)
	}
	if _, err := b.Event(evB.ID); err != nil {
		t.Errorf("other key: %v", err)
	}
	if got, err := b.EraseKey(context.Background(), "kompar", "APP-A"); err != nil || got.Events+got.Quarantined+got.PollStates != 0 {
		t.Errorf("second erasure: %+v %v", got, err)
	}
}

// TestEraseKeySharedSequence: a spool written before keys were scoped by
// provider has sequence records named by key alone; erasing the key takes
// them too, and leaves other keys' records.
func TestEraseKeySharedSequence(t *testing.T) {
	b := mustOpen(t)
	must(t, b.db.Update(func(tx *bolt.Tx) error {
		sh := tx.Bucket(bucketLastSeqShared)
		if err := sh.Put([]byte("ledger\x00loan-1"), u64(6)); err != nil {
			return err
		}
		return sh.Put([]byte("ledger\x00loan-2"), u64(3))
	}))
	_, err := b.EraseKey(context.Background(), "acme", "loan-1")
	must(t, err)
	for key, want := range map[string]int64{"loan-1": 0, "loan-2": 3} {
		if seq, err := b.LastSequence("ledger", "acme", key); err != nil || seq != want {
			t.Errorf("LastSequence of %s after erasing loan-1 = %d, %v; want %d", key, seq, err, want)
		}
	}
}
