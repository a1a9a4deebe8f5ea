package seal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hookrelay/hookrelay/engine/internal/scrub"
	bolt "go.etcd.io/bbolt"
)

// Store keeps the keystore's entries (provider 0x00 key -> wrapped data
// key): a bbolt file (Open), or what the caller gives OpenStore. The
// Keystore never calls Delete at the same time as another method.
type Store interface {
	// Get returns the entry of ek, nil when there is none.
	Get(ek []byte) ([]byte, error)
	// Put stores a new entry durably, or returns ErrEntryExists when
	// another writer stored one for ek first (a store shared by relays).
	Put(ek, v []byte) error
	// Delete removes the entry of ek, leaving no copy of it in the store's
	// own files; found reports whether there was one.
	Delete(ek []byte) (found bool, err error)
	// Update visits up to n entries after the key after (nil: from the
	// first), in key order, and stores what fn returns for each (nil:
	// unchanged). It returns the last key visited and how many were.
	Update(after []byte, n int, fn func(ek, v []byte) ([]byte, error)) (last []byte, visited int, err error)
	// Each calls fn with every entry.
	Each(fn func(ek, v []byte) error) error
	// Where names the store for operators: its file, or its stream.
	Where() string
	// Close closes the store.
	Close() error
}

// ErrEntryExists is returned by a Store's Put when the key has an entry.
var ErrEntryExists = errors.New("seal: keystore entry exists")

// boltStore is the keystore file (keys.db).
type boltStore struct {
	path string
	db   *bolt.DB
}

// openBolt opens or creates the keystore file at path.
func openBolt(path string) (*boltStore, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	db, err := openDB(path)
	if err != nil {
		return nil, err
	}
	return &boltStore{path: path, db: db}, nil
}

func openDB(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("seal: open keystore %s: %w", path, err)
	}
	// New data keys wait at most this long to share a commit.
	db.MaxBatchDelay = time.Millisecond
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketKeys); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if v := meta.Get([]byte("format")); v != nil && !bytes.Equal(v, []byte{entryFormat}) {
			return fmt.Errorf("unknown keystore format %x", v)
		}
		return meta.Put([]byte("format"), []byte{entryFormat})
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("seal: keystore %s: %w", path, err)
	}
	return db, nil
}

func (b *boltStore) Where() string { return b.path }

func (b *boltStore) Close() error { return b.db.Close() }

func (b *boltStore) Get(ek []byte) ([]byte, error) {
	var v []byte
	err := b.db.View(func(tx *bolt.Tx) error {
		v = bytes.Clone(tx.Bucket(bucketKeys).Get(ek))
		return nil
	})
	return v, err
}

// Put shares a commit with concurrent callers (bbolt's Batch), so that the
// first events of many keys do not queue behind one fsync each.
func (b *boltStore) Put(ek, v []byte) error {
	return b.db.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketKeys).Put(ek, v)
	})
}

// Delete deletes the entry and, since bbolt leaves a deleted value's bytes
// on the freed page, overwrites the file's free pages in place, so that the
// wrapped key is not left in it.
func (b *boltStore) Delete(ek []byte) (bool, error) {
	found := false
	err := b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketKeys)
		if bk.Get(ek) == nil {
			return nil
		}
		found = true
		return bk.Delete(ek)
	})
	if err != nil || !found {
		return found, err
	}
	if _, err := scrub.Free(b.db); err != nil {
		return true, fmt.Errorf("seal: keystore: scrub: %w", err)
	}
	return true, nil
}

func (b *boltStore) Update(after []byte, n int, fn func(ek, v []byte) ([]byte, error)) (last []byte, visited int, err error) {
	err = b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketKeys)
		c := bk.Cursor()
		ek, v := c.First()
		if after != nil {
			if ek, v = c.Seek(after); bytes.Equal(ek, after) {
				ek, v = c.Next()
			}
		}
		type put struct{ k, v []byte }
		var puts []put
		for ; ek != nil && visited < n; ek, v = c.Next() {
			visited++
			last = bytes.Clone(ek)
			nv, err := fn(ek, v)
			if err != nil {
				return err
			}
			if nv != nil {
				puts = append(puts, put{bytes.Clone(ek), nv})
			}
		}
		// Written after the cursor is done with the bucket.
		for _, pt := range puts {
			if err := bk.Put(pt.k, pt.v); err != nil {
				return err
			}
		}
		return nil
	})
	return last, visited, err
}

func (b *boltStore) Each(fn func(ek, v []byte) error) error {
	return b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketKeys).ForEach(fn)
	})
}
