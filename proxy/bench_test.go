package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/sync/errgroup"
)

// The benchmarks measure what the proxy adds on loopback Streamable HTTP:
// each runs the same operations direct, through a relay (a byte copier),
// through a floor (a bare reverse proxy), proxied (/mcp/<server>) and
// through the gateway (/mcp, the one endpoint for every server), taking
// turns within one run, and reports them side by side.
//
//	go test -run '^$' -bench . -benchtime 2s -count 3 ./proxy/ | tee new.txt
//
// The three parties are processes of their own, as deployed: the upstream
// and the clients are this test binary re-executed (benchChild), and this
// process holds the proxy (both endpoints), the relay and the floor. So
// each collects its own garbage (the go-sdk's clients and servers allocate
// about a quarter of a megabyte a call, which in one process set the pace
// of the collector the proxy ran under), and this process's CPU is the
// proxy's and the relay's and floor's alone. They still share the machine's cores, as on a
// developer's laptop.
//
// p50-ms and p99-ms are per-operation latencies; calls/s is the
// throughput of parallel clients; ns/op is the mean of a round (one
// operation on each path).

// benchTools is the size of the upstream's tool list: the 50.
const benchTools = 50

// benchRole, set in a re-executed test binary's environment, makes it a
// party to a benchmark instead of running tests: "upstream" or "driver".
const benchRole = "RUGWATCH_PROXY_BENCH"

// benchChild runs the party benchRole names and returns its exit code.
func benchChild(role string) int {
	var err error
	if cpu := os.Getenv(benchRole + "_CPU"); cpu != "" {
		var n int
		if n, err = strconv.Atoi(cpu); err == nil {
			_, err = pinProcess(n)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench %s: pinning to CPU %s: %v\n", role, cpu, err)
			return 1
		}
	}
	switch role {
	case "upstream":
		err = serveBenchUpstream()
	case "driver":
		err = runBenchDriver()
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", role, err)
		return 1
	}
	return 0
}

// newBenchServer is a go-sdk server with echo and 49 more tools of
// realistic size, and page.
func newBenchServer() *mcp.Server {
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
	return srv
}

// serveBenchUpstream serves newBenchServer over Streamable HTTP on a
// loopback port, prints its URL and serves until its standard input
// closes, which it does when the benchmark ends or dies. Each line "cpu"
// on its standard input it answers with the CPU time it has used, in
// nanoseconds.
func serveBenchUpstream() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := newBenchServer()
	hs := &http.Server{Handler: mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil),
		ReadHeaderTimeout: time.Minute}
	go hs.Serve(ln) //nolint:errcheck // ends with the process
	fmt.Printf("http://%s\n", ln.Addr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() != "cpu" {
			return fmt.Errorf("unknown request %q", in.Text())
		}
		t, err := cpuTime()
		if err != nil {
			return err
		}
		fmt.Println(int64(t))
	}
	return in.Err()
}

// benchPage is 64 KiB of honest page text: prose, links, an address, a
// little non-Latin script and numbers, nothing any rule should flag.
func benchPage() string {
	para := "The quarterly report lists revenue by region; see https://example.com/reports/q3 for the full tables. " +
		"Contact sales@example.com with questions. Привет from the Moscow office: 1,234 units shipped in week 42.\n"
	return strings.Repeat(para, 64*1024/len(para)+1)[:64*1024]
}

// benchProc is a re-executed party: its standard input, its standard
// output read a line at a time, and stop.
type benchProc struct {
	in   io.WriteCloser
	out  *bufio.Scanner
	stop func()
}

// startBench re-executes this test binary as role, with env added. Its
// stop, called by the benchmark or when it ends, closes the party's
// standard input (which ends the upstream; a driver ends by itself) and
// kills one that has not ended 10 s later.
func startBench(b *testing.B, role string, env ...string) benchProc {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), benchRole+"="+role), env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	stop := sync.OnceFunc(func() {
		in.Close()
		t := time.AfterFunc(10*time.Second, func() { cmd.Process.Kill() })
		defer t.Stop()
		cmd.Wait() //nolint:errcheck // a failure was reported on stderr
	})
	b.Cleanup(stop)
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 64<<20)
	return benchProc{in: in, out: sc, stop: stop}
}

// cpu is the CPU time the upstream party has used so far.
func (p benchProc) cpu(b *testing.B) time.Duration {
	b.Helper()
	if _, err := io.WriteString(p.in, "cpu\n"); err != nil {
		b.Fatal(err)
	}
	n, err := strconv.ParseInt(p.line(b), 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return time.Duration(n)
}

// line is the party's next line of output.
func (p benchProc) line(b *testing.B) string {
	b.Helper()
	if !p.out.Scan() {
		b.Fatalf("a benchmark party ended early (%v); its error is above", p.out.Err())
	}
	return p.out.Text()
}

// benchPair is one upstream with every tool approved, and the URLs of it
// directly, through the relay, through the floor and through proxy_listen,
// as its server's endpoint and as the gateway's only server.
type benchPair struct {
	direct, relay, floor, proxied, gateway string
	up                                     benchProc
}

// newBenchPair starts the upstream with env added to its environment.
func newBenchPair(b *testing.B, env ...string) benchPair {
	b.Helper()
	up := startBench(b, "upstream", env...)
	r := newRigWith(b, &upstream{url: up.line(b)})
	// As in serve: the daemon keeps an approvals generation that moves
	// with every write, and the proxy asks it before each call.
	var gen atomic.Uint64
	gen.Store(1)
	r.ledger.Gen = gen.Load
	r.ledger.AfterWrite = func(context.Context) error { gen.Add(1); return nil }
	r.ledger.AfterNotice = func(context.Context) error { return nil }
	options := func() Options {
		o := r.options(ResultsFlag)
		// As configured in production: the rig's 20ms re-read would
		// spend the benchmark's CPU verifying 50 signatures.
		o.Refresh = 500 * time.Millisecond
		return o
	}
	h := &HTTP{
		Options: func(server string) (Options, bool) { return options(), server == "up" },
		Gateway: func() (GatewayOptions, bool) { return GatewayOptions{Servers: []Options{options()}}, true },
		// The 16 clients are 16 agents, each a client of its own (with a
		// token of its own, in production); here they share one address,
		// and hold a session at each endpoint.
		MaxSessionsPerClient: 4 * parallelClients,
	}
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
	// Go's HTTP/1 server ends a request body's reads once the response
	// has begun, and the transport's last read of it (the one that finds
	// its end) can come after the upstream's response headers, which the
	// floor then passes on at once: the transport fails the request and
	// cuts the response. Full duplex lets the body be read to its end.
	floor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	b.Cleanup(floor.Close)
	p := benchPair{direct: r.up.url, relay: startRelay(b, r.up.url), floor: floor.URL, proxied: srv.URL + "/mcp/up",
		gateway: srv.URL + gatewayPath, up: up}

	// The first listing through the proxy records every tool (pending);
	// approve them all, as `rugwatch approve up --all` would.
	cs, closeCS, err := benchConnect(p.proxied)
	if err != nil {
		b.Fatal(err)
	}
	defer closeCS()
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

// startRelay starts the relay in front of the upstream at url and returns
// the relay's URL: a process in the path that copies bytes both ways and
// knows nothing of HTTP, the least any party in between can cost. The
// floor's and the proxy's distance from it is what HTTP and MCP cost
// them; its own distance from direct is the machine's (loopback TCP and
// waking one more process), which no proxy can win back.
func startRelay(b *testing.B, upURL string) string {
	b.Helper()
	u, err := url.Parse(upURL)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var (
		mu     sync.Mutex
		conns  []net.Conn
		closed bool
		wg     sync.WaitGroup
	)
	// track keeps c to close at cleanup, or closes it now if that began.
	track := func(c net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			c.Close()
			return
		}
		conns = append(conns, c)
	}
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			track(c)
			up, err := net.Dial("tcp", u.Host)
			if err != nil {
				c.Close()
				continue
			}
			track(up)
			// Each direction ends by closing both, so neither copy
			// outlives its peer.
			wg.Go(func() { _, _ = io.Copy(up, c); up.Close(); c.Close() })
			wg.Go(func() { _, _ = io.Copy(c, up); up.Close(); c.Close() })
		}
	})
	return "http://" + ln.Addr().String() + u.Path
}

// benchConnect connects one client with an HTTP transport of its own, as
// each agent is a process of its own. Sessions sharing the default
// transport, which keeps two idle connections per host, made 16 parallel
// clients open a new connection for about every fourth call, on every
// path, and the benchmark measured connection set-up as much as the hop.
func benchConnect(url string) (*mcp.ClientSession, func(), error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil).Connect(context.Background(),
		&mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1, HTTPClient: &http.Client{Transport: tr}}, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to %s: %w", url, err)
	}
	return cs, func() { cs.Close(); tr.CloseIdleConnections() }, nil
}

// paths are the ways to the upstream every benchmark compares, in the
// order of urls and of a driverRun's arrays.
var paths = [...]string{pathDirect: "direct", pathRelay: "relay", pathFloor: "floor", pathProxied: "proxied", pathGateway: "gateway"}

const (
	pathDirect = iota
	pathRelay
	pathFloor
	pathProxied
	pathGateway
)

func (p benchPair) urls() []string { return []string{p.direct, p.relay, p.floor, p.proxied, p.gateway} }

// driverRun is what the driver measured: each round's operation on each
// path, or for "parallel" each path's calls and the time of its phases.
type driverRun struct {
	Lat     [len(paths)][]time.Duration `json:"lat,omitempty"`
	Calls   [len(paths)]int64           `json:"calls,omitempty"`
	Seconds [len(paths)]float64         `json:"seconds,omitempty"`
	CPU     time.Duration               `json:"cpu"` // the driver's, while it measured
	Err     string                      `json:"err,omitempty"`
}

// drive runs n rounds of op (see driverOps) on the paths urls names (in
// the order of paths) in a driver process with env added to its
// environment, and returns what it measured.
func drive(b *testing.B, urls []string, op string, n int, env ...string) driverRun {
	b.Helper()
	d := startDriver(b, urls, op, n, env...)
	defer d.p.stop()
	return d.run(b)
}

// driver is a driver process that has connected and is ready to measure.
type driver struct{ p benchProc }

// startDriver starts the driver of drive and waits until it is ready.
func startDriver(b *testing.B, urls []string, op string, n int, env ...string) driver {
	b.Helper()
	d := startBench(b, "driver", append([]string{benchRole + "_OP=" + op, benchRole + "_N=" + strconv.Itoa(n),
		benchRole + "_URLS=" + strings.Join(urls, " ")}, env...)...)
	if l := d.line(b); l != "ready" {
		b.Fatalf("driver: %s", l)
	}
	return driver{d}
}

// run has the driver measure and returns what it measured; the driver
// keeps its sessions until d.p.stop. The timer, stopped by the caller,
// runs only while the driver measures, not while it starts and connects.
func (d driver) run(b *testing.B) driverRun {
	b.Helper()
	b.StartTimer()
	if _, err := io.WriteString(d.p.in, "go\n"); err != nil {
		b.Fatal(err)
	}
	l := d.p.line(b)
	b.StopTimer()
	var run driverRun
	if err := json.Unmarshal([]byte(l), &run); err != nil {
		b.Fatalf("driver: %v: %s", err, l)
	}
	if run.Err != "" {
		b.Fatalf("driver: %s", run.Err)
	}
	return run
}

// runBenchDriver is the clients' process: it connects to the paths, says
// ready, waits for go, measures and prints a driverRun, and closes its
// sessions only when its standard input closes, so that their ending is
// no part of what the benchmark samples.
func runBenchDriver() error {
	op := os.Getenv(benchRole + "_OP")
	n, err := strconv.Atoi(os.Getenv(benchRole + "_N"))
	if err != nil {
		return fmt.Errorf("%s_N: %w", benchRole, err)
	}
	urls := strings.Fields(os.Getenv(benchRole + "_URLS"))
	if len(urls) == 0 || len(urls) > len(paths) {
		return fmt.Errorf("%s_URLS: want one to %d URLs, have %q", benchRole, len(paths), urls)
	}
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	var measure func() (driverRun, error)
	if op == "parallel" {
		measure, err = parallelCalls(urls, n, &closers)
	} else {
		measure, err = rounds(op, urls, n, &closers)
	}
	if err != nil {
		return err
	}
	fmt.Println("ready")
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		return err
	}
	before, err := cpuTime()
	if err != nil {
		return err
	}
	run, err := measure()
	after, cerr := cpuTime()
	run.CPU = after - before
	if err = errors.Join(err, cerr); err != nil {
		run = driverRun{Err: err.Error()}
	}
	if err := json.NewEncoder(os.Stdout).Encode(run); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, in)
	return err
}

// driverOps are the operations a round can time, each made for one URL;
// what they open is added to closers.
var driverOps = map[string]func(url string, closers *[]func()) (func() error, error){
	// One client calling echo, one call at a time.
	"call": func(url string, closers *[]func()) (func() error, error) {
		return callOp(url, closers, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "the quick brown fox"}},
			func(r *mcp.CallToolResult) bool { return !r.IsError })
	},
	// One client calling page, whose result is 64 KiB of text that the
	// proxy's result rules read in full.
	"page": func(url string, closers *[]func()) (func() error, error) {
		return callOp(url, closers, &mcp.CallToolParams{Name: "page", Arguments: map[string]any{}},
			func(r *mcp.CallToolResult) bool { return !r.IsError && len(r.Content) == 1 })
	},
	// tools/list of 50 approved tools. Through the proxy every listing is
	// a full upstream listing, recorded, then filtered.
	"list": func(url string, closers *[]func()) (func() error, error) {
		cs, closeCS, err := benchConnect(url)
		if err != nil {
			return nil, err
		}
		*closers = append(*closers, closeCS)
		return func() error { return listAll(cs) }, nil
	},
	// A client connects (initialize, initialized), lists the tools once
	// and leaves, as an agent does on start.
	"start": func(url string, _ *[]func()) (func() error, error) {
		return func() error {
			cs, closeCS, err := benchConnect(url)
			if err != nil {
				return err
			}
			defer closeCS()
			return listAll(cs)
		}, nil
	},
}

// listAll lists the tools and checks that all of them came.
func listAll(cs *mcp.ClientSession) error {
	res, err := cs.ListTools(context.Background(), nil)
	if err == nil && len(res.Tools) != benchTools+1 {
		err = fmt.Errorf("%d tools", len(res.Tools))
	}
	return err
}

// callOp is one tools/call on a session of its own.
func callOp(url string, closers *[]func(), params *mcp.CallToolParams, want func(*mcp.CallToolResult) bool) (func() error, error) {
	cs, closeCS, err := benchConnect(url)
	if err != nil {
		return nil, err
	}
	*closers = append(*closers, closeCS)
	return func() error {
		res, err := cs.CallTool(context.Background(), params)
		if err == nil && !want(res) {
			err = fmt.Errorf("unexpected result %+v", res)
		}
		return err
	}, nil
}

// rounds times n rounds of op, one operation on each path per round in an
// order that rotates, so that a machine that slows down or speeds up does
// so for all paths alike: the VM these run on swings by half within
// minutes, and sub-benchmarks run one after another measured its swings
// as often as the proxy.
func rounds(op string, urls []string, n int, closers *[]func()) (func() (driverRun, error), error) {
	setup, ok := driverOps[op]
	if !ok {
		return nil, fmt.Errorf("unknown operation %q", op)
	}
	ops := make([]func() error, len(urls))
	for k, url := range urls {
		var err error
		if ops[k], err = setup(url, closers); err != nil {
			return nil, err
		}
		// One before the clock: what only a first operation pays (a
		// connection, the proxy's lazily dialled upstream) is no round's.
		if err := ops[k](); err != nil {
			return nil, fmt.Errorf("%s: %w", url, err)
		}
	}
	return func() (driverRun, error) {
		var run driverRun
		for i := range n {
			for j := range ops {
				k := (i + j) % len(ops)
				start := time.Now()
				err := ops[k]()
				run.Lat[k] = append(run.Lat[k], time.Since(start))
				if err != nil {
					return run, fmt.Errorf("%s: %w", urls[k], err)
				}
			}
		}
		return run, nil
	}, nil
}

// benchRounds runs op's rounds and reports each path's p50 and p99 and
// the proxy's p50 against direct, added and as a ratio.
func benchRounds(b *testing.B, op string) {
	b.StopTimer()
	run := drive(b, newBenchPair(b).urls(), op, b.N)
	var p50 [len(paths)]float64
	for k, name := range paths {
		p50[k] = pct(run.Lat[k], 0.50)
		b.ReportMetric(p50[k], name+"-p50-ms")
		b.ReportMetric(pct(run.Lat[k], 0.99), name+"-p99-ms")
	}
	b.ReportMetric(p50[pathProxied]-p50[pathDirect], "added-p50-ms")
	b.ReportMetric(p50[pathRelay]-p50[pathDirect], "relay-added-p50-ms")
	b.ReportMetric(p50[pathProxied]/p50[pathDirect], "proxied/direct")
	b.ReportMetric(p50[pathGateway]/p50[pathDirect], "gateway/direct")
}

// pct is the p-th quantile of l in milliseconds.
func pct(l []time.Duration, p float64) float64 {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return float64(s[min(len(s)-1, int(float64(len(s))*p))]) / float64(time.Millisecond)
}

// BenchmarkToolsCall: one client calling echo, one call at a time.
func BenchmarkToolsCall(b *testing.B) { benchRounds(b, "call") }

// BenchmarkToolsList50: tools/list of 50 approved tools.
func BenchmarkToolsList50(b *testing.B) { benchRounds(b, "list") }

// BenchmarkToolsCall64KiB: a tools/call whose result is 64 KiB of text.
func BenchmarkToolsCall64KiB(b *testing.B) { benchRounds(b, "page") }

// BenchmarkSessionStart: connect, list once, leave.
func BenchmarkSessionStart(b *testing.B) { benchRounds(b, "start") }

// parallelClients is how many clients call at once, a session each.
const parallelClients = 16

// parallelCalls makes n echo calls from 16 clients (one session each) on
// each path in turn, in 200 ms phases (the same machine-drift argument as
// rounds): each path's rate is its calls over the time of its own phases.
// A phase ends only once the calls started in it have ended (turn is a
// read-write lock the calls hold for reading), so no call's time is spent
// in another path's phase: a call still running on one path would
// otherwise be counted for it while delaying the next.
func parallelCalls(urls []string, n int, closers *[]func()) (func() (driverRun, error), error) {
	const phase = 200 * time.Millisecond
	calls := make([][parallelClients]func() error, len(urls))
	for k, url := range urls {
		for i := range parallelClients {
			var err error
			if calls[k][i], err = driverOps["call"](url, closers); err != nil {
				return nil, err
			}
			if err := calls[k][i](); err != nil { // before the clock, as in rounds
				return nil, fmt.Errorf("%s: %w", url, err)
			}
		}
	}
	return func() (driverRun, error) {
		var (
			turn    sync.RWMutex // held for reading by each call, for writing to change phase
			current int          // the path whose phase it is; guarded by turn
			count   [len(paths)]atomic.Int64
			elapsed [len(paths)]time.Duration // written by the clock only
			left    atomic.Int64
			g       errgroup.Group
		)
		left.Store(int64(n))
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
					current, start = (current+1)%len(urls), now
					turn.Unlock()
				}
			}
		}()
		for i := range parallelClients {
			g.Go(func() error {
				for left.Add(-1) >= 0 {
					turn.RLock()
					k := current
					err := calls[k][i]()
					turn.RUnlock()
					if err != nil {
						return fmt.Errorf("%s call: %w", urls[k], err)
					}
					count[k].Add(1)
				}
				return nil
			})
		}
		err := g.Wait()
		close(stop)
		<-clockDone
		var run driverRun
		for k := range urls {
			run.Calls[k], run.Seconds[k] = count[k].Load(), elapsed[k].Seconds()
		}
		return run, err
	}, nil
}

// BenchmarkToolsCallParallel: 16 clients calling echo at once through one
// proxy; calls/s is each path's throughput.
func BenchmarkToolsCallParallel(b *testing.B) {
	b.StopTimer()
	reportRates(b, drive(b, newBenchPair(b).urls(), "parallel", b.N))
}

// BenchmarkToolsCallParallelPinned is BenchmarkToolsCallParallel with the
// proxy (and the relay and the floor) on a core of their own: the clients and the
// upstream run on CPU 0, this process on CPU 1, so the direct path has
// one core and the others one core and a hop. It answers what the shared
// benchmark cannot: whether the proxy's own throughput holds the calls
// back when it does not take its cycles from the agents and the servers.
func BenchmarkToolsCallParallelPinned(b *testing.B) {
	if runtime.NumCPU() < 2 {
		b.Skip("needs two cores")
	}
	b.StopTimer()
	restore, err := pinProcess(1)
	if err != nil {
		b.Skipf("cannot pin this process to CPU 1: %v", err)
	}
	b.Cleanup(func() {
		if err := restore(); err != nil {
			b.Error(err)
		}
	})
	cpu0 := benchRole + "_CPU=0"
	reportRates(b, drive(b, newBenchPair(b, cpu0).urls(), "parallel", b.N, cpu0))
}

// reportRates reports the calls/s of a parallel run, each path's and the
// floor's and the proxy's as a share of direct's.
func reportRates(b *testing.B, run driverRun) {
	var rate [len(paths)]float64
	for k, name := range paths {
		if run.Seconds[k] > 0 {
			rate[k] = float64(run.Calls[k]) / run.Seconds[k]
		}
		b.ReportMetric(rate[k], name+"-calls/s")
	}
	if direct := rate[pathDirect]; direct > 0 {
		for _, k := range []int{pathRelay, pathFloor, pathProxied, pathGateway} {
			b.ReportMetric(100*rate[k]/direct, paths[k]+"-%-of-direct")
		}
	}
}

// BenchmarkToolsCallCPU: the CPU time a call costs on each path, 16 clients
// calling echo as in BenchmarkToolsCallParallel, each path alone with its
// own upstream so that each process's time is that path's: the clients',
// the upstream's and, on the other paths, the time of
// the process in between (this one, whose time for the direct path, where it
// only waits, is the measurement's floor). The paths take turns in five
// chunks, for the machine-drift argument of rounds. On a machine the
// three share, busy to the last core, calls/s go as the inverse of the
// total: direct/proxied-% is the share of direct's calls/s the proxy can
// reach there, direct/floor-% the share any HTTP hop can, and
// direct/relay-% the share any process in between can.
func BenchmarkToolsCallCPU(b *testing.B) {
	const chunks = 5
	b.StopTimer()
	var (
		pairs [len(paths)]benchPair
		total [len(paths)]time.Duration
		hop   [len(paths)]time.Duration
	)
	for k := range paths {
		pairs[k] = newBenchPair(b)
	}
	for c := range chunks {
		n := b.N / chunks
		if c == chunks-1 {
			n = b.N - n*(chunks-1)
		}
		if n == 0 {
			continue
		}
		for j := range paths {
			k := (c + j) % len(paths)
			d := startDriver(b, pairs[k].urls()[k:k+1], "parallel", n)
			up, self := pairs[k].up.cpu(b), selfCPU(b)
			run := d.run(b)
			self = selfCPU(b) - self
			up = pairs[k].up.cpu(b) - up
			d.p.stop()
			total[k] += run.CPU + up + self
			hop[k] += self
		}
	}
	perCall := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(b.N) }
	for k, name := range paths {
		b.ReportMetric(perCall(total[k]), name+"-cpu-µs/call")
		b.ReportMetric(perCall(hop[k]), name+"-hop-µs/call")
	}
	for _, k := range []int{pathRelay, pathFloor, pathProxied, pathGateway} {
		b.ReportMetric(100*float64(total[pathDirect])/float64(total[k]), "direct/"+paths[k]+"-%")
	}
}

// selfCPU is the CPU time this process has used.
func selfCPU(b *testing.B) time.Duration {
	t, err := cpuTime()
	if err != nil {
		b.Fatal(err)
	}
	return t
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
