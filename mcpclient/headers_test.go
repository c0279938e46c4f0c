package mcpclient

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/rugwatch/rugwatch/testkit/testservers"
)

// A target's configured headers go on every request, except those the
// MCP transport sets itself: a target built outside the config (where
// validation refuses them) must not replace the SDK's Accept, or the
// server answers in a form the client refuses.
func TestReservedHeadersNeverOverrideTheTransport(t *testing.T) {
	srv := testservers.FixtureServer(1, 0)
	var mu sync.Mutex
	var accepts, custom []string
	inner := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		accepts = append(accepts, r.Header.Get("Accept"))
		custom = append(custom, r.Header.Get("X-Team"))
		mu.Unlock()
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	tg := Target{Name: "h", Transport: TransportHTTP, URL: hs.URL,
		Headers: map[string]string{"Accept": "text/html", "mcp-session-id": "forged", "X-Team": "platform"}}
	if _, err := Poll(pollCtx(t, 20*time.Second), tg, DialOptions{}); err != nil {
		t.Fatalf("poll with a configured Accept: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, a := range accepts {
		if strings.Contains(a, "text/html") || custom[i] != "platform" {
			t.Fatalf("request %d: Accept %q, X-Team %q", i, a, custom[i])
		}
	}
}
