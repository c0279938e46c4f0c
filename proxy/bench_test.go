package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The benchmarks measure what the proxy adds on loopback Streamable HTTP:
// each has a direct and a proxied sub-benchmark over the same upstream in
// the same run, so benchstat (or a glance) shows them side by side.
//
//	go test -run '^$' -bench . -benchtime 3s -count 6 ./proxy/ | tee new.txt
//
// p50-ms and p99-ms are per-call latencies; calls/s is the throughput of
// parallel clients; ns/op is the mean. The client, the proxy and the
// upstream share the machine's cores, as on a developer's laptop.

// benchTools is the size of the upstream's tool list: the 50.
const benchTools = 50

// newBenchUpstream is a go-sdk server over Streamable HTTP with echo and
// 49 more tools of realistic size.
func newBenchUpstream(tb testing.TB) *upstream {
	tb.Helper()
	srv := mcp.NewServer(&mcp.Implementation{Name: "bench", Version: "1.0.0"}, nil)
	echo := func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var args struct {
			Text string `json:"text"`
		}
		_ = json.Unmarshal(req.Params.Arguments, &args)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: args.Text}}}, nil
	}
	srv.AddTool(&mcp.Tool{Name: "echo", Description: "Echoes the text it is given.",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"text":{"type":"string","description":"what to echo"}},"required":["text"],"additionalProperties":false}`)}, echo)
	for i := 1; i < benchTools; i++ {
		srv.AddTool(&mcp.Tool{
			Name:        fmt.Sprintf("tool_%02d", i),
			Description: fmt.Sprintf("Tool number %d: looks up records in the catalogue by id and returns them as text, with paging.", i),
			InputSchema: json.RawMessage(`{"type":"object","properties":{"id":{"type":"string","description":"record id"},` +
				`"page":{"type":"integer","minimum":1},"limit":{"type":"integer","minimum":1,"maximum":100}},"required":["id"]}`),
		}, echo)
	}
	// page returns a 64 KiB web page's text, the size of a browser tool's
	// snapshot: what the result rules must scan on every call.
	page := benchPage()
	srv.AddTool(&mcp.Tool{Name: "page", Description: "Returns the text of the current page.",
		InputSchema: json.RawMessage(`{"type":"object","properties":{},"additionalProperties":false}`)},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: page}}}, nil
		})
	hs := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	tb.Cleanup(hs.Close)
	return &upstream{srv: srv, url: hs.URL}
}

// benchPage is 64 KiB of honest page text: prose, links, an address, a
// little non-Latin script and numbers, nothing any rule should flag.
func benchPage() string {
	para := "The quarterly report lists revenue by region; see https://example.com/reports/q3 for the full tables. " +
		"Contact sales@example.com with questions. Привет from the Moscow office: 1,234 units shipped in week 42.\n"
	return strings.Repeat(para, 64*1024/len(para)+1)[:64*1024]
}

// benchPair is one upstream with every tool approved, and the URLs of it
// directly and through proxy_listen.
type benchPair struct {
	direct, floor, proxied string
}

func newBenchPair(b *testing.B) benchPair {
	b.Helper()
	r := newRigWith(b, newBenchUpstream(b))
	// As in serve: the daemon keeps an approvals generation that moves
	// with every write, and the proxy asks it before each call.
	var gen atomic.Uint64
	gen.Store(1)
	r.ledger.Gen = gen.Load
	r.ledger.AfterWrite = func(context.Context) error { gen.Add(1); return nil }
	r.ledger.AfterNotice = func(context.Context) error { return nil }
	h := &HTTP{Options: func(server string) (Options, bool) {
		o := r.options(ResultsFlag)
		// As configured in production: the rig's 20ms re-read would
		// spend the benchmark's CPU verifying 50 signatures.
		o.Refresh = 500 * time.Millisecond
		return o, server == "up"
	}}
	srv := httptest.NewServer(h)
	h.Hosts = LoopbackHosts(srv.Listener.Addr())
	h.Start(context.Background())
	b.Cleanup(func() { srv.Close(); h.Close() })
	// The floor: a reverse proxy that forwards bytes and checks nothing,
	// the least any HTTP hop between client and server costs here.
	target, _ := url.Parse(r.up.url)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1 // stream SSE at once, as an MCP relay must
	floor := httptest.NewServer(rp)
	b.Cleanup(floor.Close)
	p := benchPair{direct: r.up.url, floor: floor.URL, proxied: srv.URL + "/mcp/up"}

	// The first listing through the proxy records every tool (pending);
	// approve them all, as `rugwatch approve up --all` would.
	cs := benchConnect(b, p.proxied)
	defer cs.Close()
	if _, err := cs.ListTools(context.Background(), nil); err != nil {
		b.Fatal(err)
	}
	names := []string{"echo", "page"}
	for i := 1; i < benchTools; i++ {
		names = append(names, fmt.Sprintf("tool_%02d", i))
	}
	r.approve(names...)
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil || len(res.Tools) != benchTools+1 {
		b.Fatalf("after approval the proxy lists %d tools (%v), want %d", len(res.Tools), err, benchTools+1)
	}
	return p
}

func benchConnect(b *testing.B, url string) *mcp.ClientSession {
	b.Helper()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil).Connect(context.Background(),
		&mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1}, nil)
	if err != nil {
		b.Fatalf("connecting to %s: %v", url, err)
	}
	return cs
}

// latencies records each operation's duration and reports p50 and p99.
type latencies []time.Duration

func (l latencies) report(b *testing.B) {
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	pct := func(p float64) float64 {
		return float64(l[min(len(l)-1, int(float64(len(l))*p))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

func benchEach(b *testing.B, fn func(b *testing.B, url string)) {
	p := newBenchPair(b)
	b.Run("direct", func(b *testing.B) { fn(b, p.direct) })
	b.Run("floor", func(b *testing.B) { fn(b, p.floor) })
	b.Run("proxied", func(b *testing.B) { fn(b, p.proxied) })
}

// BenchmarkToolsCall: one client calling echo, one call at a time.
func BenchmarkToolsCall(b *testing.B) {
	benchEach(b, func(b *testing.B, url string) {
		cs := benchConnect(b, url)
		defer cs.Close()
		ctx := context.Background()
		params := &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "the quick brown fox"}}
		lat := make(latencies, 0, b.N)
		b.ResetTimer()
		for range b.N {
			start := time.Now()
			res, err := cs.CallTool(ctx, params)
			lat = append(lat, time.Since(start))
			if err != nil || res.IsError {
				b.Fatalf("call: %+v %v", res, err)
			}
		}
		b.StopTimer()
		lat.report(b)
	})
}

// BenchmarkToolsCallParallel: 16 clients (one session each) calling echo
// at once through one proxy; calls/s is the throughput.
func BenchmarkToolsCallParallel(b *testing.B) {
	const clients = 16
	benchEach(b, func(b *testing.B, url string) {
		sessions := make([]*mcp.ClientSession, clients)
		for i := range sessions {
			sessions[i] = benchConnect(b, url)
		}
		defer func() {
			for _, cs := range sessions {
				cs.Close()
			}
		}()
		var next atomic.Int64
		params := &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "the quick brown fox"}}
		b.SetParallelism((clients + 1) / 2) // 2 cores: 16 goroutines
		start := time.Now()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			cs := sessions[int(next.Add(1)-1)%clients]
			for pb.Next() {
				res, err := cs.CallTool(context.Background(), params)
				if err != nil || res.IsError {
					b.Errorf("call: %+v %v", res, err)
					return
				}
			}
		})
		b.StopTimer()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
	})
}

// BenchmarkToolsList50: tools/list of 50 approved tools. Through the proxy
// every listing is a full upstream listing, recorded, then filtered.
func BenchmarkToolsList50(b *testing.B) {
	benchEach(b, func(b *testing.B, url string) {
		cs := benchConnect(b, url)
		defer cs.Close()
		ctx := context.Background()
		lat := make(latencies, 0, b.N)
		b.ResetTimer()
		for range b.N {
			start := time.Now()
			res, err := cs.ListTools(ctx, nil)
			lat = append(lat, time.Since(start))
			if err != nil || len(res.Tools) != benchTools+1 {
				b.Fatalf("list: %d tools, %v", len(res.Tools), err)
			}
		}
		b.StopTimer()
		lat.report(b)
	})
}

// BenchmarkToolsCall64KiB: one client calling page, whose result is 64 KiB
// of text that the proxy's result rules read in full.
func BenchmarkToolsCall64KiB(b *testing.B) {
	benchEach(b, func(b *testing.B, url string) {
		cs := benchConnect(b, url)
		defer cs.Close()
		ctx := context.Background()
		params := &mcp.CallToolParams{Name: "page", Arguments: map[string]any{}}
		lat := make(latencies, 0, b.N)
		b.SetBytes(64 * 1024)
		b.ResetTimer()
		for range b.N {
			start := time.Now()
			res, err := cs.CallTool(ctx, params)
			lat = append(lat, time.Since(start))
			if err != nil || res.IsError || len(res.Content) != 1 {
				b.Fatalf("call: %+v %v", res, err)
			}
		}
		b.StopTimer()
		lat.report(b)
	})
}

// BenchmarkSessionStart: a client connects (initialize, initialized),
// lists the tools once and leaves, as an agent does on start.
func BenchmarkSessionStart(b *testing.B) {
	benchEach(b, func(b *testing.B, url string) {
		ctx := context.Background()
		lat := make(latencies, 0, b.N)
		b.ResetTimer()
		for range b.N {
			start := time.Now()
			cs := benchConnect(b, url)
			res, err := cs.ListTools(ctx, nil)
			lat = append(lat, time.Since(start))
			if err != nil || len(res.Tools) != benchTools+1 {
				b.Fatalf("list: %v", err)
			}
			cs.Close()
		}
		b.StopTimer()
		lat.report(b)
	})
}
