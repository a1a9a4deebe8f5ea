package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSpoolKind: spool.kind: jetstream with spool.nats as SPEC 12 writes
// it decodes (creds a file: secret, defaults written), and every mistake
// is reported with its file and line.
func TestSpoolKind(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.yaml")
	creds := "-----BEGIN NATS USER JWT-----\neyJ0eXAi\n------END NATS USER JWT------\n"
	if err := os.WriteFile(filepath.Join(dir, "nats.creds"), []byte(creds), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(yaml string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`spool:
  kind: jetstream
  nats:
    urls: [nats://127.0.0.1:4222, nats://127.0.0.2:4222]
    creds: file:nats.creds
    stream: LOANS
    replicas: 3
    lease_ttl: 3s
`)
	cfg, err := Decode(path, true)
	if err != nil {
		t.Fatal(err)
	}
	n := cfg.Spool.NATS
	if cfg.Spool.Kind != SpoolJetStream || len(n.URLs) != 2 || n.Creds != strings.TrimSpace(creds) || n.Stream != "LOANS" || n.Replicas != 3 ||
		n.Partitions != DefaultNATSPartitions || n.LeaseTTL != 3*time.Second {
		t.Fatalf("decoded %+v %+v", cfg.Spool, n)
	}
	if w := strings.Join(cfg.SpoolWarnings(), "\n"); !strings.Contains(w, ":2: spool.kind: jetstream: hookrelay cannot confirm") ||
		!strings.Contains(w, "sync_interval: always") || strings.Contains(w, "replicas") {
		t.Fatalf("warnings %q", w)
	}

	write("spool:\n  kind: jetstream\n  nats:\n    urls: [nats://h:4222]\n")
	cfg, err = Decode(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Spool.NATS.Stream != DefaultNATSStream || cfg.Spool.NATS.Replicas != 1 || cfg.Spool.NATS.LeaseTTL != 10*time.Second {
		t.Fatalf("defaults %+v", cfg.Spool.NATS)
	}
	if w := strings.Join(cfg.SpoolWarnings(), "\n"); !strings.Contains(w, ":5: spool.nats.replicas: 1") && !strings.Contains(w, "spool.nats.replicas: 1:") {
		t.Fatalf("no warning about one replica: %q", w)
	}

	t.Setenv("HOOKRELAY_TEST_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	write("spool:\n  kind: jetstream\n  nats: { urls: [nats://h:4222], replicas: 3 }\nprivacy:\n  key: env:HOOKRELAY_TEST_KEY\n  keystore: ./keys.db\n")
	cfg, err = Decode(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(cfg.SpoolWarnings(), "\n"); !strings.Contains(w, ":6: privacy.keystore: not used with spool.kind: jetstream: the data keys are kept in the stream HOOKRELAY_KEYS") {
		t.Fatalf("no warning about privacy.keystore: %q", w)
	}

	if cfg, err := Decode(filepath.Join(dir, "absent.yaml"), false); err != nil || cfg.Spool.Kind != SpoolBolt || cfg.SpoolWarnings() != nil {
		t.Fatalf("default kind: %v, %v", cfg, err)
	}

	for _, c := range []struct{ yaml, want string }{
		{"spool:\n  kind: rocks\n", ":2: spool.kind: \"rocks\" is not one of bbolt, jetstream"},
		{"spool:\n  kind: jetstream\n", ":2: spool.nats: required with spool.kind: jetstream"},
		{"spool:\n  nats:\n    urls: [nats://h:4222]\n", ":2: spool.nats: only read with spool.kind: jetstream"},
		{"spool:\n  kind: jetstream\n  nats:\n    stream: X\n", ":3: spool.nats.urls: required"},
		{"spool:\n  kind: jetstream\n  nats:\n    urls: [http://h:80]\n", ":4: spool.nats.urls[0]: scheme \"http\" is not nats or tls"},
		{"spool:\n  kind: jetstream\n  nats:\n    urls: [nats://u:p@h:4222]\n", ":4: spool.nats.urls[0]: credentials in the URL"},
		{"spool:\n  kind: jetstream\n  nats:\n    urls: [nats://h:4222]\n    token: t\n    user: u\n", ":3: spool.nats: give one of creds"},
		{"spool:\n  kind: jetstream\n  nats:\n    urls: [nats://h:4222]\n    creds: not-a-file\n", ":5: spool.nats.creds: not a NATS credentials file"},
		{"spool:\n  kind: jetstream\n  nats:\n    urls: [nats://h:4222]\n    stream: a.b\n", ":5: spool.nats.stream: \"a.b\""},
		{"spool:\n  kind: jetstream\n  nats:\n    urls: [nats://h:4222]\n    replicas: 7\n", ":5: spool.nats.replicas: 7 is not between 1 and 5"},
		{"spool:\n  kind: jetstream\n  nats:\n    urls: [nats://h:4222]\n    partitions: -1\n", ":5: spool.nats.partitions: -1"},
		{"spool:\n  kind: jetstream\n  nats:\n    urls: [nats://h:4222]\n    consumer: x\n", ":5: spool.nats.consumer: unknown field"},
		{"spool:\n  kind: jetstream\n  nats:\n    urls: [nats://h:4222]\n    lease_ttl: 500ms\n", ":5: spool.nats.lease_ttl: 500ms is not between 1s and 10m"},
		// No scheme: unparsed, and its password not quoted.
		{"spool:\n  kind: jetstream\n  nats:\n    urls: [\"user:s3cr3t@h:4222\"]\n", ":4: spool.nats.urls[0]: not a server URL"},
	} {
		write(c.yaml)
		_, err := Decode(path, true)
		var errs *Errors
		if !errors.As(err, &errs) {
			t.Fatalf("%q: %v, want *Errors", c.yaml, err)
		}
		if got := strings.Join(errs.Problems(), "\n"); !strings.Contains(got, filepath.ToSlash(path)+c.want) {
			t.Errorf("%q:\n%s\ndoes not say %q", c.yaml, got, c.want)
		} else if strings.Contains(got, "s3cr3t") {
			t.Errorf("%q: the error quotes the password:\n%s", c.yaml, got)
		}
	}
}
