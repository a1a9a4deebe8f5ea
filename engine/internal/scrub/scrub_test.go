package scrub

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestFreeLeavesNothingOfDeleted deletes records holding a canary, sees the
// canary still in the file (on the pages the deletion freed), scrubs, and
// sees it gone while the records kept are still there and readable.
func TestFreeLeavesNothingOfDeleted(t *testing.T) {
	for _, opts := range []*bolt.Options{nil, {NoFreelistSync: true, FreelistType: bolt.FreelistMapType}} {
		t.Run(fmt.Sprintf("%+v", opts), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.db")
			db, err := bolt.Open(path, 0o600, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = db.Close() }()
			const gone, kept = "CANARY-GONE-193101017771", "CANARY-KEPT-194403039993"
			err = db.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket([]byte("records"))
				if err != nil {
					return err
				}
				for i := range 3000 {
					who := kept
					if i%3 == 0 {
						who = gone
					}
					if err := b.Put(fmt.Appendf(nil, "%s/%05d", who, i), bytes.Repeat([]byte(who), 8)); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error {
				c := tx.Bucket([]byte("records")).Cursor()
				for k, _ := c.Seek([]byte(gone)); k != nil && bytes.HasPrefix(k, []byte(gone)); k, _ = c.Seek([]byte(gone)) {
					if err := c.Delete(); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !fileHas(t, path, gone) {
				t.Fatal("the deleted canary is not in the file before the scrub: the test cannot see what it looks for")
			}
			n, err := Free(db)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Error("no page filled")
			}
			if fileHas(t, path, gone) {
				t.Errorf("the deleted canary is still in the file after the scrub of %d pages", n)
			}
			if !fileHas(t, path, kept) {
				t.Error("the kept records are gone from the file")
			}
			err = db.View(func(tx *bolt.Tx) error {
				if tx.Bucket(bucket) != nil {
					t.Error("the filler bucket was left behind")
				}
				if got := tx.Bucket([]byte("records")).Stats().KeyN; got != 2000 {
					t.Errorf("%d records kept, want 2000", got)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func fileHas(t *testing.T, path, s string) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, []byte(s))
}
