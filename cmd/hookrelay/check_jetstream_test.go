package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckWarnsJetStreamSync: `check` on a JetStream spool says that it
// cannot confirm the servers' sync_interval: always (SPEC 12), and warns
// about one replica; it still passes.
func TestCheckWarnsJetStreamSync(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "providers.d"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte("listen: \"127.0.0.1:1\"\nadmin: { listen: \"127.0.0.1:2\" }\n"+
		"spool:\n  kind: jetstream\n  nats: { urls: [nats://127.0.0.1:4222], stream: LOANS }\n"+
		"destinations:\n  sink:\n    url: http://127.0.0.1:3/x\n"), 0o644))
	code, out, errOut := runBin(t, dir, childEnv(), "check")
	all := out + errOut
	if code != 0 || !strings.Contains(all, "relay.yaml:4: spool.kind: jetstream: hookrelay cannot confirm") ||
		!strings.Contains(all, "sync_interval: always") || !strings.Contains(all, "spool.nats.replicas: 1") ||
		!strings.Contains(all, "jetstream stream LOANS on nats://127.0.0.1:4222") {
		t.Fatalf("check on a JetStream spool: exit %d\n%s%s", code, out, errOut)
	}
}
