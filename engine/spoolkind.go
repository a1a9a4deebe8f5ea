package engine

import (
	"context"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream"
)

// openSpool opens the backend spool.kind names: the bbolt file, or the
// JetStream stream that several relays may share (SPEC 12).
func openSpool(cfg *Config, opts spool.Options) (spool.Store, error) {
	if cfg.Spool.Kind != config.SpoolJetStream {
		return spool.Open(cfg.Spool.Path, opts)
	}
	n := cfg.Spool.NATS
	return jetstream.Open(context.Background(), jetstream.Options{
		URLs: n.URLs, Creds: n.Creds, User: n.User, Password: n.Password, Token: n.Token,
		Stream: n.Stream, Replicas: n.Replicas, Partitions: n.Partitions, Spool: opts,
	})
}
