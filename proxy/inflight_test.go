package proxy

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// TestInflightWorkersStay: requests one after another are handled by the
// one worker the first started, which keeps its grown stack; requests at
// once each get one; idle workers end on their own, and with the session.
func TestInflightWorkersStay(t *testing.T) {
	f := newInflight()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	answered := make(chan *jsonrpc.Response, maxInFlight)
	write := func(_ context.Context, m jsonrpc.Message) { answered <- m.(*jsonrpc.Response) }
	echo := func(_ context.Context, r *jsonrpc.Request) *jsonrpc.Response {
		return &jsonrpc.Response{ID: r.ID, Result: []byte(`{}`)}
	}
	request := func(i int64) *jsonrpc.Request {
		id, _ := jsonrpc.MakeID(float64(i))
		return &jsonrpc.Request{ID: id, Method: "ping"}
	}
	for i := range int64(100) {
		f.serve(ctx, request(i), &wg, "test", write, echo)
		if got := <-answered; got.ID != request(i).ID {
			t.Fatalf("answer %v for request %d", got.ID, i)
		}
	}
	// Usually one; a request can come before the worker that answered
	// the last one is back waiting, and start a second. A goroutine per
	// request would be 100.
	seq := f.started.Load()
	if seq > 10 {
		t.Errorf("100 requests one after another started %d workers, want a few", seq)
	}

	// Eight at once, each held until all eight are in: the idle workers
	// take some and new ones the rest, so all eight run at once.
	hold := make(chan struct{})
	var in sync.WaitGroup
	in.Add(8)
	held := func(_ context.Context, r *jsonrpc.Request) *jsonrpc.Response {
		in.Done()
		<-hold
		return &jsonrpc.Response{ID: r.ID, Result: []byte(`{}`)}
	}
	for i := range int64(8) {
		f.serve(ctx, request(100+i), &wg, "test", write, held)
	}
	in.Wait()
	close(hold)
	for range 8 {
		<-answered
	}
	if n := f.started.Load(); n < 8 {
		t.Errorf("8 requests at once: %d workers in all, want at least 8", n)
	}

	// With the session's end every worker ends.
	cancel()
	wg.Wait()

	// Idle workers end on their own.
	g := newInflight()
	g.idle = time.Millisecond
	var wg2 sync.WaitGroup
	g.serve(context.Background(), request(1), &wg2, "test", write, echo)
	<-answered
	wg2.Wait()
}

// TestInflightAnswerIsServeInline: answer, which handles a request on the
// caller's goroutine, keeps serve's rules: a slot each, past maxInFlight a
// refusal at once, and no answer for a request the client cancelled.
func TestInflightAnswerIsServeInline(t *testing.T) {
	f := newInflight()
	ctx := context.Background()
	request := func(i int64) *jsonrpc.Request {
		id, _ := jsonrpc.MakeID(float64(i))
		return &jsonrpc.Request{ID: id, Method: "tools/call"}
	}
	hold := make(chan struct{})
	var in, out sync.WaitGroup
	held := func(ctx context.Context, r *jsonrpc.Request) *jsonrpc.Response {
		in.Done()
		select {
		case <-hold:
			return &jsonrpc.Response{ID: r.ID, Result: []byte(`{}`)}
		case <-ctx.Done():
			return errorResponse(r.ID, jsonrpc.CodeInternalError, ctx.Err().Error())
		}
	}
	in.Add(maxInFlight)
	answers := make(chan *jsonrpc.Response, maxInFlight)
	for i := range int64(maxInFlight) {
		out.Go(func() { answers <- f.answer(ctx, request(i), "test", held) })
	}
	in.Wait()
	// Each wait below has a guard: without the rule it checks, the wait
	// would never end, and the test would hang rather than fail.
	extra := make(chan *jsonrpc.Response, 1)
	go func() {
		extra <- f.answer(ctx, request(maxInFlight), "test", func(_ context.Context, r *jsonrpc.Request) *jsonrpc.Response {
			return &jsonrpc.Response{ID: r.ID, Result: []byte(`{}`)}
		})
	}()
	var refused *jsonrpc.Response
	select {
	case refused = <-extra:
	case <-time.After(time.Minute):
		t.Fatal("a request past the cap waited for a slot")
	}
	if refused == nil || refused.Error == nil || !strings.Contains(refused.Error.Error(), "requests in flight") {
		t.Fatalf("a request past %d in flight: %+v, want refused at once", maxInFlight, refused)
	}
	// The client cancels request 0: no answer is due for it.
	f.cancelled(json.RawMessage(`{"requestId":0}`))
	select {
	case got := <-answers:
		if got != nil {
			t.Fatalf("a cancelled request was answered: %+v", got)
		}
	case <-time.After(time.Minute):
		t.Fatal("the cancelled request was never ended")
	}
	close(hold)
	out.Wait()
	close(answers)
	n := 0
	for a := range answers {
		if a == nil || a.Error != nil {
			t.Fatalf("a held request's answer: %+v", a)
		}
		n++
	}
	if n != maxInFlight-1 {
		t.Fatalf("%d answers, want %d", n, maxInFlight-1)
	}
	// The slots came back.
	if got := f.answer(ctx, request(1000), "test", func(_ context.Context, r *jsonrpc.Request) *jsonrpc.Response {
		return &jsonrpc.Response{ID: r.ID, Result: []byte(`{}`)}
	}); got == nil || got.Error != nil {
		t.Fatalf("after the others ended: %+v", got)
	}
}
