package spool

import "errors"

var (
	// ErrNotFound is returned by Delivery and Event when nothing is stored under
	// the id, and by Update when the delivery it names is not stored.
	ErrNotFound = errors.New("spool: not found")
	// ErrClosed is returned by writes, and by Bolt's reads, after Close.
	ErrClosed = errors.New("spool: closed")
	// ErrExists is returned by Append when an event with the same ID is
	// already stored (a duplicate ULID, not a duplicate idempotency id).
	ErrExists = errors.New("spool: event exists")
)

// ErrSealed is returned by reads of a sealed record when the spool was opened
// without a Sealer (privacy is configured off, or its key is missing).
var ErrSealed = errors.New("spool: record is sealed and no privacy key is configured")
