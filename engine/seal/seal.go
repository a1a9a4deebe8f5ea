// Package seal is hookrelay's envelope encryption (SPEC 11): every record the
// spool stores is encrypted with AES-256-GCM under a data key of its own
// provider and key, and each data key is wrapped (AES-256-GCM) by a master
// key. The wrapped data keys live in a keystore of their own, a bbolt file
// (or, on the JetStream spool, a stream: OpenStore) apart from the records, so that destroying one data key (Destroy) makes
// every record of that key unreadable wherever copies of it are
// (crypto-shredding): a backup of the spool, a replica.
//
// Its step of the flow is at rest, under the spool: the engine hands a
// sealer to engine/spool (spool.Sealer), which seals every record it writes
// and opens every record it reads, so the spool never imports it.
//
// Only the standard library's primitives are used: crypto/aes, crypto/cipher
// (GCM with random 96-bit nonces), crypto/rand and crypto/sha256. It may
// import the standard library, bbolt (the keystore) and
// engine/internal/scrub; nothing else of hookrelay.
//
// # Record format (version 1)
//
//	0xE5 | master key id (8) | data key id (8) | nonce (12) | ciphertext | GCM tag (16)
//
// 0xE5 is the format and its version; no plaintext record of the spool starts
// with it. The master key id names the master key that wrapped the data key
// when the record was sealed; since a rotation re-wraps data keys without
// touching the records, it is informational (what `status` counts), not what
// Open decrypts with. The data key id is random, drawn with the data key: a
// record sealed under a destroyed data key is told apart (ErrShredded) from a
// damaged one even after the key was used again and got a new data key. The
// GCM additional data is the 17-byte header after the format byte, then
// provider 0x00 key 0x00, then the caller's aad (the spool passes the
// record's bucket and id), so a record pasted under another id, key or
// provider fails to open. Overhead: 45 bytes per record.
//
// # Keystore format (keys.db, bbolt)
//
//	bucket "data_keys":  provider 0x00 key -> 0x01 | master key id (8) | data key id (8) | nonce (12) | wrapped key (32) | tag (16)
//	bucket "meta":       "format" -> 0x01
//
// The wrapped key is the 32-byte data key sealed with AES-256-GCM under the
// master key, with additional data "hookrelay data key v1" 0x00 provider 0x00
// key 0x00 data key id. A master key's id is the first 8 bytes of
// sha256("hookrelay master key id" 0x00 key): it names the key without
// revealing it.
package seal

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
)

// Format is the first byte of every sealed record (record format version 1).
const Format = 0xE5

const (
	idLen       = 8
	nonceLen    = 12
	headerLen   = 1 + idLen + idLen + nonceLen
	overhead    = headerLen + 16
	keyLen      = 32
	entryFormat = 0x01
	entryLen    = 1 + idLen + idLen + nonceLen + keyLen + 16
)

var (
	bucketKeys = []byte("data_keys")
	bucketMeta = []byte("meta")
)

var (
	// ErrShredded is returned by Open when the record's data key is no
	// longer in the keystore: it was destroyed (erasure), or the keystore
	// is not the one the record was sealed with.
	ErrShredded = errors.New("seal: data key destroyed or unknown")
	// ErrUnknownMaster is returned when a data key is wrapped by a master
	// key that is neither the current one nor a previous one.
	ErrUnknownMaster = errors.New("seal: master key not configured")
	// ErrCorrupt is returned by Open for a record that is not a sealed
	// record or fails authentication (damaged, or pasted under another id).
	ErrCorrupt = errors.New("seal: record corrupt or not bound to this id")
)

// MasterKey is a 32-byte key that wraps data keys.
type MasterKey struct {
	id   [idLen]byte
	aead cipher.AEAD
}

// NewMasterKey takes a 32-byte key.
func NewMasterKey(key []byte) (*MasterKey, error) {
	if len(key) != keyLen {
		return nil, fmt.Errorf("seal: master key: %d bytes, want 32", len(key))
	}
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	m := &MasterKey{aead: aead}
	sum := sha256.Sum256(append([]byte("hookrelay master key id\x00"), key...))
	copy(m.id[:], sum[:idLen])
	return m, nil
}

// ParseMasterKey reads a master key as `privacy.key` holds it: 32 bytes in
// standard base64. The error never quotes the value.
func ParseMasterKey(b64 string) (*MasterKey, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return nil, errors.New("seal: master key: not base64")
	}
	defer clear(raw)
	return NewMasterKey(raw)
}

// DefaultPath is the keystore's path when `privacy.keystore` is not set:
// keys.db in the spool's directory.
func DefaultPath(spoolPath string) string {
	return filepath.Join(filepath.Dir(spoolPath), "keys.db")
}

// ID is the key's id, 16 hex digits.
func (m *MasterKey) ID() string { return hex.EncodeToString(m.id[:]) }

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return cipher.NewGCM(block)
}

// dataKey is an unwrapped data key, ready to use.
type dataKey struct {
	id   [idLen]byte
	aead cipher.AEAD
}

// Keystore holds the wrapped data keys and seals and opens records. It is
// safe for concurrent use. Unwrapped data keys are cached in memory.
type Keystore struct {
	current  *MasterKey
	previous map[[idLen]byte]*MasterKey

	// mu orders Destroy against everything else: Destroy holds it to delete
	// a key, every other use of store holds it for reading, so that no
	// reader caches a data key Destroy is removing.
	mu    sync.RWMutex
	store Store
	// cacheMu guards cache, the unwrapped data keys.
	cacheMu sync.Mutex
	cache   map[string]*dataKey
	// create guards drawing: the keys whose data key a caller is drawing,
	// so that two callers never draw two data keys for one key.
	create  sync.Mutex
	drawing map[string]chan struct{}
}

// Open opens or creates the keystore file at path (0600, its directory
// 0700). current seals; previous keys are still read (a rotation in
// progress).
func Open(path string, current *MasterKey, previous ...*MasterKey) (*Keystore, error) {
	if current == nil {
		return nil, errors.New("seal: no master key")
	}
	st, err := openBolt(path)
	if err != nil {
		return nil, err
	}
	return OpenStore(st, current, previous...)
}

// OpenStore is Open on a Store of the caller's (the JetStream spool keeps
// its data keys in a stream of their own); the Keystore closes it.
func OpenStore(st Store, current *MasterKey, previous ...*MasterKey) (*Keystore, error) {
	if current == nil {
		return nil, errors.New("seal: no master key")
	}
	k := &Keystore{current: current, previous: map[[idLen]byte]*MasterKey{}, store: st, cache: map[string]*dataKey{}, drawing: map[string]chan struct{}{}}
	for _, p := range previous {
		if p != nil && p.id != current.id {
			k.previous[p.id] = p
		}
	}
	return k, nil
}

// Close closes the keystore's store.
func (k *Keystore) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.store.Close()
}

// Path is where the keystore is: its file, or the stream that holds it.
func (k *Keystore) Path() string { return k.store.Where() }

// CurrentID is the id of the master key that seals.
func (k *Keystore) CurrentID() string { return k.current.ID() }

func entryKey(provider, key string) []byte {
	return []byte(provider + "\x00" + key)
}

func wrapAAD(provider, key string, id []byte) []byte {
	return append([]byte("hookrelay data key v1\x00"+provider+"\x00"+key+"\x00"), id...)
}

// wrappedByCurrent reports whether keystore entry v is wrapped by the
// current master key.
func (k *Keystore) wrappedByCurrent(v []byte) bool {
	return len(v) == entryLen && bytes.Equal(v[1:1+idLen], k.current.id[:])
}

// master returns the master key with the given id.
func (k *Keystore) master(id [idLen]byte) (*MasterKey, error) {
	if id == k.current.id {
		return k.current, nil
	}
	if m := k.previous[id]; m != nil {
		return m, nil
	}
	return nil, fmt.Errorf("%w: %x", ErrUnknownMaster, id)
}

// unwrap reads a keystore entry.
func (k *Keystore) unwrap(provider, key string, v []byte) (*dataKey, error) {
	id, raw, err := k.unwrapRaw(provider, key, v)
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	aead, err := newAEAD(raw)
	if err != nil {
		return nil, err
	}
	return &dataKey{id: id, aead: aead}, nil
}

// unwrapRaw opens a keystore entry with the master key that wrapped it and
// returns the data key's id and its raw bytes, which the caller clears.
func (k *Keystore) unwrapRaw(provider, key string, v []byte) (id [idLen]byte, raw []byte, err error) {
	if len(v) != entryLen || v[0] != entryFormat {
		return id, nil, fmt.Errorf("seal: keystore entry %s/%s: bad format", provider, key)
	}
	var mid [idLen]byte
	copy(mid[:], v[1:])
	copy(id[:], v[1+idLen:])
	m, err := k.master(mid)
	if err != nil {
		return id, nil, err
	}
	raw, err = m.aead.Open(nil, v[1+2*idLen:1+2*idLen+nonceLen], v[1+2*idLen+nonceLen:], wrapAAD(provider, key, id[:]))
	if err != nil {
		return id, nil, fmt.Errorf("seal: keystore entry %s/%s: cannot unwrap: %w", provider, key, err)
	}
	return id, raw, nil
}

// wrap makes a keystore entry of raw under m.
func wrap(m *MasterKey, provider, key string, id [idLen]byte, raw []byte) []byte {
	v := make([]byte, 0, entryLen)
	v = append(v, entryFormat)
	v = append(v, m.id[:]...)
	v = append(v, id[:]...)
	nonce := make([]byte, nonceLen)
	_, _ = rand.Read(nonce) // crypto/rand never fails on supported platforms
	v = append(v, nonce...)
	return m.aead.Seal(v, nonce, raw, wrapAAD(provider, key, id[:]))
}

// lookup returns the data key of provider's key, nil when there is none.
func (k *Keystore) lookup(provider, key string) (*dataKey, error) {
	ek := string(entryKey(provider, key))
	k.cacheMu.Lock()
	dk := k.cache[ek]
	k.cacheMu.Unlock()
	if dk != nil {
		return dk, nil
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	v, err := k.store.Get([]byte(ek))
	if err != nil {
		return nil, fmt.Errorf("seal: keystore: %w", err)
	}
	if v == nil {
		return nil, nil
	}
	if dk, err = k.unwrap(provider, key, v); err != nil {
		return nil, err
	}
	k.cacheMu.Lock()
	k.cache[ek] = dk
	k.cacheMu.Unlock()
	return dk, nil
}

// dataKey returns the data key of provider's key, drawing and storing a new
// one (durably, before it is used) when there is none. New keys of
// concurrent callers share one keystore commit (bbolt's Batch), so that the
// first events of many keys do not queue behind one fsync each.
func (k *Keystore) dataKey(provider, key string) (*dataKey, error) {
	if dk, err := k.lookup(provider, key); dk != nil || err != nil {
		return dk, err
	}
	ek := string(entryKey(provider, key))
	// One caller draws a key's data key; the others wait for it.
	k.create.Lock()
	wait, busy := k.drawing[ek]
	if !busy {
		k.drawing[ek] = make(chan struct{})
	}
	k.create.Unlock()
	if busy {
		<-wait
		return k.dataKey(provider, key)
	}
	defer func() {
		k.create.Lock()
		close(k.drawing[ek])
		delete(k.drawing, ek)
		k.create.Unlock()
	}()
	if dk, err := k.lookup(provider, key); dk != nil || err != nil {
		return dk, err // drawn by a caller that finished meanwhile
	}
	raw := make([]byte, keyLen)
	defer clear(raw)
	_, _ = rand.Read(raw)
	dk := &dataKey{}
	_, _ = rand.Read(dk.id[:])
	aead, err := newAEAD(raw)
	if err != nil {
		return nil, err
	}
	dk.aead = aead
	entry := wrap(k.current, provider, key, dk.id, raw)
	k.mu.RLock()
	err = k.store.Put([]byte(ek), entry)
	if err == nil {
		// Cached under the read lock's protection from Destroy: a Destroy
		// waiting for it runs after, and removes this key again.
		k.cacheMu.Lock()
		k.cache[ek] = dk
		k.cacheMu.Unlock()
	}
	k.mu.RUnlock()
	if errors.Is(err, ErrEntryExists) {
		// Another relay on the same store drew one first: it is the key's.
		return k.lookup(provider, key)
	}
	if err != nil {
		return nil, fmt.Errorf("seal: keystore: store data key: %w", err)
	}
	return dk, nil
}

func recordAAD(hdr []byte, provider, key string, aad []byte) []byte {
	out := make([]byte, 0, len(hdr)+len(provider)+len(key)+2+len(aad))
	out = append(out, hdr...)
	out = append(out, provider...)
	out = append(out, 0)
	out = append(out, key...)
	out = append(out, 0)
	return append(out, aad...)
}

// Seal encrypts plaintext under the data key of provider's key (made on
// first use) and returns the record. aad binds the record to where it is
// stored: Open must be given the same.
func (k *Keystore) Seal(provider, key string, plaintext, aad []byte) ([]byte, error) {
	dk, err := k.dataKey(provider, key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, headerLen, len(plaintext)+overhead)
	out[0] = Format
	copy(out[1:], k.current.id[:])
	copy(out[1+idLen:], dk.id[:])
	nonce := out[1+2*idLen : headerLen]
	_, _ = rand.Read(nonce)
	return dk.aead.Seal(out, nonce, plaintext, recordAAD(out[1:1+2*idLen], provider, key, aad)), nil
}

// Open decrypts a record sealed by Seal for provider's key with the same aad.
// It returns ErrShredded when the key's data key was destroyed.
func (k *Keystore) Open(provider, key string, record, aad []byte) ([]byte, error) {
	if len(record) < overhead || record[0] != Format {
		return nil, ErrCorrupt
	}
	dk, err := k.lookup(provider, key)
	if err == nil && dk != nil && !bytes.Equal(dk.id[:], record[1+idLen:1+2*idLen]) {
		// The cached key may be one another relay on a shared store has
		// destroyed and drawn again since: read the store once more.
		k.cacheMu.Lock()
		delete(k.cache, string(entryKey(provider, key)))
		k.cacheMu.Unlock()
		dk, err = k.lookup(provider, key)
	}
	if err != nil {
		return nil, err
	}
	if dk == nil || !bytes.Equal(dk.id[:], record[1+idLen:1+2*idLen]) {
		return nil, ErrShredded
	}
	out, err := dk.aead.Open(nil, record[1+2*idLen:headerLen], record[headerLen:], recordAAD(record[1:1+2*idLen], provider, key, aad))
	if err != nil {
		return nil, ErrCorrupt
	}
	return out, nil
}

// RecordMaster returns the id of the master key that was current when record
// was sealed, "" when it is not a sealed record.
func RecordMaster(record []byte) string {
	if len(record) < overhead || record[0] != Format {
		return ""
	}
	return hex.EncodeToString(record[1 : 1+idLen])
}

// Destroy removes the data key of provider's key: every record sealed under
// it, in this spool or in any copy of it, can no longer be opened. The next
// Seal for the key draws a new data key. The store leaves no copy of
// the wrapped key in its files either (Store.Delete). Destroying a key that has none is not an error.
func (k *Keystore) Destroy(provider, key string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cacheMu.Lock()
	delete(k.cache, string(entryKey(provider, key)))
	k.cacheMu.Unlock()
	if _, err := k.store.Delete(entryKey(provider, key)); err != nil {
		return fmt.Errorf("seal: keystore: destroy %s/%s: %w", provider, key, err)
	}
	return nil
}

// RewrapProgress counts a rotation's progress.
type RewrapProgress struct {
	// Total is how many data keys the keystore holds.
	Total int
	// Rewrapped is how many were re-wrapped under the current master key.
	Rewrapped int
	// Current is how many already were under it.
	Current int
}

// rewrapChunk bounds how many keys one rewrap transaction visits.
const rewrapChunk = 500

// Rewrap re-wraps every data key that is wrapped by a previous master key
// under the current one, in chunks of short transactions, calling progress
// (when not nil) after each. Records are not touched: their data keys do not
// change. Once it returned without error, the previous master keys can be
// dropped from the configuration.
func (k *Keystore) Rewrap(ctx context.Context, progress func(RewrapProgress)) (RewrapProgress, error) {
	var p RewrapProgress
	var after []byte
	for {
		if err := ctx.Err(); err != nil {
			return p, err
		}
		cur, re := 0, 0
		k.mu.RLock()
		last, visited, err := k.store.Update(after, rewrapChunk, func(ek, v []byte) ([]byte, error) {
			if k.wrappedByCurrent(v) {
				cur++
				return nil, nil
			}
			provider, key, _ := bytes.Cut(ek, []byte{0})
			nv, err := k.rewrapEntry(string(provider), string(key), v)
			if err == nil {
				re++
			}
			return nv, err
		})
		k.mu.RUnlock()
		if err != nil {
			return p, fmt.Errorf("seal: rewrap: %w", err)
		}
		p.Total += visited
		p.Current += cur
		p.Rewrapped += re
		if last != nil {
			after = last
		}
		if progress != nil {
			progress(p)
		}
		if visited < rewrapChunk {
			return p, nil
		}
	}
}

// rewrapEntry unwraps v with its master key and wraps the data key under
// the current one, keeping its id.
func (k *Keystore) rewrapEntry(provider, key string, v []byte) ([]byte, error) {
	id, raw, err := k.unwrapRaw(provider, key, v)
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	return wrap(k.current, provider, key, id, raw), nil
}
