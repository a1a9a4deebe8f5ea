package spool

// Bolt keeps everything in one bbolt file. Top-level buckets:
//
//	events        ULID (16 bytes)                    -> Event (codec.go: binary header, envelope, raw)
//	deliveries    ULID (16 bytes) + destination      -> Delivery (codec.go, binary)
//	queue         one nested bucket per destination:
//	                seq (8 bytes, big endian)        -> ULID (16 bytes) + status, next attempt,
//	                                                    sequence and key (ops.go)
//	idem_by_time  received (unix ns, 8 bytes BE) + provider + 0x00 + idempotency id -> event id
//	              (the look-up by id is in memory: idem.go)
//	quarantine    ULID (16 bytes)                    -> JSON Quarantined, or sealed (privacy.go)
//	poll          one nested bucket per provider:
//	                key                              -> JSON PollState, or sealed (privacy.go)
//	last_sequence destination + 0x00 + key           -> highest sequence released (8 bytes BE)
//	paused        destination                        -> empty
//
// Deliveries are keyed by event first, so that one event's deliveries are a
// prefix scan (Purge, the admin event detail) and Delivery(dest, id) is still a
// single Get. The queue holds every delivery that is not final, so the
// dispatcher rebuilds its queues from it alone. Seq is the queue bucket's
// NextSequence, taken once per event inside the writer's transaction, so it is
// commit order. ULIDs start with their time, so events are stored oldest first
// and Purge stops at the cutoff. Dedup entries are scoped by provider, since two
// lenders may well use the same ids; idem_by_time, in time order, lets Purge
// visit expired entries only.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var (
	bucketEvents     = []byte("events")
	bucketDeliveries = []byte("deliveries")
	bucketQueue      = []byte("queue")
	bucketIdemByTime = []byte("idem_by_time")
	// bucketIdemByID: provider 0x00 id -> received + event id, the dedup
	// index on disk before it moved to memory; migrateIdem retires it.
	bucketIdemByID   = []byte("idem")
	bucketQuarantine = []byte("quarantine")
	// bucketLastSeq: dest 0x00 provider 0x00 key -> the highest sequence
	// (8B BE) released to dest for the provider's key, so sequence order
	// survives restarts (SPEC 5.3).
	bucketLastSeq = []byte("last_sequence_by_provider")
	// bucketLastSeqShared: dest 0x00 key -> the same, as written before keys
	// were scoped by provider; read when a key has no entry above.
	bucketLastSeqShared = []byte("last_sequence")
	// bucketPaused: dest -> nothing, for each paused destination.
	bucketPaused = []byte("paused")
	// bucketPoll: provider -> key -> JSON PollState, the status poller's
	// keys (SPEC 9).
	bucketPoll = []byte("poll")
)

// defaultMaxBatch is Options.MaxBatch when it is zero.
const defaultMaxBatch = 512

// Options configure Open.
type Options struct {
	// MaxBatch bounds how many write operations one transaction holds; 0 means 512.
	MaxBatch int
	// Committed, when set, is called by the writer goroutine after each commit
	// with the deliveries that commit added (one Ref per event x destination),
	// in commit (Seq) order, before the appenders are answered. It must not
	// block long: every write waits for it. Nil means no call.
	Committed func([]Ref)
	// Warn, when set, is told (as slog's Logger.Warn) about an existing
	// spool file or directory that other users could read: Open tightens
	// it where it may. Nil means no call.
	Warn func(msg string, args ...any)
	// Sealer, when set, seals every record that holds request or response
	// content under its event's provider and key (privacy.go, SPEC 11).
	// Nil means plaintext records, in the forms written before privacy.
	Sealer Sealer
}

// Bolt is the bbolt Spool. One writer goroutine applies all writes, as many
// as are queued in one transaction (group commit), so that concurrent
// requests share one fsync.
type Bolt struct {
	db        *bolt.DB
	path      string
	maxBatch  int
	committed func([]Ref)
	sealer    Sealer // nil: plaintext
	idem      *idemIndex

	// mu guards closed and the send on ops, so that Close never closes ops
	// under a sender.
	mu      sync.RWMutex
	closed  bool
	ops     chan *op
	stopped chan struct{} // closed when the writer has drained ops

	// retried counts batches rolled back because one of their operations
	// failed, commits the transactions committed; tests read them.
	retried atomic.Int64
	commits atomic.Int64
}

var _ Store = (*Bolt)(nil)

// op is one write. apply runs inside the writer's transaction and may run
// more than once (when its batch is rolled back), so it must set all its
// results afresh each time. It returns the deliveries it queued.
type op struct {
	apply func(tx *bolt.Tx) ([]Ref, error)
	done  chan error // buffered, answered once
}

// Open opens or creates the spool at path, creating its parent directories
// (0700, the file 0600) and tightening existing ones (Options.Warn).
// A second process opening the same file gets an error after a second
// rather than waiting for the lock.
func Open(path string, opts Options) (*Bolt, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	private(path, opts.Warn)
	db, err := bolt.Open(path, 0o600, boltOptions())
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("spool: %s: %w: %w", path, ErrLocked, err)
		}
		return nil, fmt.Errorf("spool: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketEvents, bucketDeliveries, bucketQueue, bucketIdemByTime, bucketQuarantine, bucketLastSeq, bucketLastSeqShared, bucketPaused, bucketPoll} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close() // the buckets' error is the one to report
		return nil, fmt.Errorf("spool: create buckets in %s: %w", path, err)
	}
	if err := migrateIdem(db); err != nil {
		_ = db.Close()
		return nil, err
	}
	b := &Bolt{
		db:        db,
		path:      path,
		maxBatch:  opts.MaxBatch,
		committed: opts.Committed,
		sealer:    opts.Sealer,
		idem:      newIdemIndex(),
		stopped:   make(chan struct{}),
	}
	if b.maxBatch <= 0 {
		b.maxBatch = defaultMaxBatch
	}
	if err := b.loadIdem(); err != nil {
		_ = db.Close()
		return nil, err
	}
	b.ops = make(chan *op, b.maxBatch)
	go b.run()
	return b, nil
}

// submit hands apply to the writer and waits for its commit. ctx bounds only
// the wait for a place in the queue: once queued, the write may commit, so
// the caller waits to hear whether it did (a commit takes milliseconds).
func (b *Bolt) submit(ctx context.Context, apply func(tx *bolt.Tx) ([]Ref, error)) error {
	o := &op{apply: apply, done: make(chan error, 1)}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return ErrClosed
	}
	select {
	case b.ops <- o:
	case <-ctx.Done():
		b.mu.RUnlock()
		return ctx.Err()
	}
	b.mu.RUnlock()
	return <-o.done
}

// run is the writer: it takes whatever writes are queued, up to maxBatch,
// and commits them in one transaction.
func (b *Bolt) run() {
	defer close(b.stopped)
	batch := make([]*op, 0, b.maxBatch)
	for o := range b.ops {
		batch = append(batch[:0], o)
	fill:
		for len(batch) < b.maxBatch {
			select {
			case o, ok := <-b.ops:
				if !ok {
					break fill
				}
				batch = append(batch, o)
			default:
				break fill
			}
		}
		b.commit(batch)
	}
}

// opError marks the operation whose error rolled its batch back.
type opError struct {
	i   int
	err error
}

func (e *opError) Error() string { return e.err.Error() }

// commit applies batch in one transaction and answers each op. When one op
// fails, the transaction is rolled back; the others are committed without it
// and the failed one is re-run alone, so that it fails only itself (as
// bbolt's db.Batch does). It may have failed only because of an op before
// it, which its solo run settles.
func (b *Bolt) commit(batch []*op) {
	var refs []Ref
	b.idem.begin()
	err := b.db.Update(func(tx *bolt.Tx) error {
		refs = refs[:0]
		fillAscending(tx)
		for i, o := range batch {
			r, err := o.apply(tx)
			if err != nil {
				return &opError{i: i, err: err}
			}
			refs = append(refs, r...)
		}
		return nil
	})
	if err != nil {
		b.idem.rollback()
	}
	var oe *opError
	switch {
	case err == nil:
		b.commits.Add(1)
		if b.committed != nil && len(refs) > 0 {
			b.committed(refs)
		}
		for _, o := range batch {
			o.done <- nil
		}
	case len(batch) == 1 && errors.As(err, &oe):
		batch[0].done <- oe.err
	case errors.As(err, &oe):
		b.retried.Add(1)
		failed := batch[oe.i]
		rest := slices.Concat(batch[:oe.i], batch[oe.i+1:])
		b.commit(rest)
		b.commit([]*op{failed})
	default:
		// The commit itself failed (disk full, I/O error): nothing was
		// written, and retrying the ops one by one would fail the same way.
		for _, o := range batch {
			o.done <- fmt.Errorf("spool: commit: %w", err)
		}
	}
}

// ascendingFill is how full bbolt fills a page it splits, in the buckets
// whose keys mostly arrive in ascending order (ULIDs, queue sequence
// numbers, receive times). bbolt's default, half full, suits random inserts;
// for ours it left every page half empty and the file at 2.7 times its data.
const ascendingFill = 0.9

// fillAscending sets ascendingFill on tx's ascending buckets. A write
// transaction keeps the *Bucket it hands out, so the ops see the setting.
func fillAscending(tx *bolt.Tx) {
	for _, name := range [][]byte{bucketEvents, bucketDeliveries, bucketIdemByTime, bucketQuarantine} {
		tx.Bucket(name).FillPercent = ascendingFill
	}
	q := tx.Bucket(bucketQueue)
	_ = q.ForEachBucket(func(dest []byte) error {
		q.Bucket(dest).FillPercent = ascendingFill
		return nil
	})
}

// Close stops taking writes, waits for the queued ones to commit and closes
// the file. Later writes and reads return ErrClosed; a second Close returns nil.
func (b *Bolt) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.ops)
	b.mu.Unlock()
	<-b.stopped
	// A clean stop writes the freelist once, so that the next open reads it
	// instead of walking every page of the file (seconds, and the whole file
	// mapped in, with a million events queued). After a crash the walk
	// still happens, as it must.
	b.db.NoFreelistSync = false
	err := b.db.Update(func(*bolt.Tx) error { return nil })
	return errors.Join(err, b.db.Close())
}

// Size is the size of the spool file in bytes, 0 if it cannot be read.
func (b *Bolt) Size() int64 {
	fi, err := os.Stat(b.path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// Check runs bbolt's consistency check over the whole file and returns the
// first problem found, or nil.
func (b *Bolt) Check() error {
	return b.view(func(tx *bolt.Tx) error {
		var first error
		// Drain the channel: the checker goroutine blocks until it is read.
		for err := range tx.Check() {
			if first == nil {
				first = err
			}
		}
		return first
	})
}

// view runs fn in a read transaction, reporting a closed database as ErrClosed.
func (b *Bolt) view(fn func(tx *bolt.Tx) error) error {
	err := b.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// parseID returns the 16 key bytes of a ULID.
func parseID(id string) ([]byte, error) {
	u, err := ulid.ParseStrict(id)
	if err != nil {
		return nil, fmt.Errorf("spool: id %q: %w", id, err)
	}
	return u[:], nil
}

// deliveryKey is the deliveries key of one event's delivery to dest.
func deliveryKey(id []byte, dest string) []byte {
	k := make([]byte, 0, len(id)+len(dest))
	return append(append(k, id...), dest...)
}

// u64 encodes v big endian, so that keys sort by value.
func u64(v uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v)
}

// idemKey scopes an idempotency id by provider.
func idemKey(provider, id string) []byte {
	k := make([]byte, 0, len(provider)+1+len(id))
	k = append(k, provider...)
	k = append(k, 0)
	return append(k, id...)
}
