package engine

import (
	"context"
	"log/slog"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/engine/seal"
	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream"
)

// natsOptions are spool.nats as the JetStream package takes them.
func natsOptions(cfg *Config, opts spool.Options) jetstream.Options {
	n := cfg.Spool.NATS
	return jetstream.Options{
		URLs: n.URLs, Creds: n.Creds, User: n.User, Password: n.Password, Token: n.Token,
		Stream: n.Stream, Replicas: n.Replicas, Partitions: n.Partitions, LeaseTTL: n.LeaseTTL, Spool: opts,
		InProcess: cfg.natsServer,
	}
}

// openKeystore opens privacy's keystore: the privacy.keystore file, or on
// a JetStream spool a stream of its own beside the events (SPEC 11), so
// that every relay on the stream reads the same data keys.
func openKeystore(cfg *Config) (*seal.Keystore, error) {
	if cfg.Spool.Kind != config.SpoolJetStream {
		return seal.Open(cfg.Privacy.Keystore, cfg.master, cfg.previous...)
	}
	keys, err := jetstream.OpenKeys(context.Background(), natsOptions(cfg, spool.Options{}))
	if err != nil {
		return nil, err
	}
	ks, err := seal.OpenStore(keys, cfg.master, cfg.previous...)
	if err != nil {
		_ = keys.Close()
	}
	return ks, err
}

// openSpool opens the backend spool.kind names: the bbolt file, or the
// JetStream stream that several relays may share (SPEC 12).
func openSpool(cfg *Config, opts spool.Options, log *slog.Logger) (spool.Store, error) {
	if cfg.Spool.Kind != config.SpoolJetStream {
		return spool.Open(cfg.Spool.Path, opts)
	}
	o := natsOptions(cfg, opts)
	o.Log = log
	return jetstream.Open(context.Background(), o)
}
