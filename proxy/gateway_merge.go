package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/visible"
)

// kind is one of the lists a gateway merges.
type kind struct {
	list   string // the list method
	field  string // the result's field holding the items
	key    string // the item's field naming it, which requests route by
	noun   string
	prefix bool // renamed "<server>__<name>" under NamesPrefixed
}

var (
	kindTools     = kind{"tools/list", "tools", "name", "tool", true}
	kindPrompts   = kind{"prompts/list", "prompts", "name", "prompt", true}
	kindResources = kind{"resources/list", "resources", "uri", "resource", false}
	kindTemplates = kind{"resources/templates/list", "resourceTemplates", "uriTemplate", "resource template", false} // URIs never renamed: gateway_resources.go
	kindByList    = map[string]kind{
		kindTools.list: kindTools, kindPrompts.list: kindPrompts,
		kindResources.list: kindResources, kindTemplates.list: kindTemplates,
	}
)

// maxGatewayPages bounds the pages of one server's list the gateway reads.
const maxGatewayPages = 32

// view is one merged list: what the client is served, where each name
// routes, and the names more than one server serves (served by none).
type view struct {
	items    []json.RawMessage
	routes   map[string]route
	shadowed map[string][]string // exposed name -> the servers serving it, sorted
	// templates are, for resource templates, every one listed (those
	// served by neither too), compiled to route URIs by.
	templates []uriTemplate
	// seq orders the merges by when they began listing.
	seq uint64
}

// route is where a name the client sees goes: a server's session and the
// server's own name for it.
type route struct {
	in   *inner
	name string
}

// list answers a list request with the merged list of every server.
func (g *gateway) list(ctx context.Context, req *jsonrpc.Request, k kind) *jsonrpc.Response {
	v := g.merge(ctx, k)
	if k == kindTools {
		g.mu.Lock()
		g.listed = true
		g.mu.Unlock()
		g.tellShadowed(ctx, v)
	}
	items := v.items
	if items == nil {
		items = []json.RawMessage{}
	}
	raw, err := json.Marshal(map[string]any{k.field: items})
	if err != nil {
		return errorResponse(req.ID, jsonrpc.CodeInternalError, err.Error())
	}
	return &jsonrpc.Response{ID: req.ID, Result: raw}
}

// merge lists k of every server's session (each answering as for a
// client of its own: for tools, what passes, exactly as approved),
// applies the name policy and makes the result current. A name two
// servers serve is served by neither, and for a tool recorded as
// tool.shadowed.
func (g *gateway) merge(ctx context.Context, k kind) *view {
	type listing struct {
		items []json.RawMessage
		names []string
	}
	g.mu.Lock()
	g.merges++
	seq := g.merges
	g.mu.Unlock()
	got := make([]listing, len(g.inners))
	var wg sync.WaitGroup
	for i, in := range g.inners {
		wg.Go(func() {
			if g.initInner(ctx, in) {
				got[i].items, got[i].names = g.listAll(ctx, in, k)
			}
		})
	}
	wg.Wait()
	exposed := func(i int, name string) string {
		if k.prefix && g.opts.Names == NamesPrefixed {
			return g.inners[i].server + nameSep + name
		}
		return name
	}
	owners := map[string][]int{}
	for i := range got {
		for _, n := range got[i].names {
			if e := exposed(i, n); !slices.Contains(owners[e], i) {
				owners[e] = append(owners[e], i)
			}
		}
	}
	v := &view{routes: map[string]route{}, shadowed: map[string][]string{}, seq: seq}
	for i := range got {
		for j, item := range got[i].items {
			n := got[i].names[j]
			e := exposed(i, n)
			if len(owners[e]) > 1 {
				if v.shadowed[e] == nil {
					for _, o := range owners[e] {
						v.shadowed[e] = append(v.shadowed[e], g.inners[o].server)
					}
					sort.Strings(v.shadowed[e])
				}
				continue
			}
			if _, dup := v.routes[e]; dup {
				continue // one server listing a name twice: its first
			}
			if e != n {
				item = renamed(item, k.key, e)
			}
			v.items = append(v.items, item)
			v.routes[e] = route{g.inners[i], n}
		}
		if k == kindTemplates {
			v.templates = append(v.templates, g.compileTemplates(g.inners[i], got[i].names)...)
		}
	}
	// Merges run at once (a client's listing, a list_changed), and one
	// that began before an approval can end after a merge that began
	// after it: stored last, its older view routed a name the client had
	// just been shown withheld (a shadowed tool's call went to one of
	// its servers). The view of the latest begun merge stays.
	g.mu.Lock()
	if old := g.views[k.list]; old == nil || old.seq < v.seq {
		g.views[k.list] = v
	}
	g.mu.Unlock()
	if k == kindTools {
		for _, name := range slices.Sorted(maps.Keys(v.shadowed)) {
			g.recordShadowed(ctx, name, v.shadowed[name])
		}
	}
	return v
}

// listAll reads every page of one server's list of k, and each item's
// name. A server that fails to list (one with no prompts answers
// "method not found") contributes what it listed before.
func (g *gateway) listAll(ctx context.Context, in *inner, k kind) (items []json.RawMessage, names []string) {
	params := json.RawMessage("{}")
	for range maxGatewayPages {
		resp, err := in.call(ctx, k.list, params)
		if err != nil || resp.Error != nil {
			if err != nil {
				g.log.Debug("a server's list failed", "server", in.server, "method", k.list, "error", err)
			}
			return items, names
		}
		var fields map[string]json.RawMessage
		if json.Unmarshal(resp.Result, &fields) != nil {
			return items, names
		}
		var page []json.RawMessage
		var next string
		_ = json.Unmarshal(fields[k.field], &page)
		_ = json.Unmarshal(fields["nextCursor"], &next)
		for _, item := range page {
			var m map[string]json.RawMessage
			var name string
			if json.Unmarshal(item, &m) != nil || json.Unmarshal(m[k.key], &name) != nil || name == "" {
				continue
			}
			items, names = append(items, item), append(names, name)
		}
		if next == "" {
			return items, names
		}
		params, _ = json.Marshal(map[string]string{"cursor": next})
	}
	return items, names
}

// renamed is item with its key field set to name; every other field is
// as the server's session sent it.
func renamed(item json.RawMessage, key, name string) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(item, &m) != nil {
		return item
	}
	m[key], _ = json.Marshal(name)
	out, err := json.Marshal(m)
	if err != nil {
		return item
	}
	return out
}

// route returns where a name of k goes, from the last merge or, for a
// name it does not know, a fresh one; or nil and why it is not served.
func (g *gateway) route(ctx context.Context, k kind, name string) (*route, string) {
	v := g.current(ctx, k, name)
	if r, ok := v.routes[name]; ok {
		return &r, ""
	}
	shown := visible.Line(name)
	if servers := v.shadowed[name]; servers != nil {
		if !k.prefix { // resource templates: names: prefixed keeps them as they are
			return nil, fmt.Sprintf("%s %q is listed by %s, so served by neither; leave all but one out of the gateway (gateway.exclude)",
				k.noun, shown, strings.Join(servers, " and "))
		}
		return nil, fmt.Sprintf("%s %q is served by %s, so by neither (%s); leave all but one out of the gateway (gateway.exclude) or set gateway.names: prefixed",
			k.noun, shown, strings.Join(servers, " and "), rugwatch.EventToolShadowed)
	}
	return nil, fmt.Sprintf("%s %q is not served by this gateway: no server serves it approved now (see `rugwatch status`)", k.noun, shown)
}

// current is the last merge of k if it knows name, else a fresh one.
func (g *gateway) current(ctx context.Context, k kind, name string) *view {
	g.mu.Lock()
	v := g.views[k.list]
	g.mu.Unlock()
	if !v.knows(name) {
		v = g.merge(ctx, k)
	}
	return v
}

// knows reports whether the view routes or withholds name.
func (v *view) knows(name string) bool {
	if v == nil {
		return false
	}
	_, ok := v.routes[name]
	return ok || v.shadowed[name] != nil
}

// tellShadowed tells the client, once per set, that tools are withheld
// because more than one server serves their names. As with withheld
// notices, only counts and server names are told, never a tool's name:
// that is the server's text.
func (g *gateway) tellShadowed(ctx context.Context, v *view) {
	var key strings.Builder
	servers := map[string]bool{}
	for _, n := range slices.Sorted(maps.Keys(v.shadowed)) {
		fmt.Fprintf(&key, "%s\x00%s\x00", n, strings.Join(v.shadowed[n], ","))
		for _, s := range v.shadowed[n] {
			servers[s] = true
		}
	}
	g.mu.Lock()
	told := key.String() == g.toldShadowed
	g.toldShadowed = key.String()
	g.mu.Unlock()
	if told || len(v.shadowed) == 0 {
		return
	}
	names := slices.Sorted(maps.Keys(servers))
	text := fmt.Sprintf("rugwatch gateway withheld %d tool name(s) that more than one of %s serves: a name two servers serve is served by neither (%s). Leave all but one out of the gateway (gateway.exclude) or set gateway.names: prefixed.",
		len(v.shadowed), strings.Join(names, ", "), rugwatch.EventToolShadowed)
	params, _ := json.Marshal(map[string]any{"level": "warning", "logger": "rugwatch", "data": text})
	g.write(ctx, &jsonrpc.Request{Method: "notifications/message", Params: params})
}

// shadowRecorder is a backend that records tool.shadowed (the daemon and
// the store do).
type shadowRecorder interface {
	ToolShadowed(ctx context.Context, tool string, servers []string) error
}

// recordShadowed records a collision through the backend of the first
// server that serves the name, once per process (shadowLog).
func (g *gateway) recordShadowed(ctx context.Context, name string, servers []string) {
	key := name + "\x00" + strings.Join(servers, "\x00")
	// A merge that finds the collision being recorded by another (a
	// list_changed's and a client's list race) returns once it is.
	g.opts.shadows.recording.Lock()
	defer g.opts.shadows.recording.Unlock()
	if !g.opts.shadows.first(key) {
		return
	}
	g.log.Error("a tool name is served by more than one server; the gateway serves it from neither",
		"event", string(rugwatch.EventToolShadowed), "tool", visible.Line(name), "servers", strings.Join(servers, ","))
	var open func(context.Context) (Backend, func(), error)
	for _, in := range g.inners {
		if in.server == servers[0] {
			open = in.opts.Backend
		}
	}
	err := errors.New("no backend")
	if open != nil {
		var b Backend
		var release func()
		if b, release, err = open(ctx); err == nil {
			if sr, ok := b.(shadowRecorder); ok {
				err = sr.ToolShadowed(ctx, name, servers)
			} else {
				err = errors.New("the backend cannot record tool.shadowed")
			}
			release()
		}
	}
	if err != nil {
		g.opts.shadows.forget(key) // tried again at the next merge
		g.log.Error("recording tool.shadowed failed", "tool", visible.Line(name), "error", err)
	}
}

// shadowLog remembers the collisions recorded, so that each is recorded
// once per process, not at every listing of every client.
type shadowLog struct {
	mu   sync.Mutex
	seen map[string]bool
	// recording is held while a collision is recorded.
	recording sync.Mutex
}

// maxShadows bounds shadowLog: past it, it starts afresh.
const maxShadows = 4096

// first reports whether key is new, and remembers it.
func (l *shadowLog) first(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[key] {
		return false
	}
	if l.seen == nil || len(l.seen) >= maxShadows {
		l.seen = map[string]bool{}
	}
	l.seen[key] = true
	return true
}

func (l *shadowLog) forget(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.seen, key)
}
