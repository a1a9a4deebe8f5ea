// Package scrub overwrites the free pages of a bbolt file. bbolt copies a
// page on every write and leaves the old copy on disk, unchanged, until it
// reuses the page: bytes a deletion removed stay readable in the file. The
// spool and the keystore scrub after an erasure (SPEC 11), so that a scan of
// the file finds nothing of an erased key.
//
// It is the step after a deletion and imports only bbolt.
package scrub

import (
	"encoding/binary"
	"errors"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// bucket holds the filler while a scrub runs; its name cannot clash with
// the callers' buckets, which are printable.
var bucket = []byte("\x00scrub")

const (
	// rounds: pages a reader still held during the first round were not
	// free to take; readers are short, so a second round finds them free.
	rounds = 2
	// pagesPerTx bounds one filler transaction, so that other writers get
	// their turn while a large file is scrubbed.
	pagesPerTx = 2048
	// perPage filler values make one leaf page: small enough that leaves
	// split at bbolt's default fill and each is written as one page, which
	// any single free page can take.
	perPage = 4
)

// Free fills every free and pending page of db with filler, in transactions
// of a bounded size, then deletes the filler: the pages are free again, and
// hold zeros where the deleted records were. It returns how many pages it
// filled. It writes about as much as the free pages add up to.
func Free(db *bolt.DB) (int, error) {
	value := make([]byte, db.Info().PageSize/(2*perPage))
	filled := 0
	for range rounds {
		s := db.Stats()
		n := s.FreePageN + s.PendingPageN
		if n == 0 {
			break
		}
		for done := 0; done < n; done += pagesPerTx {
			first, last := done*perPage, min(n, done+pagesPerTx)*perPage
			err := db.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucketIfNotExists(bucket)
				if err != nil {
					return err
				}
				var k [8]byte
				for i := first; i < last; i++ {
					binary.BigEndian.PutUint64(k[:], uint64(i))
					if err := b.Put(k[:], value); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return filled, err
			}
		}
		filled += n
		err := db.Update(func(tx *bolt.Tx) error {
			if err := tx.DeleteBucket(bucket); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
				return err
			}
			return nil
		})
		if err != nil {
			return filled, err
		}
	}
	return filled, nil
}
