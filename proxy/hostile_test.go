package proxy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/rugwatch/rugwatch/monitor"
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
			opts.Dial = func(ctx context.Context, peer monitor.Peer, caps json.RawMessage) (*monitor.Session, error) {
				return monitor.Dial(ctx, monitor.Target{Name: "up", Transport: monitor.TransportHTTP, URL: url},
					monitor.DialOptions{Peer: peer, Capabilities: caps})
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
