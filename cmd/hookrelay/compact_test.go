package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/oklog/ulid/v2"
)

// TestCompactCommand: `hookrelay compact` shrinks a stopped relay's spool and
// refuses, exit 1, while the spool is locked.
func TestCompactCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "relay.yaml")
	must(t, os.WriteFile(cfg, []byte("spool:\n  path: ./spool/hookrelay.db\n"), 0o644))
	must(t, os.Mkdir(filepath.Join(dir, "providers.d"), 0o755)) // SPEC 2: it must exist
	path := filepath.Join(dir, "spool", "hookrelay.db")
	sp, err := spool.Open(path, spool.Options{})
	must(t, err)
	keep := ""
	for i := range 300 {
		at := time.Now().Add(-48 * time.Hour)
		ev := &spool.Event{ID: ulid.MustNewDefault(at).String(), Provider: "acme", Type: "t", Key: "k",
			ReceivedAt: at, Envelope: []byte(`{"a":"` + strings.Repeat("x", 2000) + `"}`), Destinations: []string{"sink"}}
		_, err := sp.Append(context.Background(), ev, 0)
		must(t, err)
		if i == 0 {
			keep = ev.ID
			continue
		}
		must(t, sp.Update(context.Background(), &spool.Delivery{EventID: ev.ID, Destination: "sink", Status: spool.Delivered}))
	}
	if _, err := sp.Purge(time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	peak := sp.Size()

	// Locked: the relay would be running.
	var stdout, stderr bytes.Buffer
	if code := run([]string{"compact", "--config", cfg}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "stop the relay") {
		t.Errorf("compact of a locked spool: exit %d, stderr %q", code, stderr.String())
	}
	must(t, sp.Close())

	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"compact", "--config", cfg}, &stdout, &stderr); code != 0 {
		t.Fatalf("compact: exit %d, stderr %q", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "compacted "+path) {
		t.Errorf("compact printed %q", stdout.String())
	}
	sp, err = spool.Open(path, spool.Options{})
	must(t, err)
	defer func() { must(t, sp.Close()) }()
	if got := sp.Size(); got >= peak/2 {
		t.Errorf("spool %d bytes after compact, %d before", got, peak)
	}
	if _, err := sp.Event(keep); err != nil {
		t.Errorf("pending event lost: %v", err)
	}
	if err := sp.Check(); err != nil {
		t.Error(err)
	}
}
