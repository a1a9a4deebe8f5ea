package seal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func newKey(t testing.TB) *MasterKey {
	t.Helper()
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	m, err := NewMasterKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func openKS(t testing.TB, path string, cur *MasterKey, prev ...*MasterKey) *Keystore {
	t.Helper()
	ks, err := Open(path, cur, prev...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ks.Close() })
	return ks
}

func TestSealOpenBindsRecord(t *testing.T) {
	ks := openKS(t, filepath.Join(t.TempDir(), "keys.db"), newKey(t))
	rec, err := ks.Seal("kompar", "app-1", []byte("ssn 19121212-1212"), []byte("events/1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(rec, []byte("19121212")) || rec[0] != Format || RecordMaster(rec) != ks.CurrentID() {
		t.Fatalf("record %x", rec)
	}
	got, err := ks.Open("kompar", "app-1", rec, []byte("events/1"))
	if err != nil || string(got) != "ssn 19121212-1212" {
		t.Fatalf("open = %q, %v", got, err)
	}
	for _, c := range []struct{ provider, key, aad string }{
		{"kompar", "app-1", "events/2"}, // pasted under another id
		{"kompar", "app-2", "events/1"}, // under another key
		{"resurs", "app-1", "events/1"}, // under another provider
	} {
		if _, err := ks.Open(c.provider, c.key, rec, []byte(c.aad)); err == nil {
			t.Errorf("%v: opened", c)
		}
	}
	rec[len(rec)-1] ^= 1
	if _, err := ks.Open("kompar", "app-1", rec, []byte("events/1")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("tampered: %v", err)
	}
	if _, err := NewMasterKey(make([]byte, 16)); err == nil {
		t.Error("16-byte master key accepted")
	}
}

func TestDestroyShredsAndLeavesNoWrappedKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	m := newKey(t)
	ks := openKS(t, path, m)
	rec, _ := ks.Seal("kompar", "app-1", []byte("x"), nil)
	keep, _ := ks.Seal("kompar", "app-2", []byte("y"), nil)
	entry, _ := ks.store.Get(entryKey("kompar", "app-1"))
	if raw, _ := os.ReadFile(path); !bytes.Contains(raw, entry[1+2*idLen:]) {
		t.Fatal("the wrapped key is not where the test looks for it")
	}
	if err := ks.Destroy("kompar", "app-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Open("kompar", "app-1", rec, nil); !errors.Is(err, ErrShredded) {
		t.Fatalf("open after destroy: %v", err)
	}
	if got, err := ks.Open("kompar", "app-2", keep, nil); err != nil || string(got) != "y" {
		t.Fatalf("other key: %q %v", got, err)
	}
	after, _ := os.ReadFile(path)
	if bytes.Contains(after, entry[1+2*idLen:]) {
		t.Fatal("the destroyed wrapped key is still in keys.db")
	}
	// A new data key for the same key does not open the old records.
	if _, err := ks.Seal("kompar", "app-1", []byte("z"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Open("kompar", "app-1", rec, nil); !errors.Is(err, ErrShredded) {
		t.Fatalf("open with a new data key: %v", err)
	}
	// Reopened with the same master key: still gone.
	_ = ks.Close()
	ks2 := openKS(t, path, m)
	if _, err := ks2.Open("kompar", "app-1", rec, nil); !errors.Is(err, ErrShredded) {
		t.Fatalf("after reopen: %v", err)
	}
}

func TestRewrap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	old, cur := newKey(t), newKey(t)
	ks := openKS(t, path, old)
	var recs [][]byte
	for i := range 1200 {
		r, err := ks.Seal("p", string(rune('a'+i%26))+string(rune(i)), []byte("v"), nil)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	_ = ks.Close()
	ks = openKS(t, path, cur, old)
	calls := 0
	p, err := ks.Rewrap(context.Background(), func(RewrapProgress) { calls++ })
	if err != nil || p.Total != 1200 || p.Rewrapped != 1200 || calls < 3 {
		t.Fatalf("rewrap = %+v %v (%d calls)", p, err, calls)
	}
	_ = ks.Close()
	ks = openKS(t, path, cur) // the old master key is gone
	for i, r := range recs {
		if _, err := ks.Open("p", string(rune('a'+i%26))+string(rune(i)), r, nil); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	if p, err := ks.Rewrap(context.Background(), nil); err != nil || p.Current != 1200 || p.Rewrapped != 0 {
		t.Fatalf("second rewrap = %+v %v", p, err)
	}
	_ = ks.Close()
	// Without the master key that wraps them, data keys do not unwrap.
	ks = openKS(t, path, old)
	if _, err := ks.Open("p", "a\x00", recs[0], nil); !errors.Is(err, ErrUnknownMaster) {
		t.Fatalf("open with the wrong master key: %v", err)
	}
}

// TestConcurrentFirstSeals draws data keys for many keys at once, several
// callers per key: one data key per key, and every record opens.
func TestConcurrentFirstSeals(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	m := newKey(t)
	ks := openKS(t, path, m)
	type rec struct {
		key string
		v   []byte
	}
	out := make(chan rec, 64*4)
	var wg sync.WaitGroup
	for i := range 64 * 4 {
		wg.Go(func() {
			key := fmt.Sprintf("app-%d", i%64)
			v, err := ks.Seal("kompar", key, []byte(key), nil)
			if err != nil {
				t.Error(err)
				return
			}
			out <- rec{key, v}
		})
	}
	wg.Wait()
	close(out)
	_ = ks.Close()
	ks = openKS(t, path, m) // from the file, not the cache
	n := 0
	for r := range out {
		n++
		if got, err := ks.Open("kompar", r.key, r.v, nil); err != nil || string(got) != r.key {
			t.Fatalf("%s: %q %v", r.key, got, err)
		}
	}
	if n != 64*4 {
		t.Fatalf("%d records", n)
	}
}

func TestParseMasterKey(t *testing.T) {
	raw := bytes.Repeat([]byte{7}, 32)
	m, err := ParseMasterKey(" " + base64.StdEncoding.EncodeToString(raw) + "\n")
	if err != nil || len(m.ID()) != 16 {
		t.Fatalf("%v %v", m, err)
	}
	secret := base64.StdEncoding.EncodeToString(raw[:16])
	for _, bad := range []string{"not base64 !", secret} {
		_, err := ParseMasterKey(bad)
		if err == nil || strings.Contains(err.Error(), bad) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if DefaultPath("/var/lib/hookrelay/spool.db") != "/var/lib/hookrelay/keys.db" {
		t.Error(DefaultPath("/var/lib/hookrelay/spool.db"))
	}
}
