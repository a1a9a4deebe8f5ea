package spool

import (
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// releaseMapped drops this process's page-table entries for the spool file,
// after a scan that touched much of it (the queues rebuilt at start, a
// purge). bbolt reads through a shared read-only mapping and writes with
// pwrite, so the pages are clean page cache: the kernel keeps them, the next
// read maps them back, and nothing but resident-set accounting changes.
// Without it a restart with a million queued events "holds" 600 MiB of file
// pages, mapped 16 at a time by the kernel's fault-around while the queue
// pages, interleaved with the events', are read.
func (b *Bolt) releaseMapped() {
	// The read transaction holds bbolt's mmap lock: the mapping cannot be
	// replaced while we advise on it, and tx.Size() lies within it.
	_ = b.db.View(func(tx *bolt.Tx) error {
		_, _, errno := syscall.Syscall(syscall.SYS_MADVISE, b.db.Info().Data, uintptr(tx.Size()), syscall.MADV_DONTNEED)
		if errno != 0 {
			return errno
		}
		return nil
	})
}
