package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/notify"
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
	cfg, err := a.config()
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	d := &daemon{app: a, log: a.log, stopBound: *stopBound, reload: hup, ready: a.ready}
	return d.run(ctx, cfg)
}

// daemon is one run of `rugwatch serve`.
type daemon struct {
	app       *App
	log       *slog.Logger
	stopBound time.Duration
	reload    <-chan os.Signal
	ready     func(*daemon) // tests: called once the daemon serves

	mu     sync.RWMutex
	cfg    *configs.Config
	poller *poller
	ver    *signatures.Verifier
	alerts *alerting
	disp   *notify.Dispatcher
	// stopDisp stops the running dispatcher; a reload replaces it.
	stopDisp func()

	db       *store.DB
	sched    *monitor.Scheduler
	watchers map[string]*watchHandle
	ctlPath  string
	health   net.Listener
	// abandoned is set when a stop ran past its bound.
	abandoned bool
}

type watchHandle struct {
	key    string
	cancel context.CancelFunc
	done   chan struct{}
}

func (d *daemon) run(ctx context.Context, cfg *configs.Config) error {
	if cfg.Ephemeral {
		dir, err := os.MkdirTemp("", "rugwatch-ephemeral-")
		if err != nil {
			return fmt.Errorf("creating ephemeral data dir: %w", err)
		}
		defer os.RemoveAll(dir)
		id, err := signatures.GenerateKeyPair(dir, nil)
		if err != nil {
			return fmt.Errorf("generating ephemeral key pair: %w", err)
		}
		cfg.DataDir = dir
		cfg.TrustedKeys = []string{filepath.Join(dir, "approver.pub")}
		if cfg.ApproveFirstSeen {
			cfg.SigningKey = filepath.Join(dir, "approver.key")
		}
		d.log.Info("ephemeral data dir; nothing survives this run", "data_dir", dir, "key_id", id)
	}
	if cfg.ApproveFirstSeen && cfg.SigningKey == "" {
		cfg.SigningKey = filepath.Join(cfg.DataDir, "approver.key")
	}
	if err := cfg.CheckReferences(d.app.resolver()); err != nil {
		return err
	}
	db, err := store.Open(storePath(cfg), store.Options{})
	if err != nil {
		return fmt.Errorf("opening store: %w", err)
	}
	d.db = db
	defer func() {
		// Last: everything else has stopped when it runs. After a stop
		// that ran out of time, workers may still hold transactions; the
		// process exits next and the kernel releases the file.
		if !d.abandoned {
			d.db.Close()
		}
	}()
	if err := d.setConfig(cfg); err != nil {
		return err
	}

	ln, err := listenControl(socketPath(cfg))
	if err != nil {
		return err
	}
	d.ctlPath = socketPath(cfg)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	ctl := &http.Server{Handler: controlHandler(d.backend, d.log), ReadHeaderTimeout: 10 * time.Second}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := ctl.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("control socket stopped", "error", err)
		}
	}()
	d.startDispatcher(runCtx)
	d.sched = monitor.NewScheduler(runCtx, cfg.Concurrency, d.log)
	d.watchers = map[string]*watchHandle{}
	var health *http.Server
	if cfg.HTTPListen != "" {
		hl, err := net.Listen("tcp", cfg.HTTPListen)
		if err != nil {
			cancel()
			d.shutdown(ctl, nil, &wg)
			return fmt.Errorf("listening on http_listen %s: %w", cfg.HTTPListen, err)
		}
		d.health = hl
		health = &http.Server{Handler: d.healthHandler(), ReadHeaderTimeout: 10 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := health.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("health endpoint stopped", "error", err)
			}
		}()
	}

	if err := d.apply(runCtx, cfg); err != nil {
		cancel()
		d.shutdown(ctl, health, &wg)
		return err
	}
	d.log.Info("serving", "servers", len(cfg.Servers), "data_dir", cfg.DataDir, "socket", d.ctlPath, "http_listen", cfg.HTTPListen)
	if d.ready != nil {
		d.ready(d)
	}
	for {
		select {
		case <-ctx.Done():
			d.log.Info("stopping", "bound", d.stopBound.String())
			cancel()
			return d.shutdown(ctl, health, &wg)
		case <-d.reload:
			d.reloadConfig(runCtx)
		}
	}
}

// shutdown stops in reverse order of start, within stopBound: control and
// health first so no new work arrives, then watch sessions and polls
// (cancelled, their stdio children killed), then the socket file. The
// store is closed by run's deferred Close, last.
func (d *daemon) shutdown(ctl, health *http.Server, wg *sync.WaitGroup) error {
	deadline := time.Now().Add(d.stopBound)
	sctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	_ = ctl.Shutdown(sctx)
	if health != nil {
		_ = health.Shutdown(sctx)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.stopWatchers()
		if d.sched != nil {
			d.sched.Stop()
		}
		// Last of the workers: deliveries already queued keep their place
		// in the outbox, and anything cut short is sent again next start.
		d.mu.RLock()
		stop := d.stopDisp
		d.mu.RUnlock()
		if stop != nil {
			stop()
		}
		wg.Wait()
	}()
	select {
	case <-done:
	case <-sctx.Done():
		_ = ctl.Close()
		d.abandoned = true
		return fmt.Errorf("stopping took longer than %v; exiting with work unfinished", d.stopBound)
	}
	_ = os.Remove(d.ctlPath)
	d.log.Info("stopped")
	return nil
}

// setConfig installs cfg with its verifier and poller.
func (d *daemon) setConfig(cfg *configs.Config) error {
	ver, err := d.app.verifier(cfg)
	if err != nil {
		return err
	}
	al, err := newAlerting(cfg, d.app.resolver(), d.log)
	if err != nil {
		return err
	}
	rec := &monitor.Recorder{Verifier: ver, UnreachableAfter: cfg.UnreachableAfter, InTx: al.inTx}
	if cfg.ApproveFirstSeen {
		s, err := loadSigner(cfg.SigningKey, d.app.keyPassword)
		if err != nil {
			return err
		}
		rec.Signer = s
	}
	rec.DB = d.db
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cfg, d.ver, d.alerts = cfg, ver, al
	d.poller = &poller{app: d.app, cfg: cfg, rec: rec, log: d.log, onEvent: func(rugwatch.Event) { d.wake() }}
	return nil
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
func (d *daemon) startDispatcher(ctx context.Context) {
	d.mu.Lock()
	old := d.stopDisp
	d.mu.Unlock()
	if old != nil {
		old()
	}
	d.mu.Lock()
	disp := d.alerts.dispatcher(d.db, d.log)
	dctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := disp.Run(dctx); err != nil {
			d.log.Error("alert dispatcher stopped", "error", err)
		}
	}()
	d.disp = disp
	d.stopDisp = func() { cancel(); <-done }
	d.mu.Unlock()
}

func (d *daemon) current() (*configs.Config, *poller) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.cfg, d.poller
}

// backend is what the control socket serves: the store plus polls through
// the scheduler, so a `check` never overlaps a scheduled poll.
func (d *daemon) backend() backend {
	cfg, _ := d.current()
	d.mu.RLock()
	ver := d.ver
	d.mu.RUnlock()
	d.mu.RLock()
	al := d.alerts
	d.mu.RUnlock()
	return &local{cfg: cfg, db: d.db, ver: ver, inTx: al.inTx, deliver: func(context.Context) error { d.wake(); return nil }, poll: func(ctx context.Context, servers []configs.Server) error {
		errs := make([]error, len(servers))
		var wg sync.WaitGroup
		for i, s := range servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = d.sched.PollNow(ctx, s.Name)
			}()
		}
		wg.Wait()
		return errors.Join(errs...)
	}}
}

// apply schedules every server of cfg and reconciles watch sessions.
func (d *daemon) apply(ctx context.Context, cfg *configs.Config) error {
	jobs := make([]monitor.Job, 0, len(cfg.Servers))
	for _, s := range cfg.Servers {
		jobs = append(jobs, monitor.Job{
			Name: s.Name, Schedule: s.EffectiveSchedule(cfg.Defaults), Key: serverKey(cfg, s),
			Poll: func(ctx context.Context) error {
				_, p := d.current()
				return p.pollOne(ctx, s)
			},
		})
	}
	added, removed, changed, err := d.sched.Set(jobs)
	if err != nil {
		return err
	}
	if len(added)+len(removed)+len(changed) > 0 {
		d.log.Info("servers scheduled", "added", strings.Join(added, ","), "removed", strings.Join(removed, ","), "changed", strings.Join(changed, ","))
	}
	d.reconcileWatchers(ctx, cfg)
	return nil
}

// serverKey captures everything about a server that a poll depends on,
// secret references as written (never their values).
func serverKey(cfg *configs.Config, s configs.Server) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%s|%q|%s|%s|%s|%v|%v|", s.Name, s.Transport, s.Command, s.Args, s.Cwd, s.URL,
		s.EffectiveSchedule(cfg.Defaults), s.EffectiveTimeout(cfg.Defaults), s.Watch)
	for _, m := range []map[string]configs.Secret{s.Env, s.Headers} {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s=%s;", k, m[k].Template())
		}
		b.WriteString("|")
	}
	fmt.Fprintf(&b, "%+v", cfg.Limits)
	return b.String()
}

func (d *daemon) reconcileWatchers(ctx context.Context, cfg *configs.Config) {
	want := map[string]configs.Server{}
	for _, s := range cfg.Servers {
		if s.Watch {
			want[s.Name] = s
		}
	}
	for name, h := range d.watchers {
		if s, ok := want[name]; ok && serverKey(cfg, s) == h.key {
			continue
		}
		h.cancel()
		<-h.done
		delete(d.watchers, name)
	}
	for name, s := range want {
		if _, ok := d.watchers[name]; ok {
			continue
		}
		t, err := d.app.target(s)
		if err != nil {
			d.log.Error("not watching", "server", name, "error", err)
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		h := &watchHandle{key: serverKey(cfg, s), cancel: cancel, done: make(chan struct{})}
		w := &monitor.Watcher{
			Target: t, Opts: d.app.dialOptions(cfg), Log: d.log, ConnectTimeout: s.EffectiveTimeout(cfg.Defaults),
			Resolve: func() (monitor.Target, error) { return d.app.target(s) },
			OnListing: func(ctx context.Context, l *monitor.Listing, err error) {
				if l == nil && err == nil {
					if err := d.sched.PollNow(ctx, s.Name); err != nil && ctx.Err() == nil {
						d.log.Error("re-check after list_changed failed", "server", s.Name, "error", err)
					}
					return
				}
				err = d.sched.Exclusive(ctx, s.Name, func(context.Context) error {
					_, p := d.current()
					return p.record(s, l, err)
				})
				if err != nil && ctx.Err() == nil {
					d.log.Error("recording watched listing failed", "server", s.Name, "error", err)
				}
			},
		}
		d.watchers[name] = h
		go func() {
			defer close(h.done)
			w.Run(wctx)
		}()
	}
}

func (d *daemon) stopWatchers() {
	for name, h := range d.watchers {
		h.cancel()
		<-h.done
		delete(d.watchers, name)
	}
}

// reloadConfig applies a changed config file; an invalid one keeps the
// running config and logs why, with its line.
func (d *daemon) reloadConfig(ctx context.Context) {
	old, _ := d.current()
	cfg, err := configs.Load(old.Path)
	if err == nil {
		err = cfg.CheckReferences(d.app.resolver())
	}
	if err != nil {
		d.log.Error("reload refused; keeping the running config", "config", old.Path, "error", err)
		return
	}
	if old.Ephemeral || cfg.Ephemeral {
		cfg.Ephemeral, cfg.DataDir, cfg.TrustedKeys = old.Ephemeral, old.DataDir, old.TrustedKeys
		if cfg.ApproveFirstSeen {
			cfg.SigningKey = old.SigningKey
		}
	}
	if cfg.ApproveFirstSeen && cfg.SigningKey == "" {
		cfg.SigningKey = filepath.Join(cfg.DataDir, "approver.key")
	}
	if cfg.DataDir != old.DataDir {
		d.log.Warn("data_dir changed; it takes effect at the next start", "running", old.DataDir, "new", cfg.DataDir)
		cfg.DataDir = old.DataDir
	}
	if err := d.setConfig(cfg); err != nil {
		d.log.Error("reload refused; keeping the running config", "config", old.Path, "error", err)
		return
	}
	d.startDispatcher(ctx)
	if err := d.apply(ctx, cfg); err != nil {
		d.log.Error("reload half applied", "error", err)
		return
	}
	d.log.Info("config reloaded", "config", cfg.Path, "servers", len(cfg.Servers))
}

// healthHandler serves /healthz (the process is up) and /readyz (the
// store is open and the scheduler runs).
func (d *daemon) healthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if d.sched == nil || !d.sched.Running() {
			http.Error(w, "scheduler not running", http.StatusServiceUnavailable)
			return
		}
		if err := d.db.View(func(*store.Tx) error { return nil }); err != nil {
			http.Error(w, "store: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	return mux
}
