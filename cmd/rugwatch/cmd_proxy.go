package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/control"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/notify"
	"github.com/rugwatch/rugwatch/proxy"
)

// runProxy serves one configured server to an MCP client over stdio, so
// that only approved tools, exactly as approved, reach the model. A client
// config runs it in the server's place:
//
//	{"command": "rugwatch", "args": ["--config", "/etc/rugwatch/rugwatch.yaml", "proxy", "everything"]}
//
// With --all it is the gateway: the approved tools of every configured
// server (or gateway.servers) in one client session.
//
// stdout is the MCP channel; logs go to stderr.
func (a *App) runProxy(ctx context.Context, args []string) error {
	fs := a.newFlags("proxy")
	all := fs.Bool("all", false, "the gateway: serve the approved tools of every server (gateway.servers) to one client")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *all && len(pos) != 0 {
		return usagef("rugwatch proxy --all takes no server (gateway.servers chooses them), or rugwatch proxy SERVER for one")
	}
	if !*all && len(pos) != 1 {
		return usagef("rugwatch proxy SERVER (one configured server), or rugwatch proxy --all for every one")
	}
	cfg, err := a.config()
	if err != nil {
		return err
	}
	if *all {
		conn, err := a.stdioConn(ctx)
		if err != nil {
			return err
		}
		return proxy.ServeGateway(ctx, conn, a.gatewayOptions(cfg, a.proxyBackend(cfg), nil))
	}
	srv, ok := cfg.Server(pos[0])
	if !ok {
		return usagef("no server %q in %s", pos[0], cfg.Path)
	}
	conn, err := a.stdioConn(ctx)
	if err != nil {
		return err
	}
	return proxy.Serve(ctx, conn, a.proxyOptions(cfg, srv, a.proxyBackend(cfg)))
}

// stdioConn is the MCP connection to the client on stdin and stdout.
func (a *App) stdioConn(ctx context.Context) (mcp.Connection, error) {
	conn, err := (&mcp.IOTransport{Reader: io.NopCloser(a.Stdin), Writer: nopWriteCloser{a.Stdout},
		MaxLineLength: 16 << 20}).Connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening stdio: %w", err)
	}
	return conn, nil
}

// gatewayOptions wires the gateway: one proxied session per server of
// gateway.servers (every configured one by default), all through backend;
// observe, when set, hears of each.
func (a *App) gatewayOptions(cfg *configs.Config, backend func(context.Context) (proxy.Backend, func(), error), observe proxy.Observer) proxy.GatewayOptions {
	g := proxy.GatewayOptions{Names: cfg.Gateway.Names, Log: a.log}
	for _, srv := range cfg.GatewayServers() {
		opts := a.proxyOptions(cfg, srv, backend)
		if observe != nil {
			opts.Observe = observe
		}
		g.Servers = append(g.Servers, opts)
	}
	return g
}

// upstreamEgressPin is the egress pin the sandbox of a proxied stdio
// server enforces (with egress_mode: pinned) for the life of its upstream
// session: the one the backend verified, or the empty set when it cannot
// be read (fail closed).
func upstreamEgressPin(ctx context.Context, backend func(context.Context) (proxy.Backend, func(), error), server string) *mcpclient.EgressPin {
	b, release, err := backend(ctx)
	if err != nil {
		return &mcpclient.EgressPin{Dests: []string{}}
	}
	defer release()
	al, err := b.Allowed(ctx, server)
	if err != nil {
		return &mcpclient.EgressPin{Dests: []string{}}
	}
	return al.EgressPin
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// proxyOptions wires one proxied session of srv: upstream over the
// server's own transport with its configured credentials (stdio
// sandboxed), approvals through backend.
func (a *App) proxyOptions(cfg *configs.Config, srv configs.Server, backend func(context.Context) (proxy.Backend, func(), error)) proxy.Options {
	opts := proxy.Options{
		Server: srv.Name, Results: cfg.Proxy.Results, Log: a.log, Backend: backend,
		ConnectTimeout: srv.EffectiveTimeout(cfg.Defaults),
		Dial: func(ctx context.Context, peer mcpclient.Peer, caps json.RawMessage) (*mcpclient.Session, error) {
			t, err := a.target(cfg, srv)
			if err != nil {
				return nil, err
			}
			if t.Transport == mcpclient.TransportStdio {
				t.Sandbox.EgressPin = upstreamEgressPin(ctx, backend, srv.Name)
			}
			opts := a.dialOptions(cfg)
			opts.Peer, opts.Capabilities = peer, caps
			// The proxy's clients speak the handshake era (it answers
			// server/discover "not found"): the upstream does too.
			opts.PreferHandshake = true
			return mcpclient.Dial(ctx, t, opts)
		},
	}
	if cfg.Shared() {
		// Approvals live in a database other hosts write and that may
		// stop answering: the set in force is bounded in age.
		opts.MaxStaleness = time.Duration(cfg.Proxy.MaxStaleness)
	}
	if cl := a.classifier(cfg); cl != nil {
		opts.Classify = func(ctx context.Context, tool, text string) []rugwatch.Finding {
			return cl.Classify(ctx, monitor.ClassifyRequest{Kind: "result", Server: srv.Name, Tool: tool, Path: "/content", Text: text})
		}
	}
	if srv.Transport != mcpclient.TransportStdio {
		// Over HTTP a server's list_changed travels on a stream of its
		// own; the monitor's watcher holds it open for the proxy.
		opts.Watch = func(ctx context.Context, caps json.RawMessage, changed func(*mcpclient.Listing)) {
			wopts := a.dialOptions(cfg)
			wopts.Capabilities = caps
			(&mcpclient.Watcher{Opts: wopts, Log: a.log, ConnectTimeout: srv.EffectiveTimeout(cfg.Defaults),
				Resolve: func() (mcpclient.Target, error) { return a.target(cfg, srv) },
				OnListing: func(_ context.Context, l *mcpclient.Listing, err error) {
					if err == nil {
						changed(l)
					}
				}}).Run(ctx)
		}
	}
	return opts
}

// proxyBackend opens a backend per operation: the daemon's socket when
// serve runs, else the store, held only for the operation so that many
// proxies and the CLI take turns instead of locking each other out. A
// daemon found once is kept while its socket is there: the proxy asks it
// before every call (the approvals generation), and a ping and a fresh
// connection per call would cost more than the question.
func (a *App) proxyBackend(cfg *configs.Config) func(context.Context) (proxy.Backend, func(), error) {
	sock := socketPath(cfg)
	var mu sync.Mutex
	var daemon *control.Client
	return func(ctx context.Context) (proxy.Backend, func(), error) {
		mu.Lock()
		c := daemon
		mu.Unlock()
		if c != nil {
			if fi, err := os.Stat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
				return c, func() {}, nil
			}
			mu.Lock()
			daemon = nil
			mu.Unlock()
			c.Close()
		}
		if c, ok := control.Dial(ctx, sock); ok {
			mu.Lock()
			daemon = c
			mu.Unlock()
			return c, func() {}, nil
		}
		// A session that is ending asks nothing more: falling back to the
		// store here waited on the daemon's lock for its timeout, a second
		// or two at every close while serve runs.
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		ver, err := a.verifier(cfg)
		if err != nil {
			return nil, nil, err
		}
		db, err := a.openStore(cfg)
		if err != nil {
			return nil, nil, err
		}
		al, err := notify.NewAlerting(cfg, a.resolver(), a.log)
		if err != nil {
			db.Close()
			return nil, nil, err
		}
		rec, err := a.recorder(cfg, db, ver, al)
		if err != nil {
			db.Close()
			return nil, nil, err
		}
		l := a.ledger(cfg, db, ver, al)
		l.Recorder = rec
		// No daemon: what a drift queued is sent now, briefly; whatever
		// fails stays in the outbox for the next serve or check.
		l.AfterWrite = func(ctx context.Context) error {
			if err := al.Dispatcher(db).Drain(ctx, 10*time.Second); err != nil {
				a.log.Warn("alerts stay queued", "error", err)
			}
			return nil
		}
		return l, func() { db.Close() }, nil
	}
}
