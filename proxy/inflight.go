package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// inflight is what a client session (a proxied one, or a gateway's) has
// in flight: at most maxInFlight requests, each handled off the read loop
// and cancellable by the client's notifications/cancelled.
type inflight struct {
	slots   chan struct{}
	mu      sync.Mutex
	cancels map[string]context.CancelFunc
}

func newInflight() inflight {
	return inflight{slots: make(chan struct{}, maxInFlight), cancels: map[string]context.CancelFunc{}}
}

// serve answers m with handle on a goroutine of wg, and writes the answer
// with write; past maxInFlight it is refused at once. A request the client
// cancelled gets no error answer. who prefixes the refusal.
func (f *inflight) serve(ctx context.Context, m *jsonrpc.Request, wg *sync.WaitGroup, who string,
	write func(context.Context, jsonrpc.Message), handle func(context.Context, *jsonrpc.Request) *jsonrpc.Response) {
	select {
	case f.slots <- struct{}{}:
	default:
		write(ctx, errorResponse(m.ID, jsonrpc.CodeInternalError, fmt.Sprintf("%s: more than %d requests in flight", who, maxInFlight)))
		return
	}
	rctx, rcancel := context.WithCancel(ctx)
	key := idKey(m.ID)
	f.mu.Lock()
	f.cancels[key] = rcancel
	f.mu.Unlock()
	wg.Go(func() {
		defer func() { <-f.slots }()
		defer func() {
			f.mu.Lock()
			delete(f.cancels, key)
			f.mu.Unlock()
			rcancel()
		}()
		resp := handle(rctx, m)
		if rctx.Err() != nil && ctx.Err() == nil && resp != nil && resp.Error != nil {
			return // cancelled by the client: no answer is due
		}
		if resp != nil {
			write(ctx, resp)
		}
	})
}

// cancelled ends the handling of the request a notifications/cancelled
// names, if it is in flight.
func (f *inflight) cancelled(params json.RawMessage) {
	var p struct {
		RequestID any `json:"requestId"`
	}
	if json.Unmarshal(params, &p) != nil {
		return
	}
	id, err := jsonrpc.MakeID(p.RequestID)
	if err != nil {
		return
	}
	f.mu.Lock()
	cancel := f.cancels[idKey(id)]
	f.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}
