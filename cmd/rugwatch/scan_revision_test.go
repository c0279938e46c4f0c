package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// revisionServer is a go-sdk v1.8.0 server narrowed to versions, with
// one tool, served over Streamable HTTP (stateless when asked: 2026-07-28
// over HTTP needs it).
func revisionServer(t *testing.T, versions []string, stateless bool) string {
	t.Helper()
	s := mcp.NewServer(&mcp.Implementation{Name: "rev", Version: "1"}, &mcp.ServerOptions{SupportedProtocolVersions: versions})
	s.AddTool(&mcp.Tool{Name: "echo", Description: "Echoes.", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{}, nil
		})
	h := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s },
		&mcp.StreamableHTTPOptions{Stateless: stateless}))
	t.Cleanup(h.Close)
	return h.URL
}

// scan reports the negotiated revision, the offered ones and the list
// cache hint; a 2026-only server behind a handler that cannot serve it
// (issue 10: "scan URL reports protocol 2025-11-25") is an error that
// says why, not a listing through a half-open session.
func TestScanReportsTheNegotiatedRevision(t *testing.T) {
	out, errOut, code := runApp(t, "scan", "--json", revisionServer(t, []string{"2026-07-28"}, true))
	if code != 0 {
		t.Fatalf("scan exited %d: %s", code, errOut)
	}
	var rep ScanReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.ProtocolVersion != "2026-07-28" || len(rep.ProtocolVersionsOffered) != 1 || rep.Cache == nil || len(rep.Tools) != 1 {
		t.Fatalf("scan report: %s", out)
	}
	if !strings.Contains(out, `"ttl_ms"`) || !strings.Contains(out, `"cache_scope"`) {
		t.Fatalf("no cache hint in: %s", out)
	}

	out, _, code = runApp(t, "scan", "--revision-check", revisionServer(t, []string{"2026-07-28", "2025-11-25"}, true))
	if code != 0 || !strings.Contains(out, "protocol 2026-07-28") || !strings.Contains(out, "server offers 2026-07-28, 2025-11-25") {
		t.Fatalf("scan text (exit %d): %s", code, out)
	}

	_, errOut, code = runApp(t, "scan", revisionServer(t, []string{"2026-07-28"}, false))
	if code == 0 || !strings.Contains(errOut, "so that the client disconnects") {
		t.Fatalf("scan of a half-open server exited %d: %s", code, errOut)
	}
}
