package jetstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookrelay/hookrelay/engine/seal"
)

// Keys is the privacy keystore's store on JetStream (SPEC 11: on JetStream
// the data keys live apart from the records, in a bucket of their own): a
// stream S_KEYS, one subject per key, S_KEYS.<provider>.<key> -> the
// wrapped data key. It is a stream rather than a KV bucket because a KV
// bucket refuses to delete a message, and erasure must overwrite the
// wrapped key where the servers store it (a secure delete), not only mark
// it deleted.
type Keys struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  jetstream.Stream
	name    string
	timeout time.Duration
}

var _ seal.Store = (*Keys)(nil)

// OpenKeys connects to opts.URLs and creates the keystore's stream of
// opts.Stream when it is missing, with file storage and opts.Replicas.
func OpenKeys(ctx context.Context, opts Options) (*Keys, error) {
	if opts.Stream == "" {
		return nil, errors.New("jetstream: no stream name")
	}
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	nc, err := connect(opts)
	if err != nil {
		return nil, err
	}
	k := &Keys{nc: nc, name: opts.Stream + "_KEYS", timeout: opts.Timeout}
	ctx, cancel := context.WithTimeout(ctx, 4*opts.Timeout)
	defer cancel()
	if k.js, err = jetstream.New(nc); err == nil {
		k.stream, err = k.js.Stream(ctx, k.name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			k.stream, err = k.js.CreateStream(ctx, jetstream.StreamConfig{
				Name: k.name, Description: "hookrelay data keys", Subjects: []string{k.name + ".>"},
				Storage: jetstream.FileStorage, Replicas: opts.Replicas, Retention: jetstream.LimitsPolicy,
			})
		}
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: keystore %s: %w", k.name, err)
	}
	return k, nil
}

func (k *Keys) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), k.timeout)
}

// subject is where the entry of ek (provider 0x00 key) is kept.
func (k *Keys) subject(ek []byte) string {
	provider, key, _ := bytes.Cut(ek, []byte{0})
	return k.name + "." + enc(string(provider)) + "." + enc(string(key))
}

// entryKey is the inverse of subject.
func (k *Keys) entryKey(subj string) []byte {
	parts := strings.Split(strings.TrimPrefix(subj, k.name+"."), ".")
	if len(parts) != 2 {
		return nil
	}
	return []byte(dec(parts[0]) + "\x00" + dec(parts[1]))
}

// Where names the stream.
func (k *Keys) Where() string { return "jetstream stream " + k.name }

// Close closes the connection.
func (k *Keys) Close() error {
	ctx, cancel := k.ctx()
	defer cancel()
	err := k.nc.FlushWithContext(ctx) // not Flush: see timerFree
	k.nc.Close()
	return err
}

// last reads the entry of ek with its sequence; nil when there is none.
func (k *Keys) last(ctx context.Context, ek []byte) ([]byte, uint64, error) {
	raw, err := k.stream.GetLastMsgForSubject(ctx, k.subject(ek))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	return raw.Data, raw.Sequence, nil
}

// Get returns the entry of ek, nil when there is none.
func (k *Keys) Get(ek []byte) ([]byte, error) {
	ctx, cancel := k.ctx()
	defer cancel()
	v, _, err := k.last(ctx, ek)
	return v, err
}

// Put stores a new entry, refused by the servers when the key has one
// (another relay drew it first).
func (k *Keys) Put(ek, v []byte) error {
	ctx, cancel := k.ctx()
	defer cancel()
	_, err := k.js.Publish(ctx, k.subject(ek), v, jetstream.WithExpectLastSequencePerSubject(0))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return seal.ErrEntryExists
	}
	return err
}

// Delete overwrites the entry on the servers' disks and removes it.
func (k *Keys) Delete(ek []byte) (bool, error) {
	ctx, cancel := k.ctx()
	defer cancel()
	v, seq, err := k.last(ctx, ek)
	if err != nil || v == nil {
		return false, err
	}
	if err := k.stream.SecureDeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return true, err
	}
	return true, nil
}

// entry is one keystore entry as the stream holds it.
type entry struct {
	ek, v []byte
	seq   uint64
}

// entries reads every entry, in key order.
func (k *Keys) entries(ctx context.Context) ([]entry, error) {
	var out []entry
	err := consume(ctx, k.stream, k.name+".>", func(seq uint64, subj string, data []byte) error {
		if ek := k.entryKey(subj); ek != nil {
			out = append(out, entry{ek, bytes.Clone(data), seq})
		}
		return nil
	})
	slices.SortFunc(out, func(a, b entry) int { return bytes.Compare(a.ek, b.ek) })
	return out, err
}

// Update visits up to n entries after the key after, in key order, and
// replaces those fn changes: the new entry is written only over the one
// read (a revision check), then the old one is overwritten on disk.
func (k *Keys) Update(after []byte, n int, fn func(ek, v []byte) ([]byte, error)) (last []byte, visited int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), scanTimeout)
	defer cancel()
	all, err := k.entries(ctx)
	if err != nil {
		return nil, 0, err
	}
	for _, e := range all {
		if visited == n {
			break
		}
		if after != nil && bytes.Compare(e.ek, after) <= 0 {
			continue
		}
		visited++
		last = e.ek
		nv, err := fn(e.ek, e.v)
		if err != nil {
			return last, visited, err
		}
		if nv == nil {
			continue
		}
		if _, err := k.js.Publish(ctx, k.subject(e.ek), nv, jetstream.WithExpectLastSequencePerSubject(e.seq)); err != nil {
			return last, visited, err
		}
		if err := k.stream.SecureDeleteMsg(ctx, e.seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return last, visited, err
		}
	}
	return last, visited, nil
}

// Each calls fn with every entry.
func (k *Keys) Each(fn func(ek, v []byte) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), scanTimeout)
	defer cancel()
	all, err := k.entries(ctx)
	if err != nil {
		return err
	}
	for _, e := range all {
		if err := fn(e.ek, e.v); err != nil {
			return err
		}
	}
	return nil
}
