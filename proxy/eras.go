package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/rugwatch/rugwatch/mcpclient"
)

// The proxy speaks the handshake era to its client. Where the server
// offers that era too, the upstream speaks it and every method passes as
// is; a server that speaks only the stateless 2026-07-28 revision lacks
// three methods the client may use, which the proxy translates:
//
//   - logging/setLevel: the level rides in each request's _meta
//     (setLevel, mcpclient.Session.SetLogLevel);
//   - resources/subscribe and resources/unsubscribe: the resource URIs
//     join the session's one subscriptions/listen, reopened with the new
//     set (the updates arrive on it and pass to the client);
//   - ping: answered by the proxy itself (handle).

// maxSubscriptions bounds the resources one session subscribes to on a
// stateless-only server.
const maxSubscriptions = 256

// listenState is the subscriptions/listen a session holds open upstream.
type listenState struct {
	mu     sync.Mutex
	uris   map[string]bool // resources the client subscribed to
	cancel context.CancelFunc
	// acked is closed when the server acknowledges the listen last
	// opened: a subscribe is answered only then, so an update that comes
	// after the client's subscribe returned reaches it.
	acked chan struct{}
}

// acknowledged is the server's notifications/subscriptions/acknowledged.
func (l *listenState) acknowledged() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.acked != nil {
		select {
		case <-l.acked:
		default:
			close(l.acked)
		}
	}
}

// translate answers req for a stateless upstream when its method is one
// that era lacks (ok); anything else passes on as is.
func (s *session) translate(up *mcpclient.Session, req *jsonrpc.Request) (*jsonrpc.Response, bool) {
	switch req.Method {
	case "resources/subscribe", "resources/unsubscribe":
	default:
		return nil, false
	}
	var p struct {
		URI string `json:"uri"`
	}
	if json.Unmarshal(req.Params, &p) != nil || p.URI == "" {
		return errorResponse(req.ID, jsonrpc.CodeInvalidParams, req.Method+": uri is required"), true
	}
	s.listen.mu.Lock()
	if s.listen.uris == nil {
		s.listen.uris = map[string]bool{}
	}
	was := s.listen.uris[p.URI]
	if req.Method == "resources/subscribe" {
		if !was && len(s.listen.uris) >= maxSubscriptions {
			s.listen.mu.Unlock()
			// Each one reopens the listen with the whole set: unbounded,
			// a client would make every subscribe cost more than the last.
			return errorResponse(req.ID, jsonrpc.CodeInvalidParams,
				fmt.Sprintf("rugwatch proxy: at most %d resource subscriptions per session", maxSubscriptions)), true
		}
		s.listen.uris[p.URI] = true
	} else {
		delete(s.listen.uris, p.URI)
	}
	s.listen.mu.Unlock()
	if was != (req.Method == "resources/subscribe") {
		acked := s.relisten(up)
		wait := time.NewTimer(s.opts.ConnectTimeout)
		defer wait.Stop()
		select {
		case <-acked:
		case <-wait.C:
			return errorResponse(req.ID, codeUpstream, "rugwatch proxy: the server did not acknowledge the subscription"), true
		case <-up.Done():
			return errorResponse(req.ID, codeUpstream, "rugwatch proxy: the server's session ended"), true
		}
	}
	return &jsonrpc.Response{ID: req.ID, Result: json.RawMessage("{}")}, true
}

// relisten opens a subscriptions/listen for tools list_changed and the
// subscribed resources, then ends the one it replaces: opened first, so
// no change falls between the two (a list_changed heard twice costs one
// listing more). The channel returned is closed when the server
// acknowledges the new listen.
func (s *session) relisten(up *mcpclient.Session) <-chan struct{} {
	s.listen.mu.Lock()
	uris := make([]string, 0, len(s.listen.uris))
	for u := range s.listen.uris {
		uris = append(uris, u)
	}
	slices.Sort(uris)
	want := map[string]any{"toolsListChanged": true}
	if len(uris) > 0 {
		want["resourceSubscriptions"] = uris
	}
	params, _ := json.Marshal(map[string]any{"notifications": want})
	ctx, cancel := context.WithCancel(s.life)
	old := s.listen.cancel
	s.listen.cancel = cancel
	acked := make(chan struct{})
	s.listen.acked = acked
	s.listen.mu.Unlock()

	if !s.ending.join(&s.wg) {
		cancel()
		return acked
	}
	go func() {
		defer s.wg.Done()
		_, rpcErr, err := up.Forward(ctx, "subscriptions/listen", params)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			s.log.Warn("the server's subscriptions/listen ended; its notifications no longer reach the proxy", "error", err)
		case rpcErr != nil:
			s.log.Warn("the server refused subscriptions/listen; its notifications will not reach the proxy", "error", rpcErr.Message)
		}
	}()
	if old != nil {
		old()
	}
	return acked
}
