package main

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/rugwatch/rugwatch/proxy"
	"github.com/rugwatch/rugwatch/testkit"
)

// stdioBridge lets a client that speaks only Streamable HTTP (the
// conformance suite) reach a stdio MCP server (`rugwatch proxy`): for each
// MCP session opened on it, it starts the command as a child and relays
// every JSON-RPC message between the session and the child's stdio as it
// is, in both directions. It answers no MCP itself, and holds no server of
// its own: what the client gets is what the child said.
//
// It does the HTTP front's own jobs, as proxy_listen does for its
// sessions: a Host header that is not the listener's is refused (a stdio
// process has no Host to check, so the suite's DNS-rebinding scenario
// tests this front, not the child), a session ends on DELETE, and a
// request from the child to the client waits for the client's standalone
// stream, the only one that can carry it.
type stdioBridge struct {
	argv []string
	env  []string
	// Stderr collects the children's stderr.
	Stderr *testkit.Output
	// URL is the Streamable HTTP endpoint.
	URL string

	hosts []string
	ctx   context.Context
	wg    sync.WaitGroup

	mu       sync.Mutex
	closed   bool // the test is ending: no session may start (wg.Add)
	sessions map[string]*bridgeSession
	opened   int // sessions ever opened
}

type bridgeSession struct {
	handler http.Handler // the session's transport
	// streamOpen is closed once the client's standalone GET stream can
	// carry messages.
	streamOpen <-chan struct{}
	cancel     context.CancelFunc
}

// startStdioBridge serves the bridge on loopback until the test ends, when
// every child is stopped (stdin closed, as a client ends a stdio server)
// and waited for.
func startStdioBridge(t *testing.T, env []string, argv ...string) *stdioBridge {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &stdioBridge{argv: argv, env: env, Stderr: &testkit.Output{}, ctx: ctx, sessions: map[string]*bridgeSession{}}
	hs := httptest.NewUnstartedServer(b)
	b.hosts = proxy.LoopbackHosts(hs.Listener.Addr())
	hs.Start()
	b.URL = hs.URL + "/mcp"
	// Cleanups run last first: the sessions end (their GET streams with
	// them), then the server, which waits for its requests.
	t.Cleanup(hs.Close)
	t.Cleanup(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		cancel()
		b.wg.Wait()
	})
	return b
}

func (b *stdioBridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !slices.Contains(b.hosts, r.Host) {
		http.Error(w, "stdio bridge: unexpected Host header (DNS rebinding?)", http.StatusMisdirectedRequest)
		return
	}
	id := r.Header.Get("Mcp-Session-Id")
	if id == "" {
		if r.Method != http.MethodPost {
			http.Error(w, "stdio bridge: a session starts with a POST", http.StatusBadRequest)
			return
		}
		s, err := b.open()
		if err != nil {
			http.Error(w, "stdio bridge: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		s.handler.ServeHTTP(w, r)
		return
	}
	b.mu.Lock()
	s := b.sessions[id]
	b.mu.Unlock()
	if s == nil {
		http.Error(w, "stdio bridge: unknown session", http.StatusNotFound)
		return
	}
	if r.Method == http.MethodDelete {
		s.cancel()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.handler.ServeHTTP(w, r)
}

// open starts a child for a new session and relays until either side
// ends, or the bridge does.
func (b *stdioBridge) open() (*bridgeSession, error) {
	id := rand.Text()
	t := &mcp.StreamableServerTransport{SessionID: id}
	ctx, cancel := context.WithCancel(b.ctx)
	client, err := t.Connect(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	cmd := exec.Command(b.argv[0], b.argv[1:]...)
	cmd.Env = b.env
	cmd.Stderr = b.Stderr
	child, err := (&mcp.CommandTransport{Command: cmd}).Connect(ctx)
	if err != nil {
		cancel()
		client.Close()
		return nil, err
	}
	h, streamOpen := testkit.StandaloneStreamOpened(t)
	s := &bridgeSession{handler: h, streamOpen: streamOpen, cancel: cancel}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		cancel()
		client.Close()
		child.Close()
		return nil, errors.New("shutting down")
	}
	b.sessions[id] = s
	b.opened++
	// Under mu, so never after the cleanup began waiting.
	b.wg.Add(3)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		defer cancel()
		for {
			msg, err := client.Read(ctx)
			if err != nil {
				return
			}
			if child.Write(ctx, msg) != nil {
				return
			}
		}
	}()
	go func() {
		defer b.wg.Done()
		defer cancel()
		for {
			msg, err := child.Read(ctx)
			if err != nil {
				return // the child exited
			}
			if req, ok := msg.(*jsonrpc.Request); ok && req.IsCall() {
				select {
				case <-s.streamOpen:
				case <-ctx.Done():
					return
				case <-time.After(10 * time.Second):
					// Written anyway: the transport refuses it, as
					// proxy_listen's would, and the child hears nothing.
				}
			}
			// A message with nowhere to go (a notification before the
			// client's stream, an answer to a request the client
			// abandoned) is dropped by the transport; the session goes on.
			_ = client.Write(ctx, msg)
		}
	}()
	go func() {
		defer b.wg.Done()
		<-ctx.Done()
		b.mu.Lock()
		delete(b.sessions, id)
		b.mu.Unlock()
		client.Close()
		child.Close() // closes its stdin, waits for it to exit
	}()
	return s, nil
}

// Opened is the number of sessions (children) the bridge started.
func (b *stdioBridge) Opened() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.opened
}
