package loadtest

// TestScalePending measures what a restart costs with a large backlog: a
// spool filled with HOOKRELAY_SCALE_EVENTS (default 1,000,000) pending events,
// one delivery each to one destination, over 10,000 keys. It is skipped
// unless HOOKRELAY_SCALE=1:
//
//	HOOKRELAY_SCALE=1 go test -run TestScalePending -count 1 -v -timeout 30m ./engine/loadtest/
//
// It reports the fill rate (Append from many goroutines, group committed),
// then the restart of the real binary (`hookrelay serve`: time from exec to
// /readyz 200, and the child's VmRSS once ready), then the same restart in
// this process (engine.Open + Start, Go heap after a GC). Targets: under 256 MiB
// resident, serving in under 2 s. HOOKRELAY_SCALE_CPUPROFILE=FILE and
// HOOKRELAY_SCALE_MEMPROFILE=FILE write profiles of the in-process restart.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine"
	"github.com/hookrelay/hookrelay/engine/spool"
)

func TestScalePending(t *testing.T) {
	if os.Getenv("HOOKRELAY_SCALE") != "1" {
		t.Skip("set HOOKRELAY_SCALE=1 to run")
	}
	events := envInt(t, "HOOKRELAY_SCALE_EVENTS", 1_000_000)
	const keys, writers = 10_000, 256

	dir := t.TempDir()
	spoolPath := filepath.Join(dir, "spool", "hookrelay.db")

	// Fill.
	sp, err := spool.Open(spoolPath, spool.Options{})
	must(t, err)
	envelope := []byte(`{"id":"00000000000000000000000000","provider":"example","type":"payment.completed","key":"order-0000","received_at":"2026-01-01T00:00:00Z","data":{"amount":100,"currency":"SEK","reference":"abcdefghijklmnop"}}`)
	raw := []byte(`{"id":"evt-0000000","key":"order-0000","type":"order.paid","data":{"amount":100,"currency":"SEK","reference":"abcdefghijklmnop"}}`)
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	start := time.Now()
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(events) {
					return
				}
				ev := &spool.Event{
					ID: ulid.Make().String(), Provider: "example", Type: "payment.completed",
					Key: fmt.Sprintf("order-%05d", i%keys), IdempotencyID: fmt.Sprintf("evt-%07d", i),
					ReceivedAt: time.Now(), Envelope: envelope, Raw: raw, Destinations: []string{"sink"},
				}
				if _, err := sp.Append(context.Background(), ev, 0); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	fill := time.Since(start)
	select {
	case err := <-errc:
		t.Fatalf("append: %v", err)
	default:
	}
	must(t, sp.SetPaused("sink", true))
	must(t, sp.Close())
	fi, err := os.Stat(spoolPath)
	must(t, err)
	t.Logf("fill: %d events over %d keys from %d goroutines in %s: %.0f events/s; spool file %d MiB",
		events, keys, writers, fill.Round(time.Millisecond), float64(events)/fill.Seconds(), fi.Size()>>20)

	// Configuration: one destination, paused in the spool, and a closed port
	// behind it in case the pause were lost.
	in, adm, dead := scaleFreePort(t), scaleFreePort(t), scaleFreePort(t)
	writeConfig(t, dir, fmt.Sprintf(`listen: "127.0.0.1:%d"
admin:
  listen: "127.0.0.1:%d"
spool:
  path: ./spool/hookrelay.db
providers_dir: ./providers.d
log: { level: warn, format: text }
destinations:
  sink:
    url: "http://127.0.0.1:%d/hook"
    retry:
      max_attempts: 100
      initial: 1h
      max: 1h
`, in, adm, dead), nil)

	// The real binary. The page cache holds the file (just written), as it
	// would after a quick restart.
	bin := filepath.Join(dir, "hookrelay")
	build := exec.Command("go", "build", "-o", bin, "./cmd/hookrelay")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for run := 1; run <= 2; run++ {
		ready, st := scaleServe(t, bin, dir, fmt.Sprintf("http://127.0.0.1:%d/readyz", adm))
		t.Logf("serve (run %d): ready in %s; VmRSS %d MiB (anon %d MiB, file %d MiB), VmHWM %d MiB [targets: < 2s, < 256 MiB]",
			run, ready.Round(time.Millisecond), st["VmRSS"]>>10, st["RssAnon"]>>10, st["RssFile"]>>10, st["VmHWM"]>>10)
	}

	// The same restart in this process, for the Go heap and profiles.
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	if f := os.Getenv("HOOKRELAY_SCALE_CPUPROFILE"); f != "" {
		pf, err := os.Create(f)
		must(t, err)
		must(t, pprof.StartCPUProfile(pf))
		defer func() { _ = pf.Close() }()
	}
	start = time.Now()
	cfg, err := engine.Load(filepath.Join(dir, "relay.yaml"), true)
	must(t, err)
	r, err := engine.Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	must(t, err)
	must(t, r.Start())
	took := time.Since(start)
	if os.Getenv("HOOKRELAY_SCALE_CPUPROFILE") != "" {
		pprof.StopCPUProfile()
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	pending, _ := r.Backlog()
	st := procStatus(t, os.Getpid())
	t.Logf("in process: Open+Start in %s; %d pending in memory; HeapInuse %d MiB (%d MiB before engine.Open); VmRSS %d MiB",
		took.Round(time.Millisecond), pending, after.HeapInuse>>20, before.HeapInuse>>20, st["VmRSS"]>>10)
	if f := os.Getenv("HOOKRELAY_SCALE_MEMPROFILE"); f != "" {
		pf, err := os.Create(f)
		must(t, err)
		must(t, pprof.WriteHeapProfile(pf))
		_ = pf.Close()
	}
	if pending != events {
		t.Errorf("%d deliveries queued in memory, want %d", pending, events)
	}
	must(t, r.Close(5*time.Second))
}

// scaleServe runs `hookrelay serve` in dir until /readyz answers 200, reads
// its /proc status, and stops it.
func scaleServe(t *testing.T, bin, dir, readyz string) (time.Duration, map[string]int64) {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--config", filepath.Join(dir, "relay.yaml"))
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	start := time.Now()
	must(t, cmd.Start())
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	c := &http.Client{Timeout: time.Second}
	for {
		if time.Since(start) > 5*time.Minute {
			t.Fatal("serve: not ready after 5 minutes")
		}
		if resp, err := c.Get(readyz); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	ready := time.Since(start)
	return ready, procStatus(t, cmd.Process.Pid)
}

// procStatus reads the kB fields of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	must(t, err)
	defer func() { _ = f.Close() }()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		if v, ok := strings.CutSuffix(strings.TrimSpace(val), " kB"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			out[name] = n
		}
	}
	return out
}

func scaleFreePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}
