package mcpclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/goleak"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/testkit/testservers"
)

func eraStdio(t testing.TB, scenario string, versions []string, env map[string]string) Target {
	return selfTarget(t, "era:"+scenario+":"+strings.Join(versions, ","), env)
}

// eraHTTP serves s over Streamable HTTP; 2026-07-28 needs a stateless
// handler. methods, when set, hears every method the server receives.
func eraHTTP(t testing.TB, s *mcp.Server, stateless bool) Target {
	h := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s },
		&mcp.StreamableHTTPOptions{Stateless: stateless}))
	t.Cleanup(h.Close)
	return Target{Name: "http", Transport: TransportHTTP, URL: h.URL}
}

// Each server is polled in the newest revision both sides speak, and the
// same tools have the same digests whichever revision carried them: they
// come from the raw JSON of each tool, not from the envelope around it.
func TestPollNegotiatesTheNewestRevision(t *testing.T) {
	digests := map[string]map[rugwatch.Digest]string{}
	for _, c := range testservers.EraCases {
		for _, transport := range []string{TransportStdio, TransportHTTP} {
			t.Run(c.Name+"/"+transport, func(t *testing.T) {
				tg := eraStdio(t, "plain", c.Versions, nil)
				if transport == TransportHTTP {
					tg = eraHTTP(t, testservers.EraServer("plain", c.Versions, ""), c.Stateless)
				}
				l, err := Poll(pollCtx(t, 20*time.Second), tg, DialOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if l.ProtocolVersion != c.Want {
					t.Fatalf("negotiated %q, want %q", l.ProtocolVersion, c.Want)
				}
				if len(l.Tools) != 3 || l.Instructions == nil || *l.Instructions != "Use these tools for arithmetic." {
					t.Fatalf("listing: %d tools, instructions %v", len(l.Tools), l.Instructions)
				}
				if c.Want == StatelessVersion {
					if !slices.Contains(l.Offered, StatelessVersion) {
						t.Fatalf("offered %v", l.Offered)
					}
					if l.Cache == nil || l.Cache.TTLMs == nil {
						t.Fatalf("2026-07-28 listing keeps no cache hint: %+v", l.Cache)
					}
					var info struct{ Name string }
					if json.Unmarshal(l.ServerInfo, &info) != nil || info.Name != "fixture" {
						t.Fatalf("server info from discover _meta: %s", l.ServerInfo)
					}
				}
				if transport == TransportStdio && (l.Launch == nil || l.Launch.ProtocolVersion != c.Want) {
					t.Fatalf("launch identity does not name the revision: %+v", l.Launch)
				}
				for _, tool := range l.Tools {
					if digests[tool.Name] == nil {
						digests[tool.Name] = map[rugwatch.Digest]string{}
					}
					digests[tool.Name][tool.Digest] = c.Name + "/" + transport
				}
			})
		}
	}
	for name, ds := range digests {
		if len(ds) != 1 {
			t.Errorf("%s has %d digests across revisions: %v", name, len(ds), ds)
		}
	}
}

// Item 4 of issue 10: a go-sdk server narrowed to 2026-07-28 answers a
// handshake-era initialize with 2025-11-25 "so that the client
// disconnects", and goes on serving tools/list through that half-open
// session. Where it cannot serve 2026-07-28 (a stateful HTTP handler, the
// SSE transport) rugwatch refuses to take that listing; a handshake made
// without asking server/discover (the protection off) takes it.
func TestHalfOpenHandshakeIsRefused(t *testing.T) {
	srv := testservers.EraServer("plain", testservers.OnlyStateless, "")
	stateful := eraHTTP(t, srv, false)
	_, sse := httpTargets(t, srv)
	for name, tg := range map[string]Target{"stateful-http": stateful, "sse": sse} {
		t.Run(name, func(t *testing.T) {
			_, err := Poll(pollCtx(t, 20*time.Second), tg, DialOptions{})
			var re *RevisionError
			if !errors.As(err, &re) || !strings.Contains(err.Error(), "so that the client disconnects") {
				t.Fatalf("poll of a 2026-only server over %s: %v", name, err)
			}
			// Without the revision check the half-open session lists.
			l, err := pollEra(pollCtx(t, 20*time.Second), tg, DialOptions{}, eraHandshake)
			if err != nil || l.ProtocolVersion != "2025-11-25" || len(l.Tools) != 3 {
				t.Fatalf("handshake without the check: %v %+v", err, l)
			}
		})
	}
}

// A server that answers initialize with a revision rugwatch does not
// speak, or with the stateless one (which has no handshake), is refused.
func TestInitializeAnswerMustBeAHandshakeRevision(t *testing.T) {
	for answer, want := range map[string]string{"2026-07-28": "a stateless revision", "1999-01-01": "does not speak"} {
		srv := testservers.RPCServer(t, func(method string, id, _ json.RawMessage) string {
			switch method {
			case "initialize":
				return testservers.Result(id, `{"protocolVersion":"`+answer+`","capabilities":{"tools":{}},"serverInfo":{"name":"x","version":"1"}}`)
			case "tools/list":
				return testservers.Result(id, `{"tools":[]}`)
			}
			return fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"error":{"code":-32601,"message":"no"}}`, id)
		})
		_, err := Poll(pollCtx(t, 10*time.Second), Target{Name: "x", Transport: TransportHTTP, URL: srv.URL}, DialOptions{})
		var re *RevisionError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), want) {
			t.Fatalf("initialize answered %s: %v", answer, err)
		}
	}
}

// server/discover is bounded like every answer: a duplicate key, too many
// versions or too deep a value fail the poll as hostile (no fallback a
// server could steer), and a server that never answers it is polled in
// the handshake era within the poll's own timeout, where the SDK's own
// discovery (the protection off) waits out the whole deadline.
func TestDiscoveryIsBounded(t *testing.T) {
	many := `["` + strings.Repeat(`2026-07-28","`, 1000) + `2026-07-28"]`
	for name, discover := range map[string]string{
		"dup-keys": `{"supportedVersions":["2026-07-28"],"supportedVersions":["2025-11-25"],"capabilities":{}}`,
		"many":     `{"supportedVersions":` + many + `,"capabilities":{}}`,
		"deep":     `{"supportedVersions":["2026-07-28"],"capabilities":` + strings.Repeat(`{"x":`, 100) + `1` + strings.Repeat(`}`, 100) + `}`,
		"long":     `{"supportedVersions":["` + strings.Repeat("9", 1000) + `"],"capabilities":{}}`,
	} {
		t.Run(name, func(t *testing.T) {
			srv := testservers.RPCServer(t, func(method string, id, _ json.RawMessage) string {
				switch method {
				case "server/discover":
					return testservers.Result(id, discover)
				case "initialize":
					return testservers.Result(id, testservers.RawInit)
				case "tools/list":
					return testservers.Result(id, `{"tools":[]}`)
				}
				return ""
			})
			_, err := Poll(pollCtx(t, 10*time.Second), Target{Name: "x", Transport: TransportHTTP, URL: srv.URL}, DialOptions{})
			var he *HostileError
			var le *LimitError
			if !errors.As(err, &he) && !errors.As(err, &le) {
				t.Fatalf("discover answered %s: %v", name, err)
			}
		})
	}

	t.Run("silent", func(t *testing.T) {
		stop := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var req struct {
				ID     json.RawMessage `json:"id"`
				Method string          `json:"method"`
			}
			_ = json.NewDecoder(r.Body).Decode(&req)
			switch {
			case req.ID == nil:
				w.WriteHeader(http.StatusAccepted)
				return
			case req.Method == "server/discover":
				select { // never answer
				case <-r.Context().Done():
				case <-stop:
				}
				return
			}
			res := `{"tools":[{"name":"a","inputSchema":{"type":"object"}}]}`
			if req.Method == "initialize" {
				res = testservers.RawInit
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, testservers.Result(req.ID, res))
		}))
		defer srv.Close()
		defer close(stop)
		tg := Target{Name: "x", Transport: TransportHTTP, URL: srv.URL}
		l, err := Poll(pollCtx(t, 8*time.Second), tg, DialOptions{})
		if err != nil || l.ProtocolVersion != "2025-11-25" || len(l.Tools) != 1 {
			t.Fatalf("poll of a server silent on server/discover: %v %+v", err, l)
		}
		// The SDK's Connect asks server/discover with no bound of its own.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		cs, err := mcp.NewClient(&mcp.Implementation{Name: "sdk", Version: "1"}, nil).Connect(ctx,
			&mcp.StreamableClientTransport{Endpoint: srv.URL, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
		if err == nil {
			cs.Close()
			t.Fatal("the SDK's discovery was expected to wait out the deadline")
		}
	})
}

// In the stateless era every request, also one the proxy forwards for its
// client, carries the per-request _meta keys, merged into a _meta the
// params bring: the revision is rugwatch's, the client's other keys stay.
func TestForwardCarriesRequestMeta(t *testing.T) {
	srv := testservers.EraServer("plain", testservers.OnlyStateless, "")
	ml := &testservers.MethodLog{}
	srv.AddReceivingMiddleware(ml.Middleware)
	tg := eraHTTP(t, srv, true)
	ctx := pollCtx(t, 20*time.Second)
	s, err := Dial(ctx, tg, DialOptions{ClientInfo: ClientInfo{Name: "proxy-client", Version: "9"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Stateless() || s.Init.ProtocolVersion != StatelessVersion {
		t.Fatalf("stateless %v, revision %q", s.Stateless(), s.Init.ProtocolVersion)
	}
	params := json.RawMessage(`{"name":"tool_0000","arguments":{"a":1,"b":2},"_meta":{"progressToken":"p1","io.modelcontextprotocol/protocolVersion":"2025-11-25"}}`)
	res, rpcErr, err := s.Forward(ctx, "tools/call", params)
	if err != nil || rpcErr != nil || len(res) == 0 {
		t.Fatalf("forward: %s %v %v", res, rpcErr, err)
	}
	meta, ok := ml.Meta("tools/call")
	if !ok {
		t.Fatal("the server never saw tools/call")
	}
	if meta["progressToken"] != "p1" || meta[mcp.MetaKeyProtocolVersion] != StatelessVersion {
		t.Fatalf("meta the server saw: %v", meta)
	}
	if info, _ := meta[mcp.MetaKeyClientInfo].(map[string]any); info["name"] != "proxy-client" {
		t.Fatalf("client info the server saw: %v", meta[mcp.MetaKeyClientInfo])
	}
	if _, _, err := s.Forward(ctx, "tools/call", json.RawMessage(`[1,2]`)); err == nil {
		t.Fatal("params that cannot carry _meta were sent")
	}
}

// The subscription stream is bounded in time too: a server that takes
// subscriptions/listen but never acknowledges it ends the watch session
// within ConnectTimeout, so the watcher reconnects instead of hanging.
func TestListenWithoutAcknowledgementEndsTheSession(t *testing.T) {
	srv := testservers.RPCServer(t, func(method string, id, _ json.RawMessage) string {
		switch method {
		case "server/discover":
			return testservers.Result(id, `{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{"listChanged":true}}}`)
		case "subscriptions/listen":
			// Answered at once with nothing acknowledged.
			return testservers.Result(id, `{"_meta":{}}`)
		}
		return ""
	})
	w := &Watcher{Target: Target{Name: "x", Transport: TransportHTTP, URL: srv.URL}, Log: quietLog(),
		ConnectTimeout: 2 * time.Second, OnListing: func(context.Context, *Listing, error) { t.Error("listed without a subscription") }}
	w.MinInterval = time.Second
	err := w.httpSession(pollCtx(t, 10*time.Second))
	if err == nil || !strings.Contains(err.Error(), "subscriptions/listen") {
		t.Fatalf("watch session: %v", err)
	}
}

// A server that takes the listen's POST and never answers it at all (no
// response headers) is given up on at ConnectTimeout, and the request
// goes with the session: nothing is left running.
func TestListenThatNeverAnswersLeavesNothingRunning(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"), goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
	hung, gone := make(chan struct{}, 1), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		switch req.Method {
		case "server/discover":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, testservers.Result(req.ID, `{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{"listChanged":true}}}`))
		case "subscriptions/listen":
			hung <- struct{}{}
			<-r.Context().Done()
			close(gone)
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	defer srv.Close()
	w := &Watcher{Target: Target{Name: "x", Transport: TransportHTTP, URL: srv.URL}, Log: quietLog(),
		ConnectTimeout: time.Second, OnListing: func(context.Context, *Listing, error) { t.Error("listed without a subscription") }}
	ctx := pollCtx(t, 60*time.Second)
	err := w.httpSession(ctx)
	if err == nil || !strings.Contains(err.Error(), "acknowledged within") || ctx.Err() != nil {
		// Ending only with the watch's own context is the hang.
		t.Fatalf("watch session: %v (context: %v)", err, ctx.Err())
	}
	<-hung
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the listen request outlived its session")
	}
}

// PreferHandshake (the proxy's dial: its clients speak the handshake era)
// speaks the handshake era where the server offers it. (A go-sdk server
// narrowed to the stateless revision still answers initialize, so the
// fallback to the stateless revision is not reached here.)
func TestDialPreferHandshake(t *testing.T) {
	for _, c := range []struct {
		Name     string
		Versions []string
		Want     string
	}{
		{"both", testservers.BothEras, "2025-11-25"},
		{"2025-only", testservers.OnlyHandshake, "2025-11-25"},
	} {
		for _, transport := range []string{TransportStdio, TransportHTTP} {
			t.Run(c.Name+"/"+transport, func(t *testing.T) {
				tg := eraStdio(t, "plain", c.Versions, nil)
				if transport == TransportHTTP {
					tg = eraHTTP(t, testservers.EraServer("plain", c.Versions, ""), c.Name != "2025-only")
				}
				s, err := Dial(pollCtx(t, 20*time.Second), tg, DialOptions{PreferHandshake: true})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				if got := s.Init.ProtocolVersion; got != c.Want {
					t.Errorf("spoke %q, want %q", got, c.Want)
				}
				if l, err := s.ListTools(pollCtx(t, 20*time.Second)); err != nil || len(l.Tools) != 3 {
					t.Errorf("listing in the handshake era: %v", err)
				}
				// Without the preference a server of both eras is spoken to
				// in the newest, which is what the proxy must not do.
				if c.Name == "both" {
					s2, err := Dial(pollCtx(t, 20*time.Second), tg, DialOptions{})
					if err != nil {
						t.Fatal(err)
					}
					defer s2.Close()
					if s2.Init.ProtocolVersion != StatelessVersion {
						t.Errorf("without the preference: %q", s2.Init.ProtocolVersion)
					}
				}
			})
		}
	}
}
