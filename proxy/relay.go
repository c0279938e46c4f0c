package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Request relays a server's request (sampling, elicitation, roots, ping)
// to the client under an id of the proxy's own and returns the client's
// answer. It implements mcpclient.Peer.
func (s *session) Request(ctx context.Context, req *jsonrpc.Request) *jsonrpc.Response {
	clientID := fmt.Sprintf("rugwatch-%d", s.relayID.Add(1))
	id, _ := jsonrpc.MakeID(clientID)
	key, upKey := idKey(id), idKey(req.ID)
	ch := make(chan *jsonrpc.Response, 1)
	s.relayMu.Lock()
	s.relays[key] = ch
	s.upIDs[upKey] = clientID
	s.relayMu.Unlock()
	defer func() {
		s.relayMu.Lock()
		delete(s.relays, key)
		delete(s.upIDs, upKey)
		s.relayMu.Unlock()
	}()
	if err := s.writeRequest(ctx, &jsonrpc.Request{ID: id, Method: req.Method, Params: req.Params}); err != nil {
		return errorResponse(req.ID, jsonrpc.CodeInternalError, "rugwatch proxy: the client is gone")
	}
	select {
	case resp := <-ch:
		return &jsonrpc.Response{ID: req.ID, Result: resp.Result, Error: resp.Error}
	case <-ctx.Done():
		// Tell the client to stop (a human may be looking at a dialog).
		params, _ := json.Marshal(map[string]any{"requestId": id.Raw(), "reason": "the server's request ended"})
		s.write(ctx, &jsonrpc.Request{Method: "notifications/cancelled", Params: params})
		return errorResponse(req.ID, jsonrpc.CodeInternalError, "rugwatch proxy: the client did not answer in time")
	}
}

// codeRejected is the go-sdk transport's "rejected by transport": over
// Streamable HTTP, a request to the client with no stream to carry it.
const codeRejected = -32005

// writeRequest sends a request to the client. Over Streamable HTTP the
// proxy's requests travel on the client's standalone stream, which the
// SDKs open in the background after initialize: a server's elicitation or
// sampling request that comes before it is refused by the transport, and
// is tried again, briefly, rather than lost.
func (s *session) writeRequest(ctx context.Context, req *jsonrpc.Request) error {
	return writeClientRequest(ctx, s.client, req)
}

// writeClientRequest is writeRequest on any client connection (a
// gateway's too).
func writeClientRequest(ctx context.Context, client mcp.Connection, req *jsonrpc.Request) error {
	wait := time.NewTicker(20 * time.Millisecond)
	defer wait.Stop()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for {
		err := client.Write(ctx, req)
		var we *jsonrpc.Error
		if err == nil || !errors.As(err, &we) || we.Code != codeRejected {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-deadline.C:
			return err
		case <-wait.C:
		}
	}
}

// Notify passes a server notification on to the client. A tools
// list_changed is also a cue to list again at once, so a drift is recorded
// before the client even asks; cancellations of relayed requests are
// translated to the ids the client saw.
func (s *session) Notify(req *jsonrpc.Request) {
	ctx := s.life
	switch req.Method {
	case "notifications/tools/list_changed":
		// The session's own upstream changed: a listing shared from
		// another session's no longer stands, and this one lists its own.
		s.opts.shared.forget(s.view())
		s.mu.Lock()
		s.ownListed = false
		s.mu.Unlock()
		s.relistSoon(ctx)
		return
	case "notifications/subscriptions/acknowledged":
		if up := s.up.Load(); up != nil && up.Stateless() {
			s.listen.acknowledged()
			return // the answer to the proxy's own listen; the client sent none
		}
	case "notifications/cancelled":
		var p map[string]json.RawMessage
		if json.Unmarshal(req.Params, &p) == nil {
			var upID any
			if json.Unmarshal(p["requestId"], &upID) == nil {
				if id, err := jsonrpc.MakeID(upID); err == nil {
					s.relayMu.Lock()
					clientID, ok := s.upIDs[idKey(id)]
					s.relayMu.Unlock()
					if !ok {
						return // nothing of ours to cancel
					}
					p["requestId"], _ = json.Marshal(clientID)
					req = &jsonrpc.Request{Method: req.Method, Params: mustMarshal(p)}
				}
			}
		}
	}
	s.write(ctx, &jsonrpc.Request{Method: req.Method, Params: req.Params})
}

func mustMarshal(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// clientAnswered routes the client's answer to a relayed request.
func (s *session) clientAnswered(resp *jsonrpc.Response) {
	s.relayMu.Lock()
	ch := s.relays[idKey(resp.ID)]
	s.relayMu.Unlock()
	if ch != nil {
		select {
		case ch <- resp:
		default:
		}
	}
}

// clientNotified passes a client notification upstream; a cancellation
// ends the proxy's own handling of that request (and, through its
// context, the upstream call).
func (s *session) clientNotified(ctx context.Context, req *jsonrpc.Request) {
	switch req.Method {
	case "notifications/initialized":
		return // the upstream session sent its own
	case "notifications/cancelled":
		s.calls.cancelled(req.Params)
		return
	}
	up := s.up.Load()
	if up == nil {
		return
	}
	if err := up.Notify(ctx, req.Method, req.Params); err != nil {
		s.log.Debug("forwarding a notification failed", "method", req.Method, "error", err)
	}
}

// relistSoon lists upstream again off the read loop. At most one such
// listing runs at a time, and the notifications that arrive meanwhile
// coalesce into one more: a server flooding list_changed costs one listing
// at a time, not a goroutine and a listing per notification.
func (s *session) relistSoon(ctx context.Context) {
	s.relistAgain.Store(true)
	if !s.relistBusy.CompareAndSwap(false, true) {
		return // the running one will list again
	}
	// Called from the upstream's read loop, not one of the session's own
	// goroutines: it may still deliver while Serve ends.
	if !s.ending.join(&s.wg) {
		return
	}
	go func() {
		defer s.wg.Done()
		for {
			for s.relistAgain.Swap(false) {
				if s.relist(ctx) {
					s.toolsChanged(ctx)
				}
			}
			s.relistBusy.Store(false)
			// A notification that came after the last Swap but before
			// busy was cleared found busy set and left its work here.
			if !s.relistAgain.Load() || !s.relistBusy.CompareAndSwap(false, true) {
				return
			}
		}
	}()
}
