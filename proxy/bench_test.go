package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The benchmarks measure what the proxy adds on loopback Streamable HTTP:
// each runs the same operations direct, through a floor (a bare reverse
// proxy) and proxied, taking turns within one run (benchPaths), and
// reports all three side by side.
//
//	go test -run '^$' -bench . -benchtime 2s -count 3 ./proxy/ | tee new.txt
//
// p50-ms and p99-ms are per-operation latencies; calls/s is the
// throughput of parallel clients; ns/op is the mean of a round (one
// operation on each path). The client, the proxy and the upstream share
// the machine's cores, as on a developer's laptop.

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
	// Its pool keeps a connection per client, as a reverse proxy in front
	// of 16 clients would be configured to; the default two made it
	// reconnect under load, which the proxy, a session per client, does not.
	floorTransport := http.DefaultTransport.(*http.Transport).Clone()
	floorTransport.MaxIdleConnsPerHost = 64
	b.Cleanup(floorTransport.CloseIdleConnections)
	rp.Transport = floorTransport
	rp.FlushInterval = -1 // stream SSE at once, as an MCP relay must
	// A client closing its GET stream makes the floor log the cut copy
	// on the default logger, in the middle of a benchmark's result line
	// (which benchstat then cannot read); a real failure fails a call.
	rp.ErrorLog = log.New(io.Discard, "", 0)
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

// benchConnect connects one client with an HTTP transport of its own, as
// each agent is a process of its own. Sessions sharing the default
// transport, which keeps two idle connections per host, made 16 parallel
// clients open a new connection for about every fourth call, on every
// path, and the benchmark measured connection set-up as much as the hop.
func benchConnect(b *testing.B, url string) *mcp.ClientSession {
	b.Helper()
	hc := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	b.Cleanup(hc.CloseIdleConnections)
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil).Connect(context.Background(),
		&mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1, HTTPClient: hc}, nil)
	if err != nil {
		b.Fatalf("connecting to %s: %v", url, err)
	}
	return cs
}

// latencies records each operation's duration.
type latencies []time.Duration

// pct is the p-th quantile in milliseconds.
func (l latencies) pct(p float64) float64 {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return float64(s[min(len(s)-1, int(float64(len(s))*p))]) / float64(time.Millisecond)
}

// paths are the three ways to the upstream every benchmark compares.
var paths = [3]string{"direct", "floor", "proxied"}

func (p benchPair) urls() [3]string { return [3]string{p.direct, p.floor, p.proxied} }

// benchPaths runs one operation on the three paths in turn, round after
// round, so that a machine that slows down or speeds up does so for all
// three alike: the VM these run on swings by half within minutes, and
// sub-benchmarks run one after another measured its swings as often as
// the proxy. setup makes a path's operation; a round is one operation on
// each path, in an order that rotates. It reports each path's p50 and
// p99 and the proxy's p50 against direct, added and as a ratio.
func benchPaths(b *testing.B, setup func(b *testing.B, url string) func() error) {
	p := newBenchPair(b)
	var ops [3]func() error
	for k, url := range p.urls() {
		ops[k] = setup(b, url)
	}
	var lat [3]latencies
	b.ResetTimer()
	for i := range b.N {
		for j := range 3 {
			k := (i + j) % 3
			start := time.Now()
			err := ops[k]()
			lat[k] = append(lat[k], time.Since(start))
			if err != nil {
				b.Fatalf("%s: %v", paths[k], err)
			}
		}
	}
	b.StopTimer()
	for k, name := range paths {
		b.ReportMetric(lat[k].pct(0.50), name+"-p50-ms")
		b.ReportMetric(lat[k].pct(0.99), name+"-p99-ms")
	}
	b.ReportMetric(lat[2].pct(0.50)-lat[0].pct(0.50), "added-p50-ms")
	b.ReportMetric(lat[2].pct(0.50)/lat[0].pct(0.50), "proxied/direct")
}

// callOp is one tools/call on a session of its own, closed with the
// benchmark.
func callOp(b *testing.B, url string, params *mcp.CallToolParams, want func(*mcp.CallToolResult) bool) func() error {
	cs := benchConnect(b, url)
	b.Cleanup(func() { cs.Close() })
	return func() error {
		res, err := cs.CallTool(context.Background(), params)
		if err == nil && !want(res) {
			err = fmt.Errorf("unexpected result %+v", res)
		}
		return err
	}
}

// BenchmarkToolsCall: one client calling echo, one call at a time.
func BenchmarkToolsCall(b *testing.B) {
	params := &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "the quick brown fox"}}
	benchPaths(b, func(b *testing.B, url string) func() error {
		return callOp(b, url, params, func(r *mcp.CallToolResult) bool { return !r.IsError })
	})
}

// BenchmarkToolsCallParallel: 16 clients (one session each) calling echo
// at once through one proxy; calls/s is the throughput. The paths take
// turns in 200 ms phases (the same machine-drift argument as benchPaths):
// each path's rate is its calls over the time of its own phases. A phase
// ends only once the calls started in it have ended (turn is a
// read-write lock the calls hold for reading), so no call's time is
// spent in another path's phase: a call still running on one path would
// otherwise be counted for it while delaying the next.
func BenchmarkToolsCallParallel(b *testing.B) {
	const clients, phase = 16, 200 * time.Millisecond
	p := newBenchPair(b)
	var sessions [3][clients]*mcp.ClientSession
	for k, url := range p.urls() {
		for i := range clients {
			sessions[k][i] = benchConnect(b, url)
			b.Cleanup(func() { sessions[k][i].Close() })
		}
	}
	params := &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "the quick brown fox"}}
	var (
		turn    sync.RWMutex // held for reading by each call, for writing to change phase
		current int          // the path whose phase it is; guarded by turn
		calls   [3]atomic.Int64
		elapsed [3]time.Duration // written by the clock only
		next    atomic.Int64
	)
	stop, clockDone := make(chan struct{}), make(chan struct{})
	start := time.Now()
	go func() {
		defer close(clockDone)
		t := time.NewTicker(phase)
		defer t.Stop()
		for {
			select {
			case <-stop:
				elapsed[current] += time.Since(start) // every call has ended
				return
			case <-t.C:
				turn.Lock() // waits out the phase's calls, holds new ones
				now := time.Now()
				elapsed[current] += now.Sub(start)
				current, start = (current+1)%3, now
				turn.Unlock()
			}
		}
	}()
	b.SetParallelism((clients + 1) / 2) // 2 cores: 16 goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)-1) % clients
		for pb.Next() {
			turn.RLock()
			k := current
			res, err := sessions[k][i].CallTool(context.Background(), params)
			turn.RUnlock()
			if err != nil || res.IsError {
				b.Errorf("%s call: %+v %v", paths[k], res, err)
				return
			}
			calls[k].Add(1)
		}
	})
	b.StopTimer()
	close(stop)
	<-clockDone
	var rate [3]float64
	for k, name := range paths {
		if elapsed[k] > 0 {
			rate[k] = float64(calls[k].Load()) / elapsed[k].Seconds()
		}
		b.ReportMetric(rate[k], name+"-calls/s")
	}
	if rate[0] > 0 {
		b.ReportMetric(100*rate[1]/rate[0], "floor-%-of-direct")
		b.ReportMetric(100*rate[2]/rate[0], "proxied-%-of-direct")
	}
}

// BenchmarkToolsList50: tools/list of 50 approved tools. Through the proxy
// every listing is a full upstream listing, recorded, then filtered.
func BenchmarkToolsList50(b *testing.B) {
	benchPaths(b, func(b *testing.B, url string) func() error {
		cs := benchConnect(b, url)
		b.Cleanup(func() { cs.Close() })
		return func() error {
			res, err := cs.ListTools(context.Background(), nil)
			if err == nil && len(res.Tools) != benchTools+1 {
				err = fmt.Errorf("%d tools", len(res.Tools))
			}
			return err
		}
	})
}

// BenchmarkToolsCall64KiB: one client calling page, whose result is 64 KiB
// of text that the proxy's result rules read in full.
func BenchmarkToolsCall64KiB(b *testing.B) {
	params := &mcp.CallToolParams{Name: "page", Arguments: map[string]any{}}
	benchPaths(b, func(b *testing.B, url string) func() error {
		return callOp(b, url, params, func(r *mcp.CallToolResult) bool { return !r.IsError && len(r.Content) == 1 })
	})
}

// BenchmarkSessionStart: a client connects (initialize, initialized),
// lists the tools once and leaves, as an agent does on start.
func BenchmarkSessionStart(b *testing.B) {
	benchPaths(b, func(b *testing.B, url string) func() error {
		return func() error {
			cs := benchConnect(b, url)
			defer cs.Close()
			res, err := cs.ListTools(context.Background(), nil)
			if err == nil && len(res.Tools) != benchTools+1 {
				err = fmt.Errorf("%d tools", len(res.Tools))
			}
			return err
		}
	})
}
