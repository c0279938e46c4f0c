package proxy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/rugwatch/rugwatch/mcpclient"
)

// hostileUpstream answers initialize like a server and then misbehaves on
// tools/list and tools/call the way the monitor's hostile fixtures do.
func hostileUpstream(t *testing.T, misbehave func(w http.ResponseWriter, r *http.Request, id json.RawMessage)) string {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		_ = json.Unmarshal(body, &req)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case len(req.ID) == 0:
			w.WriteHeader(http.StatusAccepted)
		case req.Method == "initialize":
			io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(req.ID)+`,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"hostile","version":"1"}}}`)
		case req.Method == "tools/list" || req.Method == "tools/call":
			misbehave(w, r, req.ID)
		default:
			io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(req.ID)+`,"error":{"code":-32601,"message":"no"}}`)
		}
	}))
	t.Cleanup(hs.Close)
	return hs.URL
}

// TestHostileUpstreamCannotHangOrCrashTheProxy: a server that hangs, sends
// an oversized answer, answers another id or sends garbage gets the client
// an empty tool list and a clear error within the proxy's bounds, and the
// proxy ends cleanly with its context.
func TestHostileUpstreamCannotHangOrCrashTheProxy(t *testing.T) {
	for name, misbehave := range map[string]func(http.ResponseWriter, *http.Request, json.RawMessage){
		"hangs": func(w http.ResponseWriter, r *http.Request, _ json.RawMessage) {
			w.(http.Flusher).Flush()
			<-r.Context().Done() // never answers; ends when rugwatch hangs up
		},
		"oversized": func(w http.ResponseWriter, _ *http.Request, id json.RawMessage) {
			io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(id)+`,"result":{"tools":[{"name":"x","description":"`)
			io.WriteString(w, strings.Repeat("A", 20<<20))
			io.WriteString(w, `"}]}}`)
		},
		"wrong id": func(w http.ResponseWriter, _ *http.Request, _ json.RawMessage) {
			io.WriteString(w, `{"jsonrpc":"2.0","id":424242,"result":{"tools":[]}}`)
		},
		"garbage": func(w http.ResponseWriter, _ *http.Request, _ json.RawMessage) {
			io.WriteString(w, `{"jsonrpc":"2.0","id":`)
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := newRig(t)
			url := hostileUpstream(t, misbehave)
			opts := r.options(ResultsFlag)
			opts.ConnectTimeout = 2 * time.Second
			opts.Log = slog.New(slog.DiscardHandler)
			opts.Dial = func(ctx context.Context, peer mcpclient.Peer, caps json.RawMessage) (*mcpclient.Session, error) {
				return mcpclient.Dial(ctx, mcpclient.Target{Name: "up", Transport: mcpclient.TransportHTTP, URL: url},
					mcpclient.DialOptions{Peer: peer, Capabilities: caps})
			}
			opts.Watch = nil
			cs, _ := r.connect(opts, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := cs.ListTools(ctx, nil)
			if err != nil {
				t.Fatalf("tools/list against a hostile server: %v (want an empty list)", err)
			}
			if len(res.Tools) != 0 {
				t.Fatalf("tools from a hostile server reached the client: %v", res.Tools)
			}
			_, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "x", Arguments: map[string]any{}})
			if err == nil || !strings.Contains(err.Error(), "not approved") {
				t.Fatalf("call against a hostile server: %v", err)
			}
		})
	}
}

// TestListChangedFloodCostsOneListingAtATime: a server that answers its
// first tools/list with 300 list_changed notifications on the same stream
// gets a handful of listings, one at a time, not one listing and one
// goroutine per notification.
func TestListChangedFloodCostsOneListingAtATime(t *testing.T) {
	var lists, inFlight, maxInFlight atomic.Int64
	url := hostileUpstream(t, func(w http.ResponseWriter, r *http.Request, id json.RawMessage) {
		// Only tools/list reaches here before the client calls anything.
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		first := lists.Add(1) == 1
		w.Header().Set("Content-Type", "text/event-stream")
		if first {
			for range 300 {
				io.WriteString(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n")
			}
		}
		io.WriteString(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":"+string(id)+",\"result\":{\"tools\":[]}}\n\n")
	})
	r := newRig(t)
	opts := r.options(ResultsFlag)
	opts.Watch = nil
	opts.Dial = func(ctx context.Context, peer mcpclient.Peer, caps json.RawMessage) (*mcpclient.Session, error) {
		return mcpclient.Dial(ctx, mcpclient.Target{Name: "up", Transport: mcpclient.TransportHTTP, URL: url},
			mcpclient.DialOptions{Peer: peer, Capabilities: caps})
	}
	cs, _ := r.connect(opts, nil)
	// The client's own listings are ordinary ones; after them the flood has
	// been taken in.
	for range 3 {
		toolNames(t, cs)
	}
	// How many rounds the flood takes depends on how fast the read loop
	// hands notifications over against how long a listing takes: 3 to 24
	// seen, the most on CI's loaded cores. Without coalescing it is one
	// listing per notification, up to 303, which this still tells apart.
	if got := lists.Load(); got > 60 {
		t.Errorf("300 list_changed cost %d upstream listings", got)
	}
	if got := maxInFlight.Load(); got > 2 {
		t.Errorf("%d listings ran at once", got)
	}
	t.Logf("300 notifications: %d listings, at most %d at once", lists.Load(), maxInFlight.Load())
}
