package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// inflight is what a client session (a proxied one, or a gateway's) has
// in flight: at most maxInFlight requests, each handled off the read loop
// and cancellable by the client's notifications/cancelled.
//
// Requests are handled by workers that stay for the next one. Handling a
// call (decoding its arguments, validating them against the approved
// schema) needs a deeper stack than a goroutine starts with: a goroutine
// per request grew and copied its stack on every call, a quarter of the
// proxy's own CPU per call. A worker keeps its stack from one request to
// the next, and ends after idle without one, or with the session.
type inflight struct {
	slots   chan struct{}
	jobs    chan func() // unbuffered: a send succeeds only to an idle worker
	idle    time.Duration
	started atomic.Int64 // workers started, for tests
	mu      sync.Mutex
	cancels map[string]context.CancelFunc
}

// workerIdle is how long a worker waits for another request before it
// ends: long enough to span an agent's pause between calls.
const workerIdle = 5 * time.Second

func newInflight() inflight {
	return inflight{slots: make(chan struct{}, maxInFlight), jobs: make(chan func()), idle: workerIdle,
		cancels: map[string]context.CancelFunc{}}
}

// serve answers m with handle on a goroutine of wg, and writes the answer
// with write; past maxInFlight it is refused at once. A request the client
// cancelled gets no error answer. who prefixes the refusal.
func (f *inflight) serve(ctx context.Context, m *jsonrpc.Request, wg *sync.WaitGroup, who string,
	write func(context.Context, jsonrpc.Message), handle func(context.Context, *jsonrpc.Request) *jsonrpc.Response) {
	rctx, end, refusal := f.begin(ctx, m, who)
	if refusal != nil {
		write(ctx, refusal)
		return
	}
	f.run(ctx, wg, func() {
		defer end()
		if resp := due(ctx, rctx, handle(rctx, m)); resp != nil {
			write(ctx, resp)
		}
	})
}

// answer is serve on the calling goroutine: it returns the answer to m,
// or nil when none is due (the client cancelled it). It is for a caller
// that has a goroutine of its own waiting for the answer anyway (a POST's
// handler): handing the request to a worker and the answer back cost a
// proxied call two goroutine switches, a sixth of the latency it added.
func (f *inflight) answer(ctx context.Context, m *jsonrpc.Request, who string,
	handle func(context.Context, *jsonrpc.Request) *jsonrpc.Response) *jsonrpc.Response {
	rctx, end, refusal := f.begin(ctx, m, who)
	if refusal != nil {
		return refusal
	}
	defer end()
	return due(ctx, rctx, handle(rctx, m))
}

// answerStrict is answer for a call a connection's own goroutine received
// from client rather than readClient: its params pass strictRequest first,
// as readClient's do, and a refusal is the answer.
func (f *inflight) answerStrict(ctx context.Context, client mcp.Connection, m *jsonrpc.Request, log *slog.Logger, who string,
	handle func(context.Context, *jsonrpc.Request) *jsonrpc.Response) *jsonrpc.Response {
	_, checked := client.(membersChecked)
	if refusal, ok := strictRequest(m, checked, log, who); !ok {
		return refusal
	}
	return f.answer(ctx, m, who, handle)
}

// begin takes a slot for m and makes it cancellable by the client's
// notifications/cancelled: rctx is its handling's context, and end, called
// once it is answered, gives both back. Past maxInFlight it returns the
// refusal instead.
func (f *inflight) begin(ctx context.Context, m *jsonrpc.Request, who string) (rctx context.Context, end func(), refusal *jsonrpc.Response) {
	select {
	case f.slots <- struct{}{}:
	default:
		return nil, nil, errorResponse(m.ID, jsonrpc.CodeInternalError, fmt.Sprintf("%s: more than %d requests in flight", who, maxInFlight))
	}
	rctx, rcancel := context.WithCancel(ctx)
	key := idKey(m.ID)
	f.mu.Lock()
	f.cancels[key] = rcancel
	f.mu.Unlock()
	return rctx, func() {
		f.mu.Lock()
		delete(f.cancels, key)
		f.mu.Unlock()
		rcancel()
		<-f.slots
	}, nil
}

// due is resp, the answer handled under rctx within ctx, unless the
// client cancelled the request: then no error answer is due.
func due(ctx, rctx context.Context, resp *jsonrpc.Response) *jsonrpc.Response {
	if rctx.Err() != nil && ctx.Err() == nil && resp != nil && resp.Error != nil {
		return nil
	}
	return resp
}

// run hands job to an idle worker, or starts one on wg; a worker ends
// after f.idle without work, or when ctx (the session's) ends.
func (f *inflight) run(ctx context.Context, wg *sync.WaitGroup, job func()) {
	select {
	case f.jobs <- job:
		return
	default:
	}
	f.started.Add(1)
	wg.Go(func() {
		job()
		idle := time.NewTimer(f.idle)
		defer idle.Stop()
		for {
			select {
			case job := <-f.jobs:
				job()
				idle.Reset(f.idle)
			case <-idle.C:
				return
			case <-ctx.Done():
				return
			}
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
