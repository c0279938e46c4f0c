package mcpclient

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/rugwatch/rugwatch/sandbox"
	"github.com/rugwatch/rugwatch/testkit/testservers"
)

// The test binary doubles as a stdio MCP server: re-executed with
// RUGWATCH_TEST_SERVER set, it serves instead of testing, so stdio tests
// run a real child process with real pipes and process groups.
func TestMain(m *testing.M) {
	sandbox.Init()
	if testservers.Child() {
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// selfTarget is a stdio target that re-executes this test binary in mode.
func selfTarget(t testing.TB, mode string, env map[string]string) Target {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e := map[string]string{testservers.EnvMode: mode}
	for k, v := range env {
		e[k] = v
	}
	return Target{Name: "self", Transport: TransportStdio, Command: exe, Args: []string{"-test.run=^$"}, Env: e}
}

// httpTargets serves one go-sdk server over Streamable HTTP and over SSE.
func httpTargets(t *testing.T, s *mcp.Server) (streamable, sse Target) {
	t.Helper()
	get := func(*http.Request) *mcp.Server { return s }
	h := httptest.NewServer(mcp.NewStreamableHTTPHandler(get, nil))
	t.Cleanup(h.Close)
	e := httptest.NewServer(mcp.NewSSEHandler(get, nil))
	t.Cleanup(e.Close)
	return Target{Name: "http", Transport: TransportHTTP, URL: h.URL},
		Target{Name: "sse", Transport: TransportSSE, URL: e.URL}
}

func pollCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
