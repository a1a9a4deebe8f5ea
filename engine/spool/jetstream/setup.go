package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// connect opens a connection to opts.URLs (or opts.InProcess) with its
// credentials.
func connect(opts Options) (*nats.Conn, error) {
	if len(opts.URLs) == 0 && opts.InProcess == nil {
		return nil, errors.New("jetstream: no server urls")
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	copts := []nats.Option{nats.Name("hookrelay"), nats.MaxReconnects(-1), nats.Timeout(timeout)}
	if opts.InProcess != nil {
		copts = append(copts, nats.InProcessServer(opts.InProcess))
	}
	switch {
	case opts.Creds != "":
		jwt, err := nkeys.ParseDecoratedJWT([]byte(opts.Creds))
		if err != nil {
			return nil, fmt.Errorf("jetstream: creds: %w", err)
		}
		kp, err := nkeys.ParseDecoratedNKey([]byte(opts.Creds))
		if err != nil {
			return nil, fmt.Errorf("jetstream: creds: %w", err)
		}
		copts = append(copts, nats.UserJWT(func() (string, error) { return jwt, nil }, kp.Sign))
	case opts.Token != "":
		copts = append(copts, nats.Token(opts.Token))
	case opts.User != "":
		copts = append(copts, nats.UserInfo(opts.User, opts.Password))
	}
	nc, err := nats.Connect(strings.Join(opts.URLs, ","), copts...)
	if err != nil {
		return nil, fmt.Errorf("jetstream: connect: %w", err)
	}
	return nc, nil
}

// setup runs once (which creates or opens the stream or buckets, or reads
// one as the relay starts) in tries of a quarter of the time it has. For
// some seconds after the server that led a stream or bucket went away, a
// request to it is not answered at all (no leader takes it): one long
// request would wait out the whole time even though a new leader answers a
// few seconds later, and a relay started while one server of three is down
// would not start.
func (s *Store) setup(ctx context.Context, once func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, 4*s.timeout)
	defer cancel()
	for {
		try, cancelTry := context.WithTimeout(ctx, s.timeout/4)
		err := once(try)
		cancelTry()
		if err == nil || ctx.Err() != nil || !passing(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// passing reports whether err is what a stream or bucket answers, or fails
// to, while it elects a leader: worth another try.
func passing(err error) bool {
	var api *jetstream.APIError
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.As(err, &api) && api.Code == 503 // "JetStream system temporarily unavailable"
}

// setupOnce is one try of setup.
func (s *Store) setupOnce(ctx context.Context, replicas int) error {
	js, err := jetstream.New(s.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	s.js = js
	s.stream, err = js.Stream(ctx, s.name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s.stream, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        s.name,
			Description: "hookrelay events",
			Subjects:    []string{s.name + ".ev.>"},
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
			Retention:   jetstream.LimitsPolicy,
			Duplicates:  DuplicateWindow,
		})
	}
	if err != nil {
		return fmt.Errorf("jetstream: stream %s: %w", s.name, err)
	}
	for _, b := range []struct {
		kv   *jetstream.KeyValue
		name string
	}{{&s.dlv, "dlv"}, {&s.idem, "idem"}, {&s.quar, "quar"}, {&s.poll, "poll"}, {&s.lastSeq, "lastseq"}, {&s.paused, "paused"}} {
		name := s.name + "_" + b.name
		kv, err := js.KeyValue(ctx, name)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = s.createBucket(ctx, name, replicas)
		}
		if err == nil {
			kv, err = s.leaderReads(ctx, kv, name)
		}
		if err != nil {
			return fmt.Errorf("jetstream: bucket %s: %w", name, err)
		}
		*b.kv = kv
	}
	return nil
}

// leaderReads turns off direct gets on a bucket, which any replica answers,
// however far behind: a delivery's attempts are read back before its next
// attempt is recorded, and a stale read would drop one. Reads then go to
// the bucket's leader.
func (s *Store) leaderReads(ctx context.Context, kv jetstream.KeyValue, name string) (jetstream.KeyValue, error) {
	st, err := s.js.Stream(ctx, "KV_"+name)
	if err != nil {
		return nil, err
	}
	cfg := st.CachedInfo().Config
	if !cfg.AllowDirect {
		return kv, nil
	}
	cfg.AllowDirect = false
	if _, err := s.js.UpdateStream(ctx, cfg); err != nil {
		return nil, err
	}
	return s.js.KeyValue(ctx, name)
}
