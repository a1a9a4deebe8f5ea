package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHostileAdminServeLimits: Serve's admin listener has the ingest
// listener's limits on slow and idle clients.
func TestHostileAdminServeLimits(t *testing.T) {
	srv := newServer(http.NotFoundHandler(), adminLimits)
	if srv.ReadHeaderTimeout != ingestLimits.ReadHeader || srv.ReadTimeout != ingestLimits.Read ||
		srv.IdleTimeout != ingestLimits.Idle || srv.MaxHeaderBytes != ingestLimits.MaxHeaderBytes || srv.WriteTimeout <= 0 {
		t.Errorf("admin server limits %v %v %v %v %d", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout,
			srv.IdleTimeout, srv.MaxHeaderBytes)
	}
}

// slowClient connects to addr, writes first at once, then trickle one byte
// per tick, never its last byte; it returns how long the server took to
// close the connection, or an error when it had not after limit.
func slowClient(addr, first, trickle string, tick, limit time.Duration) (time.Duration, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer func() { _ = conn.Close() }()
	start := time.Now()
	closed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, conn) // an answer, if any, then EOF
		close(closed)
	}()
	if _, err := io.WriteString(conn, first); err != nil {
		return 0, err
	}
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	giveUp := time.NewTimer(limit)
	defer giveUp.Stop()
	for i := 0; ; i++ {
		select {
		case <-closed:
			return time.Since(start), nil
		case <-giveUp.C:
			return 0, fmt.Errorf("still open after %v", limit)
		case <-ticker.C:
			if i < len(trickle)-1 {
				_, _ = conn.Write([]byte{trickle[i]})
			}
		}
	}
}

// TestHostileAdminSlowLoris: Serve's admin listener (limits shortened here
// from 10s, 30s and 2m) cuts a client that sends nothing, one that trickles
// its headers, one that trickles its body and an idle keep-alive
// connection, each within a bounded time, and answers others meanwhile.
// It used to keep them all open.
func TestHostileAdminSlowLoris(t *testing.T) {
	saved := adminLimits
	adminLimits.ReadHeader, adminLimits.Read, adminLimits.Idle = 300*time.Millisecond, time.Second, 500*time.Millisecond
	t.Cleanup(func() { adminLimits = saved })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	adminAddr := ln.Addr().String()
	_ = ln.Close()
	dir := t.TempDir()
	writeConfig(t, dir, "listen: 127.0.0.1:0\nadmin: { listen: "+adminAddr+" }\nspool: { path: ./spool.db }\n"+
		"destinations:\n  dest:\n    url: \"http://127.0.0.1:1/x\"\n", map[string]string{"plain": plainProvider})
	cfg, err := Load(filepath.Join(dir, "relay.yaml"), true)
	must(t, err)
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil))) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("Serve did not return")
		}
	})
	base := "http://" + adminAddr
	waitFor(t, 10*time.Second, "the admin listener", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	head := "POST /admin/dead/retry HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Slow: " +
		strings.Repeat("s", 200) + "\r\n"
	body := `{"destination":"dest"}`
	clients := []struct{ name, first, trickle string }{
		{"silent", "", ""},
		{"trickled headers", "", head},
		{"trickled body", head + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n", body},
		{"idle keep-alive", "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", ""},
	}
	const each = 10
	var wg sync.WaitGroup
	errs := make(chan string, len(clients)*each)
	for _, c := range clients {
		for i := range each {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := slowClient(adminAddr, c.first, c.trickle, 100*time.Millisecond, 8*time.Second)
				if err != nil || d > 3*time.Second {
					errs <- fmt.Sprintf("%s %d: cut after %v, %v", c.name, i, d, err)
				}
			}()
		}
	}
	// Meanwhile the API answers.
	for range 5 {
		resp, err := http.Get(base + "/healthz")
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /healthz during the slow clients: %d", resp.StatusCode)
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if t.Failed() {
		t.Logf("relay log:\n%s", logs.String())
	}
}
