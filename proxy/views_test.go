package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/monitor"
)

// onlyTo hides tool from the tools/list of clients whose capabilities
// shows refuses, as server-everything hides its elicitation and sampling
// tools.
func onlyTo(tool string, shows func(*mcp.ClientCapabilities) bool) mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			res, err := next(ctx, method, req)
			lr, ok := res.(*mcp.ListToolsResult)
			if err != nil || !ok {
				return res, err
			}
			if r, ok := req.(*mcp.ListToolsRequest); ok {
				if caps := r.ClientCapabilities(); caps != nil && shows(caps) {
					return res, nil
				}
			}
			lr.Tools = slices.DeleteFunc(slices.Clone(lr.Tools), func(t *mcp.Tool) bool { return t.Name == tool })
			return lr, nil
		}
	}
}

// viewRig is a rig whose upstream lists tool only to clients shows
// accepts, behind proxy_listen, after a poll (which the daemon's
// Sightings remember) recorded it and every tool was approved.
func viewRig(t *testing.T, tool string, shows func(*mcp.ClientCapabilities) bool) (r *rig, endpoint string, ctx context.Context) {
	t.Helper()
	r = newRig(t)
	r.up.srv.AddTool(&mcp.Tool{Name: tool, Description: "Asks the client for something.",
		InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
		})
	r.up.srv.AddReceivingMiddleware(onlyTo(tool, shows))
	var seen monitor.Sightings
	r.ledger.Sightings = &seen
	endpoint = sharingProxy(t, r, true)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	l, err := mcpclient.Poll(ctx, mcpclient.Target{Name: "up", Transport: mcpclient.TransportHTTP, URL: r.up.url}, mcpclient.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Tool(tool); !ok || l.Partial {
		t.Fatalf("the poll lists %d tools (partial %v), not %s", len(l.Tools), l.Partial, tool)
	}
	seen.Note("up", l, time.Now())
	if _, _, err := r.ledger.Recorder.Record("up", mcpclient.TransportHTTP, l, nil); err != nil {
		t.Fatal(err)
	}
	r.approve("add", "echo", "ask", tool)
	return r, endpoint, ctx
}

// stillApproved fails the test if tool was recorded removed or cloaking,
// or is not approved: what a less capable client is shown says neither.
func stillApproved(t *testing.T, ctx context.Context, r *rig, tool string) {
	t.Helper()
	events, err := r.ledger.History(ctx, "up", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.Type == rugwatch.EventToolRemoved || e.Type == rugwatch.EventToolCloaked {
			t.Errorf("%s %s: %s", e.Type, e.Tool, e.Message)
		}
	}
	rec, err := r.ledger.Server(ctx, "up")
	if err != nil {
		t.Fatal(err)
	}
	if st := rec.Tools[tool].State; st != rugwatch.StateApproved {
		t.Errorf("%s is %s, want approved", tool, st)
	}
}

// TestCapabilityViews: what a server lists may depend on what its client
// can do. The poll asks as a client that can do everything, so it records
// the elicitation tool too; a proxy session of a client that cannot elicit
// is shown less, and that is neither a removal nor cloaking; and sessions
// share listings only with sessions that declared the same, so the client
// that elicits still sees its tool.
func TestCapabilityViews(t *testing.T) {
	r, endpoint, ctx := viewRig(t, "sample", func(c *mcp.ClientCapabilities) bool { return c.Elicitation != nil })
	plain := connectHTTP(t, endpoint, nil)
	sampler, err := mcp.NewClient(&mcp.Implementation{Name: "elicitor", Version: "1"}, &mcp.ClientOptions{
		ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return &mcp.ElicitResult{Action: "decline"}, nil
		}}).Connect(ctx, &mcp.StreamableClientTransport{Endpoint: endpoint, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sampler.Close()
	// Both kinds of session, in turns, each sharing the other's listing
	// if they were one view.
	for range 3 {
		if got := toolNames(t, plain); slices.Contains(got, "sample") || len(got) != 3 {
			t.Fatalf("the client that cannot elicit is shown %v", got)
		}
		if got := toolNames(t, sampler); !slices.Contains(got, "sample") {
			t.Fatalf("the client that elicits is shown %v, not its tool", got)
		}
	}
	stillApproved(t, ctx, r, "sample")
}

// A view is keyed by whatever capabilities a client declares: a client
// cycling through them must not grow the cache for the life of
// proxy_listen. Views nobody follows are dropped at the bound; a followed
// one (a session subscribed to its watcher) stays.
func TestViewCacheIsBounded(t *testing.T) {
	c := newAllowedCache(context.Background())
	followed := c.entry("up\x00followed")
	followed.lmu.Lock()
	followed.subs[&session{}] = struct{}{}
	followed.lmu.Unlock()
	for i := range 3 * maxCachedEntries {
		c.entry(fmt.Sprintf("up\x00view-%d", i))
	}
	c.mu.Lock()
	n, kept := len(c.servers), c.servers["up\x00followed"] == followed
	c.mu.Unlock()
	if n > maxCachedEntries || !kept {
		t.Fatalf("%d entries (bound %d), the followed view kept: %v", n, maxCachedEntries, kept)
	}
}

// A client that declares every capability a poll does but a narrower one
// beneath (elicitation by form, not by URL) is shown less too: its listing
// is Partial, so a tool the server keeps for URL elicitation is neither
// removed nor cloaking, and stays approved for everyone.
func TestSubCapabilityShortfallIsPartial(t *testing.T) {
	r, endpoint, ctx := viewRig(t, "urlask", func(c *mcp.ClientCapabilities) bool {
		return c.Elicitation != nil && c.Elicitation.URL != nil
	})
	//lint:ignore SA1019 sampling is deprecated in the newest revision, yet a client may still declare it: the test needs every capability a poll declares.
	caps := &mcp.ClientCapabilities{Sampling: &mcp.SamplingCapabilities{}, RootsV2: &mcp.RootCapabilities{ListChanged: true},
		Elicitation: &mcp.ElicitationCapabilities{Form: &mcp.FormElicitationCapabilities{}}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "form-only", Version: "1"}, &mcp.ClientOptions{Capabilities: caps}).
		Connect(ctx, &mcp.StreamableClientTransport{Endpoint: endpoint, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if got := toolNames(t, cs); slices.Contains(got, "urlask") {
		t.Fatalf("the form-only client is shown %v", got)
	}
	stillApproved(t, ctx, r, "urlask")
}

// A view is keyed by what a server may list by, nothing else: clients
// that differ only in experimental, extensions or names no revision
// defines share one; a different elicitation does not.
func TestViewIgnoresWhatNoListingDependsOn(t *testing.T) {
	base := viewOf("up", json.RawMessage(`{"elicitation":{"form":{}},"roots":{}}`))
	for _, caps := range []string{
		`{"roots":{},"elicitation":{"form":{}},"experimental":{"n":1}}`,
		`{"elicitation":{"form":{}},"roots":{},"extensions":{"x":{"y":2}}}`,
		`{ "roots" : {} , "elicitation" : { "form" : {} }, "whatever": 3 }`,
	} {
		if got := viewOf("up", json.RawMessage(caps)); got != base {
			t.Errorf("%s: its own view", caps)
		}
	}
	if viewOf("up", json.RawMessage(`{"elicitation":{"form":{},"url":{}},"roots":{}}`)) == base {
		t.Error("elicitation by URL shares the form-only view")
	}
	if viewOf("other", json.RawMessage(`{"elicitation":{"form":{}},"roots":{}}`)) == base {
		t.Error("two servers share a view")
	}
}

// Two initialize requests sent at once (each is served off the read
// loop) make one session: the first initializes, the second is refused,
// and the capabilities are written once (the race detector watches).
func TestConcurrentInitializeIsRefused(t *testing.T) {
	r := newRig(t)
	opts := r.options(ResultsFlag)
	opts.shared = newAllowedCache(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &session{opts: opts, log: opts.Log, schemas: map[string]*schemaCheck{}, life: ctx}
	defer func() {
		cancel()
		s.wg.Wait()
		if up := s.up.Load(); up != nil {
			up.Close()
		}
	}()
	var wg sync.WaitGroup
	refused := make(chan bool, 2)
	for i, caps := range []string{`{}`, `{"roots":{},"elicitation":{}}`} {
		wg.Go(func() {
			id, _ := jsonrpc.MakeID(float64(i + 1))
			params, _ := json.Marshal(map[string]any{"protocolVersion": "2025-06-18", "capabilities": json.RawMessage(caps)})
			resp := s.initialize(ctx, &jsonrpc.Request{ID: id, Method: "initialize", Params: params})
			refused <- resp.Error != nil && strings.Contains(resp.Error.Error(), "already initialized")
		})
	}
	wg.Wait()
	if a, b := <-refused, <-refused; a == b {
		t.Fatalf("refused: %v and %v, want exactly one", a, b)
	}
	if s.viewKey != viewOf("up", s.declared()) {
		t.Errorf("the view %q is not the declared capabilities' %s", s.viewKey, s.caps)
	}
}
