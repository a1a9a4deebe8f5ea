// Package natstest starts embedded NATS servers with JetStream for tests:
// file storage in a temporary directory and fsync on every write
// (sync_interval: always), the setting the README requires, on 127.0.0.1
// and random ports. Only tests import it.
package natstest

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// readyTimeout bounds how long a server may take to accept clients.
const readyTimeout = 10 * time.Second

// options are one server's options, storing under dir.
func options(name, dir string) *server.Options {
	return &server.Options{
		ServerName: name,
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   dir,
		SyncAlways: true,
		NoLog:      true,
		NoSigs:     true,
		// Small limits: tests store little, and the machine is shared.
		JetStreamMaxMemory: 64 << 20,
		JetStreamMaxStore:  1 << 30,
	}
}

// start runs a server and waits until it accepts clients.
func start(opts *server.Options) (*server.Server, error) {
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, err
	}
	go s.Start()
	if !s.ReadyForConnections(readyTimeout) {
		s.Shutdown()
		return nil, fmt.Errorf("natstest: server %s not ready after %s", opts.ServerName, readyTimeout)
	}
	return s, nil
}

// Server is one standalone server, running until Close.
type Server struct {
	*server.Server
	Dir string
}

// Start starts a standalone server storing under dir ("" for a new
// temporary directory, removed by Close).
func Start(dir string) (*Server, error) {
	tmp := ""
	if dir == "" {
		var err error
		if tmp, err = os.MkdirTemp("", "natstest-"); err != nil {
			return nil, err
		}
		dir = tmp
	}
	s, err := start(options("hookrelay-test", dir))
	if err != nil {
		if tmp != "" {
			_ = os.RemoveAll(tmp)
		}
		return nil, err
	}
	return &Server{Server: s, Dir: dir}, nil
}

// Close stops the server and removes its temporary directory.
func (s *Server) Close() {
	s.Shutdown()
	s.WaitForShutdown()
	if strings.Contains(filepath.Base(s.Dir), "natstest-") {
		_ = os.RemoveAll(s.Dir)
	}
}

// Run starts a standalone server for t, stopped when t ends.
func Run(t testing.TB) *Server {
	t.Helper()
	s, err := Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// RunInProcess starts a standalone server for t that listens on no port:
// clients reach it with nats.InProcessServer, over in-memory pipes. Started
// in a synctest bubble, it is the bubble's own (its goroutines, timers and
// pipes are), so that a client waiting on it is durably blocked and the
// bubble's clock moves. It stops when t ends: register it before the
// clients that use it, which cleanups then close first. (The stores' clock,
// package ats, is one per process and ticks in the bubble only when no
// store outside it is open.)
func RunInProcess(t testing.TB) *Server {
	t.Helper()
	o := options("hookrelay-test-inprocess", t.TempDir())
	o.DontListen = true
	s, err := start(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Server: s, Dir: o.StoreDir}
	t.Cleanup(srv.Close)
	return srv
}

// Cluster is n servers routed to each other, one JetStream cluster.
type Cluster struct {
	t       testing.TB
	opts    []*server.Options
	Servers []*server.Server // nil where stopped
}

// RunCluster starts an n-node cluster for t, stopped when t ends.
func RunCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
	}
	c := &Cluster{t: t, Servers: make([]*server.Server, n)}
	for i := range n {
		o := options(fmt.Sprintf("n%d", i), filepath.Join(t.TempDir(), fmt.Sprint(i)))
		o.Cluster.Name = "hookrelay-test"
		o.Cluster.Host = "127.0.0.1"
		o.Cluster.Port = ports[i]
		for j, p := range ports {
			if j != i {
				o.Routes = append(o.Routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
			}
		}
		c.opts = append(c.opts, o)
	}
	// Started together: a JetStream cluster elects its meta leader once
	// the servers see each other.
	errs := make(chan error, n)
	for i := range n {
		go func() {
			s, err := start(c.opts[i])
			c.Servers[i] = s
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for i := range c.Servers {
			c.Stop(i)
		}
	})
	return c
}

// URLs are the client URLs of the running servers.
func (c *Cluster) URLs() []string {
	var out []string
	for _, s := range c.Servers {
		if s != nil {
			out = append(out, s.ClientURL())
		}
	}
	return out
}

// Stop shuts server i down, as a killed node (its files stay).
func (c *Cluster) Stop(i int) {
	if s := c.Servers[i]; s != nil {
		s.Shutdown()
		s.WaitForShutdown()
		c.Servers[i] = nil
	}
}

// Restart starts server i again on its files.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if c.Servers[i] != nil {
		return
	}
	s, err := start(c.opts[i])
	if err != nil {
		c.t.Fatal(err)
	}
	c.Servers[i] = s
}

// Ready waits, bounded, until the cluster has a JetStream meta leader.
func (c *Cluster) Ready(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, s := range c.Servers {
			if s != nil && s.JetStreamIsLeader() {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("natstest: no JetStream leader after %s", timeout)
}
