// Package jetstream is the spool on NATS JetStream (SPEC 12): the same
// spool.Store as the bbolt file, shared by every relay instance that names
// the same stream, so that any of them takes a webhook and any answers the
// admin API.
//
// Layout, for a stream named S:
//
//	stream S          subjects S.ev.<partition>.<event ULID>: one message per event,
//	                  its stream sequence the event's Seq (commit order); the
//	                  body is a clear meta record (id, provider, key, sequence,
//	                  destinations, received) and the event, sealed with privacy
//	KV S_dlv          <event ULID>.<dest>          -> status, next attempt (clear),
//	                                                  attempts (sealed with privacy)
//	KV S_idem         <provider>.<hash of idempotency id> -> received, event id
//	KV S_quar         <ULID>                       -> quarantined request
//	KV S_poll         <provider>.s.<hash of key>   -> poller state
//	                  <provider>.n.<hash of key>   -> the key
//	KV S_lastseq      <dest>.<provider>.<hash of key> -> highest sequence released
//	KV S_paused       <dest>                       -> paused destination
//	KV S_leases, S_members, S_low                  -> partition leases (lease.go)
//	KV S_stats                                     -> partitions' queue counts (stats.go)
//
// KV key parts are base64url, since destination names, providers and keys
// may hold characters KV keys may not; event keys and idempotency ids are
// hashed (erase.go), so that no key or subject of a bucket names them. An
// event's deliveries are pending until S_dlv says otherwise, so that the
// event message alone, acknowledged before the lender is answered, is what
// makes them durable: no second write can be lost between the two.
//
// Keys are hashed onto partitions in the subject so that partitions are
// leased to instances (lease.go); this package delivers nothing itself, it
// feeds the engine's dispatcher the partitions it holds.
//
// It is the spool step, as engine/spool is, and may import engine/spool,
// engine/seal (the keystore's Store), nats.go with its jetstream package, and
// ulid; nothing above the spool.
package jetstream

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// Options configure Open.
type Options struct {
	// URLs are the NATS servers to connect to.
	URLs []string
	// InProcess, when set, is an embedded server connected to in process
	// (nats.InProcessServer) instead of URLs: what the engine's tests on a
	// fake clock use, as no goroutine there may wait on a real socket.
	InProcess nats.InProcessConnProvider
	// Creds is the content of a NATS credentials file (a user JWT and its
	// seed), already read from its secret reference; "" for none.
	Creds string
	// User and Password, or Token, authenticate without credentials.
	User, Password, Token string
	// Stream names the events stream; the KV buckets are named after it.
	Stream string
	// Replicas is how many servers store each message (1 or 3, mostly).
	Replicas int
	// Partitions is how many partitions keys are hashed onto.
	Partitions int
	// Timeout bounds each request to the servers; 0 means 10s.
	Timeout time.Duration
	// LeaseTTL is how long a partition's lease outlives a holder that
	// stopped renewing it; 0 means DefaultLeaseTTL.
	LeaseTTL time.Duration
	// Instance names this relay among those sharing the stream; "" for a
	// new random one at each Open.
	Instance string
	// Log receives the lease's warnings; nil discards them.
	Log *slog.Logger
	// Spool carries the bbolt options that apply here too: Committed and
	// Sealer (MaxBatch and Warn do not).
	Spool spool.Options
}

// DuplicateWindow is the events stream's duplicate window: within it the
// server drops a second copy of a webhook by its message id, across
// instances; beyond it the S_idem record does.
const DuplicateWindow = 2 * time.Minute

// Store is the JetStream spool.Store.
type Store struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  jetstream.Stream
	name    string
	parts   uint32
	timeout time.Duration

	dlv, idem, quar, poll, lastSeq, paused jetstream.KeyValue

	committed func([]spool.Ref)
	sealer    spool.Sealer

	// partMu serialises appends per partition from publish to the Committed
	// call, so that the dispatcher learns of one key's events in Seq order.
	partMu []sync.Mutex
	// idemMu serialises appends of one provider's idempotency id on this
	// instance, so that a dedup window shorter than the server's duplicate
	// window still sees the copy in flight.
	idemMu keyedMutex

	ls leases // the partitions this instance delivers (lease.go)
}

var (
	_ spool.Store  = (*Store)(nil)
	_ spool.Eraser = (*Store)(nil)
)

// Open connects to the servers and creates the stream and the KV buckets
// when they are missing, with file storage and opts.Replicas.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if len(opts.URLs) == 0 && opts.InProcess == nil {
		return nil, errors.New("jetstream: no server urls")
	}
	if opts.Stream == "" {
		return nil, errors.New("jetstream: no stream name")
	}
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	if opts.Partitions <= 0 {
		opts.Partitions = 1
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	if opts.Instance == "" {
		opts.Instance = ulid.Make().String()
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	nc, err := connect(opts)
	if err != nil {
		return nil, err
	}
	s := &Store{nc: nc, name: opts.Stream, parts: uint32(opts.Partitions), timeout: opts.Timeout,
		committed: opts.Spool.Committed, sealer: opts.Spool.Sealer, partMu: make([]sync.Mutex, opts.Partitions),
		ls: leases{id: opts.Instance, ttl: opts.LeaseTTL, log: opts.Log}}
	err = s.setup(ctx, func(ctx context.Context) error { return s.setupOnce(ctx, opts.Replicas) })
	if err == nil {
		err = s.setup(ctx, func(ctx context.Context) error { return s.openLeases(ctx, opts.Replicas, opts.LeaseTTL) })
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return s, nil
}

// timerFree: the calls of nats.go that take a timeout rather than a
// context (Flush, Request, NextMsg) take their timer from a process-wide
// pool, and a timer made in one synctest bubble panics when selected on in
// another: the engine's tests run relays in bubbles on an embedded server.
// This package calls the context forms, which make their own timers.

// ctx bounds one request to the servers.
func (s *Store) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	if parent == nil {
		parent = context.Background()
	}
	if _, ok := parent.Deadline(); ok {
		return parent, func() {}
	}
	return context.WithTimeout(parent, s.timeout)
}

// Partition is the partition provider's key is hashed onto.
func (s *Store) Partition(provider, key string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(provider))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(key))
	return h.Sum32() % s.parts
}

// enc is one KV key part: base64url, which KV keys accept whole.
func enc(s string) string {
	if s == "" {
		return "_" // no part may be empty; "_" is no base64url of anything
	}
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

func dec(s string) string {
	if s == "_" {
		return ""
	}
	b, _ := base64.RawURLEncoding.DecodeString(s)
	return string(b)
}

func dlvKey(eventID, dest string) string { return eventID + "." + enc(dest) }

// meta is an event message's clear head: what ordering, erasure and purge
// read without opening the sealed event.
type meta struct {
	ID           string    `json:"id"`
	Provider     string    `json:"p"`
	Key          string    `json:"k"`
	Sequence     int64     `json:"s,omitempty"`
	Idem         string    `json:"i,omitempty"`
	ReceivedAt   time.Time `json:"r"`
	Destinations []string  `json:"d"`
}

// Record forms, the first byte of a record after any clear head.
const (
	formJSON   = 'j'
	formSealed = 's'
)

// seal encodes v as JSON, sealed under provider's key with aad when the
// store has a Sealer.
func (s *Store) seal(provider, key string, aad []byte, v any) ([]byte, error) {
	js, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if s.sealer == nil {
		return append([]byte{formJSON}, js...), nil
	}
	sealed, err := s.sealer.Seal(provider, key, js, aad)
	if err != nil {
		return nil, err
	}
	return append([]byte{formSealed}, sealed...), nil
}

// open decodes a record seal made.
func (s *Store) open(provider, key string, aad, rec []byte, v any) error {
	if len(rec) == 0 {
		return errors.New("empty record")
	}
	body := rec[1:]
	switch rec[0] {
	case formJSON:
	case formSealed:
		if s.sealer == nil {
			return spool.ErrSealed
		}
		var err error
		if body, err = s.sealer.Open(provider, key, body, aad); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown record form %q", rec[0])
	}
	return json.Unmarshal(body, v)
}

func eventAAD(id string) []byte { return []byte("events\x00" + id) }

func deliveryAAD(eventID, dest string) []byte {
	return []byte("deliveries\x00" + eventID + "\x00" + dest)
}

func quarantineAAD(id string) []byte { return []byte("quarantine\x00" + id) }

func pollAAD(provider, key string) []byte { return []byte("poll\x00" + provider + "\x00" + key) }

// eventBody is an event message's body: uvarint length, meta JSON, record.
func (s *Store) eventBody(m *meta, ev *spool.Event) ([]byte, error) {
	mj, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	rec, err := s.seal(ev.Provider, ev.Key, eventAAD(ev.ID), ev)
	if err != nil {
		return nil, err
	}
	out := binary.AppendUvarint(make([]byte, 0, len(mj)+len(rec)+4), uint64(len(mj)))
	return append(append(out, mj...), rec...), nil
}

// splitBody reads an event message's meta and returns its record.
func splitBody(b []byte) (*meta, []byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < n {
		return nil, nil, errors.New("jetstream: malformed event message")
	}
	m := new(meta)
	if err := json.Unmarshal(b[w:w+int(n)], m); err != nil {
		return nil, nil, fmt.Errorf("jetstream: event meta: %w", err)
	}
	return m, b[w+int(n):], nil
}

// subject is where an event is published; with id ">", a filter for
// every event of the partition.
func (s *Store) subject(part uint32, id string) string {
	return s.name + ".ev." + strconv.FormatUint(uint64(part), 10) + "." + id
}

// idemRecord is an S_idem value.
type idemRecord struct {
	At int64  `json:"at"` // received, unix ns
	ID string `json:"id"`
}

// Append publishes ev and answers once the servers acknowledged it.
// Dedup: the server's duplicate window drops a second copy by message id,
// on any instance; a provider window beyond it is checked in S_idem first.
func (s *Store) Append(ctx context.Context, ev *spool.Event, dedup time.Duration) (string, error) {
	if _, err := ulid.ParseStrict(ev.ID); err != nil {
		return "", fmt.Errorf("spool: event id %q: %w", ev.ID, err)
	}
	dests, recv, err := spool.Targets(ev)
	if err != nil {
		return "", err
	}
	m := &meta{ID: ev.ID, Provider: ev.Provider, Key: ev.Key, Sequence: ev.Sequence, Idem: ev.IdempotencyID, ReceivedAt: recv.UTC(), Destinations: dests}
	ctx, cancel := s.ctx(ctx)
	defer cancel()

	// The entry is kept even when this provider's dedup is off, as bbolt
	// keeps it, so that turning dedup on sees the events before.
	useIdem := dedup > 0 && ev.IdempotencyID != ""
	var ik string
	if ev.IdempotencyID != "" {
		ik = idemKey(ev.Provider, ev.IdempotencyID)
		unlock := s.idemMu.lock(ik)
		defer unlock()
	}
	if useIdem {
		e, err := s.idem.Get(ctx, ik)
		switch {
		case err == nil:
			var r idemRecord
			if json.Unmarshal(e.Value(), &r) == nil && recv.Sub(time.Unix(0, r.At)) < dedup {
				return r.ID, nil
			}
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return "", fmt.Errorf("spool: dedup %s: %w", ev.ID, err)
		}
	}
	// Sealed only once it is known not to be a duplicate.
	body, err := s.eventBody(m, ev)
	if err != nil {
		return "", fmt.Errorf("spool: encode event %s: %w", ev.ID, err)
	}
	part := s.Partition(ev.Provider, ev.Key)
	msg := &nats.Msg{Subject: s.subject(part, ev.ID), Data: body, Header: nats.Header{}}
	if useIdem && dedup >= DuplicateWindow {
		// Within the duplicate window the server is the check, across
		// instances; a shorter provider window cannot use it, since the
		// server would still drop a copy the provider wants as new.
		// The id as the idem bucket keys it: bounded in length, and no
		// lender's value in a header stored in clear.
		msg.Header.Set(jetstream.MsgIDHeader, ik)
	}
	s.partMu[part].Lock()
	defer s.partMu[part].Unlock()
	// The subject holds the event id, so that a second event with the
	// same id is refused by the server, atomically with the write.
	ack, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(0))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return "", fmt.Errorf("%w: event %s", spool.ErrExists, ev.ID)
	}
	if err != nil {
		return "", fmt.Errorf("spool: append %s: %w", ev.ID, err)
	}
	id := ev.ID
	if ack.Duplicate {
		// Another copy won, on this instance or another: answer with its id.
		raw, err := s.stream.GetMsg(ctx, ack.Sequence)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			// The copy the server remembers was purged or erased since:
			// this one is new, under a message id of its own.
			msg.Header.Set(jetstream.MsgIDHeader, ev.ID)
			if ack, err = s.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(0)); err != nil {
				return "", fmt.Errorf("spool: append %s: %w", ev.ID, err)
			}
		case err != nil:
			return "", fmt.Errorf("spool: dedup %s: %w", ev.ID, err)
		default:
			om, _, err := splitBody(raw.Data)
			if err != nil {
				return "", err
			}
			id = om.ID
		}
	}
	if ik != "" {
		rv, _ := json.Marshal(idemRecord{At: recv.UnixNano(), ID: id})
		if _, err := s.idem.Put(ctx, ik, rv); err != nil {
			return "", fmt.Errorf("spool: dedup %s: %w", ev.ID, err)
		}
	}
	if ack.Duplicate {
		return id, nil
	}
	// Shared, the partition's holder learns of the event from the stream.
	if s.committed != nil && len(dests) > 0 && !s.sharing() {
		refs := make([]spool.Ref, 0, len(dests))
		for _, d := range dests {
			refs = append(refs, spool.Ref{Seq: ack.Sequence, EventID: ev.ID, Destination: d, Provider: ev.Provider, Key: ev.Key, Sequence: ev.Sequence})
		}
		s.committed(refs)
	}
	return "", nil
}

// stored is an event message as read: its Seq, meta and record.
type stored struct {
	seq  uint64
	m    *meta
	rec  []byte
	subj string
}

// lookup reads the event with id, or ErrNotFound.
func (s *Store) lookup(ctx context.Context, id string) (*stored, error) {
	if _, err := ulid.ParseStrict(id); err != nil {
		return nil, fmt.Errorf("spool: event id %q: %w", id, err)
	}
	raw, err := s.stream.GetLastMsgForSubject(ctx, s.name+".ev.*."+id)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("%w: event %s", spool.ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: read event %s: %w", id, err)
	}
	m, rec, err := splitBody(raw.Data)
	if err != nil {
		return nil, err
	}
	return &stored{seq: raw.Sequence, m: m, rec: rec, subj: raw.Subject}, nil
}

// Quarantine stores q under its ULID. Its provider and key stay clear
// before the sealed record, for erasure.
func (s *Store) Quarantine(ctx context.Context, q *spool.Quarantined) error {
	if _, err := ulid.ParseStrict(q.ID); err != nil {
		return fmt.Errorf("spool: quarantine id %q: %w", q.ID, err)
	}
	v, err := s.quarValue(q)
	if err != nil {
		return fmt.Errorf("spool: encode quarantined %s: %w", q.ID, err)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if _, err := s.quar.Put(ctx, q.ID, v); err != nil {
		return fmt.Errorf("spool: quarantine %s: %w", q.ID, err)
	}
	return nil
}

func (s *Store) quarValue(q *spool.Quarantined) ([]byte, error) {
	rec, err := s.seal(q.Provider, q.Key, quarantineAAD(q.ID), q)
	if err != nil {
		return nil, err
	}
	v := binary.AppendUvarint(nil, uint64(len(q.Provider)))
	v = append(v, q.Provider...)
	v = binary.AppendUvarint(v, uint64(len(q.Key)))
	v = append(v, q.Key...)
	return append(v, rec...), nil
}

// quarHead reads a quarantine value's clear provider and key.
func quarHead(v []byte) (provider, key string, rec []byte, err error) {
	read := func() (string, bool) {
		n, w := binary.Uvarint(v)
		if w <= 0 || uint64(len(v)-w) < n {
			return "", false
		}
		out := string(v[w : w+int(n)])
		v = v[w+int(n):]
		return out, true
	}
	p, ok1 := read()
	k, ok2 := read()
	if !ok1 || !ok2 {
		return "", "", nil, errors.New("jetstream: malformed quarantined request")
	}
	return p, k, v, nil
}

func (s *Store) decodeQuar(id string, v []byte) (*spool.Quarantined, error) {
	p, k, rec, err := quarHead(v)
	if err != nil {
		return nil, err
	}
	q := new(spool.Quarantined)
	if err := s.open(p, k, quarantineAAD(id), rec, q); err != nil {
		return nil, fmt.Errorf("spool: decode quarantined %s: %w", id, err)
	}
	return q, nil
}

// keyedMutex is one mutex per string key, dropped when unused.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// Size is the bytes the stream and the buckets hold on one server.
func (s *Store) Size() int64 {
	ctx, cancel := s.ctx(context.Background())
	defer cancel()
	var n uint64
	if info, err := s.stream.Info(ctx); err == nil {
		n += info.State.Bytes
	}
	for _, kv := range []jetstream.KeyValue{s.dlv, s.idem, s.quar, s.poll, s.lastSeq, s.paused} {
		if st, err := kv.Status(ctx); err == nil {
			n += st.Bytes()
		}
	}
	return int64(n)
}

// Close flushes and closes the connection: appends already answered were
// acknowledged by the servers, so nothing else is pending.
func (s *Store) Close() error {
	ctx, cancel := s.ctx(context.Background())
	defer cancel()
	err := s.nc.FlushWithContext(ctx) // not Flush: see timerFree
	s.nc.Close()
	if errors.Is(err, nats.ErrConnectionClosed) {
		return spool.ErrClosed
	}
	return err
}
