package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// proxyHTTP serves the rig's server at /mcp/up over a real HTTP listener.
func (r *rig) proxyHTTP(token string) (*httptest.Server, *HTTP) {
	r.t.Helper()
	h := &HTTP{Options: func(server string) (Options, bool) {
		if server != "up" {
			return Options{}, false
		}
		return r.options(ResultsFlag), true
	}}
	if token != "" {
		h.Token = func() (string, error) { return token, nil }
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Start()
	h.Hosts = LoopbackHosts(srv.Listener.Addr())
	h.Start(context.Background())
	r.t.Cleanup(func() { srv.Close(); h.Close() })
	return srv, h
}

type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(req)
}

func TestHTTPProxyEnforcesLikeStdio(t *testing.T) {
	r := newRig(t)
	srv, h := r.proxyHTTP("")
	ctx := context.Background()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "http-client", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp/up"}, nil)
	if err != nil {
		t.Fatalf("connect through proxy_listen: %v", err)
	}
	defer cs.Close()
	if got := toolNames(t, cs); len(got) != 0 {
		t.Fatalf("pending tools served over HTTP: %v", got)
	}
	r.approve("echo")
	if got := strings.Join(toolNames(t, cs), ","); got != "echo" {
		t.Fatalf("after approval: %s", got)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "add", Arguments: map[string]any{"a": 1, "b": 2}}); err == nil {
		t.Fatal("unapproved call passed over HTTP")
	}
	if h.Sessions() != 1 {
		t.Errorf("%d sessions, want 1", h.Sessions())
	}
}

// TestHTTPProxyRefusesRebindingAndMissingToken: a request whose Host or
// Origin is not the listener's own (a DNS-rebinding page) is refused, and
// so is one without the bearer token when one is set; with the right
// Host and token the same request is served, so the checks can fail.
func TestHTTPProxyRefusesRebindingAndMissingToken(t *testing.T) {
	r := newRig(t)
	srv, _ := r.proxyHTTP("s3cret")
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`
	post := func(mod func(*http.Request)) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/mcp/up", strings.NewReader(init))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer s3cret")
		mod(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := post(func(req *http.Request) { req.Host = "evil.example:80" }); c != http.StatusMisdirectedRequest {
		t.Errorf("foreign Host: %d", c)
	}
	if c := post(func(req *http.Request) { req.Header.Set("Origin", "http://evil.example") }); c != http.StatusForbidden {
		t.Errorf("foreign Origin: %d", c)
	}
	if c := post(func(req *http.Request) { req.Header.Del("Authorization") }); c != http.StatusUnauthorized {
		t.Errorf("no token: %d", c)
	}
	if c := post(func(req *http.Request) { req.Header.Set("Authorization", "Bearer wrong") }); c != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", c)
	}
	if c := post(func(*http.Request) {}); c != http.StatusOK {
		t.Errorf("own Host, right token: %d", c)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "c", Version: "1"}, nil).Connect(context.Background(),
		&mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp/up", HTTPClient: &http.Client{Transport: bearer{"s3cret", http.DefaultTransport}}}, nil)
	if err != nil {
		t.Fatalf("client with the token: %v", err)
	}
	cs.Close()
}
