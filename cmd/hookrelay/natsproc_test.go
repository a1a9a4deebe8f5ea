package main

// NATS servers as child processes, for the JetStream soak and benchmark
// (soakjs_test.go, benchjs_test.go): a real nats-server binary built from
// the module's own nats-server version, storing in a temp dir with
// sync_interval: always, on 127.0.0.1 ports below the ephemeral range, so
// that a node can be SIGKILLed and restarted on its store and ports like a
// relay. Only processes started here are signalled, by their PID.

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	natsBinOnce sync.Once
	natsBin     string
	natsBinErr  error
)

// natsServerBin is HOOKRELAY_NATS_SERVER (make soak-js builds it into
// bin/), else a nats-server built once next to the relay binary from the
// version go.mod requires.
func natsServerBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HOOKRELAY_NATS_SERVER"); p != "" {
		return p
	}
	natsBinOnce.Do(func() {
		natsBin = filepath.Join(filepath.Dir(binPath), "nats-server")
		build := exec.Command(goTool(), "build", "-o", natsBin, "github.com/nats-io/nats-server/v2")
		if out, err := build.CombinedOutput(); err != nil {
			natsBinErr = fmt.Errorf("go build nats-server: %w: %s", err, tail(out, 2000))
		}
	})
	if natsBinErr != nil {
		t.Fatal(natsBinErr)
	}
	return natsBin
}

// natsNode is one nats-server child process with its config, store and
// ports, restartable after a kill.
type natsNode struct {
	name                string
	dir                 string
	client, route, mon  int
	log                 *os.File
	mu                  sync.Mutex
	cmd                 *exec.Cmd
	done                chan struct{}
	starts              int
	routePorts          []int // of every node of the cluster; none for a single server
	clusterName, binary string
}

// natsCluster is n nodes; n = 1 is a standalone server (R1), n = 3 a
// cluster with routes between every node.
type natsCluster struct {
	nodes []*natsNode
}

// newNATSCluster writes the configs of n nodes and starts them, waiting
// until every one reports JetStream healthy. Cleanup kills them.
func newNATSCluster(t *testing.T, n int) *natsCluster {
	t.Helper()
	bin := natsServerBin(t)
	c := &natsCluster{}
	var routes []int
	for i := range n {
		dir := t.TempDir()
		cl, mon := freePorts(t)
		rt := freePort(t)
		f, err := os.Create(filepath.Join(dir, "nats.log"))
		must(t, err)
		node := &natsNode{name: fmt.Sprintf("n%d", i+1), dir: dir, client: cl, route: rt, mon: mon, log: f, clusterName: "hookrelay-test", binary: bin}
		c.nodes = append(c.nodes, node)
		routes = append(routes, rt)
	}
	for _, node := range c.nodes {
		if n > 1 {
			node.routePorts = routes
		}
		must(t, node.writeConfig())
	}
	t.Cleanup(func() {
		for _, node := range c.nodes {
			node.stopHard()
			_ = node.log.Close() // the server wrote through its own descriptor
			if t.Failed() {
				if b, err := os.ReadFile(node.log.Name()); err == nil {
					t.Logf("nats %s log (last 4 KiB):\n%s", node.name, tail(b, 4<<10))
				}
			}
		}
	})
	for _, node := range c.nodes {
		must(t, node.start())
	}
	for _, node := range c.nodes {
		must(t, node.waitHealthy(60*time.Second))
	}
	return c
}

// urls is the client URL of every node, as a YAML flow list's items.
func (c *natsCluster) urls() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, fmt.Sprintf("nats://127.0.0.1:%d", n.client))
	}
	return out
}

func (n *natsNode) writeConfig() error {
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %s\nlisten: 127.0.0.1:%d\nhttp: 127.0.0.1:%d\n", n.name, n.client, n.mon)
	// sync_interval: always is what the README requires of production
	// servers; the soak's "0 acknowledged events lost" is about it.
	fmt.Fprintf(&b, "jetstream { store_dir: %q, sync_interval: always, max_memory_store: 64MB, max_file_store: 4GB }\n", filepath.Join(n.dir, "js"))
	if len(n.routePorts) > 0 {
		var routes []string
		for _, p := range n.routePorts {
			if p != n.route {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
			}
		}
		fmt.Fprintf(&b, "cluster { name: %s, listen: 127.0.0.1:%d, routes: [%s] }\n", n.clusterName, n.route, strings.Join(routes, ", "))
	}
	return os.WriteFile(filepath.Join(n.dir, "nats.conf"), []byte(b.String()), 0o644)
}

// start runs the server on its config; waitHealthy says when it is usable.
func (n *natsNode) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.done != nil {
		select {
		case <-n.done:
		default:
			return errors.New("nats node already running")
		}
	}
	n.starts++
	fmt.Fprintf(n.log, "=== start %d at %s ===\n", n.starts, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(n.binary, "-c", filepath.Join(n.dir, "nats.conf"))
	cmd.Dir = n.dir
	cmd.Stdout, cmd.Stderr = n.log, n.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start nats %s: %w", n.name, err)
	}
	done := make(chan struct{})
	n.cmd, n.done = cmd, done
	go func() {
		_ = cmd.Wait() // a killed server's exit status says nothing more
		close(done)
	}()
	return nil
}

// waitHealthy waits until /healthz answers 200: the server accepts clients
// and its JetStream is current with the cluster's.
func (n *natsNode) waitHealthy(limit time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", n.mon)
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-done:
			return fmt.Errorf("nats %s exited during start-up", n.name)
		default:
		}
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return fmt.Errorf("nats %s not healthy after %s", n.name, limit)
}

// kill sends SIGKILL to the server and waits for it to be gone.
func (n *natsNode) kill() error {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return errors.New("nats node not started")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill nats %s: %w", n.name, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("nats %s still running 10s after SIGKILL", n.name)
	}
}

// stopHard kills the server if it is running; for cleanup.
func (n *natsNode) stopHard() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
	default:
		_ = cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	}
}

// jsRelayCfg is the spool block of a relay on stream at urls.
func jsRelayCfg(urls []string, stream string, replicas, partitions int) string {
	return fmt.Sprintf("spool:\n  kind: jetstream\n  nats: { urls: [%s], stream: %s, replicas: %d, partitions: %d }\n",
		strings.Join(urls, ", "), stream, replicas, partitions)
}

// onJetStream rewrites r's relay.yaml to use spool instead of its bbolt file.
func onJetStream(t *testing.T, r *relayProc, spoolBlock string) {
	t.Helper()
	cfgPath := filepath.Join(r.dir, "relay.yaml")
	cfg, err := os.ReadFile(cfgPath)
	must(t, err)
	const bbolt = "spool:\n  path: ./spool/hookrelay.db\n"
	if !strings.Contains(string(cfg), bbolt) {
		t.Fatal("relay.yaml has no bbolt spool block to replace")
	}
	must(t, os.WriteFile(cfgPath, []byte(strings.Replace(string(cfg), bbolt, spoolBlock, 1)), 0o644))
}
