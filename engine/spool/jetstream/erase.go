package jetstream

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// KV keys and subjects outlive the values they name: a purge leaves a
// marker on the key's subject, and the servers drop an older revision
// without overwriting it, so its bytes stay in the message blocks until
// the servers compact them. So no KV key carries an event key's name, nor
// a lender's idempotency id (which may quote the body): they are named by
// a hash of provider and name instead, and what must go with an erasure is
// deleted securely (overwritten on the servers' disks).

// nameHash is the KV key part that stands for provider's name (an event
// key or an idempotency id): SHA-256 of both, base64url. It is not a
// secret: whoever guesses a name can confirm it, but no name can be read
// back from it.
func nameHash(provider, name string) string {
	h := sha256.New()
	_, _ = h.Write([]byte("hookrelay kv\x00"))
	_, _ = h.Write([]byte(provider))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(name))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// idemKey is the S_idem key of provider's idempotency id.
func idemKey(provider, idem string) string { return enc(provider) + "." + nameHash(provider, idem) }

// secureDelete overwrites the value of key in bucket on the servers and
// removes it, leaving no marker. It reports whether there was one. The
// buckets keep one revision, so the value is the key's only message.
func (s *Store) secureDelete(ctx context.Context, kv jetstream.KeyValue, key string) (bool, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	st, err := s.js.Stream(ctx, "KV_"+kv.Bucket())
	if err != nil {
		return false, fmt.Errorf("bucket %s: %w", kv.Bucket(), err)
	}
	if st.CachedInfo().Config.DenyDelete {
		// A bucket made before createBucket, which the servers will not
		// let us change: purged, its bytes left to the servers' compaction.
		return true, kv.Purge(ctx, key)
	}
	if err := st.SecureDeleteMsg(ctx, e.Revision()); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, err
	}
	return true, nil
}

// createBucket creates a KV bucket as CreateKeyValue does (one revision,
// file storage, rollups) except that its messages may be deleted, which
// secureDelete needs: CreateKeyValue denies deletes, and a stream's
// servers refuse to lift that later.
func (s *Store) createBucket(ctx context.Context, name string, replicas int) (jetstream.KeyValue, error) {
	_, err := s.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:              "KV_" + name,
		Subjects:          []string{"$KV." + name + ".>"},
		MaxMsgsPerSubject: 1,
		MaxBytes:          -1,
		MaxMsgSize:        -1,
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		AllowRollup:       true,
		Duplicates:        2 * time.Minute,
		Discard:           jetstream.DiscardNew,
	})
	if err != nil {
		return nil, err
	}
	return s.js.KeyValue(ctx, name)
}
