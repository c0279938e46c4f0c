package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/rugwatch/rugwatch/mcpclient"
)

// HTTP serves proxied sessions as Streamable HTTP at /mcp/<server> (and
// /<server>/mcp), and the gateway at /mcp: serve's proxy_listen. Each MCP
// session is one Serve (or ServeGateway) of its own over an httpConn
// (streamable.go), so each holds an upstream session (for a stdio server, its
// process tree): every way a client could make one grow or linger is
// bounded here — the body of each request (MaxBody, BodyTimeout), the
// sessions one client holds (MaxSessionsPerClient) and all of them
// (MaxSessions), and how long a session nobody uses lives (IdleTimeout).
type HTTP struct {
	// Options returns the proxy options for a configured server (false:
	// no such server). Called per session, so a reload is seen by new
	// sessions.
	Options func(server string) (Options, bool)
	// Gateway, when set, returns the options of the gateway served at
	// /mcp (false: none configured). Called per request, like Options.
	Gateway func() (GatewayOptions, bool)
	// Token resolves the bearer token every request must carry as
	// "Authorization: Bearer <token>", loopback included (serve always
	// sets it; nil checks nothing, for in-process tests). A token that
	// cannot be resolved, or resolves empty, refuses every request. It is
	// the client's credential for rugwatch and is never sent upstream.
	Token func() (string, error)
	// Hosts are the Host header values accepted (the listener's own
	// addresses): anything else is refused, so a DNS-rebinding page cannot
	// reach the proxy through a browser.
	Hosts []string
	// Origins are Origin header values accepted besides those of Hosts.
	Origins []string
	Log     *slog.Logger
	// MaxSessions bounds concurrent sessions (default 1024).
	MaxSessions int
	// MaxSessionsPerClient bounds the sessions one client holds at once
	// (default 16); see clientKey for who counts as one client.
	MaxSessionsPerClient int
	// MaxBody bounds every request's body (default 4 MiB); a POST over it
	// is answered 413 and the connection closed (net/http discards at most
	// 256 KiB more of the body first).
	MaxBody int64
	// BodyTimeout bounds how long a POST's body may take to arrive
	// (default 30s), whatever server the handler is mounted on. It covers
	// the body only, never the response, which may be an event stream
	// open for the life of the session.
	BodyTimeout time.Duration
	// IdleTimeout ends a session that has had no request in flight for
	// that long (default 10 min; negative: never): its Serve is cancelled
	// and its upstream closed. A request being served keeps its session
	// alive for as long as it lasts, and so does an open GET event stream:
	// it is how the server's notifications (list_changed: a tool was
	// approved or revoked) reach a client between requests, and the
	// go-sdk client holds one for its whole session, so expiring it would
	// cut off a client that is listening. A client that vanished leaves
	// its stream only when TCP says so (keep-alive probes, or a failed
	// write); from then its session idles out like any other.
	IdleTimeout time.Duration

	// now is the clock idleness is measured with (tests set their own).
	now func() time.Time

	mu       sync.Mutex // guards the fields below and every httpSession's
	closed   bool       // Close began: no session may start (wg.Add)
	sessions map[string]*httpSession
	// perClient counts each clientKey's entries in sessions.
	perClient map[string]int
	// changed is closed, and replaced, whenever sessions gains or loses
	// one: tests wait on it rather than sleep.
	changed chan struct{}

	allowed *allowedCache
	shadows *shadowLog // the gateway sessions' collisions recorded
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// maxInitialize bounds a session's first request (below MaxBody): an
// initialize is small, and nothing is held for a client until it is read.
const maxInitialize = 1 << 20

type httpSession struct {
	id     string
	server string
	client string // clientKey
	conn   *httpConn
	cancel context.CancelFunc

	// Guarded by HTTP.mu.
	active  int       // requests being served, open GET streams among them
	last    time.Time // when a request last began or ended
	closing bool      // ended: unknown to clients while Serve winds down
}

// LoopbackHosts lists the Host values a loopback listener at addr answers
// to: its own address and localhost with its port.
func LoopbackHosts(addr net.Addr) []string {
	_, port, _ := net.SplitHostPort(addr.String())
	return []string{addr.String(), "localhost:" + port, "127.0.0.1:" + port, "[::1]:" + port}
}

// Start prepares the handler and starts the idle-session janitor; Close
// ends every session it started and the janitor.
func (h *HTTP) Start(ctx context.Context) {
	h.ctx, h.cancel = context.WithCancel(ctx)
	h.sessions = map[string]*httpSession{}
	h.perClient = map[string]int{}
	h.changed = make(chan struct{})
	h.allowed = newAllowedCache(h.ctx)
	h.shadows = &shadowLog{}
	if h.MaxSessions <= 0 {
		h.MaxSessions = 1024
	}
	if h.MaxSessionsPerClient <= 0 {
		h.MaxSessionsPerClient = 16
	}
	if h.MaxBody <= 0 {
		h.MaxBody = 4 << 20
	}
	if h.BodyTimeout <= 0 {
		h.BodyTimeout = 30 * time.Second
	}
	if h.IdleTimeout == 0 {
		h.IdleTimeout = 10 * time.Minute
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.Log == nil {
		h.Log = slog.New(slog.DiscardHandler)
	}
	if h.IdleTimeout > 0 {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.janitor(h.ctx)
		}()
	}
}

// Close ends every session and the janitor, and waits for them. A
// request still arriving is refused a new session.
func (h *HTTP) Close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.cancel()
	h.wg.Wait()
	h.allowed.wg.Wait()
}

// Sessions is the number of sessions holding an upstream: the open ones
// and the ended ones still closing theirs (metrics; both caps count them).
func (h *HTTP) Sessions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

// SessionsByServer is Sessions by configured server name (metrics); the
// gateway's sessions count under "".
func (h *HTTP) SessionsByServer() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := map[string]int{}
	for _, s := range h.sessions {
		n[s.server]++
	}
	return n
}

func (h *HTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Whatever reads a body below, it reads at most MaxBody of it.
	r.Body = http.MaxBytesReader(w, r.Body, h.MaxBody)
	verified, ok := h.authorize(w, r)
	if !ok {
		return
	}
	// serve runs the session a first request opens: one server's, or at
	// /mcp the gateway's (whose sessions count under server "").
	var serve func(ctx context.Context, conn mcp.Connection) error
	server, ok := serverOf(r.URL.Path)
	switch {
	case r.URL.Path == gatewayPath:
		server = ""
		g, ok := h.gateway()
		if !ok {
			http.Error(w, "rugwatch proxy: no gateway configured here; one server is served at /mcp/<server>", http.StatusNotFound)
			return
		}
		serve = func(ctx context.Context, conn mcp.Connection) error { return ServeGateway(ctx, conn, g) }
	case !ok:
		http.NotFound(w, r)
		return
	default:
		opts, ok := h.Options(server)
		if !ok {
			http.Error(w, fmt.Sprintf("rugwatch proxy: no server %q configured", server), http.StatusNotFound)
			return
		}
		opts.shared = h.allowed
		serve = func(ctx context.Context, conn mcp.Connection) error { return Serve(ctx, conn, opts) }
	}
	// The client's credentials end here: the upstream session is dialled
	// with the server's own configured ones.
	r.Header.Del("Authorization")
	r.Header.Del("Cookie")

	id := r.Header.Get("Mcp-Session-Id")
	var body []byte
	if r.Method == http.MethodPost {
		limit := h.MaxBody
		if id == "" {
			limit = min(limit, maxInitialize)
		}
		var status int
		var err error
		if body, status, err = h.readBody(w, r, limit); err != nil {
			writeRPCError(w, status, requestID(body), "rugwatch proxy: "+err.Error())
			return
		}
	}
	if id != "" {
		h.serveSession(w, r, body, id, server)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "rugwatch proxy: a session starts with a POST of initialize", http.StatusBadRequest)
		return
	}
	h.serveFirst(w, r, body, server, serve, clientKey(r, verified))
}

// gatewayPath is where the gateway is served.
const gatewayPath = "/mcp"

// gateway returns the gateway's options, its servers' sessions sharing
// this listener's readings of the allowed set, its collisions recorded
// once for every session.
func (h *HTTP) gateway() (GatewayOptions, bool) {
	if h.Gateway == nil {
		return GatewayOptions{}, false
	}
	g, ok := h.Gateway()
	if !ok {
		return GatewayOptions{}, false
	}
	g.Servers = slices.Clone(g.Servers)
	for i := range g.Servers {
		g.Servers[i].shared = h.allowed
	}
	g.shadows = h.shadows
	return g, true
}

// authorize answers a request that may not reach a server (false), and
// otherwise returns the bearer token it checked, if any.
func (h *HTTP) authorize(w http.ResponseWriter, r *http.Request) (verified string, ok bool) {
	if !slices.Contains(h.Hosts, r.Host) {
		http.Error(w, "rugwatch proxy: unexpected Host header (DNS rebinding?)", http.StatusMisdirectedRequest)
		return "", false
	}
	if o := r.Header.Get("Origin"); o != "" && !h.originAllowed(o) {
		http.Error(w, "rugwatch proxy: Origin not allowed", http.StatusForbidden)
		return "", false
	}
	if h.Token == nil {
		return "", true
	}
	want, err := h.Token()
	if err == nil && want == "" {
		err = errors.New("the token is empty")
	}
	if err != nil {
		h.Log.Error("proxy token unavailable; refusing every request", "error", err)
		http.Error(w, "rugwatch proxy: token unavailable", http.StatusServiceUnavailable)
		return "", false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="rugwatch"`)
		http.Error(w, "rugwatch proxy: bearer token required", http.StatusUnauthorized)
		return "", false
	}
	return want, true
}

// serveSession serves a request in an open session of server.
func (h *HTTP) serveSession(w http.ResponseWriter, r *http.Request, body []byte, id, server string) {
	s := h.acquire(id, server)
	if s == nil {
		http.Error(w, "rugwatch proxy: unknown session", http.StatusNotFound)
		return
	}
	defer h.release(s)
	switch r.Method {
	case http.MethodDelete:
		h.end(s)
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPost:
		if msg, ok := readPOST(w, r, body); ok {
			s.conn.post(w, r, msg, body)
		}
	case http.MethodGet:
		s.conn.get(w, r)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		http.Error(w, "rugwatch proxy: method not allowed", http.StatusMethodNotAllowed)
	}
}

// serveFirst serves a request outside any session: only an initialize
// opens one. Anything else (a 2026-07-28 client's server/discover, or its
// stateless requests) is answered "method not found", which sends the
// SDKs back to the handshake this proxy speaks, and leaves nothing behind.
//
// The message is read (strictly, as in a session) before a session is
// opened for it: one opened for a message that then fails, or that is
// not an initialize call, would hold an upstream no client has the id of
// until it idled out, counted against the caps.
func (h *HTTP) serveFirst(w http.ResponseWriter, r *http.Request, body []byte, server string, serve func(context.Context, mcp.Connection) error, client string) {
	msg, ok := readPOST(w, r, body)
	if !ok {
		return
	}
	if req, ok := msg.(*jsonrpc.Request); !ok || !req.IsCall() || req.Method != "initialize" {
		writeRPCError(w, http.StatusOK, requestID(body), "rugwatch proxy: start the session with initialize")
		return
	}
	s, status, err := h.open(server, serve, client)
	if err != nil {
		writeRPCError(w, status, requestID(body), "rugwatch proxy: "+err.Error())
		return
	}
	defer h.release(s)
	s.conn.post(w, r, msg, body)
}

// serverOf returns the server a request path names: /mcp/<server>, or
// /<server>/mcp for clients (MCP Inspector) that rewrite any endpoint not
// ending in /mcp. Nothing else is an endpoint.
func serverOf(path string) (string, bool) {
	server, ok := strings.CutPrefix(path, "/mcp/")
	if !ok {
		if server, ok = strings.CutSuffix(path, "/mcp"); ok {
			server, ok = strings.CutPrefix(server, "/")
		}
	}
	if !ok || server == "" || strings.Contains(server, "/") {
		return "", false
	}
	return server, true
}

// readBody reads a POST's body whole: at most limit bytes, within
// BodyTimeout. A refusal is a JSON-RPC error (status says which HTTP
// status) that fails only the one request: an oversized body answered in
// plain text, as the go-sdk's transport does, is taken by the go-sdk
// client for the end of its session. On error, the bytes read so far are
// returned with it.
func (h *HTTP) readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, int, error) {
	rc := http.NewResponseController(w)
	// (An error means the writer cannot set deadlines, a test's recorder:
	// there is no connection to hold.)
	_ = rc.SetReadDeadline(time.Now().Add(h.BodyTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err == nil {
		// The deadline is the body's only (net/http's background read
		// clears it too, once the body is read). On error it stays: before
		// closing the connection net/http drains some of an unread body,
		// and must not wait on a stalled client to do it.
		_ = rc.SetReadDeadline(time.Time{})
		return body, 0, nil
	}
	var tooLarge *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &tooLarge):
		return body, http.StatusRequestEntityTooLarge, fmt.Errorf("request body over the %d-byte limit", tooLarge.Limit)
	case errors.As(err, &netErr) && netErr.Timeout():
		return body, http.StatusRequestTimeout, fmt.Errorf("request body not received within %s", h.BodyTimeout)
	default:
		return body, http.StatusBadRequest, errors.New("unreadable request body")
	}
}

// requestID returns the id of the JSON-RPC request that begins with
// prefix (a whole body, or one cut off at the limit), re-encoded, or null:
// the answer to a refused request carries it, so the client can fail that
// one call and keep its session.
func requestID(prefix []byte) json.RawMessage {
	null := json.RawMessage("null")
	d := json.NewDecoder(bytes.NewReader(prefix))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return null
	}
	for d.More() {
		t, err := d.Token()
		key, ok := t.(string)
		if err != nil || !ok {
			return null
		}
		if key != "id" {
			var skip json.RawMessage
			if d.Decode(&skip) != nil {
				return null
			}
			continue
		}
		var raw json.RawMessage
		if d.Decode(&raw) != nil {
			return null
		}
		id, err := mcpclient.MessageID(raw) // the ids a message may carry, read as the transport reads them
		if err != nil || !id.IsValid() {
			return null
		}
		b, _ := json.Marshal(id.Raw())
		return b
	}
	return null
}

// writeRPCError answers a request the proxy refused with a JSON-RPC error
// under the given HTTP status: SDK clients surface its message, and fail
// only the request with that id.
func writeRPCError(w http.ResponseWriter, status int, id json.RawMessage, msg string) {
	type rpcError struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	b, _ := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   rpcError        `json:"error"`
	}{"2.0", id, rpcError{rpcCode(status), msg}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// rpcCode is the JSON-RPC error code that goes with an HTTP status the
// proxy answers with.
func rpcCode(status int) int {
	switch status {
	case http.StatusOK:
		return -32601 // method not found: see serveFirst
	case http.StatusRequestEntityTooLarge, http.StatusRequestTimeout, http.StatusBadRequest:
		return -32600 // invalid request
	default:
		return -32603 // internal error: the proxy cannot take it now
	}
}

// clientKey names who a session counts against for MaxSessionsPerClient:
// the remote address (an IPv6 one by its /64, which one host can fill
// with addresses), and the bearer token when rugwatch checked it, so
// distinct tokens behind one address count apart. A bearer rugwatch did
// not check (none configured) is the client's to choose: keyed by it, a
// client sending a new one per session would never reach the cap.
func clientKey(r *http.Request, verified string) string {
	key := r.RemoteAddr
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		addr := ap.Addr().Unmap()
		key = addr.String()
		if addr.Is6() {
			p, _ := addr.Prefix(64)
			key = p.String()
		}
	}
	if verified != "" {
		sum := sha256.Sum256([]byte(verified))
		key += " " + hex.EncodeToString(sum[:8])
	}
	return key
}

func (h *HTTP) originAllowed(origin string) bool {
	if slices.Contains(h.Origins, origin) {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && slices.Contains(h.Hosts, u.Host)
}

// open starts a proxied session for a client's first request, counted as
// in flight (release it when that request is served). On error, status is
// the HTTP status to answer with.
func (h *HTTP) open(server string, serve func(context.Context, mcp.Connection) error, client string) (*httpSession, int, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, http.StatusInternalServerError, err
	}
	id := hex.EncodeToString(b[:])
	conn := newHTTPConn(id)
	ctx, cancel := context.WithCancel(h.ctx)
	s := &httpSession{id: id, server: server, client: client, conn: conn, cancel: cancel, active: 1, last: h.now()}
	h.mu.Lock()
	status, err := h.admit(client)
	if err != nil {
		h.mu.Unlock()
		cancel()
		conn.Close()
		return nil, status, err
	}
	h.sessions[id] = s
	h.perClient[client]++
	h.notifyLocked()
	h.wg.Add(1) // under mu, so never after Close began waiting
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		defer h.remove(s)
		if err := serve(ctx, conn); err != nil {
			h.Log.Warn("proxied session ended", "server", server, "error", err)
		}
	}()
	return s, 0, nil
}

// admit says whether client may open one more session. h.mu must be held.
func (h *HTTP) admit(client string) (int, error) {
	if h.closed {
		return http.StatusServiceUnavailable, errors.New("shutting down")
	}
	if len(h.sessions) >= h.MaxSessions {
		return http.StatusServiceUnavailable, fmt.Errorf("%d sessions open, the most this proxy holds", h.MaxSessions)
	}
	if h.perClient[client] >= h.MaxSessionsPerClient {
		return http.StatusTooManyRequests, fmt.Errorf("this client holds %d sessions, the most one client may (max sessions per client); end one first", h.MaxSessionsPerClient)
	}
	return 0, nil
}

// acquire returns the open session id of server and counts a request in
// flight on it (release it when served), or nil for an unknown one.
func (h *HTTP) acquire(id, server string) *httpSession {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sessions[id]
	if s == nil || s.closing || s.server != server {
		return nil
	}
	s.active++
	s.last = h.now()
	return s
}

func (h *HTTP) release(s *httpSession) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s.active--
	s.last = h.now()
}

// end ends a session: unknown to clients from now on, it is removed once
// its Serve has returned (its upstream closed).
func (h *HTTP) end(s *httpSession) {
	h.mu.Lock()
	already := s.closing
	s.closing = true
	h.mu.Unlock()
	if !already {
		s.cancel()
	}
}

// remove forgets a session whose Serve has returned.
func (h *HTTP) remove(s *httpSession) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s.closing = true
	delete(h.sessions, s.id)
	if h.perClient[s.client]--; h.perClient[s.client] <= 0 {
		delete(h.perClient, s.client)
	}
	h.notifyLocked()
}

// notifyLocked wakes whoever waits on changed. h.mu must be held.
func (h *HTTP) notifyLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// watchSessions returns Sessions and a channel closed at its next change.
func (h *HTTP) watchSessions() (int, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions), h.changed
}

// janitor ends idle sessions until ctx ends. It looks every half
// IdleTimeout, at most 30s apart, so an idle session ends within one such
// tick after IdleTimeout has passed.
func (h *HTTP) janitor(ctx context.Context) {
	t := time.NewTicker(max(min(h.IdleTimeout/2, 30*time.Second), 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.sweep(h.now())
		}
	}
}

// sweep ends the sessions idle at now: none of their requests in flight
// and none begun or ended for over IdleTimeout. The check and the marking
// happen under one lock, so a request that found its session (acquire)
// keeps it.
func (h *HTTP) sweep(now time.Time) {
	var idle []*httpSession
	h.mu.Lock()
	for _, s := range h.sessions {
		if !s.closing && s.active == 0 && now.Sub(s.last) > h.IdleTimeout {
			s.closing = true
			idle = append(idle, s)
		}
	}
	h.mu.Unlock()
	for _, s := range idle {
		h.Log.Info("ending idle proxied session", "server", s.server, "idle_timeout", h.IdleTimeout)
		s.cancel()
	}
}
