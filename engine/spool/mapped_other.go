//go:build !linux

package spool

// releaseMapped is a Linux-only resident-set measure (see mapped_linux.go).
func (b *Bolt) releaseMapped() {}
