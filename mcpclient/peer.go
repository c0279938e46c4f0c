package mcpclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// Peer is the other side of a session that rugwatch stands in for: the
// proxy's MCP client. A server's requests go to Request, which answers
// them (possibly after a human did, as for sampling or elicitation); its
// notifications go to Notify. Both may be called concurrently.
type Peer interface {
	Request(ctx context.Context, req *jsonrpc.Request) *jsonrpc.Response
	Notify(req *jsonrpc.Request)
}

// maxRelayed bounds the server's requests waiting on the peer at once: a
// hostile server flooding sampling requests cannot pile up goroutines.
const maxRelayed = 16

// relayTimeout bounds one relayed request; elicitation waits on a human.
const relayTimeout = 10 * time.Minute

// relay hands a server request to the peer without holding up the read
// loop, and writes its answer back; past maxRelayed waiting, the request
// is refused at once.
func (s *Session) relay(ctx context.Context, req *jsonrpc.Request) {
	select {
	case s.relaySlots() <- struct{}{}:
	default:
		s.reply(ctx, &jsonrpc.Response{ID: req.ID, Error: &jsonrpc.Error{Code: jsonrpc.CodeInternalError,
			Message: fmt.Sprintf("rugwatch: more than %d requests from the server are already waiting on the client", maxRelayed)}})
		return
	}
	go func() {
		defer func() { <-s.relaySlots() }()
		rctx, cancel := context.WithTimeout(ctx, relayTimeout)
		defer cancel()
		resp := s.opts.Peer.Request(rctx, req)
		if resp == nil {
			resp = &jsonrpc.Response{Error: &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "rugwatch: no answer from the client"}}
		}
		resp.ID = req.ID
		s.reply(ctx, resp)
	}()
}

func (s *Session) relaySlots() chan struct{} {
	s.relayOnce.Do(func() { s.relaying = make(chan struct{}, maxRelayed) })
	return s.relaying
}

func (s *Session) reply(ctx context.Context, resp *jsonrpc.Response) {
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = s.conn.Write(wctx, resp)
}

// Forward sends a request on behalf of the peer and returns the server's
// answer as it sent it: its result, or its JSON-RPC error (the proxy
// passes both on unchanged). err is set only when no answer came.
func (s *Session) Forward(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, *jsonrpc.Error, error) {
	raw, err := s.callRaw(ctx, method, params)
	var rpcErr *rpcError
	if errors.As(err, &rpcErr) {
		var we *jsonrpc.Error
		if errors.As(rpcErr.err, &we) {
			return nil, we, nil
		}
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: rpcErr.err.Error()}, nil
	}
	return raw, nil, err
}

// Notify sends a notification on behalf of the peer.
func (s *Session) Notify(ctx context.Context, method string, params json.RawMessage) error {
	return s.conn.Write(ctx, &jsonrpc.Request{Method: method, Params: params})
}

// Call sends one request of rugwatch's own and returns its raw result.
func (s *Session) Call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	return s.call(ctx, method, params)
}
