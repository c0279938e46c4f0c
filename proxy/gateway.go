package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/rugwatch/rugwatch/visible"
)

// The gateway (`rugwatch proxy --all`, /mcp on proxy_listen) serves the
// approved tools of many servers to one client session. It holds one
// proxied session (Serve) per server, each over an in-memory pipe, and
// speaks to each as a client would: every check stays in that session
// (what passes, schemas, argument rules, result scanning, recording,
// withheld notices, list_changed), and the gateway only merges the lists,
// applies the name policy, routes and renames. The one thing the sessions
// share is the client session's taint, so a secret one server's result
// carried cannot leave through another server's open-world tool.

// Names policies of GatewayOptions.Names (gateway.names).
const (
	NamesPlain    = "plain"    // a name as the server gives it; one two servers serve is served by neither
	NamesPrefixed = "prefixed" // every name as "<server>__<name>"
)

// nameSep joins a server's name to a tool's or prompt's under
// NamesPrefixed.
const nameSep = "__"

// GatewayOptions configure one gateway client session.
type GatewayOptions struct {
	// Servers are the proxy options of each server the gateway serves.
	Servers []Options
	// Names is NamesPlain (default) or NamesPrefixed.
	Names string
	Log   *slog.Logger

	// shadows, when set (proxy_listen), is shared by every gateway
	// session of the process, so a collision is recorded once, not once
	// per client.
	shadows *shadowLog
	// noSharedTaint gives each server's session a taint of its own
	// (tests: the shared one must be shown to matter).
	noSharedTaint bool
}

// retryInit bounds how often a server whose session could not be
// initialized (its upstream unreachable) is tried again.
const retryInit = 10 * time.Second

// gateway is one gateway client session.
type gateway struct {
	opts        GatewayOptions
	client      mcp.Connection
	log         *slog.Logger
	life        context.Context
	inners      []*inner
	initialized atomic.Bool

	mu     sync.Mutex
	params json.RawMessage // the client's initialize params, for servers initialized later
	// views are the last merged list of each kind (by list method), and
	// merges counts the merges begun, which orders them (merge).
	views  map[string]*view
	merges uint64
	// listed says the client has listed tools (list_changed is owed);
	// toldShadowed is the collision set it was last told of.
	listed       bool
	toldShadowed string
	// subscribed is the server each resource subscription went to.
	subscribed map[string]*inner

	// Requests of a server's session relayed to the client (sampling,
	// elicitation, roots), by the id the client sees, and back.
	relayMu   sync.Mutex
	relays    map[string]relayed
	relayBack map[relayKey]jsonrpc.ID
	relayN    atomic.Int64

	// changes are the servers' list_changed, by notification method.
	changes map[string]*listChange

	calls inflight // the client's requests in flight (inflight.go)
	wg    sync.WaitGroup
	// ending is begun before ServeGateway waits for wg: a call answered
	// on its POST's goroutine (answerNow) joins wg through it.
	ending endGuard
}

type relayed struct {
	in *inner
	id jsonrpc.ID
}

type relayKey struct {
	in  *inner
	key string
}

// ServeGateway serves one client connection the approved tools, prompts
// and resources of every server of opts until it ends or ctx does. It
// returns after every session it started has ended.
func ServeGateway(ctx context.Context, client mcp.Connection, opts GatewayOptions) error {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Names == "" {
		opts.Names = NamesPlain
	}
	if opts.shadows == nil {
		opts.shadows = &shadowLog{}
	}
	ctx, cancel := context.WithCancel(ctx)
	g := &gateway{
		opts: opts, client: client, log: opts.Log.With("gateway", true), life: ctx,
		views: map[string]*view{}, subscribed: map[string]*inner{}, changes: listChanges(), relays: map[string]relayed{}, relayBack: map[relayKey]jsonrpc.ID{},
		calls: newInflight(),
	}
	defer func() {
		g.ending.end()
		cancel()
		for _, in := range g.inners {
			in.conn.Close()
		}
		g.wg.Wait()
		client.Close()
	}()
	shared := &taint{}
	var sessions []func()
	for _, o := range opts.Servers {
		cconn, sconn := newPipe()
		if !opts.noSharedTaint {
			o.taint = shared
		}
		in := &inner{server: o.Server, opts: o, conn: cconn, pending: map[string]chan *jsonrpc.Response{}, done: make(chan struct{})}
		g.inners = append(g.inners, in)
		sessions = append(sessions, func() {
			if err := Serve(ctx, sconn, o); err != nil {
				g.log.Warn("a server's session ended", "server", o.Server, "error", err)
			}
		})
	}
	// Started once g.inners is whole: their goroutines read it.
	for i, in := range g.inners {
		g.wg.Go(sessions[i])
		g.wg.Go(func() { in.readLoop(ctx, g) })
	}
	if c, ok := client.(inlineCalls); ok {
		c.answerInline(g.answerNow)
	}
	readClient(ctx, client, g.log, "rugwatch gateway", g.write, g.clientAnswered, g.clientNotified, g.serveRequest)
	return nil
}

// answerNow is session.answerNow for the gateway: a client call answered
// on the goroutine that received it.
func (g *gateway) answerNow(m *jsonrpc.Request) (*jsonrpc.Response, bool) {
	if !g.ending.join(&g.wg) {
		return nil, false
	}
	defer g.wg.Done()
	return g.calls.answerStrict(g.life, g.client, m, g.log, "rugwatch gateway", g.handle), true
}

// serveRequest answers one client request off the read loop.
func (g *gateway) serveRequest(ctx context.Context, m *jsonrpc.Request) {
	g.calls.serve(ctx, m, &g.wg, "rugwatch gateway", g.write, g.handle)
}

func (g *gateway) write(ctx context.Context, msg jsonrpc.Message) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := g.client.Write(wctx, msg); err != nil {
		g.log.Debug("writing to the client failed", "error", err)
	}
}

// handle serves one client request.
func (g *gateway) handle(ctx context.Context, req *jsonrpc.Request) *jsonrpc.Response {
	if req.Method == "initialize" {
		return g.initialize(ctx, req)
	}
	if resp, answered := beforeHandshake(req, "rugwatch gateway", g.initialized.Load()); answered {
		return resp
	}
	if k, ok := kindByList[req.Method]; ok {
		return g.list(ctx, req, k)
	}
	switch req.Method {
	case "tools/call":
		return g.routed(ctx, req, kindTools, "name")
	case "prompts/get":
		return g.routed(ctx, req, kindPrompts, "name")
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		return g.resource(ctx, req)
	case "completion/complete":
		return g.complete(ctx, req)
	case "logging/setLevel":
		return g.setLevel(ctx, req)
	}
	return errorResponse(req.ID, jsonrpc.CodeMethodNotFound, "rugwatch gateway: "+visible.Line(req.Method)+" is not routed to any server")
}

// initialize initializes every server's session with the client's
// parameters (those that cannot be reached now are tried again later)
// and answers as one server: tools, prompts and resources of all, their
// approved instructions each under its server's name.
func (g *gateway) initialize(ctx context.Context, req *jsonrpc.Request) *jsonrpc.Response {
	if g.initialized.Load() {
		return errorResponse(req.ID, jsonrpc.CodeInvalidRequest, "rugwatch gateway: already initialized")
	}
	var params struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	if err := json.Unmarshal(req.Params, &params); err != nil {
		return errorResponse(req.ID, jsonrpc.CodeInvalidParams, "initialize: "+err.Error())
	}
	g.mu.Lock()
	g.params = req.Params
	g.mu.Unlock()
	var wg sync.WaitGroup
	for _, in := range g.inners {
		wg.Go(func() { g.initInner(ctx, in) })
	}
	wg.Wait()
	if !g.initialized.CompareAndSwap(false, true) {
		return errorResponse(req.ID, jsonrpc.CodeInvalidRequest, "rugwatch gateway: already initialized")
	}
	version := protocolVersions[0]
	for _, v := range protocolVersions {
		if v == params.ProtocolVersion {
			version = v
		}
	}
	var instructions []string
	for _, in := range g.inners {
		var res struct {
			Instructions string `json:"instructions"`
		}
		if raw := in.init.Load(); raw != nil && json.Unmarshal(*raw, &res) == nil && res.Instructions != "" {
			instructions = append(instructions, "## "+in.server+"\n\n"+res.Instructions)
		}
	}
	res := map[string]any{
		"protocolVersion": version,
		"serverInfo":      map[string]string{"name": "rugwatch-gateway", "title": "rugwatch gateway", "version": "1"},
		// Declared whatever the servers declare: a server reached later
		// may add them, and an empty list is a fine answer.
		"capabilities": map[string]any{
			"tools": map[string]bool{"listChanged": true}, "prompts": map[string]bool{"listChanged": true},
			"resources": map[string]bool{"listChanged": true, "subscribe": true}, "logging": struct{}{}, "completions": struct{}{},
		},
	}
	if len(instructions) > 0 {
		res["instructions"] = strings.Join(instructions, "\n\n")
	}
	raw, err := json.Marshal(res)
	if err != nil {
		return errorResponse(req.ID, jsonrpc.CodeInternalError, err.Error())
	}
	return &jsonrpc.Response{ID: req.ID, Result: raw}
}

// initInner initializes one server's session with the client's
// parameters, once; a failure is tried again after retryInit.
func (g *gateway) initInner(ctx context.Context, in *inner) bool {
	if in.init.Load() != nil {
		return true
	}
	in.initMu.Lock()
	defer in.initMu.Unlock()
	if in.init.Load() != nil {
		return true
	}
	if !in.triedAt.IsZero() && time.Since(in.triedAt) < retryInit {
		return false
	}
	in.triedAt = time.Now()
	g.mu.Lock()
	params := g.params
	g.mu.Unlock()
	resp, err := in.call(ctx, "initialize", params)
	if err == nil && resp.Error != nil {
		err = resp.Error
	}
	if err != nil {
		g.log.Warn("a server of the gateway cannot be reached; serving the others", "server", in.server, "error", err)
		return false
	}
	in.init.Store(&resp.Result)
	return true
}

// routed forwards a request naming one tool or prompt (field of its
// params) to the server that serves it under that name, renamed to the
// server's own name for it. Resources route by URI (resource).
func (g *gateway) routed(ctx context.Context, req *jsonrpc.Request, k kind, field string) *jsonrpc.Response {
	var p map[string]json.RawMessage
	var name string
	if json.Unmarshal(req.Params, &p) != nil || p == nil || json.Unmarshal(p[field], &name) != nil || name == "" {
		return errorResponse(req.ID, jsonrpc.CodeInvalidParams, fmt.Sprintf("%s: params.%s must be a non-empty string", req.Method, field))
	}
	r, msg := g.route(ctx, k, name)
	if r == nil {
		g.log.Warn("gateway refused a request", "method", req.Method, "detail", msg)
		return errorResponse(req.ID, codeNotApproved, "rugwatch gateway: "+msg)
	}
	p[field], _ = json.Marshal(r.name)
	params, err := json.Marshal(p)
	if err != nil {
		return errorResponse(req.ID, jsonrpc.CodeInvalidParams, err.Error())
	}
	return g.forward(ctx, r.in, req.ID, req.Method, params)
}

// complete routes completion/complete by the prompt or resource its ref
// names: a resource's ref names a template (routed to the one server that
// lists it) or a URI (routed as a read is).
func (g *gateway) complete(ctx context.Context, req *jsonrpc.Request) *jsonrpc.Response {
	var p map[string]json.RawMessage
	var ref map[string]json.RawMessage
	if json.Unmarshal(req.Params, &p) != nil || json.Unmarshal(p["ref"], &ref) != nil || ref == nil {
		return errorResponse(req.ID, jsonrpc.CodeInvalidParams, "completion/complete: params.ref must be an object")
	}
	var typ string
	_ = json.Unmarshal(ref["type"], &typ)
	field := "name"
	if typ == "ref/resource" {
		field = "uri"
	}
	var name string
	if json.Unmarshal(ref[field], &name) != nil || name == "" {
		return errorResponse(req.ID, jsonrpc.CodeInvalidParams, "completion/complete: params.ref."+field+" must be a non-empty string")
	}
	var r *route
	var msg string
	switch {
	case typ != "ref/resource":
		r, msg = g.route(ctx, kindPrompts, name)
	case g.current(ctx, kindTemplates, name).knows(name):
		r, msg = g.route(ctx, kindTemplates, name)
	default:
		var in *inner
		if in, msg = g.routeURI(ctx, name); in != nil {
			r = &route{in, name}
		}
	}
	if r == nil {
		return errorResponse(req.ID, codeNotApproved, "rugwatch gateway: "+msg)
	}
	ref[field], _ = json.Marshal(r.name)
	p["ref"], _ = json.Marshal(ref)
	params, _ := json.Marshal(p)
	return g.forward(ctx, r.in, req.ID, req.Method, params)
}

// forward sends a request to one server's session and answers with what
// it answered.
func (g *gateway) forward(ctx context.Context, in *inner, id jsonrpc.ID, method string, params json.RawMessage) *jsonrpc.Response {
	resp, err := in.call(ctx, method, params)
	if err != nil {
		return errorResponse(id, codeUpstream, fmt.Sprintf("rugwatch gateway: %s: %v", in.server, err))
	}
	return &jsonrpc.Response{ID: id, Result: resp.Result, Error: resp.Error}
}

// setLevel passes the client's log level to every server's session (each
// also applies it to the withheld notices it sends).
func (g *gateway) setLevel(ctx context.Context, req *jsonrpc.Request) *jsonrpc.Response {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var invalid error
	for _, in := range g.inners {
		if in.init.Load() == nil {
			continue
		}
		wg.Go(func() {
			resp, err := in.call(ctx, req.Method, req.Params)
			var je *jsonrpc.Error
			if err == nil && errors.As(resp.Error, &je) && je.Code == jsonrpc.CodeInvalidParams {
				mu.Lock()
				invalid = resp.Error
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if invalid != nil {
		return &jsonrpc.Response{ID: req.ID, Error: invalid}
	}
	return &jsonrpc.Response{ID: req.ID, Result: json.RawMessage("{}")}
}

// clientNotified handles a client notification: a cancellation ends the
// gateway's handling of that request (and, through its context, the
// server session's); anything else (roots list_changed) goes to every
// server's session.
func (g *gateway) clientNotified(ctx context.Context, req *jsonrpc.Request) {
	switch req.Method {
	case "notifications/initialized":
		return // each server's session sent its own upstream
	case "notifications/cancelled":
		g.calls.cancelled(req.Params)
		return
	}
	for _, in := range g.inners {
		if in.init.Load() != nil {
			in.notify(ctx, req.Method, req.Params)
		}
	}
}

// relay passes a server session's request (sampling, elicitation, roots)
// to the client under an id of the gateway's own: the sessions number
// theirs alike.
func (g *gateway) relay(in *inner, req *jsonrpc.Request) {
	id, _ := jsonrpc.MakeID(fmt.Sprintf("rugwatch-gw-%d", g.relayN.Add(1)))
	back := relayKey{in, idKey(req.ID)}
	g.relayMu.Lock()
	g.relays[idKey(id)] = relayed{in, req.ID}
	g.relayBack[back] = id
	g.relayMu.Unlock()
	g.wg.Go(func() {
		err := writeClientRequest(g.life, g.client, &jsonrpc.Request{ID: id, Method: req.Method, Params: req.Params})
		if err == nil {
			return
		}
		g.relayMu.Lock()
		delete(g.relays, idKey(id))
		delete(g.relayBack, back)
		g.relayMu.Unlock()
		_ = in.conn.Write(g.life, errorResponse(req.ID, jsonrpc.CodeInternalError, "rugwatch gateway: the client is gone"))
	})
}

// clientAnswered routes the client's answer to a relayed request back to
// the session that asked, under its own id.
func (g *gateway) clientAnswered(resp *jsonrpc.Response) {
	g.relayMu.Lock()
	r, ok := g.relays[idKey(resp.ID)]
	if ok {
		delete(g.relays, idKey(resp.ID))
		delete(g.relayBack, relayKey{r.in, idKey(r.id)})
	}
	g.relayMu.Unlock()
	if !ok {
		return
	}
	if err := r.in.conn.Write(g.life, &jsonrpc.Response{ID: r.id, Result: resp.Result, Error: resp.Error}); err != nil {
		g.log.Debug("passing the client's answer on failed", "server", r.in.server, "error", err)
	}
}

// innerNotified passes a server session's notification to the client. A
// list_changed (for tools: the server's approved set moved) is merged
// first, so the name policy holds before the client lists again; a
// cancellation of a relayed request gets the id the client saw.
func (g *gateway) innerNotified(in *inner, req *jsonrpc.Request) {
	if c := g.changes[req.Method]; c != nil {
		g.changedSoon(req.Method, c)
		return
	}
	switch req.Method {
	case "notifications/cancelled":
		var p map[string]json.RawMessage
		var upID any
		if json.Unmarshal(req.Params, &p) != nil || json.Unmarshal(p["requestId"], &upID) != nil {
			return
		}
		id, err := jsonrpc.MakeID(upID)
		if err != nil {
			return
		}
		back := relayKey{in, idKey(id)}
		g.relayMu.Lock()
		clientID, ok := g.relayBack[back]
		if ok {
			delete(g.relayBack, back)
			delete(g.relays, idKey(clientID))
		}
		g.relayMu.Unlock()
		if !ok {
			return
		}
		p["requestId"], _ = json.Marshal(clientID.Raw())
		req = &jsonrpc.Request{Method: req.Method, Params: mustMarshal(p)}
	}
	g.write(g.life, &jsonrpc.Request{Method: req.Method, Params: req.Params})
}

// listChange is the servers' list_changed of one kind: the lists it
// merges again, and the flags that coalesce those that come meanwhile.
type listChange struct {
	kinds       []kind
	busy, again atomic.Bool
}

// listChanges are the list_changed the gateway merges on, by method.
func listChanges() map[string]*listChange {
	return map[string]*listChange{
		"notifications/tools/list_changed":     {kinds: []kind{kindTools}},
		"notifications/prompts/list_changed":   {kinds: []kind{kindPrompts}},
		"notifications/resources/list_changed": {kinds: []kind{kindResources, kindTemplates}},
	}
}

// changedSoon merges c's lists again off the session's read loop, then
// passes the list_changed on (for tools, to a client that listed them).
// Notifications that come meanwhile coalesce into one more merge.
func (g *gateway) changedSoon(method string, c *listChange) {
	c.again.Store(true)
	if !c.busy.CompareAndSwap(false, true) {
		return
	}
	// Called from an inner's read loop, one of the gateway's own
	// goroutines: the wait group is above zero, so adding is safe.
	g.wg.Go(func() {
		for {
			for c.again.Swap(false) {
				for _, k := range c.kinds {
					g.merge(g.life, k)
				}
				g.mu.Lock()
				owed := g.listed || c.kinds[0] != kindTools
				g.mu.Unlock()
				if owed && g.life.Err() == nil {
					g.write(g.life, &jsonrpc.Request{Method: method, Params: json.RawMessage("{}")})
				}
			}
			c.busy.Store(false)
			if !c.again.Load() || !c.busy.CompareAndSwap(false, true) {
				return
			}
		}
	})
}
