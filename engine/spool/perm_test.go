package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// warnings collects what Open warns about.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) warn(msg string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, strings.TrimSpace(msg+" "+fmt.Sprintln(args...)))
}

func (w *warnings) about(path string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.msgs {
		if strings.Contains(m, " "+path+" ") {
			return m
		}
	}
	return ""
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestOpenTightensPermissions: an existing spool file (0644) and its own
// directory (0755), readable by other users, are made owner-only (0600,
// 0700) with a warning each; a spool in a directory shared with other
// directories leaves that directory alone but warns; a private spool
// opens without a word.
func TestOpenTightensPermissions(t *testing.T) {
	if !checkPerms {
		t.Skip("no Unix permissions here")
	}
	loosen := func(t *testing.T, path string) {
		t.Helper()
		b, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		must(t, b.Close())
		must(t, os.Chmod(path, 0o644))
		must(t, os.Chmod(filepath.Dir(path), 0o755))
	}

	t.Run("own directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "data", "hookrelay.db")
		loosen(t, path)
		w := &warnings{}
		mustOpenPath(t, path, Options{Warn: w.warn})
		if m := mode(t, path); m != 0o600 {
			t.Errorf("spool file mode %04o, want 0600", m)
		}
		if m := mode(t, filepath.Dir(path)); m != 0o700 {
			t.Errorf("spool directory mode %04o, want 0700", m)
		}
		for _, p := range []string{path, filepath.Dir(path)} {
			if m := w.about(p); !strings.Contains(m, "tightened") || !strings.Contains(m, "0755") && !strings.Contains(m, "0644") {
				t.Errorf("warning about %s: %q", p, m)
			}
		}
	})

	t.Run("shared directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "hookrelay.db")
		must(t, os.Mkdir(filepath.Join(filepath.Dir(path), "providers.d"), 0o755))
		loosen(t, path)
		w := &warnings{}
		mustOpenPath(t, path, Options{Warn: w.warn})
		if m := mode(t, path); m != 0o600 {
			t.Errorf("spool file mode %04o, want 0600", m)
		}
		if m := mode(t, filepath.Dir(path)); m != 0o755 {
			t.Errorf("a shared directory changed to %04o", m)
		}
		if m := w.about(filepath.Dir(path)); !strings.Contains(m, "0755") || strings.Contains(m, "tightened") {
			t.Errorf("warning about the shared directory: %q", m)
		}
	})

	t.Run("private", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "data", "hookrelay.db")
		b, err := Open(path, Options{})
		must(t, err)
		must(t, b.Close())
		if m := mode(t, path); m != 0o600 {
			t.Errorf("new spool file mode %04o, want 0600", m)
		}
		w := &warnings{}
		mustOpenPath(t, path, Options{Warn: w.warn})
		if len(w.msgs) != 0 {
			t.Errorf("warnings for a private spool: %q", w.msgs)
		}
	})
}

// TestPrivateLeavesSymlinkTarget: a symbolic link at the spool's path is not
// followed by the tightening: the file it points to keeps its mode.
func TestPrivateLeavesSymlinkTarget(t *testing.T) {
	if !checkPerms {
		t.Skip("no Unix permissions here")
	}
	elsewhere := filepath.Join(t.TempDir(), "not-ours.db")
	must(t, os.WriteFile(elsewhere, nil, 0o644))
	must(t, os.Chmod(elsewhere, 0o644))
	dir := filepath.Join(t.TempDir(), "spool")
	must(t, os.Mkdir(dir, 0o700))
	link := filepath.Join(dir, "hookrelay.db")
	must(t, os.Symlink(elsewhere, link))
	var w warnings
	private(link, w.warn)
	if got := mode(t, elsewhere); got != 0o644 {
		t.Errorf("the link's target was changed to %04o", got)
	}
	if len(w.msgs) != 1 || !strings.Contains(w.msgs[0], "symbolic link") {
		t.Errorf("want one warning about the link; got %q", w.msgs)
	}
}
