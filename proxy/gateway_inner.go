package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// inner is a gateway's client end of one server's proxied session: the
// gateway speaks JSON-RPC to it as the client would to `rugwatch proxy
// SERVER`, so every check of that session (what passes, schemas,
// argument rules, result scanning, recording, withheld notices) runs
// unchanged.
type inner struct {
	server string
	opts   Options
	conn   mcp.Connection

	nextID  atomic.Int64
	mu      sync.Mutex
	pending map[string]chan *jsonrpc.Response
	done    chan struct{} // closed when the session's end of the pipe is gone

	// init is the session's initialize result once one succeeded;
	// initMu is held while initializing (one at a time), and guards
	// triedAt, when the last attempt began.
	init    atomic.Pointer[json.RawMessage]
	initMu  sync.Mutex
	triedAt time.Time
}

// errInnerGone says the server's proxied session ended.
var errInnerGone = errors.New("the server's proxied session ended")

// call sends a request to the server's session and waits for its answer;
// a ctx that ends first cancels it there (and upstream).
func (in *inner) call(ctx context.Context, method string, params json.RawMessage) (*jsonrpc.Response, error) {
	id, err := jsonrpc.MakeID(fmt.Sprintf("gw-%d", in.nextID.Add(1)))
	if err != nil {
		return nil, err
	}
	key := idKey(id)
	ch := make(chan *jsonrpc.Response, 1)
	in.mu.Lock()
	in.pending[key] = ch
	in.mu.Unlock()
	defer func() {
		in.mu.Lock()
		delete(in.pending, key)
		in.mu.Unlock()
	}()
	if err := in.conn.Write(ctx, &jsonrpc.Request{ID: id, Method: method, Params: params}); err != nil {
		return nil, err
	}
	select {
	case resp := <-ch:
		return resp, nil
	case <-in.done:
		return nil, errInnerGone
	case <-ctx.Done():
		p, _ := json.Marshal(map[string]any{"requestId": id.Raw(), "reason": "the client cancelled"})
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = in.conn.Write(wctx, &jsonrpc.Request{Method: "notifications/cancelled", Params: p})
		return nil, ctx.Err()
	}
}

// notify sends a notification to the server's session.
func (in *inner) notify(ctx context.Context, method string, params json.RawMessage) {
	_ = in.conn.Write(ctx, &jsonrpc.Request{Method: method, Params: params})
}

// readLoop delivers the session's answers to their calls, and its
// requests and notifications to the gateway, until the pipe ends.
func (in *inner) readLoop(ctx context.Context, g *gateway) {
	defer close(in.done)
	for {
		msg, err := in.conn.Read(ctx)
		if err != nil {
			return
		}
		switch m := msg.(type) {
		case *jsonrpc.Response:
			in.mu.Lock()
			ch := in.pending[idKey(m.ID)]
			in.mu.Unlock()
			if ch != nil {
				ch <- m
			}
		case *jsonrpc.Request:
			if m.IsCall() {
				g.relay(in, m)
			} else {
				g.innerNotified(in, m)
			}
		}
	}
}
