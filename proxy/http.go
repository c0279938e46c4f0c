package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// HTTP serves proxied sessions as Streamable HTTP at /mcp/<server>: serve's
// proxy_listen. Each MCP session is one Serve of its own.
type HTTP struct {
	// Options returns the proxy options for a configured server (false:
	// no such server). Called per session, so a reload is seen by new
	// sessions.
	Options func(server string) (Options, bool)
	// Token, when non-empty, must come as "Authorization: Bearer <Token>"
	// on every request; required off loopback. It is the client's
	// credential for rugwatch and is never sent upstream.
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

	mu       sync.Mutex
	sessions map[string]*httpSession
	allowed  *allowedCache
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// maxInitialize bounds a session's first request, read before the SDK's
// transport sees it.
const maxInitialize = 1 << 20

type httpSession struct {
	server    string
	transport *mcp.StreamableServerTransport
	cancel    context.CancelFunc
}

// LoopbackHosts lists the Host values a loopback listener at addr answers
// to: its own address and localhost with its port.
func LoopbackHosts(addr net.Addr) []string {
	_, port, _ := net.SplitHostPort(addr.String())
	return []string{addr.String(), "localhost:" + port, "127.0.0.1:" + port, "[::1]:" + port}
}

// Start prepares the handler; Close ends every session it started.
func (h *HTTP) Start(ctx context.Context) {
	h.ctx, h.cancel = context.WithCancel(ctx)
	h.sessions = map[string]*httpSession{}
	h.allowed = newAllowedCache()
	if h.MaxSessions <= 0 {
		h.MaxSessions = 1024
	}
	if h.Log == nil {
		h.Log = slog.New(slog.DiscardHandler)
	}
}

// Close ends every session and waits for them.
func (h *HTTP) Close() {
	h.cancel()
	h.wg.Wait()
}

// Sessions is the number of open sessions (metrics).
func (h *HTTP) Sessions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

func (h *HTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !slices.Contains(h.Hosts, r.Host) {
		http.Error(w, "rugwatch proxy: unexpected Host header (DNS rebinding?)", http.StatusMisdirectedRequest)
		return
	}
	if o := r.Header.Get("Origin"); o != "" && !h.originAllowed(o) {
		http.Error(w, "rugwatch proxy: Origin not allowed", http.StatusForbidden)
		return
	}
	if h.Token != nil {
		want, err := h.Token()
		if err != nil {
			h.Log.Error("proxy token unavailable; refusing every request", "error", err)
			http.Error(w, "rugwatch proxy: token unavailable", http.StatusServiceUnavailable)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if want != "" && (!ok || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rugwatch"`)
			http.Error(w, "rugwatch proxy: bearer token required", http.StatusUnauthorized)
			return
		}
	}
	server, ok := strings.CutPrefix(r.URL.Path, "/mcp/")
	if !ok || server == "" || strings.Contains(server, "/") {
		http.NotFound(w, r)
		return
	}
	opts, ok := h.Options(server)
	if !ok {
		http.Error(w, fmt.Sprintf("rugwatch proxy: no server %q configured", server), http.StatusNotFound)
		return
	}
	// The client's credentials end here: the upstream session is dialled
	// with the server's own configured ones.
	r.Header.Del("Authorization")
	r.Header.Del("Cookie")

	if id := r.Header.Get("Mcp-Session-Id"); id != "" {
		h.mu.Lock()
		s := h.sessions[id]
		h.mu.Unlock()
		if s == nil || s.server != server {
			http.Error(w, "rugwatch proxy: unknown session", http.StatusNotFound)
			return
		}
		if r.Method == http.MethodDelete {
			h.end(id)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		s.transport.ServeHTTP(w, r)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "rugwatch proxy: a session starts with a POST of initialize", http.StatusBadRequest)
		return
	}
	// Only an initialize opens a session. Anything else without one (a
	// 2026-07-28 client's server/discover, or its stateless requests) is
	// answered "method not found", which sends the SDKs back to the
	// handshake this proxy speaks, and leaves nothing behind.
	body, err := io.ReadAll(io.LimitReader(r.Body, maxInitialize+1))
	if err != nil || len(body) > maxInitialize {
		http.Error(w, "rugwatch proxy: unreadable or oversized first request", http.StatusBadRequest)
		return
	}
	var first struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	if json.Unmarshal(body, &first) != nil || first.Method != "initialize" {
		w.Header().Set("Content-Type", "application/json")
		if len(first.ID) == 0 {
			first.ID = json.RawMessage("null")
		}
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32601,"message":"rugwatch proxy: start the session with initialize"}}`, first.ID)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	s, err := h.open(server, opts)
	if err != nil {
		http.Error(w, "rugwatch proxy: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	s.transport.ServeHTTP(w, r)
}

func (h *HTTP) originAllowed(origin string) bool {
	if slices.Contains(h.Origins, origin) {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && slices.Contains(h.Hosts, u.Host)
}

// open starts a proxied session for a client's first request.
func (h *HTTP) open(server string, opts Options) (*httpSession, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	id := hex.EncodeToString(b[:])
	t := &mcp.StreamableServerTransport{SessionID: id}
	ctx, cancel := context.WithCancel(h.ctx)
	conn, err := t.Connect(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	opts.shared = h.allowed
	s := &httpSession{server: server, transport: t, cancel: cancel}
	h.mu.Lock()
	if len(h.sessions) >= h.MaxSessions {
		h.mu.Unlock()
		cancel()
		conn.Close()
		return nil, fmt.Errorf("more than %d sessions open", h.MaxSessions)
	}
	h.sessions[id] = s
	h.mu.Unlock()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer h.end(id)
		if err := Serve(ctx, conn, opts); err != nil {
			h.Log.Warn("proxied session ended", "server", server, "error", err)
		}
	}()
	return s, nil
}

func (h *HTTP) end(id string) {
	h.mu.Lock()
	s := h.sessions[id]
	delete(h.sessions, id)
	h.mu.Unlock()
	if s != nil {
		s.cancel()
	}
}
