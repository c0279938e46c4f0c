package mcpclient

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Watcher keeps a session open to one server and reacts at once to
// notifications/tools/list_changed. The notification comes through
// whatever the negotiated revision has: a subscriptions/listen request
// (2026-07-28, stdio and Streamable HTTP), the stdio or SSE session
// itself, or the standalone GET stream (handshake-era Streamable HTTP).
// Over stdio and SSE the re-check lists tools on the watched session
// itself (for stdio, the very child an agent would talk to); over
// Streamable HTTP it asks for a fresh poll: in the handshake era only the
// SDK's own session opens the standalone stream, and in the stateless one
// a fresh poll is what any client does.
type Watcher struct {
	Target Target
	Opts   DialOptions
	Log    *slog.Logger
	// ConnectTimeout bounds one dial and one listing.
	ConnectTimeout time.Duration
	// OnListing receives a listing taken over the watched session (stdio,
	// SSE), or nil when the caller should poll anew (Streamable HTTP).
	OnListing func(ctx context.Context, l *Listing, err error)
	// MinBackoff and MaxBackoff bound reconnect delays; defaults 1s, 1m.
	MinBackoff, MaxBackoff time.Duration
	// Changes counts notifications seen, for tests and benchmarks.
	Changes func()
	// Resolve, when set, gives the target afresh for every connection, so
	// a rotated ${file:} token is read again on reconnect.
	Resolve func() (Target, error)
	// MinInterval is the least time between two re-checks of one session;
	// notifications in between coalesce into one. Default 1s: a server
	// that sends list_changed without pause cannot keep rugwatch busy.
	MinInterval time.Duration
}

// Run watches until ctx ends, reconnecting with capped, jittered backoff.
func (w *Watcher) Run(ctx context.Context) {
	minB, maxB := w.MinBackoff, w.MaxBackoff
	if minB <= 0 {
		minB = time.Second
	}
	if maxB <= 0 {
		maxB = time.Minute
	}
	if w.ConnectTimeout <= 0 {
		w.ConnectTimeout = 30 * time.Second
	}
	backoff := minB
	for ctx.Err() == nil {
		start := time.Now()
		err := w.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > 30*time.Second {
			backoff = minB
		}
		w.Log.Warn("watch session ended; reconnecting", "server", w.Target.Name, "error", errText(scrubErr(w.Target, err)), "in", backoff)
		d := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, maxB)
	}
}

func errText(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}

func (w *Watcher) session(ctx context.Context) error {
	if w.Resolve != nil {
		t, err := w.Resolve()
		if err != nil {
			return err
		}
		w.Target = t
	}
	if w.MinInterval <= 0 {
		w.MinInterval = time.Second
	}
	if w.Target.Transport == TransportHTTP {
		return w.httpSession(ctx)
	}
	dctx, cancel := context.WithTimeout(ctx, w.ConnectTimeout)
	s, err := Dial(dctx, w.Target, w.Opts)
	cancel()
	if err != nil {
		return err
	}
	defer s.Close()
	// Subscribe before listing: a change between the two is then either
	// in the listing or notified.
	ended, err := w.subscribe(ctx, s)
	if err != nil {
		return err
	}
	// Over stdio and SSE the listing is taken on the watched session.
	return w.follow(ctx, s, ended, func() { w.list(ctx, s) })
}

// follow logs the watch, re-checks once at once (what changed while no
// session was open is caught now) and then on every change notification,
// paced by MinInterval, until ctx, the session or its subscription ends.
func (w *Watcher) follow(ctx context.Context, s *Session, ended <-chan error, recheck func()) error {
	w.Log.Info("watching", "server", w.Target.Name, "transport", w.Target.Transport,
		"protocol", s.Init.ProtocolVersion, "list_changed", s.Init.ListChanged)
	recheck()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.Done():
			return s.Err()
		case err := <-ended:
			return err
		case <-s.Changed():
			if w.Changes != nil {
				w.Changes()
			}
			if !w.pace(ctx, &last) {
				return nil
			}
			recheck()
		}
	}
}

// subscribe opens subscriptions/listen on a stateless session whose
// server declares tools.listChanged, and returns the channel that yields
// its end; nil (never ready) when there is nothing to open: a handshake-era
// session notifies on its own, and a server without listChanged is watched
// by its schedule only.
func (w *Watcher) subscribe(ctx context.Context, s *Session) (<-chan error, error) {
	if !s.Stateless() || !s.Init.ListChanged {
		return nil, nil
	}
	ended, err := s.listen(ctx, w.ConnectTimeout)
	if err != nil {
		return nil, s.wrapErr("subscribing to tools/list_changed", err)
	}
	return ended, nil
}

// pace waits until MinInterval has passed since the last re-check; false
// when ctx ended first.
func (w *Watcher) pace(ctx context.Context, last *time.Time) bool {
	if wait := w.MinInterval - time.Since(*last); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
	*last = time.Now()
	return true
}

func (w *Watcher) list(ctx context.Context, s *Session) {
	lctx, cancel := context.WithTimeout(ctx, w.ConnectTimeout)
	start := time.Now()
	l, err := s.ListTools(lctx)
	cancel()
	if l != nil {
		l.Elapsed = time.Since(start)
	}
	if ctx.Err() == nil {
		w.OnListing(ctx, l, scrubErr(w.Target, err))
	}
}

// httpSession watches a Streamable HTTP server through the change channel
// of the revision it negotiates.
func (w *Watcher) httpSession(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, w.ConnectTimeout)
	s, err := Dial(dctx, w.Target, w.Opts)
	cancel()
	if err != nil {
		return err
	}
	if s.Stateless() {
		defer s.Close()
		return w.statelessHTTP(ctx, s)
	}
	s.Close()
	return w.standaloneHTTP(ctx)
}

// statelessHTTP watches a 2026-07-28 server over Streamable HTTP: one
// long-lived subscriptions/listen POST whose response stream carries the
// notifications; each one asks for a fresh poll.
func (w *Watcher) statelessHTTP(ctx context.Context, s *Session) error {
	ended, err := w.subscribe(ctx, s)
	if err != nil {
		return err
	}
	// Each notification asks for a fresh poll.
	return w.follow(ctx, s, ended, func() { w.OnListing(ctx, nil, nil) })
}

// standaloneHTTP holds an SDK client session open for its standalone
// event stream (handshake era) and turns list_changed into a poll request.
func (w *Watcher) standaloneHTTP(ctx context.Context) error {
	hc, err := newHTTPClient(w.Target, w.Opts.Limits.withDefaults().MaxResponseBytes, w.Opts.RootCAs)
	if err != nil {
		return err
	}
	defer closeIdle(hc)
	changed := make(chan struct{}, 1)
	info := w.Opts.ClientInfo
	if info.Name == "" {
		info = ClientInfo{Name: "rugwatch", Version: "dev"}
	}
	client := mcp.NewClient(&mcp.Implementation{Name: info.Name, Version: info.Version}, &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			select {
			case changed <- struct{}{}:
			default:
			}
		},
		Logger: w.Log,
		// Pings find a server that died without closing the stream.
		KeepAlive: 30 * time.Second,
	})
	tr := &mcp.StreamableClientTransport{Endpoint: w.Target.URL, HTTPClient: hc, MaxRetries: -1,
		MaxEventSize: int(w.Opts.Limits.withDefaults().MaxResponseBytes)}
	dctx, cancel := context.WithTimeout(ctx, w.ConnectTimeout)
	cs, err := client.Connect(dctx, tr, &mcp.ClientSessionOptions{ProtocolVersion: ProtocolVersion})
	cancel()
	if err != nil {
		return err
	}
	defer cs.Close()
	w.Log.Info("watching", "server", w.Target.Name, "transport", w.Target.Transport)
	w.OnListing(ctx, nil, nil)
	last := time.Now()
	waitErr := make(chan error, 1)
	go func() { waitErr <- cs.Wait() }()
	for {
		select {
		case <-ctx.Done():
			cs.Close()
			<-waitErr
			return nil
		case err := <-waitErr:
			if err == nil {
				err = errors.New("session closed by server")
			}
			return err
		case <-changed:
			if w.Changes != nil {
				w.Changes()
			}
			if !w.pace(ctx, &last) {
				cs.Close()
				<-waitErr
				return nil
			}
			w.OnListing(ctx, nil, nil)
		}
	}
}
