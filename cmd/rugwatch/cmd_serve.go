package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/control"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/notify"
	"github.com/rugwatch/rugwatch/ops"
	"github.com/rugwatch/rugwatch/proxy"
	"github.com/rugwatch/rugwatch/sandbox"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
)

// runServe runs the daemon until SIGINT or SIGTERM; SIGHUP reloads the
// config.
func (a *App) runServe(ctx context.Context, args []string) error {
	fs := a.newFlags("serve")
	stopBound := fs.Duration("shutdown-timeout", 10*time.Second, "bound on a clean stop")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	// First, before any secret is read: no other process of this uid may
	// read this one's memory or /proc/<pid>/environ.
	if err := sandbox.HardenSelf(); err != nil {
		return fmt.Errorf("making the daemon non-dumpable: %w", err)
	}
	cfg, err := a.config()
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	d := &daemon{app: a}
	cleanup, err := d.Start(ctx, cfg)
	defer cleanup()
	if err != nil {
		return err
	}
	for _, w := range looseModes(a.privateModes(cfg)) {
		a.log.Warn("loose file mode", "problem", w)
	}
	bi := readBuildInfo()
	a.log.Info("serving", "version", bi.Version, "revision", bi.Revision, "go", bi.Go, "servers", len(cfg.Servers), "data_dir", cfg.DataDir, "socket", socketPath(cfg), "http_listen", cfg.HTTPListen)
	if a.ready != nil {
		a.ready(d)
	}
	for {
		select {
		case <-ctx.Done():
			a.log.Info("stopping", "bound", stopBound.String())
			return d.Stop(*stopBound)
		case <-hup:
			d.Reload()
		}
	}
}

// daemon is one run of `rugwatch serve`: the store, the fleet of polled
// and watched servers, the alert dispatcher, the control socket and the
// health endpoint. Start brings them up in that order and Stop takes them
// down in reverse, within a bound, the store last.
type daemon struct {
	app *App

	db     *store.DB
	chain  *store.ChainTracker
	fleet  *monitor.Fleet
	cancel context.CancelFunc
	ctx    context.Context
	wg     sync.WaitGroup
	ctl    *http.Server
	health *http.Server
	// healthAddr is where /healthz listens (tests use port 0).
	healthAddr net.Addr
	ctlPath    string
	// abandoned is set when a stop ran past its bound.
	abandoned bool
	// The HTTP proxy on proxy_listen, when configured.
	proxyAddr net.Addr
	proxyHTTP *proxy.HTTP
	proxySrv  *http.Server

	mu       sync.RWMutex // guards what a reload replaces
	cfg      *configs.Config
	ver      *signatures.Verifier
	alerts   *notify.Alerting
	disp     *notify.Dispatcher
	stopDisp func()
	rec      *monitor.Recorder // the fleet's, which the proxy's listings go through too

	// metrics is what /metrics serves; the poller, the dispatcher and
	// the proxy feed it.
	metrics *ops.Metrics

	// tokenFile holds the listeners' bearer token where the config names
	// none: init's, or an ephemeral run's own.
	tokenFile string

	// gen is the approvals generation: it moves on every write that may
	// change what a proxy lets pass, and a proxy compares it before each
	// call (monitor.Ledger.Generation). It starts at 1, so 0 means unknown.
	gen atomic.Uint64

	// replica is this process's name in a cluster (serve_cluster.go).
	replica string

	// lockWake asks the approvals_from follower for a pass (after a
	// poll's events, or a reload, which also sets lockReread).
	lockWake   chan struct{}
	lockReread atomic.Bool
}

// httpToken and proxyToken resolve the listeners' bearer tokens from the
// config in force at each request: http_token, else the token file;
// proxy.token, else the same as http_listen.
func (d *daemon) httpToken() (string, error) {
	c, _, _ := d.current()
	return d.app.listenerToken(c.HTTPToken, "http_token", d.tokenFile)()
}

func (d *daemon) proxyToken() (string, error) {
	c, _, _ := d.current()
	if !c.Proxy.Token.IsZero() {
		return d.app.listenerToken(c.Proxy.Token, "proxy.token", d.tokenFile)()
	}
	return d.app.listenerToken(c.HTTPToken, "proxy.token (or http_token)", d.tokenFile)()
}

// checkTokens fails the start when a configured listener would have no
// token to ask for.
func (d *daemon) checkTokens(cfg *configs.Config) error {
	if d.tokenFile == "" {
		p, err := d.app.tokenPath()
		if err != nil && (cfg.HTTPListen != "" || cfg.ProxyListen != "") {
			return fmt.Errorf("finding the listener token: %w", err)
		}
		d.tokenFile = p
	}
	if cfg.HTTPListen != "" {
		if _, err := d.app.listenerToken(cfg.HTTPToken, "http_token", d.tokenFile)(); err != nil {
			return fmt.Errorf("http_listen needs a bearer token: %w", err)
		}
	}
	if cfg.ProxyListen != "" {
		tok := cfg.Proxy.Token
		if tok.IsZero() {
			tok = cfg.HTTPToken
		}
		if _, err := d.app.listenerToken(tok, "proxy.token", d.tokenFile)(); err != nil {
			return fmt.Errorf("proxy_listen needs a bearer token: %w", err)
		}
	}
	return nil
}

// Start brings the daemon up. The returned cleanup closes the store and
// removes an ephemeral data dir; it runs after Stop, or at once when Start
// fails half-way.
func (d *daemon) Start(ctx context.Context, cfg *configs.Config) (cleanup func(), err error) {
	var undo []func()
	cleanup = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	if cfg.Ephemeral {
		// The run's data stays after it, for history and diff; the next
		// run starts from scratch.
		if err := d.ephemeral(cfg); err != nil {
			return cleanup, err
		}
	}
	if (cfg.ApproveFirstSeen || cfg.Retention > 0) && cfg.SigningKey == "" {
		cfg.SigningKey = d.app.approverKeyPath(cfg, "")
	}
	if err := d.checkTokens(cfg); err != nil {
		return cleanup, err
	}
	// The data dir or keys may have moved (ephemeral): what the sandbox
	// hides follows them.
	cfg.ApplyDefaults()
	if err := cfg.CheckReferences(d.app.resolver()); err != nil {
		return cleanup, err
	}
	db, err := d.app.openStore(cfg)
	if err != nil {
		return cleanup, err
	}
	d.db = db
	// A broken chain does not stop the daemon: refusing to start would
	// leave every server unwatched, and give whoever can cut the log a way
	// to switch monitoring off. It is logged, /readyz fails, and verify
	// exits 1.
	d.chain = store.NewChainTracker(db)
	if last, n, err := d.chain.Verify(); err != nil {
		d.app.log.Error("event chain broken; serving anyway, run `rugwatch verify`", "error", err, "events_checked", n)
	} else {
		d.app.log.Info("event chain verified", "events", n, "head", last.String())
	}
	// Last: everything else has stopped when it runs. After a stop that
	// ran out of time, workers may still hold transactions; the process
	// exits next and the kernel releases the file.
	undo = append(undo, func() {
		if !d.abandoned {
			db.Close()
		}
	})
	if err := d.setConfig(cfg); err != nil {
		return cleanup, err
	}
	d.ctx, d.cancel = context.WithCancel(ctx)
	d.gen.Store(1)
	d.lockWake = make(chan struct{}, 1)
	undo = append(undo, d.cancel)
	bi := readBuildInfo()
	d.metrics = ops.NewMetrics(ops.StoreSource{DB: db, Watching: func() int {
		if d.fleet == nil {
			return 0
		}
		return d.fleet.Watching()
	}}, ops.BuildInfo{Version: bi.Version, Revision: bi.Revision, GoVersion: bi.Go})
	d.replica = replicaName(cfg)
	d.startDispatcher()
	d.fleet = monitor.NewFleet(d.ctx, cfg.Concurrency, d.app.log)
	if db.Shared() {
		d.fleet.Shared() // polls nothing until the first lease round
	}

	d.ctlPath = socketPath(cfg)
	ln, err := control.Listen(d.ctlPath, control.Peers{UIDs: cfg.Control.AllowUIDs, GIDs: cfg.Control.AllowGIDs}, d.app.log)
	if err != nil {
		return cleanup, d.abort(err)
	}
	d.ctl = &http.Server{Handler: control.Handler(d.backend, d.app.log), ReadHeaderTimeout: 10 * time.Second}
	d.serve("control socket", d.ctl, ln)
	if cfg.HTTPListen != "" {
		hl, err := net.Listen("tcp", cfg.HTTPListen)
		if err != nil {
			return cleanup, d.abort(fmt.Errorf("listening on http_listen %s: %w", cfg.HTTPListen, err))
		}
		d.healthAddr = hl.Addr()
		d.health = &http.Server{Handler: d.httpHandler(cfg), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
		d.serve("health endpoint", d.health, hl)
	}
	if cfg.ProxyListen != "" {
		if err := d.startProxy(cfg); err != nil {
			return cleanup, d.abort(err)
		}
	}
	if err := d.apply(cfg); err != nil {
		return cleanup, d.abort(err)
	}
	d.startCluster(cfg)
	if err := d.startPruner(cfg); err != nil {
		return cleanup, d.abort(err)
	}
	d.startLockFollower()
	return cleanup, nil
}

// startProxy serves every configured server as Streamable HTTP at
// /mcp/<server> on proxy_listen, enforcing through the daemon's own
// Ledger; new sessions see a reloaded config.
func (d *daemon) startProxy(cfg *configs.Config) error {
	pl, err := net.Listen("tcp", cfg.ProxyListen)
	if err != nil {
		return fmt.Errorf("listening on proxy_listen %s: %w", cfg.ProxyListen, err)
	}
	d.proxyAddr = pl.Addr()
	inProcess := func(context.Context) (proxy.Backend, func(), error) { return d.backend(), func() {}, nil }
	h := &proxy.HTTP{
		Hosts: proxy.LoopbackHosts(pl.Addr()), Origins: cfg.Proxy.Origins, Log: d.app.log,
		Options: func(server string) (proxy.Options, bool) {
			cur, _, _ := d.current()
			srv, ok := cur.Server(server)
			if !ok {
				return proxy.Options{}, false
			}
			opts := d.app.proxyOptions(cur, srv, inProcess)
			opts.Observe = d.metrics.Proxy()
			return opts, true
		},
		// /mcp: the gateway over the servers of the current config.
		Gateway: func() (proxy.GatewayOptions, bool) {
			cur, _, _ := d.current()
			return d.app.gatewayOptions(cur, inProcess, d.metrics.Proxy()), true
		},
	}
	if host, _, _ := net.SplitHostPort(cfg.ProxyListen); !configs.IsLoopbackHost(host) {
		// Off loopback the Host header names whatever the clients dial.
		h.Hosts = append(h.Hosts, cfg.ProxyListen)
	}
	h.Token = d.proxyToken
	h.MaxSessionsPerClient = cfg.Proxy.MaxSessionsPerClient
	h.Start(d.ctx)
	d.proxyHTTP = h
	// No WriteTimeout: it would cut every event stream. Bodies are bounded
	// in time and size by the handler; idle keep-alive connections and
	// oversized headers are not held.
	d.proxySrv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	d.serve("proxy", d.proxySrv, pl)
	d.app.log.Info("proxy listening", "proxy_listen", pl.Addr().String())
	return nil
}

func (d *daemon) serve(what string, srv *http.Server, ln net.Listener) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.app.log.Error(what+" stopped", "error", err)
		}
	}()
}

// abort stops what Start had started and returns err.
func (d *daemon) abort(err error) error {
	if stopErr := d.Stop(10 * time.Second); stopErr != nil {
		d.app.log.Error("stopping after a failed start", "error", stopErr)
	}
	return err
}

// Stop stops in reverse order of start, within bound: control and health
// first so no new work arrives, then watch sessions and polls (cancelled,
// their stdio children killed), then the dispatcher, then the socket
// file. The store is closed by Start's cleanup, last.
func (d *daemon) Stop(bound time.Duration) error {
	sctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	// The proxy first: its long-lived streams would hold Shutdown open
	// until the bound; its sessions end with their context.
	if d.proxyHTTP != nil {
		d.proxyHTTP.Close()
		_ = d.proxySrv.Close()
	}
	for _, srv := range []*http.Server{d.ctl, d.health} {
		if srv != nil {
			_ = srv.Shutdown(sctx)
		}
	}
	d.cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if d.fleet != nil {
			d.fleet.Stop()
		}
		// Last of the workers: deliveries already queued keep their place
		// in the outbox, and anything cut short is sent again next start.
		d.mu.RLock()
		stop := d.stopDisp
		d.mu.RUnlock()
		if stop != nil {
			stop()
		}
		d.wg.Wait()
	}()
	select {
	case <-done:
	case <-sctx.Done():
		if d.ctl != nil {
			_ = d.ctl.Close()
		}
		d.abandoned = true
		return fmt.Errorf("stopping took longer than %v; exiting with work unfinished", bound)
	}
	if d.ctlPath != "" {
		_ = os.Remove(d.ctlPath)
	}
	d.app.log.Info("stopped")
	return nil
}

// setConfig installs cfg with its verifier and alert channels.
func (d *daemon) setConfig(cfg *configs.Config) error {
	ver, err := d.app.verifier(cfg)
	if err != nil {
		return err
	}
	al, err := notify.NewAlerting(cfg, d.app.resolver(), d.app.log)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cfg, d.ver, d.alerts = cfg, ver, al
	return nil
}

func (d *daemon) current() (*configs.Config, *signatures.Verifier, *notify.Alerting) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.cfg, d.ver, d.alerts
}

// wake tells the running dispatcher that new deliveries are queued.
func (d *daemon) wake() {
	d.mu.RLock()
	disp := d.disp
	d.mu.RUnlock()
	if disp != nil {
		disp.Wake()
	}
}

// startDispatcher (re)starts the outbox dispatcher with the current
// channels; a reload that changes channels replaces it.
func (d *daemon) startDispatcher() {
	d.mu.Lock()
	old := d.stopDisp
	d.mu.Unlock()
	if old != nil {
		old()
	}
	_, _, al := d.current()
	disp := al.Dispatcher(d.db)
	disp.Observer = d.metrics
	// Deliveries are claimed in this replica's name: on a shared store
	// the others leave them alone until the claim runs out.
	disp.Owner = d.replica
	dctx, cancel := context.WithCancel(d.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := disp.Run(dctx); err != nil {
			d.app.log.Error("alert dispatcher stopped", "error", err)
		}
	}()
	d.mu.Lock()
	d.disp = disp
	d.stopDisp = func() { cancel(); <-done }
	d.mu.Unlock()
}

// backend is what the control socket serves: the Ledger over the store,
// polling through the fleet's scheduler so a `check` never overlaps a
// scheduled poll.
func (d *daemon) backend() control.Backend {
	cfg, ver, al := d.current()
	l := d.app.ledger(cfg, d.db, ver, al)
	l.AfterWrite = func(context.Context) error { d.gen.Add(1); d.wake(); return nil }
	l.AfterNotice = func(context.Context) error { d.wake(); return nil }
	l.Gen = d.gen.Load
	l.Poll = d.fleet.PollNow
	d.mu.RLock()
	l.Recorder = d.rec
	d.mu.RUnlock()
	// What the proxies record (proxy_listen's sessions here, a stdio
	// `rugwatch proxy` through the control socket) is logged and counted
	// like a poll's events.
	return monitor.Observed{Ledger: l, OnEvent: func(e rugwatch.Event) {
		d.gen.Add(1)
		monitor.LogEvent(d.app.log, e)
		d.metrics.Event(e)
	}}
}

// apply schedules every server of cfg and reconciles watch sessions.
func (d *daemon) apply(cfg *configs.Config) error {
	_, ver, al := d.current()
	rec, err := d.app.recorder(cfg, d.db, ver, al)
	if err != nil {
		return err
	}
	rec.Chain = d.chain
	rec.ChainBroken = func(err error) {
		d.app.log.Error("event chain broken under the running daemon (cut, rolled back or edited); run `rugwatch verify`", "error", err)
	}
	d.mu.Lock()
	d.rec = rec
	d.mu.Unlock()
	p := d.app.poller(cfg, rec)
	if cfg.ProxyListen != "" {
		// Only this process's proxy compares its listings with the
		// polls': without one, remembering 50 digests a server for a
		// fleet is memory nothing reads (a one-shot check never does).
		p.Sightings = &d.app.sightings
	}
	// An event of a poll may move what a proxy lets pass (a drift): the
	// approvals generation moves with it.
	p.OnEvent = func(e rugwatch.Event) { d.gen.Add(1); d.wake(); d.metrics.Event(e); d.wakeLockFollower(false) }
	p.Observer = d.metrics
	specs, err := d.app.specs(cfg, nil)
	if err != nil {
		return err
	}
	return d.fleet.Apply(d.ctx, specs, p)
}

// Reload applies a changed config file; an invalid one keeps the running
// config and logs why, with its line.
func (d *daemon) Reload() {
	log := d.app.log
	old, _, _ := d.current()
	cfg, err := configs.Load(old.Path)
	if err == nil {
		err = cfg.CheckReferences(d.app.resolver())
	}
	if err != nil {
		log.Error("reload refused; keeping the running config", "config", old.Path, "error", err)
		return
	}
	cfg, deferred, err := configs.PlanReload(old, cfg)
	if err != nil {
		log.Error("reload refused; keeping the running config", "config", old.Path, "error", err)
		return
	}
	for _, k := range deferred {
		log.Warn(k.Key+" changed; it takes effect at the next start", "running", k.Running, "new", k.New)
	}
	if (cfg.ApproveFirstSeen || cfg.Retention > 0) && cfg.SigningKey == "" {
		cfg.SigningKey = d.app.approverKeyPath(cfg, "")
	}
	cfg.ApplyDefaults()
	if err := d.setConfig(cfg); err != nil {
		log.Error("reload refused; keeping the running config", "config", old.Path, "error", err)
		return
	}
	d.startDispatcher()
	if err := d.apply(cfg); err != nil {
		log.Error("reload half applied", "error", err)
		return
	}
	// Trusted keys or servers may have changed what passes.
	d.gen.Add(1)
	d.wakeLockFollower(true)
	log.Info("config reloaded", "config", cfg.Path, "servers", len(cfg.Servers))
}

// httpHandler is everything on http_listen: /healthz and /readyz open
// (probes carry no token), /metrics and the read-only web view behind the
// guard. The web view reads through the same backend the control socket
// serves, built per request.
func (d *daemon) httpHandler(cfg *configs.Config) http.Handler {
	guard := ops.Guard{LoopbackHost: cfg.HTTPLoopback(), Log: d.app.log, Token: d.httpToken}
	web := ops.NewWeb(func() ops.Reader { return d.backend() }, d.app.log)
	if cfg.Path != "" {
		// The commands the pages show run as copied, from any directory.
		if abs, err := filepath.Abs(cfg.Path); err == nil {
			web.ConfigPath = abs
		}
	}
	views := http.NewServeMux()
	views.Handle("GET /metrics", d.metrics.Handler())
	views.Handle("/", web.Handler())
	mux := http.NewServeMux()
	health := d.healthHandler()
	mux.Handle("GET /healthz", health)
	mux.Handle("GET /readyz", health)
	mux.Handle("/", guard.Wrap(views))
	return mux
}

// healthHandler serves /healthz (the process is up) and /readyz (the
// store is open and the scheduler runs).
func (d *daemon) healthHandler() http.Handler {
	mux := http.NewServeMux()
	bi := readBuildInfo()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ok %s\n", bi)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if d.fleet == nil || !d.fleet.Running() {
			http.Error(w, "scheduler not running", http.StatusServiceUnavailable)
			return
		}
		// Bounded: a shared store that stopped answering must fail the
		// probe, not hold it.
		rctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := d.db.ViewContext(rctx, func(*store.Tx) error { return nil }); err != nil {
			http.Error(w, "store: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if err := d.chain.Err(); err != nil {
			http.Error(w, "event chain broken: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	return mux
}
