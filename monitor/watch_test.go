package monitor

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/goleak"
)

// watchResult collects what a Watcher reports.
type watchResult struct {
	mu       sync.Mutex
	listings []*Listing // nil entries: "poll anew"
	at       []time.Time
	notify   chan struct{}
}

func (r *watchResult) on(_ context.Context, l *Listing, err error) {
	r.mu.Lock()
	r.listings = append(r.listings, l)
	r.at = append(r.at, time.Now())
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
			if transport == TransportStdio {
				target = selfTarget(t, "changing", nil)
			} else {
				srv = fixtureServer(2, 0)
				h, s := httpTargets(t, srv)
				target = h
				if transport == TransportSSE {
					target = s
				}
			}
			res := &watchResult{notify: make(chan struct{}, 8)}
			ctx, cancel := context.WithCancel(context.Background())
			w := &Watcher{Target: target, Log: quietLog(), OnListing: res.on, ConnectTimeout: 10 * time.Second}
			done := make(chan struct{})
			go func() { defer close(done); w.Run(ctx) }()
			defer func() { cancel(); <-done }()

			res.waitFor(t, 1, 10*time.Second)
			changedAt := time.Now()
			if srv != nil {
				time.Sleep(200 * time.Millisecond) // let the standalone stream open
				changedAt = time.Now()
				srv.AddTool(fixtureTool(99), func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
					return &mcp.CallToolResult{}, nil
				})
			}
			res.waitFor(t, 2, 5*time.Second)
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
			if d := res.at[len(res.at)-1].Sub(changedAt); d > 2*time.Second {
				t.Errorf("re-check %v after the change, want within 2s", d)
			}
		})
	}
}
