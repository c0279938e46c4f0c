package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/visible"
)

// Backend is what the proxy needs of rugwatch's state machine: a
// control.Backend (the daemon's socket, or a Ledger over the store).
type Backend interface {
	Enforce(ctx context.Context, server string, l *mcpclient.Listing) (monitor.Allowed, error)
	Allowed(ctx context.Context, server string) (monitor.Allowed, error)
	FlagResult(ctx context.Context, server, tool string, findings []rugwatch.Finding, blocked bool) error
}

// Results says what the proxy does with a tool result that has a critical
// poisoning finding.
const (
	ResultsFlag  = "flag"  // record result.flagged and pass the result on
	ResultsBlock = "block" // record it and withhold the result
)

// Options configure one proxied session.
type Options struct {
	// Server is the configured server's name.
	Server string
	// Dial connects upstream with the client's capabilities and the peer
	// that gets the server's requests and notifications. It resolves the
	// server's own configured credentials; the client's never go upstream.
	Dial func(ctx context.Context, peer mcpclient.Peer, capabilities json.RawMessage) (*mcpclient.Session, error)
	// Backend opens a backend for one operation; release frees it (the
	// store is not held between operations, so proxies and the CLI do not
	// block each other when no daemon runs).
	Backend func(ctx context.Context) (b Backend, release func(), err error)
	Results string
	Log     *slog.Logger
	// Refresh is how often the allowed set is re-read (default 500ms):
	// approvals and revocations reach the client within about that.
	Refresh time.Duration
	// MaxStaleness, when set, is how long the allowed set last read is
	// served without being read again: past it (a shared store that
	// stopped answering, or answers too slowly) the session serves no
	// tools and refuses every call until a read succeeds. Zero: no bound,
	// for a store on this host, whose reads fail rather than hang.
	MaxStaleness time.Duration
	// ConnectTimeout bounds the upstream connect and each listing.
	ConnectTimeout time.Duration
	// Observe, when set, is told of this session and of every call it
	// refuses (metrics: *ops.Proxy is one).
	Observe Observer
	// Classify, when set, adds an external classifier's findings on a
	// tool result's text to the rules' (see monitor.Classifier).
	Classify func(ctx context.Context, tool, text string) []rugwatch.Finding
	// Watch, when set, runs for the life of the session and calls changed
	// whenever the server's tool list may have changed, with the listing
	// that says so (nil: list anew, as a Streamable HTTP watcher says on
	// list_changed). Over proxy_listen one runs for all the sessions of a
	// server. A watcher that fails to list calls nothing: its failure says
	// nothing of the tools. A stdio server's
	// list_changed arrives on the proxied session itself; over HTTP the
	// notifications live on a stream of their own (the monitor's
	// Watcher), which this hook supplies.
	// caps are the client capabilities the watcher declares upstream:
	// the sessions' it serves, since what a server lists may depend on
	// them.
	Watch func(ctx context.Context, caps json.RawMessage, changed func(*mcpclient.Listing))

	// noTranslation forwards what a stateless-only server lacks as it
	// came (tests: the translation must be shown to matter).
	noTranslation bool

	// shared, when set (proxy_listen), lets the sessions of one server
	// share their readings of the allowed set.
	shared *allowedCache
	// taint, when set (a gateway's inner session), is the client
	// session's taint, shared with the sessions of its other servers.
	taint *taint
}

// Observer is told when a client session starts and ends and of every
// call the proxy refuses, with one of the Refused reasons. Its methods are
// called from the session's goroutines and must not block.
type Observer interface {
	SessionStarted(server string)
	SessionEnded(server string)
	Refused(server, reason string)
}

// Reasons a call is refused, as Observer.Refused hears them: the reason
// label of rugwatch_proxy_refused_calls_total, so ops keeps the same
// values (TestRefusalReasonsAreMetricLabels holds the two together).
const (
	RefusedNotApproved       = "not_approved"       // pending, drifted, revoked or removed
	RefusedUnknownTool       = "unknown_tool"       // never listed
	RefusedInvalidArgs       = "invalid_arguments"  // outside the approved input schema
	RefusedBlockedResult     = "blocked_result"     // proxy.results: block withheld the result
	RefusedNoApprovals       = "no_approvals"       // fail closed: approvals cannot be read
	RefusedIdentityDrifted   = "identity_drifted"   // the server's launch or remote identity drifted
	RefusedArgumentInjection = "argument_injection" // arguments.go
	RefusedExfiltration      = "exfiltration_chain" // arguments.go
)

// recordEvery bounds how long a listing identical to the one this session
// last recorded is answered without recording it again. A changed listing
// is always recorded at once; an unchanged one carries nothing new for the
// state machine, and recording it (a store write and a signature check per
// approved tool) is what made tools/list slow.
const recordEvery = 10 * time.Second

// protocolVersions are the handshake-era revisions the proxy speaks to its
// client, newest first.
var protocolVersions = []string{"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"}

// maxInFlight bounds the client's requests being served at once.
const maxInFlight = 64

// session is one proxied client connection.
type session struct {
	opts   Options
	client mcp.Connection
	log    *slog.Logger

	up   atomic.Pointer[mcpclient.Session]
	upMu sync.Mutex // one redial at a time
	// initMu is held through an initialize: a second one sent at once
	// waits and is refused, and caps and viewKey are written once, before
	// initialized says they may be read.
	initMu      sync.Mutex
	caps        json.RawMessage // the client's capabilities, declared upstream
	viewKey     string          // the server and caps: what it shares a listing by (view)
	initialized atomic.Bool
	// relistBusy and relistAgain coalesce the server's list_changed (relay.go).
	relistBusy, relistAgain atomic.Bool
	// gen is the backend's approvals generation the allowed set was last
	// read at by freshen (0: none yet); noGenUntil (unix ns) is until when
	// a backend that keeps none is not asked again.
	gen        atomic.Uint64
	noGenUntil atomic.Int64

	mu      sync.Mutex
	allowed monitor.Allowed            // what passes now
	live    map[string]rugwatch.Digest // the upstream definitions last listed
	listed  bool                       // the client has listed tools
	// unreadable says the allowed set is empty because approvals could
	// not be read (fail closed), not because nothing is approved.
	unreadable bool
	// confirmed is when the allowed set was last read (see MaxStaleness).
	confirmed time.Time
	// newestSeq and newestAt are the Seq and ReadAt of the newest store
	// reading installed, which an older one finishing after it does not
	// replace (older).
	newestSeq uint64
	newestAt  time.Time
	schemas   map[string]*schemaCheck // by digest
	// taint is what this session's results carried (arguments.go): the
	// session's own, or its gateway session's, shared by every server
	// that session reaches.
	taint  *taint
	others otherTools // every server's tool names, for results (call.go)
	// noticed is the warnings on results this session recorded in the
	// last hour (call.go).
	noticed monitor.Notices
	// told is the withheld set the client was last told of
	// (withheldNotice), so that it hears of each change once, not on
	// every listing; level is the log level the client set ("" for none).
	told  string
	level string
	// What this session last recorded through Enforce, and the allowed
	// set's version it returned; zero until the first recording.
	recorded recording
	// ownListed says the upstream this session dialled has been listed:
	// a session that started from the shared listing dials its own
	// upstream lazily, and lists it before anything is forwarded, so
	// that a launch or identity drift of that process fails it closed.
	ownListed bool

	// Requests the proxy sent the client for the server (sampling,
	// elicitation, roots), by the id the client sees.
	relayMu sync.Mutex
	relays  map[string]chan *jsonrpc.Response
	relayID atomic.Int64
	// upIDs maps the server's request id (idKey) to the id the client
	// saw, for notifications/cancelled from the server.
	upIDs map[string]string

	// listen is the subscriptions/listen the proxy holds open on a
	// 2026-07-28 upstream (eras.go).
	listen listenState

	// calls are the client's requests in flight (inflight.go).
	calls inflight
	wg    sync.WaitGroup
	// ending is begun before Serve waits for wg: a goroutine started
	// from outside the session's own (the upstream's read loop announcing
	// list_changed, a POST's handler answering a call) joins wg through it.
	ending endGuard
	// life is the context of the whole session (a request's own ends
	// with it): what initialize starts runs under it.
	life context.Context
}

// recording is what a listing recorded through Enforce said: the live
// digests, the instructions, who answered, and the allowed set's version
// Enforce returned.
type recording struct {
	tools        map[string]rugwatch.Digest
	instructions rugwatch.Digest
	pins         string // launch and remote identity (pinsOf)
	version      string
	at           time.Time
}

// Serve proxies one client connection until it ends or ctx does. It
// returns after every goroutine it started has stopped and the upstream
// session (a stdio server's whole process tree) is closed.
func Serve(ctx context.Context, client mcp.Connection, opts Options) error {
	if opts.Refresh <= 0 {
		opts.Refresh = 500 * time.Millisecond
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 30 * time.Second
	}
	if opts.Results == "" {
		opts.Results = ResultsFlag
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s := &session{
		opts: opts, client: client, log: opts.Log.With("server", opts.Server),
		relays: map[string]chan *jsonrpc.Response{}, upIDs: map[string]string{},
		calls: newInflight(), schemas: map[string]*schemaCheck{}, taint: opts.taint,
	}
	if s.taint == nil {
		s.taint = &taint{}
	}
	if opts.Observe != nil {
		opts.Observe.SessionStarted(opts.Server)
		// Deferred first, so it runs last: the session counts as open
		// until everything it started has stopped.
		defer opts.Observe.SessionEnded(opts.Server)
	}
	ctx, cancel := context.WithCancel(ctx)
	s.life = ctx
	defer func() {
		s.ending.end()
		cancel()
		s.wg.Wait()
		if up := s.up.Load(); up != nil {
			up.Close()
		}
		client.Close()
	}()
	// Fail closed from the first moment: until approvals are read, the
	// allowed set is empty.
	s.allowed = monitor.Allowed{Server: opts.Server}
	s.refresh(ctx)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.watchApprovals(ctx)
	}()
	if c, ok := client.(inlineCalls); ok {
		c.answerInline(s.answerNow)
	}
	readClient(ctx, client, s.log, "rugwatch proxy", s.write, s.clientAnswered, s.clientNotified, s.serveCall)
	return nil
}

// answerNow answers a client call on the goroutine that received it,
// for a connection that can (inlineCalls): the call is read as readClient
// reads it and handled as serveCall handles it. It returns nil when no
// answer is due (the client cancelled the call), and false once the
// session is ending, when nothing more may start.
func (s *session) answerNow(m *jsonrpc.Request) (*jsonrpc.Response, bool) {
	// Counted in wg like the session's own goroutines, so Serve does not
	// close the upstream under a call still using it.
	if !s.ending.join(&s.wg) {
		return nil, false
	}
	defer s.wg.Done()
	return s.calls.answerStrict(s.life, s.client, m, s.log, "rugwatch proxy", s.handle), true
}

// inlineCalls is a client connection whose calls can be answered on the
// goroutine that received them (httpConn: a POST's handler waits for its
// answer anyway). Serve and ServeGateway hand it their answerNow; the
// connection still delivers through Read what must keep its order
// (notifications, answers) and the calls it cannot answer so (see
// httpConn.post).
type inlineCalls interface {
	answerInline(func(*jsonrpc.Request) (*jsonrpc.Response, bool))
}

// serveCall answers one client call off the read loop.
func (s *session) serveCall(ctx context.Context, m *jsonrpc.Request) {
	s.calls.serve(ctx, m, &s.wg, "rugwatch proxy", s.write, s.handle)
}

// readClient reads a client's messages until it goes away or ctx ends,
// and hands each on parsed strictly (strict.go): an answer whose result
// fails becomes an error answer, a request whose params fail is refused
// (a call) or dropped (a notification). who prefixes the refusals. It
// and inflight.answerStrict, for calls a connection answers inline, are
// the two places a proxy or a gateway takes what its client sends, and
// both pass a request through strictRequest.
func readClient(ctx context.Context, client mcp.Connection, log *slog.Logger, who string,
	write func(context.Context, jsonrpc.Message),
	answered func(*jsonrpc.Response),
	notified func(context.Context, *jsonrpc.Request),
	call func(context.Context, *jsonrpc.Request)) {
	_, checked := client.(membersChecked)
	for {
		msg, err := client.Read(ctx)
		if err != nil {
			return // the client went away, or ctx ended: a normal end
		}
		switch m := msg.(type) {
		case *jsonrpc.Response:
			if m.Result, err = strictJSON(m.Result, checked); err != nil {
				m.Result, m.Error = nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: who + ": the client's answer was refused: " + err.Error()}
				log.Warn("refused a client answer", "error", err)
			}
			answered(m)
		case *jsonrpc.Request:
			if refusal, ok := strictRequest(m, checked, log, who); !ok {
				if refusal != nil {
					write(ctx, refusal)
				}
				continue
			}
			if !m.IsCall() {
				notified(ctx, m)
				continue
			}
			call(ctx, m)
		}
	}
}

// strictRequest passes m's params through strictJSON in place, or says
// why not: the refusal a call is answered with (nil for a notification,
// which is dropped). checked is strictJSON's.
func strictRequest(m *jsonrpc.Request, checked bool, log *slog.Logger, who string) (refusal *jsonrpc.Response, ok bool) {
	params, err := strictJSON(m.Params, checked)
	if err != nil {
		log.Warn("refused a client request", "method", visible.Line(m.Method), "error", err)
		if m.IsCall() {
			refusal = errorResponse(m.ID, jsonrpc.CodeInvalidParams, who+": "+err.Error())
		}
		return refusal, false
	}
	m.Params = params
	return nil, true
}

func idKey(id jsonrpc.ID) string { return fmt.Sprintf("%T:%v", id.Raw(), id.Raw()) }

func (s *session) write(ctx context.Context, msg jsonrpc.Message) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.client.Write(wctx, msg); err != nil {
		s.log.Debug("writing to the client failed", "error", err)
	}
}

func errorResponse(id jsonrpc.ID, code int64, msg string) *jsonrpc.Response {
	return &jsonrpc.Response{ID: id, Error: &jsonrpc.Error{Code: code, Message: msg}}
}

// Error codes of refusals, in the JSON-RPC server-error range.
const (
	codeNotApproved = -32001 // the tool is not approved right now
	codeUpstream    = -32002 // the server could not be reached
)

// beforeHandshake answers, for a proxied session and the gateway alike,
// what a client may send before or instead of the handshake-era
// initialize they speak: ping; server/discover, refused, on which the
// 2026-07-28 SDKs fall back to initialize; and anything else before
// initialize, refused. answered is false for a request the caller
// serves. who prefixes the refusal.
func beforeHandshake(req *jsonrpc.Request, who string, initialized bool) (resp *jsonrpc.Response, answered bool) {
	switch {
	case req.Method == "server/discover":
		return errorResponse(req.ID, jsonrpc.CodeMethodNotFound, "server/discover is not supported by this proxy; use initialize"), true
	case req.Method == "ping":
		return &jsonrpc.Response{ID: req.ID, Result: json.RawMessage("{}")}, true
	case !initialized:
		return errorResponse(req.ID, jsonrpc.CodeInvalidRequest, who+": initialize first"), true
	}
	return nil, false
}

// handle serves one client request.
func (s *session) handle(ctx context.Context, req *jsonrpc.Request) *jsonrpc.Response {
	if req.Method == "initialize" {
		return s.initialize(ctx, req)
	}
	if resp, answered := beforeHandshake(req, "rugwatch proxy", s.initialized.Load()); answered {
		return resp
	}
	switch req.Method {
	case "tools/list":
		return s.listTools(ctx, req)
	case "logging/setLevel":
		return s.setLevel(ctx, req)
	}
	if req.Method == "tools/call" {
		s.freshen(ctx)
	}
	up, err := s.ownUpstream(ctx)
	if err != nil {
		if req.Method == "tools/call" {
			// Refused first for what it is, if the tool is not approved.
			if resp := s.refuseUnapproved(req); resp != nil {
				return resp
			}
		}
		return errorResponse(req.ID, codeUpstream, "rugwatch proxy: the server cannot be reached: "+err.Error())
	}
	if req.Method == "tools/call" {
		return s.callTool(ctx, up, req)
	}
	if up.Stateless() && !s.opts.noTranslation {
		if resp, ok := s.translate(up, req); ok {
			return resp
		}
	}
	res, rpcErr, err := up.Forward(ctx, req.Method, req.Params)
	if err != nil {
		return errorResponse(req.ID, codeUpstream, "rugwatch proxy: "+err.Error())
	}
	if rpcErr != nil {
		return &jsonrpc.Response{ID: req.ID, Error: rpcErr}
	}
	return &jsonrpc.Response{ID: req.ID, Result: res}
}

// initialize connects upstream with the client's capabilities and answers
// with the server's result, its instructions replaced by the approved ones
// and tools.listChanged declared (the proxy sends it when approvals move).
func (s *session) initialize(ctx context.Context, req *jsonrpc.Request) *jsonrpc.Response {
	s.initMu.Lock()
	defer s.initMu.Unlock()
	if s.initialized.Load() {
		return errorResponse(req.ID, jsonrpc.CodeInvalidRequest, "rugwatch proxy: already initialized")
	}
	var params struct {
		ProtocolVersion string          `json:"protocolVersion"`
		Capabilities    json.RawMessage `json:"capabilities"`
	}
	if err := json.Unmarshal(req.Params, &params); err != nil {
		return errorResponse(req.ID, jsonrpc.CodeInvalidParams, "initialize: "+err.Error())
	}
	s.caps = params.Capabilities
	s.viewKey = viewOf(s.opts.Server, s.declared())
	// While another session's listing of this server is fresh, its
	// handshake answers this client too, and the upstream is dialled only
	// when a request must go there.
	init, ok := s.opts.shared.greeting(s.view(), s.generation(ctx))
	if !ok {
		up, err := s.upstream(ctx)
		if err != nil {
			return errorResponse(req.ID, codeUpstream, "rugwatch proxy: "+err.Error())
		}
		init = up.Init
	}
	if !s.initialized.CompareAndSwap(false, true) {
		return errorResponse(req.ID, jsonrpc.CodeInvalidRequest, "rugwatch proxy: already initialized")
	}
	// List once now, so the allowed set and the live digests reflect this
	// very server before the client asks for anything.
	s.relist(ctx)
	s.watch()

	res := handshakeResult(init)
	version := protocolVersions[0]
	for _, v := range protocolVersions {
		if v == params.ProtocolVersion {
			version = v
		}
	}
	res["protocolVersion"], _ = json.Marshal(version)
	var caps map[string]json.RawMessage
	if json.Unmarshal(res["capabilities"], &caps) != nil || caps == nil {
		caps = map[string]json.RawMessage{}
	}
	caps["tools"] = json.RawMessage(`{"listChanged":true}`)
	if _, ok := caps["logging"]; !ok {
		// The proxy sends notifications/message of its own (why tools are
		// withheld), and a server that does MUST declare logging; setLevel
		// is then answered by the proxy (setLevel).
		caps["logging"] = json.RawMessage(`{}`)
	}
	res["capabilities"], _ = json.Marshal(caps)
	delete(res, "instructions")
	s.mu.Lock()
	if s.allowed.Instructions != nil {
		res["instructions"], _ = json.Marshal(*s.allowed.Instructions)
	}
	s.mu.Unlock()
	raw, err := json.Marshal(res)
	if err != nil {
		return errorResponse(req.ID, jsonrpc.CodeInternalError, err.Error())
	}
	return &jsonrpc.Response{ID: req.ID, Result: raw}
}

// handshakeResult is the server's answer to its connection as an
// initialize result for the proxy's handshake-era client. A 2026-07-28
// server answered server/discover instead: its serverInfo travels in
// _meta and the result carries fields of that era (supportedVersions,
// resultType, ttlMs, cacheScope) that mean nothing to an initialize; a
// client reading it as an initialize result finds no serverInfo and
// refuses the connection.
func handshakeResult(init mcpclient.InitializeInfo) map[string]json.RawMessage {
	var res map[string]json.RawMessage
	if err := json.Unmarshal(init.Raw, &res); err != nil || res == nil {
		res = map[string]json.RawMessage{}
	}
	if init.ProtocolVersion == mcpclient.StatelessVersion {
		for _, k := range []string{"supportedVersions", "resultType", "ttlMs", "cacheScope"} {
			delete(res, k)
		}
		var meta map[string]json.RawMessage
		if json.Unmarshal(res["_meta"], &meta) == nil && meta != nil {
			delete(meta, mcp.MetaKeyServerInfo)
			if len(meta) == 0 {
				delete(res, "_meta")
			} else {
				res["_meta"], _ = json.Marshal(meta)
			}
		}
	}
	if _, ok := res["serverInfo"]; !ok {
		res["serverInfo"] = init.ServerInfo
		if len(init.ServerInfo) == 0 {
			// Both SDKs refuse an initialize result without one.
			res["serverInfo"] = json.RawMessage(`{"name":"unknown","version":"unknown"}`)
		}
	}
	return res
}

// upstream returns the live upstream session, dialling it again when the
// last one ended (a stdio server that crashed, a hostile answer that
// broke the session): the client keeps its session and gets an error
// per request while the server cannot be reached, never a hang or a
// closed connection.
func (s *session) upstream(ctx context.Context) (*mcpclient.Session, error) {
	if up := s.up.Load(); up != nil && !ended(up) {
		return up, nil
	}
	s.upMu.Lock()
	defer s.upMu.Unlock()
	old := s.up.Load()
	if old != nil && !ended(old) {
		return old, nil
	}
	if old != nil {
		s.log.Warn("the server's session ended; connecting again", "error", old.Err())
		old.Close()
	}
	dctx, cancel := context.WithTimeout(ctx, s.opts.ConnectTimeout)
	defer cancel()
	up, err := s.opts.Dial(dctx, s, s.declared())
	if err != nil {
		s.up.Store(nil)
		s.log.Warn("proxy could not reach the server", "error", err)
		return nil, fmt.Errorf("connecting to %s: %w", s.opts.Server, err)
	}
	s.mu.Lock()
	s.ownListed = false
	s.mu.Unlock()
	s.up.Store(up)
	s.opts.shared.greeted(s.view(), up.Init)
	if up.Stateless() {
		// A 2026-07-28 server sends list_changed only on a
		// subscriptions/listen: the proxy holds one open for the session.
		s.relisten(up)
	}
	return up, nil
}

func ended(up *mcpclient.Session) bool {
	select {
	case <-up.Done():
		return true
	default:
		return false
	}
}

// ownUpstream is the session's upstream, dialled now if it has none, and
// listed before anything is forwarded to it if it never was: a stdio
// server is a process of this session's own, and what it is (its launch
// identity) is known, and checked against the approved one, only once
// it has been listed.
func (s *session) ownUpstream(ctx context.Context) (*mcpclient.Session, error) {
	up, err := s.upstream(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	listed := s.ownListed
	s.mu.Unlock()
	if !listed {
		if s.listUpstream(ctx) {
			s.toolsChanged(ctx)
		}
	}
	return up, nil
}

// watch starts following the server's list_changed for this session:
// over proxy_listen one watcher serves every session of the server, for
// a stdio proxy the session's own (Options.Watch).
func (s *session) watch() {
	if s.opts.Watch == nil {
		return
	}
	if s.opts.shared != nil {
		leave := s.opts.shared.watch(s)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			<-s.life.Done()
			leave()
		}()
		return
	}
	life := s.life
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.opts.Watch(life, s.declared(), func(*mcpclient.Listing) {
			// Only a change the client would see is announced: the
			// watcher's own first listing is not one.
			if s.relist(life) {
				s.toolsChanged(life)
			}
		})
	}()
}

// relist installs what may pass from a listing of the server: the one
// another session of this proxy_listen recorded, while it is fresh and
// the approvals have not moved since, else a full upstream listing of its
// own. It reports whether the allowed set changed.
func (s *session) relist(ctx context.Context) bool {
	if !s.initialized.Load() && s.up.Load() == nil {
		return false
	}
	if changed, ok := s.installShared(ctx); ok {
		return changed
	}
	return s.opts.shared.listing(s.view(), func() bool {
		// Another session may have listed while this one waited.
		if changed, ok := s.installShared(ctx); ok {
			return changed
		}
		return s.listUpstream(ctx)
	})
}

// installShared installs the server's shared listing (ok), if it is
// fresh and this session has no upstream of its own that was never
// listed, and reports whether the allowed set changed.
func (s *session) installShared(ctx context.Context) (changed, ok bool) {
	if s.opts.shared == nil {
		return false, false
	}
	s.mu.Lock()
	mustListOwn := s.up.Load() != nil && !s.ownListed
	s.mu.Unlock()
	if mustListOwn {
		return false, false
	}
	gen := s.generation(ctx)
	l, ok := s.opts.shared.fresh(s.view(), gen)
	if !ok {
		return false, false
	}
	s.mu.Lock()
	// Under MaxStaleness a shared listing's allowed set is no fresher
	// than when it was read: it must not lift a fail-closed session
	// (only a read that succeeds does) nor outlive the bound.
	stale := s.opts.MaxStaleness > 0 && (s.unreadable || time.Since(l.at) >= s.opts.MaxStaleness)
	s.mu.Unlock()
	if stale {
		return false, false
	}
	s.gen.Store(gen)
	return s.install(l.allowed, l.rec.tools), true
}

// listUpstream takes a full upstream listing, records it and installs
// what may pass. It reports whether the allowed set changed.
func (s *session) listUpstream(ctx context.Context) bool {
	up, err := s.upstream(ctx)
	if err != nil {
		return s.install(monitor.Allowed{Server: s.opts.Server}, map[string]rugwatch.Digest{})
	}
	lctx, cancel := context.WithTimeout(ctx, s.opts.ConnectTimeout)
	defer cancel()
	l, err := up.ListTools(lctx)
	if err != nil {
		s.log.Warn("proxy listing failed; serving no tools until the next one succeeds", "error", err)
		return s.install(monitor.Allowed{Server: s.opts.Server}, map[string]rugwatch.Digest{})
	}
	s.mu.Lock()
	s.ownListed = s.up.Load() == up
	s.mu.Unlock()
	live := make(map[string]rugwatch.Digest, len(l.Tools))
	for _, t := range l.Tools {
		live[t.Name] = t.Digest
	}
	// The same listing as last recorded, with the allowed set unmoved
	// since (no approval, revocation, or poll that saw something else,
	// which is how a server showing the poller one thing and the proxy
	// another is caught): approvals are read fresh, but the listing,
	// which would change nothing, is not written again.
	s.mu.Lock()
	rec := s.recorded
	s.mu.Unlock()
	if rec.at.IsZero() {
		// Recorded by another session of this proxy_listen: the same
		// listing needs no second record either.
		rec = s.opts.shared.lastRecording(s.view())
	}
	pins := pinsOf(l)
	// Who answers counts as much as what it lists: an upstream dialled
	// again (after a crash) may be another process or host serving the
	// same definitions, and its identity must be recorded (and drift
	// found) at once, not after recordEvery.
	gen := s.generation(ctx)
	// A listing that carries what the sandbox refused the upstream is
	// recorded, whatever else: the refusal is an event.
	if !rec.at.IsZero() && time.Since(rec.at) < recordEvery && sameDigests(live, rec.tools) && l.InstructionsDigest == rec.instructions && pins == rec.pins && len(l.Refused) == 0 {
		// Nothing written since the allowed set was read (the approvals
		// generation has not moved): it stands as it is, without reading
		// and verifying every approval again for each client listing.
		if gen != 0 && gen == s.gen.Load() {
			s.mu.Lock()
			current := s.allowed
			s.mu.Unlock()
			if current.Version == rec.version {
				s.opts.shared.recorded(s.view(), rec, current, gen)
				return s.install(current, live)
			}
		}
		var current monitor.Allowed
		err := s.withBackend(ctx, func(ctx context.Context, b Backend) error {
			var err error
			current, err = b.Allowed(ctx, s.opts.Server)
			return err
		})
		if err == nil && current.Version == rec.version {
			s.opts.shared.put(s.opts.Server, current)
			s.opts.shared.recorded(s.view(), rec, current, gen)
			s.gen.Store(gen)
			return s.install(current, live)
		}
	}
	var allowed monitor.Allowed
	err = s.withBackend(ctx, func(ctx context.Context, b Backend) error {
		var err error
		allowed, err = b.Enforce(ctx, s.opts.Server, l)
		return err
	})
	if err != nil {
		s.log.Error("proxy cannot record or read approvals; serving no tools", "error", err)
		s.mu.Lock()
		s.recorded.at = time.Time{}
		s.mu.Unlock()
		return s.failClosed(live)
	}
	s.opts.shared.put(s.opts.Server, allowed)
	// The generation read before Enforce: a write since (a drift Enforce
	// itself recorded, a revocation meanwhile) moved it past gen, and the
	// next call reads the allowed set again.
	s.gen.Store(gen)
	rec = recording{tools: live, instructions: l.InstructionsDigest, pins: pins, version: allowed.Version, at: time.Now()}
	s.mu.Lock()
	s.recorded = rec
	s.mu.Unlock()
	s.shareRecorded(ctx, rec)
	return s.install(allowed, live)
}

// shareRecorded hands the listing this session just recorded to the
// other sessions of its server. Recording it moved the approvals
// generation, and whether anything else did meanwhile (a revocation) is
// unknown: the allowed set is read again after the generation, so that
// what is shared is at least as new as the generation it is shared at.
func (s *session) shareRecorded(ctx context.Context, rec recording) {
	if s.opts.shared == nil {
		return
	}
	gen := s.generation(ctx)
	if gen == 0 {
		return
	}
	var allowed monitor.Allowed
	err := s.withBackend(ctx, func(ctx context.Context, b Backend) error {
		var err error
		allowed, err = b.Allowed(ctx, s.opts.Server)
		return err
	})
	if err != nil {
		return
	}
	s.opts.shared.recorded(s.view(), rec, allowed, gen)
}

// refresh re-reads the allowed set without listing upstream.
func (s *session) refresh(ctx context.Context) bool {
	return s.refreshAt(ctx, 0)
}

// generationOf is the backend's approvals generation, where it keeps one
// (the daemon does; a proxy that opens the store itself has none).
type generationOf interface {
	Generation(ctx context.Context) (uint64, error)
}

// freshen reads the allowed set again, before a call is decided, when the
// backend's approvals generation moved since it was last read: a
// revocation or a drift is in force for calls before the command that
// caused it returns. Without a generation the periodic re-read (Refresh)
// is all there is.
func (s *session) freshen(ctx context.Context) {
	g := s.generation(ctx)
	if g == 0 || g == s.gen.Load() {
		return
	}
	s.refreshAt(ctx, g)
	s.gen.Store(g)
}

// generation is the backend's approvals generation, 0 where it keeps none
// or cannot say.
func (s *session) generation(ctx context.Context) uint64 {
	// A backend that keeps none (a proxy opening the store itself, with no
	// daemon) is not asked again before its next periodic re-read: asking
	// opens the store, which a call must not pay for.
	if until := s.noGenUntil.Load(); until != 0 && time.Now().UnixNano() < until {
		return 0
	}
	var g uint64
	err := s.withBackend(ctx, func(ctx context.Context, b Backend) error {
		gb, ok := b.(generationOf)
		if !ok {
			return monitor.ErrNoGeneration
		}
		var err error
		g, err = gb.Generation(ctx)
		return err
	})
	if errors.Is(err, monitor.ErrNoGeneration) {
		s.noGenUntil.Store(time.Now().Add(s.opts.Refresh).UnixNano())
	}
	if err != nil {
		return 0
	}
	return g
}

// refreshAt reads the allowed set, at approvals generation gen (0:
// unknown), and installs it.
func (s *session) refreshAt(ctx context.Context, gen uint64) bool {
	allowed, err := s.opts.shared.read(s.opts.Server, s.opts.Refresh/2, gen, func() (monitor.Allowed, error) {
		var allowed monitor.Allowed
		err := s.withBackend(ctx, func(ctx context.Context, b Backend) error {
			var err error
			allowed, err = b.Allowed(ctx, s.opts.Server)
			return err
		})
		return allowed, err
	})
	s.mu.Lock()
	live := s.live
	s.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("proxy cannot read approvals; serving no tools", "error", err)
		}
		return s.failClosed(live)
	}
	return s.install(allowed, live)
}

// withBackend runs fn with a backend, and with the context its reads and
// writes must use: under MaxStaleness, one bounded by it.
func (s *session) withBackend(ctx context.Context, fn func(context.Context, Backend) error) error {
	if s.opts.MaxStaleness > 0 {
		// A read that hangs must not hold the last set in force, or a
		// listing, past the bound: it fails, and the session fails
		// closed until one succeeds.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.MaxStaleness)
		defer cancel()
	}
	b, release, err := s.opts.Backend(ctx)
	if err != nil {
		return err
	}
	defer release()
	return fn(ctx, b)
}

// install makes allowed and live current and reports a change.
func (s *session) install(allowed monitor.Allowed, live map[string]rugwatch.Digest) bool {
	return s.installAs(allowed, live, false)
}

// failClosed installs an empty allowed set because approvals cannot be
// read: calls are refused as no_approvals, and the client is told so.
func (s *session) failClosed(live map[string]rugwatch.Digest) bool {
	return s.installAs(monitor.Allowed{Server: s.opts.Server}, live, true)
}

func (s *session) installAs(allowed monitor.Allowed, live map[string]rugwatch.Digest, unreadable bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !unreadable && !allowed.ReadAt.IsZero() {
		if older(allowed, s.newestSeq, s.newestAt) {
			// The newer reading stays; what the upstream lists (live) is
			// its own news and is taken all the same.
			allowed, unreadable = s.allowed, s.unreadable
		} else {
			s.newestSeq, s.newestAt = allowed.Seq, allowed.ReadAt
		}
	}
	changed := allowed.Version != s.allowed.Version || !sameDigests(live, s.live) || unreadable != s.unreadable
	s.allowed, s.live, s.unreadable = allowed, live, unreadable
	switch {
	case unreadable:
	case !allowed.ReadAt.IsZero():
		// Counted from the read itself, not from when a cache (the
		// shared one, or the listing's own) handed the set on.
		s.confirmed = allowed.ReadAt
	case allowed.Version != "":
		s.confirmed = time.Now() // a backend that does not stamp its reads
	}
	return changed
}

// reorderWindow is how long after a reading an older one (a lower Seq) is
// taken for a read that was in flight across a write, and not installed.
// A read takes milliseconds; past the window a lower Seq means the event
// log itself went back (the store restored from a backup), and that
// reading is the truth now.
const reorderWindow = 10 * time.Second

// older says reading a was taken from an older snapshot of the store than
// the reading at seq, read at at, and within reorderWindow of it: a
// periodic re-read that began before an approval or a revocation and
// ended after a reading that shows it. Installed, it would undo the
// change until the next read (a revoked tool passing again, or an
// approved one refused).
func older(a monitor.Allowed, seq uint64, at time.Time) bool {
	return a.Seq < seq && a.ReadAt.Before(at.Add(reorderWindow))
}

// expireStale fails the session closed when its allowed set was last
// read longer than MaxStaleness ago, and reports whether it did just now
// (s.mu held). Every reader of the allowed set calls it first, so no
// tool passes on a set older than the bound, whatever a read in flight
// is waiting for.
func (s *session) expireStale() bool {
	if s.opts.MaxStaleness <= 0 || s.unreadable || s.confirmed.IsZero() || time.Since(s.confirmed) <= s.opts.MaxStaleness {
		return false
	}
	s.log.Error("proxy could not confirm its approved tools within proxy.max_staleness; serving no tools until it can (fail closed)",
		"max_staleness", s.opts.MaxStaleness.String(), "confirmed", s.confirmed.UTC().Format(time.RFC3339Nano))
	s.allowed, s.unreadable = monitor.Allowed{Server: s.opts.Server}, true
	return true
}

// pinsOf is what a listing says of the launch and remote identity, for
// telling whether the upstream changed under the same tools.
func pinsOf(l *mcpclient.Listing) string {
	b, _ := json.Marshal(struct {
		Launch   *mcpclient.Launch
		Identity *mcpclient.RemoteIdentity
	}{l.Launch, l.Identity})
	return string(b)
}

func sameDigests(a, b map[string]rugwatch.Digest) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// watchApprovals re-reads the allowed set on a tick and tells a client
// that has listed tools when it moved.
func (s *session) watchApprovals(ctx context.Context) {
	t := time.NewTicker(s.opts.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		expired := s.expireStale()
		s.mu.Unlock()
		if s.refresh(ctx) || expired {
			s.toolsChanged(ctx)
		}
	}
}

// toolsChanged tells the client to list again, if it ever listed.
func (s *session) toolsChanged(ctx context.Context) {
	s.mu.Lock()
	listed := s.listed
	s.mu.Unlock()
	if listed {
		s.write(ctx, &jsonrpc.Request{Method: "notifications/tools/list_changed", Params: json.RawMessage("{}")})
	}
}

// passes returns the allowed tool called name if its live definition is
// still the approved one.
func (s *session) passes(name string) (monitor.AllowedTool, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireStale()
	t, ok := s.allowed.Tool(name)
	if !ok || s.live[name] != t.Digest {
		return monitor.AllowedTool{}, false
	}
	return t, true
}

// listTools answers tools/list from a fresh upstream listing: every tool
// that passes, as signed, in one page.
func (s *session) listTools(ctx context.Context, req *jsonrpc.Request) *jsonrpc.Response {
	s.relist(ctx)
	s.mu.Lock()
	s.listed = true
	s.expireStale()
	tools := make([]json.RawMessage, 0, len(s.allowed.Tools))
	for _, t := range s.allowed.Tools {
		if s.live[t.Name] == t.Digest {
			tools = append(tools, t.Definition)
		}
	}
	notice, level := s.withheldNotice(), s.level
	s.mu.Unlock()
	if notice != nil {
		s.tellWithheld(ctx, *notice, level)
	}
	raw, err := json.Marshal(map[string]any{"tools": tools})
	if err != nil {
		return errorResponse(req.ID, jsonrpc.CodeInternalError, err.Error())
	}
	return &jsonrpc.Response{ID: req.ID, Result: raw}
}

func (s *session) refuse(id jsonrpc.ID, reason, msg string) *jsonrpc.Response {
	if s.opts.Observe != nil {
		s.opts.Observe.Refused(s.opts.Server, reason)
	}
	s.log.Warn("proxy refused a call", "reason", reason, "detail", msg)
	return errorResponse(id, codeNotApproved, "rugwatch proxy: "+msg)
}

// notice is what a client is told of the tools a listing withheld.
type notice struct {
	held, offered int
	why           string // "2 pending, 1 drifted", or the one reason all are held
	approve       string // the command that lets them through
	text          string // the whole message, for the client
}

// withheldNotice returns what to tell the client of the tools the listing
// being answered withholds, or nil when nothing is withheld or the client
// was told of this very set already (s.mu held). Only counts and reasons
// are told, never a tool name: a name is the server's text, and the
// client shows this message to the user as rugwatch's.
func (s *session) withheldNotice() *notice {
	names := make([]string, 0, len(s.live))
	for n := range s.live {
		names = append(names, n)
	}
	sort.Strings(names)
	server := s.opts.Server
	n := notice{offered: len(names), approve: "rugwatch approve " + server}
	counts := map[string]int{}
	var key strings.Builder
	for _, name := range names {
		if t, ok := s.allowed.Tool(name); ok && t.Digest == s.live[name] {
			continue
		}
		why := s.heldAs(name)
		counts[why]++
		n.held++
		fmt.Fprintf(&key, "%s\x00%s\x00", name, why)
	}
	if n.held == 0 {
		s.told = "" // a set withheld later is news again
		return nil
	}
	if key.String() == s.told {
		return nil
	}
	s.told = key.String()
	status := "`rugwatch status " + server + "`"
	head := fmt.Sprintf("rugwatch withheld %d of the %d tools %s offers", n.held, n.offered, server)
	switch {
	case len(s.allowed.Drifted) > 0:
		n.why = driftText(s.allowed.Drifted, server) + " since it was approved"
		n.approve += " --launch"
		n.text = fmt.Sprintf("%s: %s, so none of its tools is served. Review it with %s, then approve it with `%s`.", head, n.why, status, n.approve)
	case s.unreadable:
		n.why = "rugwatch cannot read its approvals now"
		n.text = fmt.Sprintf("%s: %s, so it serves none (fail closed). See %s; tools are approved with `%s`.", head, n.why, status, n.approve)
	default:
		parts := make([]string, 0, len(counts))
		for _, why := range slices.Sorted(maps.Keys(counts)) {
			parts = append(parts, fmt.Sprintf("%d %s", counts[why], why))
		}
		n.why = strings.Join(parts, ", ")
		n.text = fmt.Sprintf("%s (%s): a tool reaches the model only as a human approved it. Review them with %s, then approve with `%s`.", head, n.why, status, n.approve)
	}
	return &n
}

// heldAs is one word for why the live tool called name does not pass
// (s.mu held).
func (s *session) heldAs(name string) string {
	switch {
	case len(s.allowed.Drifted) > 0:
		return "identity drifted"
	case s.unreadable:
		return "approvals unreadable"
	}
	if st, ok := s.allowed.Withheld[name]; ok {
		if st == rugwatch.StateApproved {
			return "unverified" // approved, but the approval does not verify
		}
		return string(st)
	}
	if _, ok := s.allowed.Tool(name); ok {
		return string(rugwatch.StateDrifted) // listed otherwise than approved, not yet recorded
	}
	return string(rugwatch.StatePending)
}

// driftText says which pinned identities of server drifted.
func driftText(drifted []string, server string) string {
	var parts []string
	for _, d := range drifted {
		switch d {
		case monitor.DriftLaunch:
			parts = append(parts, "what runs for "+server+" changed (launch.drifted)")
		case monitor.DriftIdentity:
			parts = append(parts, "who answers for "+server+" changed (identity.drifted)")
		case monitor.DriftEgress:
			parts = append(parts, "where "+server+" connects changed (egress.drifted)")
		default:
			parts = append(parts, "its "+visible.Line(d)+" changed")
		}
	}
	return strings.Join(parts, " and ")
}

// tellWithheld tells the client, and the operator on stderr, why tools
// are missing. It goes to the client whether or not it ever sent
// logging/setLevel: the revisions the proxy speaks ask a server that
// logs to declare logging (initialize does) and leave what it sends
// before a setLevel to the server; a user looking at a connected server
// with no tools has no other channel to learn why. A level the client did
// set above warning is honoured.
func (s *session) tellWithheld(ctx context.Context, n notice, level string) {
	s.log.Warn("tools withheld from the client", "withheld", n.held, "offered", n.offered, "why", n.why,
		"review", "rugwatch status "+s.opts.Server, "approve", n.approve)
	if level != "" && slices.Index(logLevels, level) > slices.Index(logLevels, "warning") {
		return
	}
	params, _ := json.Marshal(map[string]any{"level": "warning", "logger": "rugwatch", "data": n.text})
	s.write(ctx, &jsonrpc.Request{Method: "notifications/message", Params: params})
}

// logLevels are MCP's log levels (RFC 5424), least severe first.
var logLevels = []string{"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"}

// setLevel records the client's log level for the proxy's own messages
// and passes it to a server that declared logging; one that did not (the
// proxy declared it on its behalf) or a 2026-07-28 server, which has no
// setLevel, gets nothing and the client its answer from the proxy.
func (s *session) setLevel(ctx context.Context, req *jsonrpc.Request) *jsonrpc.Response {
	var p struct {
		Level string `json:"level"`
	}
	if json.Unmarshal(req.Params, &p) != nil || !slices.Contains(logLevels, p.Level) {
		return errorResponse(req.ID, jsonrpc.CodeInvalidParams, "logging/setLevel: level must be one of "+strings.Join(logLevels, ", "))
	}
	s.mu.Lock()
	s.level = p.Level
	s.mu.Unlock()
	up, err := s.ownUpstream(ctx)
	if err != nil {
		return errorResponse(req.ID, codeUpstream, "rugwatch proxy: the server cannot be reached: "+err.Error())
	}
	if up.Stateless() && !s.opts.noTranslation {
		// No setLevel in that era: the level rides on each request.
		up.SetLogLevel(p.Level)
		return &jsonrpc.Response{ID: req.ID, Result: json.RawMessage("{}")}
	}
	if !declaresLogging(up) {
		return &jsonrpc.Response{ID: req.ID, Result: json.RawMessage("{}")}
	}
	res, rpcErr, err := up.Forward(ctx, req.Method, req.Params)
	if err != nil {
		return errorResponse(req.ID, codeUpstream, "rugwatch proxy: "+err.Error())
	}
	if rpcErr != nil {
		return &jsonrpc.Response{ID: req.ID, Error: rpcErr}
	}
	return &jsonrpc.Response{ID: req.ID, Result: res}
}

// declaresLogging reports whether the upstream server declared the
// logging capability in its handshake.
func declaresLogging(up *mcpclient.Session) bool {
	if up.Stateless() {
		return false
	}
	var res struct {
		Capabilities struct {
			Logging json.RawMessage `json:"logging"`
		} `json:"capabilities"`
	}
	return json.Unmarshal(up.Init.Raw, &res) == nil && len(res.Capabilities.Logging) > 0 && string(res.Capabilities.Logging) != "null"
}

// declared is what the session declares upstream: its client's
// capabilities, none when the client declared none (never the monitor's
// default, which would offer upstream what the client cannot do).
func (s *session) declared() json.RawMessage {
	if len(s.caps) == 0 || string(s.caps) == "null" {
		return json.RawMessage(`{}`)
	}
	return s.caps
}

// view is the key the session shares listings by: its server and the
// capabilities it declared there that a server may list by (viewOf).
func (s *session) view() string {
	if s.viewKey == "" {
		return viewOf(s.opts.Server, s.declared())
	}
	return s.viewKey
}

// viewOf keys a listing by server and by the declared capabilities a poll
// declares too (mcpclient.ListingCapabilities: roots, sampling,
// elicitation), re-encoded so that member order and spacing do not split
// sessions that ask alike. experimental, extensions and names no revision
// defines are left out: a client varying them would otherwise make a view
// of each session, sharing nothing and recording every listing.
func viewOf(server string, caps json.RawMessage) string {
	var m map[string]any
	_ = json.Unmarshal(caps, &m)
	kept := map[string]any{}
	for _, name := range mcpclient.ListingCapabilities() {
		if v, ok := m[name]; ok {
			kept[name] = v
		}
	}
	canon, _ := json.Marshal(kept) // map keys sorted
	sum := sha256.Sum256(canon)
	return server + "\x00" + hex.EncodeToString(sum[:8])
}
