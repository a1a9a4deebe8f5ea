//go:build unix

package spool

import (
	"os"
	"syscall"
)

// checkPerms: Unix permission bits say who may read the spool.
const checkPerms = true

// ownedByUs reports whether this process's user owns the file, so that a
// chmod changes only what is the relay's.
func ownedByUs(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}
