//go:build !unix

package spool

import "os"

// checkPerms: elsewhere (Windows) the permission bits do not say who may
// read the spool, so they are neither checked nor changed.
const checkPerms = false

func ownedByUs(os.FileInfo) bool { return false }
