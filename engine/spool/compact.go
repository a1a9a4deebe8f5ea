package spool

// bbolt never gives disk space back: pages freed by Purge are reused by later
// writes, but the file keeps its high-water size. After a backlog has been
// delivered and purged, Compact rewrites the live data into a new file and
// swaps it in, offline (the relay must be stopped: it holds the file's lock).

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrLocked is returned (wrapped) by Compact when another process, a running
// relay, holds the spool's lock.
var ErrLocked = errors.New("spool is locked by another process (is the relay running?)")

// compactSuffix names the temporary file Compact writes next to the spool. A
// crash leaves at most this file behind: Open never reads it, and the next
// Compact removes it first.
const compactSuffix = ".compact"

// defaultCompactTxMaxSize is CompactOptions.TxMaxSize when it is zero.
const defaultCompactTxMaxSize = 16 << 20

// lockTimeout is how long Open and Compact wait for the spool's lock.
const lockTimeout = time.Second

// CompactOptions configure Compact. The zero value is the default.
type CompactOptions struct {
	// TxMaxSize bounds the key and value bytes copied per transaction into
	// the new file, so that memory stays bounded on a large spool; 0 means
	// 16 MiB.
	TxMaxSize int64
	// HoldLock is how long the old file's lock is kept after the new file
	// has replaced it; 0 means lockTimeout plus a margin. A process that
	// opened the old file just before the swap and waits for its lock gives
	// up (Open's one-second timeout) instead of running on the replaced
	// file. Tests shorten it.
	HoldLock time.Duration
}

// boltOptions are the spool's bbolt options, for Open and Compact alike, so
// that a compacted spool is what Open would have made.
func boltOptions() *bolt.Options {
	return &bolt.Options{
		// A second process gets an error after a second rather than waiting.
		Timeout:      lockTimeout,
		FreelistType: bolt.FreelistMapType,
		// The freelist is not written on each commit: with a fragmented file
		// it is many pages per fsync, on the path every webhook waits on.
		// It is safe: bbolt rebuilds the freelist by scanning the file on
		// open after a crash; Close writes it for a quick clean start. etcd
		// makes the same choice.
		NoFreelistSync: true,
	}
}

// Compact rewrites the closed spool at path without its free pages and
// returns the file's size before and after. It takes the spool's lock for
// the whole run (waiting at most a second, like Open): a running relay makes
// it fail with ErrLocked, and a relay cannot start while it runs.
//
// The live data is copied with bolt.Compact into path+".compact", which is
// synced, trimmed to its last used page and renamed over path; the directory
// is synced after the rename. Until the rename the original is untouched, so
// a crash at any point leaves either the old file or the new one, complete,
// at path, and at most a stale temporary file, which the next Compact
// removes.
func Compact(path string, opts ...CompactOptions) (before, after int64, err error) {
	var o CompactOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.TxMaxSize <= 0 {
		o.TxMaxSize = defaultCompactTxMaxSize
	}
	if o.HoldLock <= 0 {
		o.HoldLock = lockTimeout + lockTimeout/2
	}
	fi, err := os.Stat(path)
	if err != nil {
		// Never create an empty spool where none was.
		return 0, 0, fmt.Errorf("spool: compact: %w", err)
	}
	before = fi.Size()

	// Read-write, so that the lock is exclusive: a second Compact, or a
	// relay starting, waits for it and times out.
	src, err := bolt.Open(path, 0o600, boltOptions())
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return before, 0, fmt.Errorf("spool: compact %s: %w: %w", path, ErrLocked, err)
		}
		return before, 0, fmt.Errorf("spool: compact: open %s: %w", path, err)
	}
	swapped := false
	defer func() {
		if swapped {
			// See CompactOptions.HoldLock.
			time.Sleep(o.HoldLock)
		}
		if cerr := src.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("spool: compact: close %s: %w", path, cerr)
		}
	}()

	tmp := path + compactSuffix
	// A leftover of a crashed Compact: nobody else writes it while we hold
	// the lock on path.
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return before, 0, fmt.Errorf("spool: compact: remove stale %s: %w", tmp, err)
	}
	// On failure tmp is only litter: the compaction's error is the one to
	// report, and the next Compact removes what this one could not.
	if err := compactInto(src, tmp, o.TxMaxSize); err != nil {
		_ = os.Remove(tmp)
		return before, 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return before, 0, fmt.Errorf("spool: compact: %w", err)
	}
	swapped = true
	if err := syncDir(filepath.Dir(path)); err != nil {
		// The rename is done; only its durability across a power loss is in
		// doubt, and either file is a complete spool.
		return before, 0, fmt.Errorf("spool: compact: sync directory: %w", err)
	}
	fi, err = os.Stat(path)
	if err != nil {
		return before, 0, fmt.Errorf("spool: compact: %w", err)
	}
	return before, fi.Size(), nil
}

// compactInto copies src into a new bbolt file at tmp, then trims tmp to its
// last used page and syncs it.
func compactInto(src *bolt.DB, tmp string, txMaxSize int64) error {
	o := boltOptions()
	// Each intermediate commit need not reach the disk: one sync at the end
	// covers them, and until the rename nobody relies on tmp.
	o.NoSync = true
	dst, err := bolt.Open(tmp, 0o600, o)
	if err != nil {
		return fmt.Errorf("spool: compact: create %s: %w", tmp, err)
	}
	// On failure tmp is discarded: only the first error matters.
	if err := bolt.Compact(dst, src, txMaxSize); err != nil {
		_ = dst.Close()
		return fmt.Errorf("spool: compact: copy: %w", err)
	}
	// The high-water mark: every page at or past it is unused. Below the
	// allocation size bbolt grows the file by doubling its memory map, which
	// can leave the new file up to twice its data; the tail is trimmed.
	var used int64
	if err := dst.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil }); err != nil {
		_ = dst.Close()
		return fmt.Errorf("spool: compact: %w", err)
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("spool: compact: close %s: %w", tmp, err)
	}
	f, err := os.OpenFile(tmp, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("spool: compact: %w", err)
	}
	if fi, err := f.Stat(); err == nil && used > 0 && fi.Size() > used {
		if err := f.Truncate(used); err != nil {
			_ = f.Close()
			return fmt.Errorf("spool: compact: trim %s: %w", tmp, err)
		}
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("spool: compact: sync %s: %w", tmp, err)
	}
	return f.Close()
}

// syncDir fsyncs a directory, so that a rename in it survives a power loss.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return err
	}
	return d.Close()
}
