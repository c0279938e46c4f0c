package mcpclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/visible"
)

// ProtocolVersion is the handshake-era revision rugwatch asks for in
// initialize. rugwatch negotiates itself (revision.go) rather than through
// the SDK's Connect, whose discovery request has no timeout of its own and
// would let a silent server hold a poll open.
const ProtocolVersion = "2025-11-25"

// Session is one open connection to an MCP server, after the initialize
// handshake. rugwatch drives the JSON-RPC exchange itself over the SDK's
// transports so that it keeps every result exactly as the server sent it:
// the SDK's typed ListTools drops tools and re-marshalling loses fields,
// and a digest of anything but the raw bytes would miss a rug pull hiding
// in a field no SDK knows.
type Session struct {
	target Target
	opts   DialOptions
	conn   mcp.Connection
	proc   *process     // stdio only
	stdout *stdoutLines // stdio only: the server's stdout, noise lines dropped
	http   *http.Client // http and sse only

	nextID  atomic.Int64
	mu      sync.Mutex
	pending map[int64]chan *jsonrpc.Response // by request id: rugwatch sends integer ids only
	readErr error

	changed chan struct{}        // notifications/tools/list_changed, coalesced
	acks    chan json.RawMessage // notifications/subscriptions/acknowledged params
	done    chan struct{}        // closed when the read loop ends
	cancel  context.CancelFunc

	closeOnce sync.Once

	// relaying bounds the server requests waiting on a Peer (peer.go).
	relayOnce sync.Once
	relaying  chan struct{}

	// stateless is set once server/discover settled on the 2026-07-28
	// revision: every request then carries the per-request _meta keys.
	stateless bool
	// logLevel is the level the proxy's client set (SetLogLevel), sent
	// in every stateless request's _meta; a string, "" for none.
	logLevel atomic.Value
	// listenID is the JSON-RPC id of this session's own
	// subscriptions/listen request, 0 when none is open; only change
	// notifications stamped with it (or with none) count.
	listenID atomic.Int64
	// probe asks Poll to check, after listing, that the handshake era the
	// server answered is one it serves (SSE, where discovery cannot come
	// first; see probeRevision).
	probe bool

	// Filled by initialize, or by server/discover in the stateless era.
	Init InitializeInfo
}

// InitializeInfo is what the server said about itself, in its initialize
// result or (stateless era) its server/discover result.
type InitializeInfo struct {
	// ProtocolVersion is the negotiated revision.
	ProtocolVersion string
	ServerInfo      json.RawMessage
	Instructions    *string
	ListChanged     bool // the server declared tools.listChanged
	Raw             json.RawMessage
	// Offered is the supportedVersions of the server's server/discover
	// result, nil when it answered none.
	Offered []string
}

// Stateless reports whether the session speaks the stateless 2026-07-28
// revision: no handshake, _meta on every request, change notifications
// only through subscriptions/listen.
func (s *Session) Stateless() bool { return s.stateless }

// Dial connects to a target and settles a revision: server/discover first
// (stdio, Streamable HTTP), the initialize handshake otherwise. The
// context bounds both; the session itself lives until Close.
func Dial(ctx context.Context, t Target, opts DialOptions) (*Session, error) {
	if !opts.PreferHandshake {
		return dial(ctx, t, opts, eraAuto)
	}
	s, err := dial(ctx, t, opts, eraHandshake)
	var le *LimitError
	var he *HostileError
	if err == nil || ctx.Err() != nil || errors.As(err, &le) || errors.As(err, &he) {
		return s, err
	}
	// A server of the stateless revision alone: speak that.
	return dial(ctx, t, opts, eraAuto)
}

func dial(ctx context.Context, t Target, opts DialOptions, want era) (*Session, error) {
	opts.Limits = opts.Limits.withDefaults()
	if opts.StopGrace <= 0 {
		opts.StopGrace = 200 * time.Millisecond
	}
	if opts.ClientInfo.Name == "" {
		opts.ClientInfo = ClientInfo{Name: "rugwatch", Version: "dev"}
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Session{
		target:  t,
		opts:    opts,
		pending: make(map[int64]chan *jsonrpc.Response),
		changed: make(chan struct{}, 1),
		acks:    make(chan json.RawMessage, 1),
		done:    make(chan struct{}),
		cancel:  cancel,
	}
	var tr mcp.Transport
	switch t.Transport {
	case TransportStdio, "":
		if t.Sandbox.refused == nil {
			// Every session collects what its sandbox refused: its
			// listings carry it (ListTools), a poll's error too (pollEra).
			t.Sandbox.refused = &refusals{}
			s.target.Sandbox.refused = t.Sandbox.refused
		}
		if t.Sandbox.egress == nil {
			t.Sandbox.egress = &egressUse{}
			s.target.Sandbox.egress = t.Sandbox.egress
		}
		p, err := startProcess(t, opts.Limits.MaxStderrBytes)
		if err != nil {
			cancel()
			return nil, err
		}
		s.proc = p
		var out io.ReadCloser = p.stdout
		if !opts.rawStdout {
			s.stdout = newStdoutLines(p.stdout, opts.Limits, s.noiseText)
			out = s.stdout
		}
		tr = &mcp.IOTransport{Reader: out, Writer: p.stdin, MaxLineLength: int(opts.Limits.MaxResponseBytes)}
	case TransportHTTP, TransportSSE:
		hc, err := newHTTPClient(t, opts.Limits.MaxResponseBytes, opts.RootCAs)
		if err != nil {
			cancel()
			return nil, err
		}
		s.http = hc
		if t.Transport == TransportHTTP {
			// rugwatch's own (streamable.go); watch mode opens its GET
			// stream through the SDK (see watch.go).
			tr = streamableTransport{newStreamableConn(t.URL, hc, int(opts.Limits.MaxResponseBytes))}
		} else {
			tr = &mcp.SSEClientTransport{Endpoint: t.URL, HTTPClient: hc, MaxEventSize: int(opts.Limits.MaxResponseBytes)}
		}
	default:
		cancel()
		return nil, fmt.Errorf("unknown transport %q", t.Transport)
	}

	// The SSE transport ties its event stream to the context given to
	// Connect, so it gets the session's, bounded here by the caller's
	// while Connect runs, and only then. (A goroutine that selected on
	// the caller's context and "connected" chose at random once both were
	// ready: scheduled late, after Dial had returned and its caller had
	// cancelled the dial's context, it cancelled the live session, whose
	// next call failed with a bare "context canceled". CI saw it once,
	// proxying, where the dial's context ends as the dial returns.)
	stop := context.AfterFunc(ctx, cancel)
	conn, err := tr.Connect(sctx)
	stop()
	if err != nil {
		s.teardown()
		return nil, s.wrapErr("connecting", err)
	}
	s.conn = conn
	go s.readLoop(sctx)

	if err := s.negotiate(ctx, want); err != nil {
		s.Close()
		if errors.Is(err, errRedial) {
			// The server hung up on server/discover (an old stdio server
			// may exit on a method it does not know): a fresh connection
			// speaks only the handshake era.
			return dial(ctx, t, opts, eraHandshake)
		}
		return nil, err
	}
	return s, nil
}

// initialize runs the handshake. offered is what server/discover listed
// (nil when it listed nothing): a server that answers initialize with a
// revision outside it answered so that the client disconnects.
func (s *Session) initialize(ctx context.Context, offered []string) error {
	params := map[string]any{
		"protocolVersion": ProtocolVersion,
		"capabilities":    s.opts.capabilities(),
		"clientInfo":      map[string]any{"name": s.opts.ClientInfo.Name, "version": s.opts.ClientInfo.Version},
	}
	raw, err := s.call(ctx, "initialize", params)
	if err != nil {
		return s.wrapErr("initializing", err)
	}
	var res struct {
		ProtocolVersion string          `json:"protocolVersion"`
		ServerInfo      json.RawMessage `json:"serverInfo"`
		Instructions    *string         `json:"instructions"`
		Capabilities    struct {
			Tools *struct {
				ListChanged bool `json:"listChanged"`
			} `json:"tools"`
		} `json:"capabilities"`
	}
	// Strict first: a duplicate "instructions" key or invalid UTF-8 in it
	// is refused, not read one way here and another by an agent's client.
	if _, err := signatures.Canonical(raw, signatures.Limits{MaxDepth: s.opts.Limits.MaxDepth,
		MaxStringBytes: s.opts.Limits.MaxStringBytes, MaxBytes: int(s.opts.Limits.MaxResponseBytes)}); err != nil {
		return classify("initialize result", err)
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return s.wrapErr("initializing", fmt.Errorf("decoding initialize result: %w", err))
	}
	if res.Instructions != nil && len(*res.Instructions) > s.opts.Limits.MaxStringBytes {
		return &LimitError{Limit: "max_string_bytes", Value: int64(s.opts.Limits.MaxStringBytes)}
	}
	if err := s.checkAnswered(res.ProtocolVersion, offered); err != nil {
		return err
	}
	s.Init = InitializeInfo{
		Offered:         offered,
		ProtocolVersion: res.ProtocolVersion,
		ServerInfo:      res.ServerInfo,
		Instructions:    res.Instructions,
		ListChanged:     res.Capabilities.Tools != nil && res.Capabilities.Tools.ListChanged,
		Raw:             raw,
	}
	if err := s.notify(ctx, "notifications/initialized", map[string]any{}); err != nil {
		return s.wrapErr("initializing", err)
	}
	return nil
}

// call sends one request and waits for its response or ctx; a JSON-RPC
// error from the server comes back as a *ServerError with its text made
// safe.
func (s *Session) call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	p, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	raw, err := s.callRaw(ctx, method, p)
	var rpcErr *rpcError
	if errors.As(err, &rpcErr) {
		return nil, s.serverError(method, rpcErr.err)
	}
	return raw, err
}

// rpcError carries the server's own error response out of callRaw, so
// call can make it safe and Forward can pass it on as it came.
type rpcError struct{ err error }

func (e *rpcError) Error() string { return e.err.Error() }
func (e *rpcError) Unwrap() error { return e.err }

// callRaw sends one request with params as given (plus, in the stateless
// era, the per-request _meta keys) and waits for its response or ctx.
func (s *Session) callRaw(ctx context.Context, method string, p json.RawMessage) (json.RawMessage, error) {
	return s.callID(ctx, s.nextID.Add(1), method, p)
}

// callID is callRaw with the request's id chosen by the caller (from
// s.nextID), for a request whose notifications name its id.
func (s *Session) callID(ctx context.Context, n int64, method string, p json.RawMessage) (json.RawMessage, error) {
	return s.callUntil(ctx, n, method, p, nil)
}

// callUntil is callID that also stops waiting, as at a deadline, once
// giveUp is closed (nil never is): server/discover's wait is measured from
// when the server started talking (see discover), which no context made
// before the request can say.
func (s *Session) callUntil(ctx context.Context, n int64, method string, p json.RawMessage, giveUp <-chan struct{}) (json.RawMessage, error) {
	if s.stateless {
		var err error
		if p, err = s.withMeta(p); err != nil {
			return nil, fmt.Errorf("sending %s: %w", method, err)
		}
	}
	id, _ := jsonrpc.MakeID(float64(n))
	ch := make(chan *jsonrpc.Response, 1)
	s.mu.Lock()
	if s.readErr != nil {
		err := s.readErr
		s.mu.Unlock()
		return nil, err
	}
	s.pending[n] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, n)
		s.mu.Unlock()
	}()
	if err := s.conn.Write(ctx, &jsonrpc.Request{ID: id, Method: method, Params: p}); err != nil {
		// Over Streamable HTTP the write lasts until the server starts its
		// answer, which a go-sdk server does only when it has something to
		// send: a call cancelled while the server works on it ends here,
		// and the server must hear of it as below.
		s.cancelUpstream(ctx, method, id)
		return nil, fmt.Errorf("sending %s: %w", method, err)
	}
	select {
	case resp := <-ch:
		if resp.Error != nil {
			return nil, &rpcError{resp.Error}
		}
		return resp.Result, nil
	case <-s.done:
		s.mu.Lock()
		err := s.readErr
		s.mu.Unlock()
		return nil, fmt.Errorf("waiting for %s: %w", method, err)
	case <-giveUp:
		// A timeout, not a cancellation: nothing is sent (see below).
		return nil, fmt.Errorf("waiting for %s: %w", method, context.DeadlineExceeded)
	case <-ctx.Done():
		s.cancelUpstream(ctx, method, id)
		return nil, fmt.Errorf("waiting for %s: %w", method, ctx.Err())
	}
}

// cancelUpstream tells the server that request id, which ctx ended, is
// cancelled, when ctx was cancelled rather than timed out (a poll past
// its deadline tears the session down anyway): a proxied call the client
// gave up on stops upstream too. initialize must never be cancelled. A
// server that never got the request ignores the notice.
func (s *Session) cancelUpstream(ctx context.Context, method string, id jsonrpc.ID) {
	if method == "initialize" || !errors.Is(ctx.Err(), context.Canceled) {
		return
	}
	cp, _ := json.Marshal(map[string]any{"requestId": id.Raw(), "reason": "cancelled by the client"})
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 200*time.Millisecond)
	_ = s.conn.Write(wctx, &jsonrpc.Request{Method: "notifications/cancelled", Params: cp})
	cancel()
}

func (s *Session) notify(ctx context.Context, method string, params any) error {
	p, err := json.Marshal(params)
	if err != nil {
		return err
	}
	return s.conn.Write(ctx, &jsonrpc.Request{Method: method, Params: p})
}

// readLoop routes responses to their callers, answers the few server
// requests a monitor can answer, and turns list_changed into a signal.
func (s *Session) readLoop(ctx context.Context) {
	defer close(s.done)
	for {
		msg, err := s.conn.Read(ctx)
		if err != nil {
			s.mu.Lock()
			s.readErr = err
			s.mu.Unlock()
			return
		}
		switch m := msg.(type) {
		case *jsonrpc.Response:
			n, _ := m.ID.Raw().(int64) // a string id answers none of rugwatch's
			s.mu.Lock()
			ch := s.pending[n]
			if ch == nil && !s.issued(m.ID) {
				// An answer to a request never sent is not late, it is
				// wrong; waiting on would report a timeout and hide it.
				s.readErr = &HostileError{Reason: fmt.Sprintf("response with JSON-RPC id %s, which no request had (waiting for %s)",
					s.idText(m.ID), s.pendingIDs())}
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
			if ch != nil {
				select {
				case ch <- m:
				default:
				}
			}
		case *jsonrpc.Request:
			if !m.IsCall() {
				switch m.Method {
				case "notifications/tools/list_changed":
					if s.ownNotification(m.Params) {
						select {
						case s.changed <- struct{}{}:
						default:
						}
					}
				case "notifications/subscriptions/acknowledged":
					if s.ownNotification(m.Params) {
						select {
						case s.acks <- m.Params:
						default:
						}
					}
				}
				if s.opts.Peer != nil {
					s.opts.Peer.Notify(m)
				}
				continue
			}
			if s.opts.Peer != nil {
				s.relay(ctx, m)
				continue
			}
			s.answer(ctx, m)
		}
	}
}

// answer replies to a request from the server: ping is answered, roots
// are none, anything else (sampling, elicitation) is refused, since a
// monitor must never act on a server's behalf.
func (s *Session) answer(ctx context.Context, req *jsonrpc.Request) {
	resp := &jsonrpc.Response{ID: req.ID}
	switch req.Method {
	case "ping":
		resp.Result = json.RawMessage("{}")
	case "roots/list":
		resp.Result = json.RawMessage(`{"roots":[]}`)
	default:
		resp.Error = &jsonrpc.Error{Code: jsonrpc.CodeMethodNotFound, Message: "rugwatch is a monitor and does not serve " + req.Method}
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = s.conn.Write(wctx, resp)
}

// Changed delivers a value after the server sent
// notifications/tools/list_changed; several notifications between two reads
// coalesce into one.
func (s *Session) Changed() <-chan struct{} { return s.changed }

// Done is closed when the connection has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is why the connection ended, once Done is closed.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readErr
}

// Close ends the session: the connection is closed and a stdio server's
// whole process group is killed and reaped. It is safe to call twice.
func (s *Session) Close() error {
	s.closeOnce.Do(s.teardown)
	return nil
}

func (s *Session) teardown() {
	if s.conn != nil {
		_ = s.conn.Close()
	}
	s.cancel()
	if s.proc != nil {
		s.proc.stop(s.opts.StopGrace)
	}
	closeIdle(s.http)
	if s.conn != nil {
		<-s.done
	}
}

// wrapErr adds what the server wrote to stderr, capped, to an error; that
// is usually the only clue why a stdio server failed. The result is
// bounded (see bound): it goes into a log line on every failed poll.
func (s *Session) wrapErr(step string, err error) error {
	return s.bound(s.wrapStep(step, err))
}

func (s *Session) wrapStep(step string, err error) error {
	var le *LimitError
	if errors.As(err, &le) {
		return fmt.Errorf("%s: %w", step, err)
	}
	if s.proc != nil {
		// A server that failed usually exits on its own; give it a moment,
		// so its last words on stderr are copied before they are read.
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			wctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			_ = s.proc.waitCtx(wctx)
			cancel()
		}
		if exited, werr := s.proc.exited(); exited {
			err = fmt.Errorf("%w (server exited: %v)", err, werr)
		}
		if n := s.stdoutNoise(); n != nil {
			// Often the clue: a server that printed its answer after a
			// prefix, or its error as text, on stdout.
			err = fmt.Errorf("%w (the server wrote %d lines on stdout that are not JSON-RPC, dropped unread; the first: \"%s\")", err, n.Lines, n.First)
		}
		if se := s.proc.stderr.String(); se != "" {
			return fmt.Errorf("%s: %w; stderr: %s", step, err, s.stderrText(se))
		}
	}
	return fmt.Errorf("%s: %w", step, err)
}

// Text a server chose reaches poll errors through JSON-RPC error messages,
// stderr, ids, cursors, endpoint URLs and the SDK's own messages. A poll
// error goes into a log line on every poll, the store, events, alerts and
// --json output, so it is made safe where it is made: scrubbed of the
// target's configured values, capped, and rendered by visible.Line, so
// that no consumer can write a 2 MiB ANSI and bidi message into a
// terminal or log file.
const (
	MaxServerText = 512  // bytes of one piece of server text, before escaping
	maxIDText     = 64   // bytes of a JSON-RPC id or a cursor
	MaxErrorText  = 4096 // bytes of a whole poll error
)

// serverText renders raw, text the server chose, for an error: secrets
// scrubbed first (a cap must not leave half a token), then at most max
// bytes, then visible.Line.
func (s *Session) serverText(raw string, max int) string {
	return visible.Bounded(scrubText(raw, s.target.secretValues()), max)
}

// stderrText keeps the head and the tail of a stdio server's stderr: a
// stack trace names the failure at one end or the other.
func (s *Session) stderrText(raw string) string {
	raw = scrubText(raw, s.target.secretValues())
	if len(raw) <= 2*MaxServerText {
		return visible.Line(raw)
	}
	head := visible.Bounded(raw[:len(raw)-MaxServerText], MaxServerText)
	tail := len(raw) - MaxServerText
	for tail < len(raw) && !utf8.RuneStart(raw[tail]) {
		tail++
	}
	return head + " " + visible.Line(raw[tail:])
}

// ServerError is a JSON-RPC error response from the server. Message is
// the server's text made safe by serverText; the error's data member is
// not kept (it is for programs, and may be any size).
type ServerError struct {
	Method  string
	Code    int64
	Message string
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("%s: server error %d: %s", e.Method, e.Code, e.Message)
}

func (s *Session) serverError(method string, err error) error {
	var we *jsonrpc.Error
	if !errors.As(err, &we) {
		return &ServerError{Method: method, Message: s.serverText(err.Error(), MaxServerText)}
	}
	return &ServerError{Method: method, Code: we.Code, Message: s.serverText(we.Message, MaxServerText)}
}

// bound makes a whole poll error safe, whatever its parts: the SDK's
// messages quote what the server sent (an SSE event name, an endpoint URL,
// an HTTP status line), and a future caller may forget serverText. The
// chain is kept for errors.As.
func (s *Session) bound(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	safe := visible.Message(scrubText(msg, s.target.secretValues()))
	if len(safe) > MaxErrorText {
		cut := MaxErrorText
		for !utf8.RuneStart(safe[cut]) {
			cut--
		}
		safe = safe[:cut] + fmt.Sprintf("… (%d more bytes)", len(safe)-cut)
	}
	if safe == msg {
		return err
	}
	return &scrubbedError{msg: safe, err: err}
}

// idText shows an id the server sent: a number as it is, a string quoted
// and made safe by serverText.
func (s *Session) idText(id jsonrpc.ID) string {
	if str, ok := id.Raw().(string); ok {
		return `"` + s.serverText(str, maxIDText) + `"`
	}
	return fmt.Sprint(id.Raw())
}

// issued reports whether id is one rugwatch sent (a late answer to a
// request whose caller gave up is ignored, not treated as hostile).
// Called with s.mu held.
func (s *Session) issued(id jsonrpc.ID) bool {
	n, ok := id.Raw().(int64)
	return ok && n >= 1 && n <= s.nextID.Load()
}

// pendingIDs lists the ids awaiting an answer, for an error. Called with
// s.mu held.
func (s *Session) pendingIDs() string {
	if len(s.pending) == 0 {
		return "no response"
	}
	ns := make([]int64, 0, len(s.pending))
	for n := range s.pending {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	ids := make([]string, len(ns))
	for i, n := range ns {
		ids[i] = strconv.FormatInt(n, 10)
	}
	return "id " + strings.Join(ids, ", ")
}
