package spool

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/maphash"

	bolt "go.etcd.io/bbolt"
)

// The dedup index. On disk there is one entry per dedup id, in
// idem_by_time: received (8 bytes BE) + provider + 0x00 + id -> event id.
// Lenders' ids are random (UUIDs), so an index on disk keyed by id puts
// every event of a commit on a page of its own: each one read, rewritten and
// written back, 50 µs of CPU an event more than ids in order
// (BenchmarkAppendParallelRandomIDs). The look-up by id is therefore kept in
// memory, and the file gets only the entry by time, which lands at the end
// of its bucket with the rest of the commit.
//
// The memory holds no id: a 64-bit fingerprint maps to the entry's received
// time, and a hit is confirmed by reading the exact key (time + id) from the
// file, so a fingerprint shared by two ids can never make one the duplicate
// of the other. The hash is seeded at random per process, so a sender cannot
// choose ids that share fingerprints; those that do by chance go to spill,
// keyed by the whole id. About 40 bytes an entry, rebuilt at Open and
// remade at its size when a purge leaves under a quarter of its peak.
type idemIndex struct {
	fp    func(ik []byte) uint64 // the fingerprint; tests make it collide
	at    map[uint64]int64       // fingerprint -> received (unix ns)
	peak  int                    // the most entries at has held since it was made
	spill map[string]int64       // provider + 0x00 + id -> received, when at holds its fingerprint for another id
	key   []byte                 // the by-time key being built; the writer's alone
	// undo lists the changes of the transaction under way, so that a
	// rolled-back transaction leaves the memory as the file is.
	undo []idemUndo
}

type idemUndo struct {
	fp    uint64
	ik    string // set for a change to spill
	prev  int64
	had   bool
	spill bool
}

func newIdemIndex() *idemIndex {
	seed := maphash.MakeSeed()
	return &idemIndex{
		fp:    func(ik []byte) uint64 { return maphash.Bytes(seed, ik) },
		at:    map[uint64]int64{},
		spill: map[string]int64{},
	}
}

// timeKey is ik's key in idem_by_time for an entry received at at. It is
// valid until the next call.
func (x *idemIndex) timeKey(at int64, ik []byte) []byte {
	x.key = binary.BigEndian.AppendUint64(x.key[:0], uint64(at))
	x.key = append(x.key, ik...)
	return x.key
}

// find returns the received time and event id of ik's entry.
func (x *idemIndex) find(byTime *bolt.Bucket, ik []byte) (at int64, eventID []byte, ok bool) {
	if at, ok := x.at[x.fp(ik)]; ok {
		if v := byTime.Get(x.timeKey(at, ik)); v != nil {
			return at, v, true
		}
	}
	if at, ok := x.spill[string(ik)]; ok {
		if v := byTime.Get(x.timeKey(at, ik)); v != nil {
			return at, v, true
		}
	}
	return 0, nil, false
}

// put writes ik's entry, received at at, for event id. ik must have none
// (find, then remove the old one).
func (x *idemIndex) put(byTime *bolt.Bucket, ik []byte, at int64, id string) error {
	if err := byTime.Put(x.timeKey(at, ik), []byte(id)); err != nil {
		return err
	}
	x.undo = append(x.undo, x.add(ik, at))
	return nil
}

// add puts ik's entry, received at at, in the memory, and returns how to
// take it out again.
func (x *idemIndex) add(ik []byte, at int64) idemUndo {
	fp := x.fp(ik)
	if _, taken := x.at[fp]; taken {
		// Another id's fingerprint: this one goes to spill.
		x.spill[string(ik)] = at
		return idemUndo{ik: string(ik), spill: true}
	}
	x.at[fp] = at
	x.peak = max(x.peak, len(x.at))
	return idemUndo{fp: fp}
}

// shrink moves the memory into a map of its present size when it holds
// under a quarter of its peak: a Go map keeps the room of its largest
// size, so a burst of events would otherwise hold its memory after its
// entries were purged. The writer's, in a transaction (Purge).
func (x *idemIndex) shrink() {
	if x.peak < 4096 || len(x.at) >= x.peak/4 {
		return
	}
	at := make(map[uint64]int64, len(x.at))
	for fp, t := range x.at {
		at[fp] = t
	}
	x.at, x.peak = at, len(at)
}

// remove deletes ik's entry received at at, from the file and the memory.
func (x *idemIndex) remove(byTime *bolt.Bucket, ik []byte, at int64) error {
	if err := byTime.Delete(x.timeKey(at, ik)); err != nil {
		return err
	}
	x.forget(ik, at)
	return nil
}

// forget drops ik's entry received at at from the memory only. Spill is
// looked at first: an id there shares its fingerprint with the one in at,
// perhaps even its received time.
func (x *idemIndex) forget(ik []byte, at int64) {
	if cur, ok := x.spill[string(ik)]; ok && cur == at {
		x.undo = append(x.undo, idemUndo{ik: string(ik), prev: cur, had: true, spill: true})
		delete(x.spill, string(ik))
		return
	}
	fp := x.fp(ik)
	if cur, ok := x.at[fp]; ok && cur == at {
		x.undo = append(x.undo, idemUndo{fp: fp, prev: cur, had: true})
		delete(x.at, fp)
	}
}

// begin starts a transaction's changes; rollback undoes them.
func (x *idemIndex) begin() { x.undo = x.undo[:0] }

func (x *idemIndex) rollback() {
	for i := len(x.undo) - 1; i >= 0; i-- {
		u := x.undo[i]
		switch {
		case u.spill && u.had:
			x.spill[u.ik] = u.prev
		case u.spill:
			delete(x.spill, u.ik)
		case u.had:
			x.at[u.fp] = u.prev
		default:
			delete(x.at, u.fp)
		}
	}
	x.undo = x.undo[:0]
}

// loadIdem fills the memory from idem_by_time. The bucket's
// pages lie all over the file (each commit writes some), so the walk goes
// in chunks with the mapping released between them (mapped_linux.go):
// otherwise the kernel's read-around maps most of the file into the
// resident set.
func (b *Bolt) loadIdem() error {
	x := b.idem
	var after []byte
	for done := false; !done; {
		err := b.view(func(tx *bolt.Tx) error {
			byTime := tx.Bucket(bucketIdemByTime)
			c := byTime.Cursor()
			k, _ := past(c, after)
			for n := 0; k != nil && n < releaseEvery*pendingChunk; k, _ = c.Next() {
				x.add(k[8:], int64(binary.BigEndian.Uint64(k)))
				after = append(after[:0], k...)
				n++
			}
			done = k == nil
			return nil
		})
		if err != nil {
			return fmt.Errorf("spool: read the dedup index: %w", err)
		}
		b.releaseMapped()
	}
	return nil
}

// migrateIdemChunk is how many entries one transaction of migrateIdem
// moves; tests make it small.
var migrateIdemChunk = 10_000

// migrateIdem moves a spool written before the index moved to memory: its
// idem bucket (provider + 0x00 + id -> received + event id) gives each
// idem_by_time entry its event id, chunk by chunk, and is then deleted. An
// entry by time without its entry by id was no longer a dedup entry, and
// goes. An interrupted move starts again; the entries it filled are skipped.
func migrateIdem(db *bolt.DB) error {
	var after []byte
	for done := false; !done; {
		err := db.Update(func(tx *bolt.Tx) error {
			idem := tx.Bucket(bucketIdemByID)
			if idem == nil {
				done = true
				return nil
			}
			byTime := tx.Bucket(bucketIdemByTime)
			type change struct{ k, id []byte }
			var todo []change
			c := byTime.Cursor()
			k, v := past(c, after)
			for ; k != nil && len(todo) < migrateIdemChunk; k, v = c.Next() {
				if len(v) > 0 {
					continue
				}
				var id []byte // nil: delete
				if e := idem.Get(k[8:]); len(e) > 8 && bytes.Equal(e[:8], k[:8]) {
					id = bytes.Clone(e[8:])
				}
				todo = append(todo, change{bytes.Clone(k), id})
			}
			for _, ch := range todo {
				var err error
				if ch.id == nil {
					err = byTime.Delete(ch.k)
				} else {
					err = byTime.Put(ch.k, ch.id)
				}
				if err != nil {
					return err
				}
			}
			if k == nil {
				done = true
				return tx.DeleteBucket(bucketIdemByID)
			}
			after = todo[len(todo)-1].k
			return nil
		})
		if err != nil {
			return fmt.Errorf("spool: move the dedup index: %w", err)
		}
	}
	return nil
}
