package main

// Soak and fault tests against the real `hookrelay serve` binary (built by
// TestMain in crash_test.go):
//
//   - TestSoak SIGKILLs the relay many times at random moments while events
//     flow to a destination that fails, hangs and resets connections, and
//     restarts it on the same spool each time. `make test` runs a short form;
//     HOOKRELAY_SOAK=1 (make soak) runs the full one.
//   - TestSpoolUnwritable fills the spool's file system mid-run: ingest must
//     answer 503 with Retry-After and acknowledge nothing, and recover once
//     there is room again.
//
// Traffic only ever goes to 127.0.0.1; the only processes signalled are the
// ones these tests start, by their PID.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// Arrival statuses of requests that got no HTTP answer.
const (
	statusReset = -1 // the sink reset the connection
	statusHang  = -2 // the sink did not answer within the relay's timeout
)

// faultySink is a destination that answers 200, fails with 500, hangs past
// the relay's timeout or resets the connection, at random. It records every
// request in arrival order, like sink.
type faultySink struct {
	failRate  float64       // share answered 500
	hangRate  float64       // share left unanswered until the relay gives up (or hang passes)
	resetRate float64       // share whose connection is reset (RST) without an answer
	hang      time.Duration // longest hang; must exceed the relay's timeout

	inflight atomic.Int64 // requests being handled

	mu                   sync.Mutex
	arrivals             []arrival
	bad                  []string
	oks, fails           int
	hangs, resets, lingr int // lingr: resets that could not set SO_LINGER 0
}

func (s *faultySink) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	a, err := readArrival(req)
	if err != nil {
		s.mu.Lock()
		s.bad = append(s.bad, err.Error())
		s.mu.Unlock()
		http.Error(w, "bad envelope", http.StatusBadRequest)
		return
	}
	switch p := rand.Float64(); {
	case p < s.resetRate:
		a.status = statusReset
	case p < s.resetRate+s.hangRate:
		a.status = statusHang
	case p < s.resetRate+s.hangRate+s.failRate:
		a.status = http.StatusInternalServerError
	default:
		a.status = http.StatusOK
	}
	// Recorded before answering: the relay sends a key's next event only
	// after it has this one's outcome, so arrival order is delivery order per
	// key. A 200 recorded here may never reach the relay (it is killed
	// first): then the relay sends the event again, a counted duplicate.
	s.mu.Lock()
	s.arrivals = append(s.arrivals, a)
	switch a.status {
	case statusReset:
		s.resets++
	case statusHang:
		s.hangs++
	case http.StatusOK:
		s.oks++
	default:
		s.fails++
	}
	s.mu.Unlock()

	switch a.status {
	case statusReset:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(fmt.Sprintf("sink: hijack: %v", err)) // httptest's HTTP/1 server always allows it
		}
		// SO_LINGER 0: Close sends RST instead of FIN.
		if tc, ok := conn.(*net.TCPConn); !ok || tc.SetLinger(0) != nil {
			s.mu.Lock()
			s.lingr++
			s.mu.Unlock()
		}
		_ = conn.Close() // the reset is the point; a failed close changes nothing
	case statusHang:
		// Until the relay gives up on the attempt (its timeout closes the
		// connection) or is killed; hang bounds it either way.
		select {
		case <-req.Context().Done():
		case <-time.After(s.hang):
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	default:
		w.WriteHeader(a.status)
	}
}

func (s *faultySink) snapshot() []arrival {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]arrival(nil), s.arrivals...)
}

// soakParams size a TestSoak run.
type soakParams struct {
	full       bool
	kills      int
	events     int // rounded up to a multiple of keys
	keys       int
	clients    int
	waitMin    time.Duration // between a restart and the next kill
	waitMax    time.Duration
	loadLimit  time.Duration // for the whole load, kills included
	drainLimit time.Duration // after the load, for every acknowledged event to be delivered
}

// soakParamsFromEnv: the short form unless HOOKRELAY_SOAK=1, each size
// overridable by HOOKRELAY_SOAK_KILLS, HOOKRELAY_SOAK_EVENTS and
// HOOKRELAY_SOAK_KEYS.
func soakParamsFromEnv(t *testing.T) soakParams {
	t.Helper()
	p := soakParams{
		kills: 10, events: 300, keys: 20, clients: 8,
		waitMin: 20 * time.Millisecond, waitMax: 200 * time.Millisecond,
		loadLimit: 3 * time.Minute, drainLimit: time.Minute,
	}
	if os.Getenv("HOOKRELAY_SOAK") == "1" {
		p = soakParams{
			full:  true,
			kills: 200, events: 2000, keys: 50, clients: 10,
			waitMin: 20 * time.Millisecond, waitMax: 200 * time.Millisecond,
			loadLimit: 15 * time.Minute, drainLimit: 3 * time.Minute,
		}
	}
	for name, v := range map[string]*int{
		"HOOKRELAY_SOAK_KILLS": &p.kills, "HOOKRELAY_SOAK_EVENTS": &p.events, "HOOKRELAY_SOAK_KEYS": &p.keys,
	} {
		s := os.Getenv(name)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1_000_000 {
			t.Fatalf("%s=%q: want a whole number from 1 to 1000000", name, s)
		}
		*v = n
	}
	p.clients = min(p.clients, p.keys)
	p.events = (p.events + p.keys - 1) / p.keys * p.keys
	return p
}

// pacer spreads the start of new events over the kill phase, so that kills
// land while events flow rather than after the load is done: it gives out
// start times at an interval of (time left for the kills) / (events left),
// measuring the kill cycle as it goes. Once every kill is done it no longer
// waits.
type pacer struct {
	total, kills int
	killed       *atomic.Int64
	estCycle     time.Duration // before the first kill

	mu      sync.Mutex
	start   time.Time
	next    time.Time
	started int
}

// wait returns when the next new event may start, or false when ctx ends.
func (p *pacer) wait(ctx context.Context) bool {
	p.mu.Lock()
	now := time.Now()
	var interval time.Duration
	killed := int(p.killed.Load())
	if left := p.kills - killed; left > 0 {
		cycle := p.estCycle
		if killed > 0 {
			cycle = now.Sub(p.start) / time.Duration(killed)
		}
		interval = cycle * time.Duration(left) / time.Duration(max(1, p.total-p.started))
		interval = min(interval, 500*time.Millisecond)
	}
	p.started++
	if p.next.Before(now) {
		p.next = now
	}
	at := p.next
	p.next = p.next.Add(interval)
	p.mu.Unlock()
	if d := time.Until(at); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return false
		}
	}
	return ctx.Err() == nil
}

// checkSpoolFile opens the spool at path the way the relay does, runs
// bbolt's consistency check and closes it. A panic inside bbolt (it panics
// on some corrupt pages) is returned as an error.
func checkSpoolFile(path string) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	sp, err := spool.Open(path, spool.Options{})
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	if err := sp.Check(); err != nil {
		_ = sp.Close() // the check's error is the one to report
		return fmt.Errorf("check: %w", err)
	}
	if err := sp.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// keepCopy copies a spool that failed its check out of the test's temp dir,
// for a post-mortem, and returns where it went.
func keepCopy(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(not copied: " + err.Error() + ")"
	}
	f, err := os.CreateTemp("", "hookrelay-soak-failed-*.db")
	if err != nil {
		return "(not copied: " + err.Error() + ")"
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "(not copied: " + err.Error() + ")"
	}
	return f.Name()
}

// TestSoak SIGKILLs the real relay at random moments while events flow to a
// destination that fails (~15%), hangs past the relay's 500ms timeout (~3%)
// and resets connections (~3%), and restarts it on the same spool each
// time. After every kill the spool must open and pass bbolt's check. At the
// end every acknowledged event must have been delivered, the first 2xx
// deliveries of each key must be in order, and every duplicate must carry
// its first delivery's Idempotency-Key and event id.
func TestSoak(t *testing.T) {
	p := soakParamsFromEnv(t)
	perKey := p.events / p.keys
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0x50a4))
	form := "short"
	if p.full {
		form = "full"
	}
	t.Logf("%s form: %d kills, %d events over %d keys, %d clients; seed %d", form, p.kills, p.events, p.keys, p.clients, seed)
	began := time.Now()

	sk := &faultySink{failRate: 0.15, hangRate: 0.03, resetRate: 0.03, hang: 3 * time.Second}
	dest := httptest.NewServer(sk)
	t.Cleanup(dest.Close)
	r := newRelayWith(t, dest.URL, map[string]string{"crash": providerYAML}, relayOpts{destTimeout: 500 * time.Millisecond})
	must(t, r.start())

	var (
		ackMu      sync.Mutex
		acked      = make(map[evKey]bool, p.events)
		ackCount   atomic.Int64
		failedReq  atomic.Int64 // ingest requests refused or failed, each retried
		gaveUp     atomic.Int64
		inflight   atomic.Int64 // ingest requests under way
		killed     atomic.Int64
		sendErrors sync.Map // error text (trimmed) -> count, for the summary
	)
	loadCtx, cancelLoad := context.WithTimeout(context.Background(), p.loadLimit)
	defer cancelLoad()
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: p.clients, IdleConnTimeout: 5 * time.Second},
	}
	defer client.CloseIdleConnections()
	// send resends one event until the relay acknowledges it, bounded in
	// attempts and by loadCtx.
	send := func(ev evKey) bool {
		body := eventBody(ev.key, ev.n)
		for attempt := 0; attempt < 10000 && loadCtx.Err() == nil; attempt++ {
			req, err := signedRequest(loadCtx, r.ingest+providerPath, body)
			if err != nil {
				t.Errorf("request: %v", err)
				return false
			}
			inflight.Add(1)
			resp, err := client.Do(req)
			inflight.Add(-1)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode/100 == 2:
					return true
				case resp.StatusCode == http.StatusUnauthorized:
					t.Errorf("event %v: 401: signature refused", ev)
					return false
				}
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			failedReq.Add(1)
			msg := err.Error()
			if i := strings.LastIndex(msg, ": "); i >= 0 {
				msg = msg[i+2:]
			}
			n, _ := sendErrors.LoadOrStore(msg, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
			time.Sleep(time.Duration(5+rand.IntN(20)) * time.Millisecond)
		}
		return false
	}

	pace := &pacer{
		total: p.events, kills: p.kills, killed: &killed,
		estCycle: (p.waitMin+p.waitMax)/2 + 100*time.Millisecond, start: time.Now(),
	}
	var wg sync.WaitGroup
	for c := range p.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []string
			for k := c; k < p.keys; k += p.clients {
				mine = append(mine, fmt.Sprintf("key-%02d", k))
			}
			// Round-robin over this client's keys; each key strictly in
			// order, the next event only once the last one is acknowledged.
			for n := range perKey {
				for _, key := range mine {
					if !pace.wait(loadCtx) {
						gaveUp.Add(1)
						return
					}
					ev := evKey{key, n}
					if !send(ev) {
						gaveUp.Add(1)
						return // later events of these keys would overtake this one
					}
					ackMu.Lock()
					acked[ev] = true
					ackMu.Unlock()
					ackCount.Add(1)
				}
			}
		}()
	}

	// The killer: a random wait, SIGKILL, the spool's check, a restart.
	var (
		killsIngest, killsDelivery int // kills with requests under way
		restarts                   []time.Duration
		checkFails                 int
	)
	for killed.Load() < int64(p.kills) {
		wait := p.waitMin + time.Duration(rng.Int64N(int64(p.waitMax-p.waitMin)+1))
		select {
		case <-time.After(wait):
		case <-loadCtx.Done():
		}
		if loadCtx.Err() != nil {
			t.Errorf("load limit %s reached after %d kills", p.loadLimit, killed.Load())
			break
		}
		if inflight.Load() > 0 {
			killsIngest++
		}
		if sk.inflight.Load() > 0 {
			killsDelivery++
		}
		if err := r.kill(); err != nil {
			cancelLoad()
			wg.Wait()
			t.Fatal(err)
		}
		k := killed.Add(1)
		if err := checkSpoolFile(r.spool); err != nil {
			checkFails++
			t.Errorf("kill %d: spool after SIGKILL: %v; copy kept at %s", k, err, keepCopy(r.spool))
			if checkFails >= 3 {
				cancelLoad()
				wg.Wait()
				t.FailNow()
			}
		}
		restartAt := time.Now()
		if err := r.start(); err != nil {
			cancelLoad()
			wg.Wait()
			t.Fatalf("restart after kill %d: %v", k, err)
		}
		restarts = append(restarts, time.Since(restartAt))
		if k%25 == 0 {
			t.Logf("kill %d: %d acknowledged, %d sink requests, %s", k, ackCount.Load(), len(sk.snapshot()), time.Since(began).Round(time.Second))
		}
	}
	ingestDone := ackCount.Load()
	wg.Wait()
	loadTook := time.Since(began)
	total := int(ackCount.Load())
	if total != p.events {
		t.Errorf("acknowledged %d of %d events (%d clients gave up)", total, p.events, gaveUp.Load())
	}

	// Every acknowledged event must reach the sink with a 2xx.
	var missing []evKey
	for deadline := time.Now().Add(p.drainLimit); ; time.Sleep(50 * time.Millisecond) {
		first := firstDeliveries(sk.snapshot())
		missing = missing[:0]
		ackMu.Lock()
		for ev := range acked {
			if _, ok := first[ev]; !ok {
				missing = append(missing, ev)
			}
		}
		ackMu.Unlock()
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(missing) > 0 {
		sort.Slice(missing, func(i, j int) bool {
			return missing[i].key < missing[j].key || missing[i].key == missing[j].key && missing[i].n < missing[j].n
		})
		t.Errorf("%d acknowledged events not delivered within %s, e.g. %v", len(missing), p.drainLimit, missing[:min(5, len(missing))])
	}
	// Let redeliveries of events already seen settle, so that the spool
	// should hold no pending delivery when the relay stops.
	settled := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if pending(r.admin, "sink") == 0 {
			settled = true
			break
		}
	}
	if !settled {
		t.Errorf("the relay still reports deliveries pending 20s after every event was delivered")
	}

	arrivals := sk.snapshot()
	firstSeen, inversions, dups, _ := checkArrivals(t, arrivals)
	if inversions > 0 {
		t.Errorf("%d per-key order inversions among first deliveries", inversions)
	}
	for ev := range firstSeen {
		if !acked[ev] {
			t.Errorf("event %v delivered but never acknowledged", ev)
		}
	}
	sk.mu.Lock()
	bad, oks, fails, hangs, resets, lingr := sk.bad, sk.oks, sk.fails, sk.hangs, sk.resets, sk.lingr
	sk.mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("sink got %d unreadable requests, e.g. %s", len(bad), bad[0])
	}
	if lingr > 0 {
		t.Logf("%d of %d resets closed without SO_LINGER 0 (FIN, not RST)", lingr, resets)
	}
	// Idempotency keys of duplicates: checkArrivals compared each with its
	// first delivery; count how many events were delivered more than once.
	perEvent := map[evKey]int{}
	for _, a := range arrivals {
		if a.status/100 == 2 {
			perEvent[a.ev]++
		}
	}
	dupEvents := 0
	for _, n := range perEvent {
		if n > 1 {
			dupEvents++
		}
	}

	code, _, err := r.terminate(r.timeout + 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Errorf("SIGTERM: exit status %d, want 0", code)
	}
	if err := checkSpoolFile(r.spool); err != nil {
		t.Errorf("spool after the run: %v", err)
	}
	sp, err := spool.Open(r.spool, spool.Options{})
	if err != nil {
		t.Fatalf("open spool after the run: %v", err)
	}
	defer func() { must(t, sp.Close()) }()
	notDelivered := 0
	for ev, a := range firstSeen {
		dl, err := sp.Delivery("sink", a.eventID)
		if err != nil {
			t.Errorf("event %v (%s): %v", ev, a.eventID, err)
			continue
		}
		if settled && dl.Status != spool.Delivered {
			notDelivered++
			if notDelivered <= 5 {
				t.Errorf("event %v (%s): spool status %s, want delivered", ev, a.eventID, dl.Status)
			}
		}
	}
	fi, _ := os.Stat(r.spool)

	var avgRestart, maxRestart time.Duration
	for _, d := range restarts {
		avgRestart += d
		maxRestart = max(maxRestart, d)
	}
	if len(restarts) > 0 {
		avgRestart /= time.Duration(len(restarts))
	}
	var errs []string
	sendErrors.Range(func(k, v any) bool {
		errs = append(errs, fmt.Sprintf("%s x%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	sort.Strings(errs)
	t.Logf("ingest requests refused or failed (each resent): %d: %s", failedReq.Load(), strings.Join(errs, "; "))
	t.Logf("soak summary: form=%s kills=%d (with ingest in flight %d, with deliveries in flight %d, spool check failures %d) "+
		"events=%d keys=%d acknowledged=%d (%d by the last restart) delivered=%d duplicates=%d (events delivered twice or more: %d) "+
		"inversions=%d sink: requests=%d 200=%d 500=%d hangs=%d resets=%d; restart avg %s max %s; spool %d KiB; load %s; elapsed %s",
		form, killed.Load(), killsIngest, killsDelivery, checkFails,
		p.events, p.keys, total, ingestDone, len(firstSeen), dups, dupEvents,
		inversions, len(arrivals), oks, fails, hangs, resets,
		avgRestart.Round(time.Millisecond), maxRestart.Round(time.Millisecond), fi.Size()>>10,
		loadTook.Round(time.Second), time.Since(began).Round(time.Second))
}

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
	time.Sleep(300 * time.Millisecond) // a wrongly stored refused event would be on its way by now
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
