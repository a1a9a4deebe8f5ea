package engine

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats-server/v2/server/ats"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookrelay/hookrelay/engine/spool/jetstream/natstest"
)

// Tests on a clock: inBubble runs a test in a synctest bubble, where time is
// fake and moves only when every goroutine of the test (relay, workers,
// servers, clients) is blocked. A wait for a backoff, a reorder window or a
// poll interval then takes no real time and lands exactly when it is due,
// and synctest.Wait proves that nothing more happens now: "nothing arrives"
// becomes a fact rather than the outcome of a sleep.
//
// Goroutines blocked on a real socket would keep the bubble from ever being
// idle, so in a bubble the harness's servers (the relay's ingest and admin
// listeners, recorders, sinks) listen on a fakeNet: real net/http servers and
// clients over in-memory net.Pipe connections. The spool stays a real bbolt
// file: its fsyncs are system calls that return, which only delay the
// moment the bubble is idle. On JetStream (make test-jetstream) the bubble
// starts its own embedded NATS server, which listens on no port: the relay
// reaches it in process, over pipes made in the bubble, and the server's
// goroutines and timers are the bubble's, so they wait on its clock too.

// bubbles maps a bubble's *testing.T to its network, so that the harness's
// constructors (startRelay, newRecorder, newSink) serve on it.
var bubbles sync.Map // *testing.T -> *fakeNet

// inBubble runs f in a synctest bubble with its own fakeNet.
func inBubble(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	if testNATS != nil {
		dropStreams(t)
	}
	synctest.Test(t, func(t *testing.T) {
		bubbles.Store(t, &fakeNet{lns: map[string]*pipeListener{}})
		t.Cleanup(func() { bubbles.Delete(t) }) // runs last: cleanups are LIFO
		f(t)
	})
}

// netOf returns t's fakeNet, or nil when t is not a bubble's.
func netOf(t *testing.T) *fakeNet {
	if n, ok := bubbles.Load(t); ok {
		return n.(*fakeNet)
	}
	return nil
}

// testServer serves h on a real loopback listener, or, in a bubble, on its
// fakeNet; it closes when t ends.
func testServer(t *testing.T, h http.Handler) *httptest.Server {
	n := netOf(t)
	if n == nil {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv
	}
	srv := httptest.NewUnstartedServer(h)
	_ = srv.Listener.Close() // its loopback listener: replaced
	srv.Listener = n.listen()
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// testClient is the client that reaches testServer's servers.
func testClient(t *testing.T) *http.Client {
	if n := netOf(t); n != nil {
		return n.client
	}
	return http.DefaultClient
}

// fakeNet is an in-memory network: hosts 127.0.0.1:1, :2, ... that exist
// only as pipeListeners, reached through its transport.
type fakeNet struct {
	mu     sync.Mutex
	lns    map[string]*pipeListener
	client *http.Client     // made on first listen, inside the bubble
	nats   *natstest.Server // the bubble's NATS server (natsServer)
}

// natsServer is the bubble's embedded NATS server on JetStream, started on
// first use. Its cleanup, registered then, runs after those of the relays
// opened later (cleanups are LIFO): each relay lets go of the server
// before it stops, and the bubble ends with none of its goroutines left.
func (n *fakeNet) natsServer(t *testing.T) *natstest.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nats == nil {
		// The servers' stores read the time from one clock per process
		// (package ats), ticked by a goroutine that the first store opened
		// starts and the last one closed stops. Opened here, the bubble's
		// clock ticks it; ticked outside, by the real time, the stores
		// would expire a lease written at the bubble's time (2000) at once.
		ats.Register()
		t.Cleanup(ats.Unregister)
		if skew := time.Duration(ats.AccessTime() - time.Now().UnixNano()).Abs(); skew > time.Second {
			t.Fatalf("the NATS stores' clock is %v off the bubble's: a store outside the bubble is open (dropStreams)", skew)
		}
		n.nats = natstest.RunInProcess(t)
	}
	return n.nats
}

// dropStreams deletes every stream of the package's JetStream server before
// a bubble starts: they belong to tests that ended, and while one is open
// the stores' clock (natsServer) is not the bubble's.
func dropStreams(t *testing.T) {
	t.Helper()
	nc, err := nats.Connect(testNATS.ClientURL())
	must(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	names := js.StreamNames(ctx)
	var all []string
	for name := range names.Name() {
		all = append(all, name)
	}
	must(t, names.Err())
	for _, name := range all {
		must(t, js.DeleteStream(ctx, name))
	}
}

// listen makes a listener at the next free address.
func (n *fakeNet) listen() *pipeListener {
	n.mu.Lock()
	defer n.mu.Unlock()
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: len(n.lns) + 1}
	ln := &pipeListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
	n.lns[addr.String()] = ln
	if n.client == nil {
		n.client = &http.Client{Transport: n.transport()}
	}
	return ln
}

// transport is an http.Transport whose connections are pipes to n's
// listeners; closing n's servers ends them.
func (n *fakeNet) transport() *http.Transport {
	return &http.Transport{DialContext: n.dial, MaxIdleConnsPerHost: 64}
}

func (n *fakeNet) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	n.mu.Lock()
	ln := n.lns[addr]
	n.mu.Unlock()
	if ln == nil {
		return nil, fmt.Errorf("fakenet: dial %s: connection refused", addr)
	}
	client, server := net.Pipe()
	from := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	select {
	case ln.conns <- &pipeConn{Conn: server, local: ln.addr, remote: from}:
		return &pipeConn{Conn: client, local: from, remote: ln.addr}, nil
	case <-ln.done:
		return nil, fmt.Errorf("fakenet: dial %s: connection refused", addr)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// pipeListener accepts the pipes fakeNet.dial makes to its address.
type pipeListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return l.addr }

// pipeConn is a pipe with TCP addresses, as the relay logs and records a
// sender's address.
type pipeConn struct {
	net.Conn
	local, remote net.Addr
}

func (c *pipeConn) LocalAddr() net.Addr  { return c.local }
func (c *pipeConn) RemoteAddr() net.Addr { return c.remote }

// useNetwork sends the relay's deliveries and polls over n. Called between
// Open and Start, before any request. (A JWS verifier's key set fetches still
// go to the network: a test that verifies JWS stays on real time.)
func useNetwork(r *Relay, n *fakeNet) {
	r.client.HTTPClient.Transport = n.transport()
	r.poll.Transport = n.transport()
}

// advance moves the bubble's clock d forward and returns once every
// goroutine of the bubble is blocked again: whatever was due within d has
// happened, and nothing else is under way.
func advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// bubbled is inBubble for t.Run: t.Run(name, bubbled(func(t *testing.T) {...})).
func bubbled(f func(t *testing.T)) func(t *testing.T) {
	return func(t *testing.T) { inBubble(t, f) }
}
