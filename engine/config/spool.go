package config

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// streamName is what JetStream accepts as a stream name that also makes
// valid KV bucket names (stream + "_" + suffix).
var streamName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// validateSpool checks spool.kind and spool.nats, and writes the defaults
// of the latter.
func (c *Config) validateSpool(doc *Doc, errs *Errors) {
	switch c.Spool.Kind {
	case SpoolBolt:
		if c.Spool.NATS != nil {
			errs.Add(doc, "spool.nats", "spool.nats: only read with spool.kind: %s (spool.kind is %s)", SpoolJetStream, SpoolBolt)
		}
		return
	case SpoolJetStream:
	default:
		errs.Add(doc, "spool.kind", "spool.kind: %q is not one of %s, %s", c.Spool.Kind, SpoolBolt, SpoolJetStream)
		return
	}
	n := c.Spool.NATS
	if n == nil {
		errs.Add(doc, "spool.kind", "spool.nats: required with spool.kind: %s (at least urls)", SpoolJetStream)
		return
	}
	if len(n.URLs) == 0 {
		errs.Add(doc, "spool.nats", "spool.nats.urls: required (e.g. [nats://10.0.0.1:4222])")
	}
	for i, u := range n.URLs {
		at := fmt.Sprintf("spool.nats.urls[%d]", i)
		p, err := url.Parse(u)
		switch {
		case (err != nil || p.Host == "") && strings.Contains(u, "@"):
			// Unparsed, its userinfo cannot be told from the rest: not quoted.
			errs.Add(doc, at, "%s: not a server URL (nats://HOST:PORT); credentials go in spool.nats.user and password, token or creds", at)
		case err != nil || p.Host == "":
			errs.Add(doc, at, "%s: %q is not a server URL (nats://HOST:PORT)", at, u)
		case p.User != nil:
			// A password in a URL would show wherever the config does.
			errs.Add(doc, at, "%s: credentials in the URL; use spool.nats.user and password, token or creds", at)
		case p.Scheme != "nats" && p.Scheme != "tls":
			errs.Add(doc, at, "%s: scheme %q is not nats or tls", at, p.Scheme)
		}
	}
	ways := 0
	for _, set := range []bool{n.Creds != "", n.User != "" || n.Password != "", n.Token != ""} {
		if set {
			ways++
		}
	}
	if ways > 1 {
		errs.Add(doc, "spool.nats", "spool.nats: give one of creds, user and password, or token")
	}
	if n.Password != "" && n.User == "" {
		errs.Add(doc, "spool.nats.password", "spool.nats.password: without spool.nats.user")
	}
	if n.Creds != "" && !strings.Contains(n.Creds, "BEGIN NATS USER JWT") {
		errs.Add(doc, "spool.nats.creds", "spool.nats.creds: not a NATS credentials file (write file:PATH)")
	}
	if n.Stream == "" {
		n.Stream = DefaultNATSStream
	} else if !streamName.MatchString(n.Stream) {
		errs.Add(doc, "spool.nats.stream", "spool.nats.stream: %q: use letters, digits, - and _ only (at most 64)", n.Stream)
	}
	switch {
	case n.Replicas == 0:
		n.Replicas = DefaultNATSReplicas
	case n.Replicas < 0 || n.Replicas > 5:
		errs.Add(doc, "spool.nats.replicas", "spool.nats.replicas: %d is not between 1 and 5", n.Replicas)
	}
	switch {
	case n.Partitions == 0:
		n.Partitions = DefaultNATSPartitions
	case n.Partitions < 0 || n.Partitions > 4096:
		errs.Add(doc, "spool.nats.partitions", "spool.nats.partitions: %d is not between 1 and 4096", n.Partitions)
	}
	switch {
	case n.LeaseTTL == 0:
		n.LeaseTTL = DefaultNATSLeaseTTL
	case n.LeaseTTL < time.Second || n.LeaseTTL > 10*time.Minute:
		errs.Add(doc, "spool.nats.lease_ttl", "spool.nats.lease_ttl: %s is not between 1s and 10m", n.LeaseTTL)
	}
}

// SpoolWarnings are what `check` and the start say about a spool that
// loads but is not as safe as it could be: a JetStream spool's servers
// must fsync every write (sync_interval: always), which a client cannot
// read, and one replica holds each event on one disk only.
func (c *Config) SpoolWarnings() []string {
	if c.Spool.Kind != SpoolJetStream || c.Spool.NATS == nil {
		return nil
	}
	w := &Errors{}
	w.Add(c.doc, "spool.kind", "spool.kind: jetstream: hookrelay cannot confirm that the NATS servers run with "+
		"`sync_interval: always`; without it an acknowledged event may be lost on a power failure (see the README, Scale-out)")
	if c.Spool.NATS.Replicas < 3 {
		w.Add(c.doc, "spool.nats.replicas", "spool.nats.replicas: %d: each event is stored on %d server(s) only; use 3 in production",
			c.Spool.NATS.Replicas, c.Spool.NATS.Replicas)
	}
	if p, _ := c.display["privacy"].(map[string]any); p != nil && p["keystore"] != nil {
		w.Add(c.doc, "privacy.keystore", "privacy.keystore: not used with spool.kind: jetstream: the data keys are kept in the stream %s_KEYS",
			c.Spool.NATS.Stream)
	}
	return w.Problems()
}
