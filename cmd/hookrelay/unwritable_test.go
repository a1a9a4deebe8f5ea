package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// mountTmpfs mounts a tmpfs of size bytes on dir, or skips the test when it
// cannot (not root, no CAP_SYS_ADMIN, not Linux). The unmount is registered
// as a cleanup that first stops r, whose spool lives there.
func mountTmpfs(t *testing.T, dir string, size int, r *relayProc) {
	t.Helper()
	if _, err := exec.LookPath("mount"); err != nil {
		t.Skipf("cannot fill a file system: no mount command (%v)", err)
	}
	must(t, os.MkdirAll(dir, 0o700))
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a %d-byte tmpfs to fill (needs root or CAP_SYS_ADMIN on Linux): %v: %s", size, err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		r.stopHard()
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
}

// fill writes a file in dir until the file system refuses more, down to
// single pages, and returns its path and size.
func fill(t *testing.T, dir string) (string, int64) {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	must(t, err)
	defer func() { _ = f.Close() }() // the disk is full on purpose: closing may fail too
	var size int64
	for _, chunk := range []int{64 << 10, 4 << 10, 512, 1} {
		buf := make([]byte, chunk)
		for i := 0; i < 1<<16; i++ {
			n, err := f.Write(buf)
			size += int64(n)
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				t.Fatalf("fill %s: %v", path, err)
			}
		}
	}
	return path, size
}

// TestSpoolUnwritable fills the file system holding the spool while the
// relay runs: ingest must answer 503 with Retry-After and acknowledge
// nothing, and once there is room again accept events again, without having
// stored the ones it refused. Filling a small tmpfs is the honest way to get
// ENOSPC as root (chmod does not stop root).
func TestSpoolUnwritable(t *testing.T) {
	sk := &sink{}
	dest := httptest.NewServer(sk)
	t.Cleanup(dest.Close)
	r := newRelay(t, dest.URL, map[string]string{"crash": providerYAML})
	spoolDir := filepath.Dir(r.spool)
	mountTmpfs(t, spoolDir, 2<<20, r)
	must(t, r.start())

	c := &http.Client{Timeout: 10 * time.Second}
	pad := strings.Repeat("x", 32<<10) // so that each event needs fresh pages
	post := func(key string, n int) *http.Response {
		t.Helper()
		body := fmt.Appendf(nil, `{"id":"%s-%d","key":%q,"type":"test.event","n":%d,"pad":%q}`, key, n, key, n, pad)
		req, err := signedRequest(context.Background(), r.ingest+providerPath, body)
		must(t, err)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("POST %s-%d: %v", key, n, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	waitDelivered := func(want []evKey, limit time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(limit); ; time.Sleep(20 * time.Millisecond) {
			a, _ := sk.snapshot()
			first := firstDeliveries(a)
			var missing []evKey
			for _, ev := range want {
				if _, ok := first[ev]; !ok {
					missing = append(missing, ev)
				}
			}
			if len(missing) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("not delivered within %s: %v", limit, missing)
			}
		}
	}

	// Warm up: the spool takes events while there is room.
	var before []evKey
	for n := range 5 {
		if resp := post("before", n); resp.StatusCode != http.StatusOK {
			t.Fatalf("POST before-%d with room on disk: status %d", n, resp.StatusCode)
		}
		before = append(before, evKey{"before", n})
	}
	waitDelivered(before, 10*time.Second)

	filler, size := fill(t, spoolDir)
	t.Logf("filled %s with %d KiB; spool file %d KiB", spoolDir, size>>10, fileSize(r.spool)>>10)

	// Full. bbolt may still place an event in pages its file already owns
	// (freed by earlier transactions): such an event is stored, and a 200 for
	// it is right. Once a commit needs a page the file system cannot give,
	// the event must be refused with 503 and Retry-After, and not be stored.
	// Post until six in a row were refused, at most 30.
	const maxFull = 30
	var (
		refused, tookFull []evKey
		statuses          []string
		run               int
	)
	for n := 0; n < maxFull && run < 6; n++ {
		resp := post("full", n)
		statuses = append(statuses, strconv.Itoa(resp.StatusCode))
		switch resp.StatusCode {
		case http.StatusServiceUnavailable:
			run++
			if resp.Header.Get("Retry-After") == "" {
				t.Errorf("POST full-%d on a full disk: 503 without Retry-After", n)
			}
			refused = append(refused, evKey{"full", n})
		case http.StatusOK:
			run = 0
			tookFull = append(tookFull, evKey{"full", n})
		default:
			t.Errorf("POST full-%d on a full disk: status %d, want 503 (or 200 when it could still be stored)", n, resp.StatusCode)
		}
	}
	t.Logf("on the full disk: statuses %s", strings.Join(statuses, " "))
	if run < 6 {
		t.Fatalf("the relay did not refuse six events in a row on a full disk in %d tries: %s", maxFull, strings.Join(statuses, " "))
	}
	if ok, err := relayAlive(r); !ok {
		t.Fatalf("relay exited on a full disk: %v", err)
	}

	// Room again: events are taken and delivered.
	must(t, os.Remove(filler))
	var after []evKey
	for n := range 5 {
		if resp := post("after", n); resp.StatusCode != http.StatusOK {
			t.Errorf("POST after-%d once there is room again: status %d, want 200", n, resp.StatusCode)
			continue
		}
		after = append(after, evKey{"after", n})
	}
	// The events taken on the full disk were stored: they are delivered too.
	waitDelivered(append(after, tookFull...), 10*time.Second)
	// A refused event wrongly stored need not have arrived yet: the scan of
	// the spool below finds it either way.
	arrivals, _ := sk.snapshot()
	isRefused := map[evKey]bool{}
	for _, ev := range refused {
		isRefused[ev] = true
	}
	deliveredN := map[evKey]int{}
	for _, a := range arrivals {
		deliveredN[a.ev]++
		if isRefused[a.ev] {
			t.Errorf("event %v was answered 503 but delivered: it was stored", a.ev)
		}
	}

	if code, _, err := r.terminate(r.timeout + 5*time.Second); err != nil || code != 0 {
		t.Errorf("SIGTERM: status %d, %v", code, err)
	}
	if err := checkSpoolFile(r.spool); err != nil {
		t.Errorf("spool after the full disk: %v", err)
	}
	sp, err := spool.Open(r.spool, spool.Options{})
	must(t, err)
	defer func() { must(t, sp.Close()) }()
	stored := map[string]bool{}
	must(t, sp.Events("", 0, func(ev *spool.Event, _ []*spool.Delivery) bool {
		stored[ev.IdempotencyID] = true
		return true
	}))
	for _, ev := range refused {
		if id := fmt.Sprintf("crash:%s-%d", ev.key, ev.n); stored[id] {
			t.Errorf("event %s was answered 503 but is in the spool", id)
		}
	}
	for _, ev := range slices.Concat(before, tookFull, after) {
		if id := fmt.Sprintf("crash:%s-%d", ev.key, ev.n); !stored[id] {
			t.Errorf("event %s was acknowledged but is not in the spool", id)
		}
	}
	var twice []evKey
	for ev, n := range deliveredN {
		if n > 1 {
			twice = append(twice, ev)
		}
	}
	t.Logf("full disk: %d events refused with 503, %d taken (stored in pages the spool already had); "+
		"%d accepted before, %d after; events delivered more than once: %v",
		len(refused), len(tookFull), len(before), len(after), twice)
}

// relayAlive reports whether r's process is still running.
func relayAlive(r *relayProc) (bool, error) {
	_, done := r.current()
	select {
	case <-done:
		return false, r.exitErr()
	default:
		return true, nil
	}
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}
