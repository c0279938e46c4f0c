package mcpclient

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/goleak"

	"github.com/rugwatch/rugwatch/testkit"
	"github.com/rugwatch/rugwatch/testkit/testservers"
)

// watchResult collects what a Watcher reports.
type watchResult struct {
	mu       sync.Mutex
	listings []*Listing // nil entries: "poll anew"
	notify   chan struct{}
}

func (r *watchResult) on(_ context.Context, l *Listing, err error) {
	r.mu.Lock()
	r.listings = append(r.listings, l)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *watchResult) waitFor(t *testing.T, n int, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		r.mu.Lock()
		got := len(r.listings)
		r.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("got %d watch callbacks in %v, want %d", got, d, n)
		}
	}
}

func TestWatchSeesListChanged(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"), goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
	for _, transport := range []string{TransportStdio, TransportHTTP, TransportSSE} {
		t.Run(transport, func(t *testing.T) {
			var target Target
			var srv *mcp.Server
			// Closed when the server can notify the watcher: at once for
			// stdio and SSE, whose session is the stream; for Streamable
			// HTTP once the standalone GET stream is open.
			ready := make(chan struct{})
			close(ready)
			var canNotify <-chan struct{} = ready
			switch transport {
			case TransportStdio:
				target = selfTarget(t, "changing", nil)
			case TransportHTTP:
				srv = testservers.FixtureServer(2, 0)
				handler, opened := testkit.StandaloneStreamOpened(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
				h := httptest.NewServer(handler)
				t.Cleanup(h.Close)
				target = Target{Name: "http", Transport: TransportHTTP, URL: h.URL}
				canNotify = opened
			case TransportSSE:
				srv = testservers.FixtureServer(2, 0)
				_, target = httpTargets(t, srv)
			}
			res := &watchResult{notify: make(chan struct{}, 8)}
			ctx, cancel := context.WithCancel(context.Background())
			w := &Watcher{Target: target, Log: quietLog(), OnListing: res.on, ConnectTimeout: 10 * time.Second}
			done := make(chan struct{})
			go func() { defer close(done); w.Run(ctx) }()
			defer func() { cancel(); <-done }()

			res.waitFor(t, 1, 10*time.Second)
			if srv != nil {
				select {
				case <-canNotify:
				case <-time.After(10 * time.Second):
					t.Fatal("the watch's standalone stream never opened")
				}
				srv.AddTool(testservers.FixtureTool(99), func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
					return &mcp.CallToolResult{}, nil
				})
			}
			// How soon the re-check comes is BenchmarkWatchLatency's
			// figure; here only that it comes, with what.
			res.waitFor(t, 2, 30*time.Second)
			res.mu.Lock()
			defer res.mu.Unlock()
			last := res.listings[len(res.listings)-1]
			switch transport {
			case TransportHTTP:
				if last != nil {
					t.Fatal("http watch should ask for a fresh poll, not list itself")
				}
			default:
				if last == nil || len(last.Tools) != 3 {
					t.Fatalf("listing after list_changed: %+v", last)
				}
			}
		})
	}
}
