package jetstream_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/hookrelay/hookrelay/engine/seal"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream"
)

func masterKey(t *testing.T) *seal.MasterKey {
	t.Helper()
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	m, err := seal.ParseMasterKey(base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func openKeystore(t *testing.T, stream string, current *seal.MasterKey, previous ...*seal.MasterKey) *seal.Keystore {
	t.Helper()
	keys, err := jetstream.OpenKeys(context.Background(), jetstream.Options{URLs: []string{srv.ClientURL()}, Stream: stream})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := seal.OpenStore(keys, current, previous...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ks.Close() })
	return ks
}

// serverFiles reads every file the server keeps for stream.
func serverFiles(t *testing.T, stream string) []byte {
	t.Helper()
	var out []byte
	err := filepath.WalkDir(filepath.Join(srv.Dir, "jetstream", "$G", "streams", stream), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out = append(out, b...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestKeystoreOnJetStream: the data keys kept in a stream of their own
// seal and open records from any relay, a key drawn by two relays at once
// is one key, erasure overwrites the wrapped key on the server's disk, and
// a rotation re-wraps every key.
func TestKeystoreOnJetStream(t *testing.T) {
	stream := newStream()
	m := masterKey(t)
	a, b := openKeystore(t, stream, m), openKeystore(t, stream, m)
	if a.Path() != "jetstream stream "+stream+"_KEYS" {
		t.Errorf("path %q", a.Path())
	}
	rec, err := a.Seal("bank", "app-1", []byte("ssn 19121212-1212"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	// b has no data key of its own for app-1 cached: it reads a's.
	if got, err := b.Open("bank", "app-1", rec, []byte("aad")); err != nil || string(got) != "ssn 19121212-1212" {
		t.Fatalf("another relay opens: %q, %v", got, err)
	}
	// Both draw a key for app-2 without seeing each other's: one wins, and
	// each opens the other's record.
	ra, err := a.Seal("bank", "app-2", []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.Seal("bank", "app-2", []byte("y"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Open("bank", "app-2", ra, nil); err != nil || string(got) != "x" {
		t.Fatalf("b opens a's app-2 record: %q, %v", got, err)
	}
	if got, err := a.Open("bank", "app-2", rb, nil); err != nil || string(got) != "y" {
		t.Fatalf("a opens b's app-2 record: %q, %v", got, err)
	}
	if total, current, err := a.Census(); err != nil || total != 2 || current != 2 {
		t.Fatalf("census %d %d %v, want 2 keys under the current master", total, current, err)
	}

	// Erasure: the wrapped key leaves the server's files.
	keysStream := stream + "_KEYS"
	raw, err := jetstream.OpenKeys(context.Background(), jetstream.Options{URLs: []string{srv.ClientURL()}, Stream: stream})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = raw.Close() }()
	entry, err := raw.Get([]byte("bank\x00app-1"))
	if err != nil || len(entry) < 40 {
		t.Fatalf("entry of app-1: %x, %v", entry, err)
	}
	wrapped := entry[17:] // after format, master key id and data key id
	if !bytes.Contains(serverFiles(t, keysStream), wrapped) {
		t.Fatal("the wrapped key is not where the test looks for it")
	}
	if err := a.Destroy("bank", "app-1"); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(serverFiles(t, keysStream), wrapped) {
		t.Fatal("the destroyed wrapped key is still in the server's files")
	}
	if _, err := a.Open("bank", "app-1", rec, []byte("aad")); !errors.Is(err, seal.ErrShredded) {
		t.Fatalf("open after destroy: %v, want ErrShredded", err)
	}
	fresh := openKeystore(t, stream, m)
	if _, err := fresh.Open("bank", "app-1", rec, []byte("aad")); !errors.Is(err, seal.ErrShredded) {
		t.Fatalf("a relay started after the erasure opens: %v, want ErrShredded", err)
	}

	// b still caches the destroyed key; a record under the key drawn
	// again after the erasure opens there all the same.
	again, err := a.Seal("bank", "app-1", []byte("new"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Open("bank", "app-1", again, nil); err != nil || string(got) != "new" {
		t.Fatalf("another relay opens a record under the key drawn again: %q, %v", got, err)
	}

	// Rotation: a new master key re-wraps the keys left; the old one can go.
	m2 := masterKey(t)
	rot := openKeystore(t, stream, m2, m)
	p, err := rot.Rewrap(context.Background(), nil)
	if err != nil || p.Total != 2 || p.Rewrapped != 2 {
		t.Fatalf("rewrap %+v, %v", p, err)
	}
	only := openKeystore(t, stream, m2)
	if got, err := only.Open("bank", "app-2", ra, nil); err != nil || string(got) != "x" {
		t.Fatalf("after the rotation, with the new master key only: %q, %v", got, err)
	}
}
