package spool

import (
	"fmt"
	"os"
	"path/filepath"
)

// private keeps the spool to its owner (SPEC 11: it holds lenders'
// callbacks, with personal data). An existing file, or directory, that
// other users may read or write is chmod-ed to owner only (0600, 0700) when
// it is ours; a directory only when it is the spool's own (it holds no
// other directory), so that a spool put in a home or a system directory
// never changes that directory. Anything left open is warned about.
func private(path string, warn func(string, ...any)) {
	if warn == nil {
		warn = func(string, ...any) {}
	}
	dir := filepath.Dir(path)
	tighten(dir, dedicatedDir(dir), warn)
	tighten(path, true, warn)
}

// tighten removes group and other permissions of path when may allows it
// and path is ours, and warns either way.
func tighten(path string, may bool, warn func(string, ...any)) {
	fi, err := os.Lstat(path)
	if err != nil || !checkPerms {
		return
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		// chmod would follow the link: a link planted at the spool's path
		// would have a relay run as root change a file it does not own.
		warn("spool: is a symbolic link; the permissions of what it points to are left as they are", "path", path)
		return
	}
	if fi.Mode().Perm()&0o077 == 0 {
		return
	}
	was := fi.Mode().Perm()
	if may && ownedByUs(fi) {
		if err := os.Chmod(path, was&^0o077); err == nil {
			warn("spool: other users had access; permissions tightened", "path", path,
				"was", fmt.Sprintf("%04o", was), "now", fmt.Sprintf("%04o", was&^0o077))
			return
		}
	}
	warn("spool: other users have access; make it readable by the relay's user only", "path", path,
		"mode", fmt.Sprintf("%04o", was))
}

// dedicatedDir reports whether dir holds no directory, as a directory made
// for the spool does.
func dedicatedDir(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if e.IsDir() {
			return false
		}
	}
	return true
}
