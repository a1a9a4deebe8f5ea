// Package engine is hookrelay's composition root: no step of the flow of its
// own, it wires the steps together (Load, Open, Start, Reload, Serve). It
// compiles what engine/config decodes (providers through engine/provider,
// each with its register and poll blocks through engine/lender;
// destinations through engine/dispatch and engine/outbound), and gives each
// room what it needs of the others as values and small seams: the HTTP
// edge is engine/ingest, the dispatcher and delivery engine/dispatch,
// registration and polling engine/lender, the admin API engine/admin (given
// the relay as an admin.Relay, adminRelay) with engine/console, encryption
// at rest engine/seal under engine/spool.
// One webhook's path: ingest -> verify -> map -> route -> spool (group
// commit) -> answer -> dispatcher -> destination.
//
// It may import its own subpackages (engine/config, engine/provider,
// engine/ingest, engine/admin, engine/console, engine/dispatch,
// engine/lender, engine/outbound, engine/seal, engine/spool,
// engine/internal/...), verifiers, transforms, internal/, Prometheus'
// client and go-retryablehttp; none of those imports engine.
package engine

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/engine/dispatch"
	"github.com/hookrelay/hookrelay/engine/ingest"
	"github.com/hookrelay/hookrelay/engine/lender"
	"github.com/hookrelay/hookrelay/engine/outbound"
	"github.com/hookrelay/hookrelay/engine/provider"
	"github.com/hookrelay/hookrelay/engine/seal"
	"github.com/hookrelay/hookrelay/engine/spool"
)

// Relay is a running hookrelay: its spool, its handlers and its dispatcher.
type Relay struct {
	cfg           atomic.Pointer[Config] // replaced whole by a reload
	log           *slog.Logger
	spool         spool.Store
	dispatch      *dispatch.Dispatcher
	client        *retryablehttp.Client // the deliveries' (the tests' fake network replaces its transport)
	m             *metrics
	rejections    *ingest.Rejections
	edge          *ingest.Edge           // the HTTP edge (engine/ingest)
	purged        *prometheus.CounterVec // hookrelay_purged_total{kind}
	ingestMux     atomic.Pointer[http.Handler]
	ready         atomic.Bool
	reloadMu      sync.Mutex       // one reload at a time
	inflight      atomic.Int64     // ingest requests past admit (see max_inflight)
	poll          lender.Pollers   // status polling (SPEC 9); ready once newLenders wired it
	registrations lender.Registrar // automatic registrations (SPEC 9)
	keys          *seal.Keystore   // privacy: the data keys; nil without privacy
	rotation      rotation         // privacy: the background rewrap's progress

	stop context.CancelFunc
	bg   sync.WaitGroup
}

// Open opens the spool and builds the handlers; Start begins delivering.
func Open(cfg *Config, log *slog.Logger) (*Relay, error) {
	r := &Relay{log: log, rejections: ingest.NewRejections(1000)}
	r.cfg.Store(cfg)
	r.m = newMetrics(r)
	r.purged = newPurgedTotal()
	r.m.reg.MustRegister(r.purged)
	opts := spool.Options{Committed: func(refs []spool.Ref) {
		r.dispatch.Committed(refs)
	}, Warn: log.Warn}
	if cfg.master != nil {
		ks, err := openKeystore(cfg)
		if err != nil {
			return nil, err
		}
		r.keys, opts.Sealer = ks, ks
	}
	sp, err := openSpool(cfg, opts, log)
	if err != nil {
		_ = r.closeKeys()
		return nil, err
	}
	r.spool = sp
	r.newLenders()
	r.client = outbound.NewClient(256)
	r.dispatch = dispatch.New(sp, r.client, log, r.m)
	r.edge = ingest.New(ingest.Options{
		Spool: sp, Log: log, Rejections: r.rejections, Observe: r.m.ingested, Shed: r.m.shed,
		Admit: r.admit, Release: r.release, Track: r.trackPollKey,
	})
	mux, err := r.newIngestMux(cfg)
	if err != nil {
		_ = sp.Close()
		_ = r.closeKeys()
		return nil, err
	}
	r.ingestMux.Store(&mux)
	return r, nil
}

// Config is the configuration in force: the one loaded at Open, or the
// last a Reload put in force. It is never changed, only replaced whole.
func (r *Relay) Config() *Config { return r.cfg.Load() }

// Start rebuilds the delivery queues from the spool and starts delivering
// and purging. It returns once the queues are rebuilt.
func (r *Relay) Start() error {
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	paused, err := r.spool.Paused()
	if err == nil {
		cfg := r.Config()
		err = r.dispatch.Start(ctx, cfg.Destinations, reorderWindows(cfg.Providers), paused)
	}
	if err != nil {
		cancel()
		return err
	}
	if sh, ok := r.spool.(spool.Shared); ok {
		// Several relays on one stream: this one delivers the partitions
		// it holds a lease on (README, Scale-out).
		done, err := sh.Share(ctx, r.dispatch)
		if err != nil {
			cancel()
			return err
		}
		r.bg.Add(1)
		go func() {
			defer r.bg.Done()
			<-done
		}()
	}
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		r.purgeLoop(ctx)
	}()
	r.startRegistrations(ctx)
	r.poll.Start(ctx, &r.bg, pollSources(r.Config()))
	r.startRewrap(ctx)
	r.ready.Store(true)
	return nil
}

// Reload loads the configuration again and, only when all of it is valid,
// puts it in force (SPEC 7): requests in flight finish on the old one, and
// queued deliveries keep their destination by name. A reload never moves a
// listener (SPEC 2): a changed listen or admin.listen refuses it, so that
// the token rule Load checked holds for the listener actually running (a
// move to loopback without a token, kept on the old public address, would
// open it). A changed spool path is ignored with a warning. A refused
// configuration changes nothing.
func (r *Relay) Reload() error {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	old := r.Config()
	cfg, err := Load(old.Path, old.File != "")
	if err == nil {
		err = listenersKept(old, cfg)
	}
	if err != nil {
		r.log.Error("reload refused", "errors", problems(err))
		return err
	}
	if cfg.Spool.Path != old.Spool.Path {
		r.log.Warn("reload: spool.path takes effect only after a restart")
		cfg.Spool.Path = old.Spool.Path
	}
	if cfg.Spool.Kind != old.Spool.Kind || !reflect.DeepEqual(cfg.Spool.NATS, old.Spool.NATS) {
		r.log.Warn("reload: spool.kind and spool.nats take effect only after a restart")
		cfg.Spool.Kind, cfg.Spool.NATS = old.Spool.Kind, old.Spool.NATS
	}
	if cfg.PrivacyOn() != old.PrivacyOn() {
		// The keystore is opened with the spool, once: the running master
		// keys stay in force.
		r.log.Warn("reload: a change of privacy: takes effect only after a restart")
	}
	mux, err := r.newIngestMux(cfg)
	if err != nil {
		r.log.Error("reload refused", "errors", []string{err.Error()})
		return err
	}
	// New destinations get their lanes before any request can route to them;
	// a lane rebuilt or added back keeps an operator's pause.
	paused, err := r.spool.Paused()
	if err != nil {
		r.log.Error("reload failed to read paused destinations", "error", err)
		return err
	}
	if err := r.dispatch.Configure(cfg.Destinations, reorderWindows(cfg.Providers), paused); err != nil {
		r.log.Error("reload failed to rebuild delivery queues", "error", err)
		return err
	}
	r.cfg.Store(cfg)
	r.ingestMux.Store(&mux)
	r.poll.Configure(pollSources(cfg))
	for _, w := range cfg.Warnings {
		r.log.Warn(w)
	}
	r.log.Info("configuration reloaded", "providers", len(cfg.Providers), "destinations", len(cfg.Destinations))
	return nil
}

// newIngestMux is the ingest handler of cfg's providers.
func (r *Relay) newIngestMux(cfg *Config) (http.Handler, error) {
	providers := make([]*provider.Provider, len(cfg.Providers))
	for i, p := range cfg.Providers {
		providers[i] = p.Provider
	}
	return r.edge.Mux(providers)
}

// admit takes one of max_inflight places, or reports that there is none.
func (r *Relay) admit() bool {
	if r.inflight.Add(1) > int64(r.Config().MaxInflight) {
		r.inflight.Add(-1)
		return false
	}
	return true
}

func (r *Relay) release() { r.inflight.Add(-1) }

// reorderWindows is each provider's reorder_window, for the dispatcher.
func reorderWindows(providers []*Provider) map[string]time.Duration {
	out := make(map[string]time.Duration, len(providers))
	for _, p := range providers {
		out[p.Name] = p.Reorder
	}
	return out
}

// Backlog is how many deliveries the relay's lanes hold in memory: pending,
// queued and not yet recorded final in the spool (a lane drops one only
// after the spool's update of its outcome committed), and dead, the dead
// ones among them that a key waits behind. It is what the load harness
// (engine/loadtest) waits on; operators see the same per destination on
// /metrics.
func (r *Relay) Backlog() (pending, dead int) { return r.dispatch.Backlog() }

// listenersKept refuses a configuration that moves a listener.
func listenersKept(old, cfg *Config) error {
	errs := &config.Errors{}
	for _, l := range []struct{ key, was, is string }{
		{"listen", old.Listen, cfg.Listen}, {"admin.listen", old.Admin.Listen, cfg.Admin.Listen},
	} {
		if l.is != l.was {
			errs.Add(cfg.Doc(), l.key, "%s: %q differs from the running %q; a listener moves only on restart, so nothing was reloaded",
				l.key, l.is, l.was)
		}
	}
	if errs.Empty() {
		return nil
	}
	return errs
}

// problems lists the "file:line: message" lines of a load error.
func problems(err error) []string {
	var l *config.Errors
	if errors.As(err, &l) {
		return l.Problems()
	}
	return []string{err.Error()}
}

// Close stops delivering, waiting up to timeout for attempts in flight, and
// closes the spool.
func (r *Relay) Close(timeout time.Duration) error {
	r.ready.Store(false)
	if r.stop != nil {
		r.stop()
	}
	done := make(chan struct{})
	go func() {
		r.dispatch.Wait()
		r.bg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		r.log.Warn("shutdown timeout: closing with deliveries in flight; they will be retried after restart")
	}
	err := r.spool.Close()
	// After the spool: a write in flight may still seal with a data key.
	if kerr := r.closeKeys(); err == nil {
		err = kerr
	}
	return err
}

// IngestHandler serves the lenders.
func (r *Relay) IngestHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		(*r.ingestMux.Load()).ServeHTTP(w, req)
	})
}

// purgeLoop purges every kind of record past its retention, hourly.
func (r *Relay) purgeLoop(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		r.purge(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Serve runs the relay on its listeners until ctx ends, reloading on SIGHUP,
// then shuts down gracefully: stop accepting, finish requests and deliveries
// in flight (up to shutdown_timeout), close the spool.
func Serve(ctx context.Context, cfg *Config, log *slog.Logger) error {
	// The listeners first: a port in use is the first and only error, before
	// the spool is opened or anything starts that would log on the way out.
	var lns []net.Listener
	for _, addr := range []string{cfg.Listen, cfg.Admin.Listen} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range lns {
				_ = l.Close()
			}
			return err
		}
		lns = append(lns, ln)
	}
	r, err := Open(cfg, log)
	if err == nil {
		if err = r.Start(); err != nil {
			_ = r.Close(0)
		}
	}
	if err != nil {
		for _, l := range lns {
			_ = l.Close()
		}
		return err
	}
	ingest := newServer(r.IngestHandler(), ingestLimits)
	admin := newServer(r.AdminHandler(), adminLimits)
	errc := make(chan error, 2)
	for i, srv := range []*http.Server{ingest, admin} {
		ln := lns[i]
		log.Info("listening", "addr", ln.Addr().String())
		go func() {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	logProviders(log, cfg.Providers)
	if off := cfg.PrivacyOff(); off != "" {
		log.Warn(off)
	}
	log.Info("hookrelay serving", "providers", len(cfg.Providers), "destinations", len(cfg.Destinations))

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-hup:
			_ = r.Reload() // a refused reload is logged and changes nothing
		case err = <-errc:
			log.Error("listener failed", "error", err)
			break wait
		}
	}
	log.Info("shutting down")
	// No new delivery starts from here; those in flight finish in Close.
	r.stop()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	_ = ingest.Shutdown(sctx)
	_ = admin.Shutdown(sctx)
	left := time.Until(deadline(sctx))
	if cerr := r.Close(left); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// logProviders says what the relay serves: one line per provider with its
// paths and state. A disabled provider's line is its only warning and names
// the missing variables (names, never values: the log is the operator's).
func logProviders(log *slog.Logger, providers []*Provider) {
	for _, p := range providers {
		if p.Disabled != "" {
			log.Warn("provider disabled", "provider", p.Name, "paths", p.Paths, "file", p.File, "reason", p.Disabled)
			continue
		}
		attrs := []any{"provider", p.Name, "paths", p.Paths}
		switch off := p.RegistrationOff(); {
		case p.register == nil:
		case off != "":
			attrs = append(attrs, "register", "unavailable: "+off)
		default:
			attrs = append(attrs, "register", "available")
		}
		switch off := p.PollingOff(); {
		case p.poll == nil:
		case off != "":
			attrs = append(attrs, "poll", "unavailable: "+off)
		default:
			attrs = append(attrs, "poll", "available")
		}
		log.Info("provider enabled", attrs...)
	}
}

// serverLimits bound what one connection may take from a listener.
type serverLimits struct {
	// ReadHeader cuts a sender that trickles its request line and headers
	// (slow loris); Read bounds the whole request, body included.
	ReadHeader, Read time.Duration
	// Write bounds the answer; Idle an idle keep-alive connection.
	Write, Idle time.Duration
	// MaxHeaderBytes bounds the request line and headers (net/http allows
	// 4 KiB over it); beyond it the answer is 431.
	MaxHeaderBytes int
}

// ingestLimits are the limits of the ingest listener, which faces the
// internet: a lender's request is small and quick, so a connection that is
// neither is cut rather than allowed to hold a goroutine and a socket.
var ingestLimits = serverLimits{
	ReadHeader: 10 * time.Second, Read: 30 * time.Second,
	Write: 30 * time.Second, Idle: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
}

// adminLimits are the limits of the admin listener: a slow or idle client
// is cut as on ingest (a page in a browser, or anyone on a non-loopback
// listen, could otherwise hold sockets and goroutines without end). An
// answer may take longer, since an operator's listing or reprocess works
// through the spool while a lender's request waits for one commit.
var adminLimits = serverLimits{
	ReadHeader: ingestLimits.ReadHeader, Read: ingestLimits.Read,
	Write: 5 * time.Minute, Idle: ingestLimits.Idle, MaxHeaderBytes: ingestLimits.MaxHeaderBytes,
}

// newServer is the http.Server of a listener with its limits.
func newServer(h http.Handler, l serverLimits) *http.Server {
	return &http.Server{
		Handler: h, ReadHeaderTimeout: l.ReadHeader, ReadTimeout: l.Read,
		WriteTimeout: l.Write, IdleTimeout: l.Idle, MaxHeaderBytes: l.MaxHeaderBytes,
	}
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}
