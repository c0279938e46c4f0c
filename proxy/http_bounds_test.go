package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The bounds of proxy_listen (issue 24), each attacked from outside the
// way the issue measured it, and each shown to matter by the same attack
// succeeding with the bound lifted.

const (
	initBody   = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
	hugeBody   = 16 << 20
	hugePrefix = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"`
)

// boundedProxy serves the rig's server like proxyHTTP, with mod applied
// before Start, behind a handler that reports how many body bytes the
// proxy read of each request marked X-Count-Body.
func (r *rig) boundedProxy(mod func(*HTTP)) (*httptest.Server, *HTTP, <-chan int64) {
	r.t.Helper()
	h := &HTTP{Options: func(server string) (Options, bool) {
		if server != "up" {
			return Options{}, false
		}
		return r.options(ResultsFlag), true
	}}
	if mod != nil {
		mod(h)
	}
	reads := make(chan int64, 16)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get("X-Count-Body") == "" {
			h.ServeHTTP(w, req)
			return
		}
		body := &countingReader{r: req.Body}
		req.Body = struct {
			io.Reader
			io.Closer
		}{body, req.Body}
		h.ServeHTTP(w, req)
		reads <- body.n.Load()
	}))
	srv.Start()
	h.Hosts = LoopbackHosts(srv.Listener.Addr())
	h.Start(context.Background())
	r.t.Cleanup(func() { srv.Close(); h.Close() })
	return srv, h, reads
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// as is an endless run of 'A'.
type as struct{}

func (as) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'A'
	}
	return len(p), nil
}

func dialSDK(t *testing.T, endpoint string, standaloneSSE bool) *mcp.ClientSession {
	t.Helper()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "bounds", Version: "1"}, nil).Connect(context.Background(),
		&mcp.StreamableClientTransport{Endpoint: endpoint, DisableStandaloneSSE: !standaloneSSE}, nil)
	if err != nil {
		t.Fatalf("connect to %s: %v", endpoint, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// raw sends one request the way a hand-written client would; session and
// hdr (pairs) are optional. It returns the status and body, or the
// transport's error.
func raw(client *http.Client, method, url, session string, body io.Reader, hdr ...string) (int, string, error) {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// rawSession opens a session by hand and returns its id: no GET stream is
// ever opened on it.
func rawSession(t *testing.T, client *http.Client, url string, hdr ...string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(initBody))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("initialize: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || id == "" {
		t.Fatalf("initialize: %d %s", resp.StatusCode, b)
	}
	if c, body, err := raw(client, http.MethodPost, url, id, strings.NewReader(`{"jsonrpc":"2.0","method":"notifications/initialized"}`), hdr...); err != nil || c != http.StatusAccepted {
		t.Fatalf("initialized: %d %s %v", c, body, err)
	}
	return id
}

func ping(t *testing.T, url, session string) {
	t.Helper()
	c, body, err := raw(nil, http.MethodPost, url, session, strings.NewReader(`{"jsonrpc":"2.0","id":2,"method":"ping"}`))
	if err != nil || c != http.StatusOK || !strings.Contains(body, `"result"`) {
		t.Fatalf("ping in session %s: %d %s %v", session, c, body, err)
	}
}

// waitSessions waits for h to hold n sessions, woken by each change.
func waitSessions(t *testing.T, h *HTTP, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		got, changed := h.watchSessions()
		if got == n {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%d sessions after 10s, want %d", got, n)
		}
	}
}

// waitFor waits for cond, re-checked on a short ticker, for at most 10s:
// for state that signals nothing (another process's, the SDK's).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("still not %s after 10s", what)
		}
	}
}

func upstreamSessions(r *rig) int {
	n := 0
	for range r.up.srv.Sessions() {
		n++
	}
	return n
}

// postHuge POSTs 16 MiB (a tools/call cut off nowhere, streamed with no
// declared length) into session, and returns the status (0: the transport
// gave up), what the client sent and what the proxy read.
func postHuge(t *testing.T, url, session string, reads <-chan int64) (status int, sent, read int64, body string) {
	t.Helper()
	src := &countingReader{r: io.MultiReader(strings.NewReader(hugePrefix), io.LimitReader(as{}, hugeBody-int64(len(hugePrefix))))}
	status, body, err := raw(nil, http.MethodPost, url, session, src, "X-Count-Body", "1")
	if err != nil {
		t.Logf("16 MiB POST: %v", err)
	}
	select {
	case read = <-reads:
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy never finished the 16 MiB POST")
	}
	return status, src.n.Load(), read, body
}

// TestHTTPBodyCapStopsReadingAtTheCap: a 16 MiB POST into an open session
// (issue 24: 400 MiB took the daemon to 3.7 GB) is refused with 413 after
// the proxy read the cap of it, and the session lives on, for a raw client
// and for the go-sdk's; with the cap lifted the same POST is read whole.
func TestHTTPBodyCapStopsReadingAtTheCap(t *testing.T) {
	const limit = 256 << 10
	r := newRig(t)
	srv, _, reads := r.boundedProxy(func(h *HTTP) { h.MaxBody = limit })
	url := srv.URL + "/mcp/up"
	cs := dialSDK(t, url, true)

	status, sent, read, body := postHuge(t, url, cs.ID(), reads)
	if status != 0 && status != http.StatusRequestEntityTooLarge {
		t.Errorf("16 MiB POST answered %d %s, want 413", status, body)
	}
	if status == http.StatusRequestEntityTooLarge && (!strings.Contains(body, `"id":7`) || !strings.Contains(body, fmt.Sprint(limit))) {
		t.Errorf("413 body %s: want the request's id and the limit", body)
	}
	if read > limit+1 {
		t.Errorf("the proxy read %d bytes of the body, over the %d cap", read, limit)
	}
	if sent >= hugeBody {
		t.Errorf("the client got to send all %d bytes: the connection was not cut", sent)
	}
	t.Logf("cap %d: proxy read %d, client sent %d of %d", limit, read, sent, hugeBody)

	// The go-sdk client's own oversized call fails alone, with the limit
	// named, and its session goes on.
	_, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": strings.Repeat("A", 2*limit)}})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("over the %d-byte limit", limit)) {
		t.Errorf("oversized call through the go-sdk: %v", err)
	}
	if err := cs.Ping(context.Background(), nil); err != nil {
		t.Errorf("the session did not survive the refused bodies: %v", err)
	}

	// The first request is bounded too, before any session exists.
	if c, body, err := raw(nil, http.MethodPost, url, "", io.LimitReader(as{}, 2*limit)); err == nil && c != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized first request: %d %s", c, body)
	}

	// The cap lifted: the same POST is read whole.
	r2 := newRig(t)
	srv2, _, reads2 := r2.boundedProxy(func(h *HTTP) { h.MaxBody = 64 << 20 })
	cs2 := dialSDK(t, srv2.URL+"/mcp/up", false)
	if _, _, read, _ := postHuge(t, srv2.URL+"/mcp/up", cs2.ID(), reads2); read != hugeBody {
		t.Errorf("without the cap the proxy read %d bytes, want all %d (the test cannot fail)", read, hugeBody)
	}
}

// stallBody POSTs half an initialize to url, then nothing until stop;
// done receives nil when the proxy answers 408, else what happened.
func stallBody(t *testing.T, url string, declared bool) (done <-chan error, stop func()) {
	t.Helper()
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPost, url, pr)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if declared {
		req.ContentLength = int64(len(initBody))
	}
	ch := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			if resp.StatusCode != http.StatusRequestTimeout {
				err = fmt.Errorf("answered %d, want 408", resp.StatusCode)
			}
			resp.Body.Close()
		}
		ch <- err
	}()
	if _, err := pw.Write([]byte(initBody[:40])); err != nil {
		t.Fatal(err)
	}
	return ch, func() { pw.CloseWithError(errors.New("test over")) }
}

// TestHTTPSlowBodyIsCut: a body that stops arriving (issue 24: held
// forever) is cut after BodyTimeout, with its length declared or not; the
// same body sent to a proxy without that bound is still being waited for
// once the bounded one gave up.
func TestHTTPSlowBodyIsCut(t *testing.T) {
	r := newRig(t)
	bounded, _, _ := r.boundedProxy(func(h *HTTP) { h.BodyTimeout = 200 * time.Millisecond })
	unbounded, _, _ := r.boundedProxy(func(h *HTTP) { h.BodyTimeout = time.Hour })

	for _, declared := range []bool{false, true} {
		t.Run(fmt.Sprintf("declared=%v", declared), func(t *testing.T) {
			cut, stopCut := stallBody(t, bounded.URL+"/mcp/up", declared)
			defer stopCut()
			held, stopHeld := stallBody(t, unbounded.URL+"/mcp/up", declared)
			defer stopHeld()
			select {
			case err := <-cut:
				// 408, or the connection closed under the client: both end it.
				t.Logf("stalled body with BodyTimeout 200ms: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatal("a stalled body was still held 10s on, BodyTimeout 200ms")
			}
			select {
			case err := <-held:
				t.Errorf("without the bound the stalled request ended too (the test cannot fail): %v", err)
			default:
			}
			stopHeld()
			<-held
		})
	}
}

// TestHTTPBodyTimeoutSparesTheResponse: BodyTimeout bounds the body
// only. A call whose answer streams back for longer than that (the
// server asks the client something mid-call, and the client answers only
// once a stalled body sent meanwhile was cut, so BodyTimeout has passed
// since the call's own body arrived) still completes.
func TestHTTPBodyTimeoutSparesTheResponse(t *testing.T) {
	r := newRig(t)
	srv, _, _ := r.boundedProxy(func(h *HTTP) { h.BodyTimeout = 200 * time.Millisecond })
	url := srv.URL + "/mcp/up"
	copts := &mcp.ClientOptions{ElicitationHandler: func(ctx context.Context, _ *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
		cut, stop := stallBody(t, url, false)
		defer stop()
		select {
		case err := <-cut:
			if err != nil {
				t.Logf("stalled body: %v", err)
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "Ada"}}, nil
	}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "slow-answer", Version: "1"}, copts).Connect(context.Background(),
		&mcp.StreamableClientTransport{Endpoint: url}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	toolNames(t, cs)
	r.approve("ask")
	if got := strings.Join(toolNames(t, cs), ","); got != "ask" {
		t.Fatalf("tools after approval: %s", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ask", Arguments: map[string]any{}})
	if err != nil || res.IsError || res.Content[0].(*mcp.TextContent).Text != "accept:Ada" {
		t.Fatalf("a call answered after BodyTimeout: %+v %v", res, err)
	}
}

// TestHTTPIdleSessionEnds: a session nobody uses for IdleTimeout is ended
// with its upstream (issue 24: sessions never idled out, each holding a
// server), and later requests in it are told the session is unknown;
// meanwhile a session whose client holds its GET stream open lives on.
func TestHTTPIdleSessionEnds(t *testing.T) {
	r := newRig(t)
	srv, h, _ := r.boundedProxy(func(h *HTTP) { h.IdleTimeout = 200 * time.Millisecond })
	url := srv.URL + "/mcp/up"
	quiet := dialSDK(t, url, false)
	// The upstream sessions now: quiet's own, and the server's shared
	// watcher if it has started yet (it starts on its own time, so a count
	// taken later could miss it and then never fall). The watcher lives
	// while any client session does, so the first of these to end is
	// quiet's.
	ended := make(chan struct{}, 8)
	n := 0
	for ss := range r.up.srv.Sessions() {
		n++
		go func() { _ = ss.Wait(); ended <- struct{}{} }()
	}
	if n == 0 {
		t.Fatal("no upstream session for the first client: nothing to show closed")
	}
	listening := dialSDK(t, url, true)
	if err := quiet.Ping(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "holding the GET stream", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		s := h.sessions[listening.ID()]
		return s != nil && s.active > 0
	})
	waitSessions(t, h, 1)
	if got := h.SessionsByServer(); got["up"] != 1 || len(got) != 1 {
		t.Errorf("SessionsByServer = %v", got)
	}
	c, body, err := raw(nil, http.MethodPost, url, quiet.ID(), strings.NewReader(`{"jsonrpc":"2.0","id":3,"method":"ping"}`))
	if err != nil || c != http.StatusNotFound || !strings.Contains(body, "unknown session") {
		t.Errorf("request in the expired session: %d %s %v", c, body, err)
	}
	if err := quiet.Ping(context.Background(), nil); err == nil {
		t.Error("the go-sdk client's expired session still answered")
	}
	if err := listening.Ping(context.Background(), nil); err != nil {
		t.Errorf("the session holding its stream was ended: %v", err)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the expired session's upstream still open after 10s")
	}
	listening.Close()
	waitSessions(t, h, 0)
	waitFor(t, "closing every upstream session", func() bool { return upstreamSessions(r) == 0 })
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// TestHTTPIdleIsNoRequestForIdleTimeout walks a clock through the life of
// three sessions: one that keeps making requests lives for several
// IdleTimeouts, one that makes none ends after one, and one with a GET
// stream open lives while it is open and ends one IdleTimeout after it
// closed.
func TestHTTPIdleIsNoRequestForIdleTimeout(t *testing.T) {
	const idle = time.Hour // the janitor's own ticks (every 30s) find the same
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: t0}
	r := newRig(t)
	srv, h, _ := r.boundedProxy(func(h *HTTP) { h.IdleTimeout = idle; h.now = clock.Now })
	url := srv.URL + "/mcp/up"
	busy, quiet, streaming := rawSession(t, nil, url), rawSession(t, nil, url), rawSession(t, nil, url)

	ctx, closeStream := context.WithCancel(context.Background())
	defer closeStream()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", streaming)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET stream: %v %v", resp, err)
	}
	defer resp.Body.Close()

	alive := func(ids ...string) {
		t.Helper()
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, id := range ids {
			if s := h.sessions[id]; s == nil || s.closing {
				t.Errorf("at %s session %s was ended", clock.Now().Sub(t0), id)
			}
		}
	}
	at := func(f float64) { clock.set(t0.Add(time.Duration(f * float64(idle)))) }

	at(0.9)
	ping(t, url, busy)
	h.sweep(clock.Now())
	alive(busy, quiet, streaming)

	at(1.8)
	ping(t, url, busy)
	h.sweep(clock.Now())
	alive(busy, streaming)
	waitSessions(t, h, 2)
	if c, body, _ := raw(nil, http.MethodPost, url, quiet, strings.NewReader(`{"jsonrpc":"2.0","id":3,"method":"ping"}`)); c != http.StatusNotFound {
		t.Errorf("request in the session idle since 0: %d %s", c, body)
	}

	at(2.7)
	ping(t, url, busy)
	h.sweep(clock.Now())
	alive(busy, streaming) // busy, 2.7 IdleTimeouts old; streaming, with no request but its stream since 0

	closeStream()
	waitFor(t, "seeing the GET stream close", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		s := h.sessions[streaming]
		return s == nil || s.active == 0
	})
	h.sweep(clock.Now())
	alive(busy, streaming) // the stream was open until just now

	at(3.8)
	h.sweep(clock.Now())
	waitSessions(t, h, 0)
}

// TestHTTPSessionsPerClient: one client holds at most MaxSessionsPerClient
// sessions (issue 24: 15 sessions, +30 processes); the next initialize is
// refused with 429 naming the cap, also when the client sends a new bearer
// token each time (none is configured, so none is checked); another
// address still gets one, and so does the client once it ended one. With
// the cap raised the same fourth session opens.
func TestHTTPSessionsPerClient(t *testing.T) {
	r := newRig(t)
	srv, h, _ := r.boundedProxy(func(h *HTTP) { h.MaxSessionsPerClient = 3 })
	url := srv.URL + "/mcp/up"
	var held []*mcp.ClientSession
	for range 3 {
		held = append(held, dialSDK(t, url, true))
	}
	if _, err := mcp.NewClient(&mcp.Implementation{Name: "fourth", Version: "1"}, nil).Connect(context.Background(),
		&mcp.StreamableClientTransport{Endpoint: url}, nil); err == nil {
		t.Error("a fourth go-sdk session opened over MaxSessionsPerClient 3")
	}
	for i := range 3 {
		c, body, err := raw(nil, http.MethodPost, url, "", strings.NewReader(initBody), "Authorization", fmt.Sprintf("Bearer rotated-%d", i))
		if err != nil || c != http.StatusTooManyRequests || !strings.Contains(body, "holds 3 sessions") {
			t.Errorf("initialize over the cap with a fresh bearer: %d %s %v", c, body, err)
		}
	}

	// Another address is another client (Linux answers all of 127/8).
	other := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
	defer other.CloseIdleConnections()
	rawSession(t, other, url)

	held[0].Close()
	waitSessions(t, h, 3)
	dialSDK(t, url, false)

	// The cap raised: the fourth opens.
	r2 := newRig(t)
	srv2, _, _ := r2.boundedProxy(func(h *HTTP) { h.MaxSessionsPerClient = 100 })
	for range 4 {
		rawSession(t, nil, srv2.URL+"/mcp/up")
	}
}

// TestHTTPMaxSessionsStays: the global cap still holds, across clients.
func TestHTTPMaxSessionsStays(t *testing.T) {
	r := newRig(t)
	srv, _, _ := r.boundedProxy(func(h *HTTP) { h.MaxSessions = 1 })
	url := srv.URL + "/mcp/up"
	rawSession(t, nil, url)
	c, body, err := raw(nil, http.MethodPost, url, "", strings.NewReader(initBody))
	if err != nil || c != http.StatusServiceUnavailable || !strings.Contains(body, "1 sessions open") {
		t.Errorf("initialize over MaxSessions 1: %d %s %v", c, body, err)
	}
}

func TestClientKey(t *testing.T) {
	key := func(remote, verified string) string {
		return clientKey(&http.Request{RemoteAddr: remote}, verified)
	}
	if key("10.0.0.1:1000", "") != key("10.0.0.1:2000", "") {
		t.Error("one address, two ports: two clients")
	}
	if key("10.0.0.1:1000", "") == key("10.0.0.2:1000", "") {
		t.Error("two addresses: one client")
	}
	if key("[2001:db8::1]:1", "") != key("[2001:db8::ffff:2]:1", "") {
		t.Error("one IPv6 /64: two clients (one host could fill the cap's every slot)")
	}
	if key("[::ffff:10.0.0.1]:1", "") != key("10.0.0.1:1", "") {
		t.Error("an IPv4-mapped address counts apart from its IPv4 one")
	}
	if key("10.0.0.1:1", "tok-a") == key("10.0.0.1:1", "tok-b") {
		t.Error("two checked tokens behind one address: one client")
	}
	if k := key("10.0.0.1:1", "tok-a"); strings.Contains(k, "tok-a") {
		t.Errorf("the key %q carries the token", k)
	}
}

// TestHTTPServerMCPPath: /<server>/mcp serves the go-sdk client like
// /mcp/<server>; no other shape of path reaches a server.
func TestHTTPServerMCPPath(t *testing.T) {
	r := newRig(t)
	srv, h, _ := r.boundedProxy(nil)
	cs := dialSDK(t, srv.URL+"/up/mcp", true)
	toolNames(t, cs)
	r.approve("echo")
	if got := strings.Join(toolNames(t, cs), ","); got != "echo" {
		t.Fatalf("tools at /up/mcp after approval: %s", got)
	}
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "via /up/mcp"}})
	if err != nil || res.IsError || len(res.Content) != 1 || res.Content[0].(*mcp.TextContent).Text != "via /up/mcp" {
		t.Fatalf("call at /up/mcp: %+v %v", res, err)
	}
	if h.Sessions() != 1 {
		t.Errorf("%d sessions", h.Sessions())
	}
	for _, path := range []string{"/up/other", "/UP/mcp", "/x/up/mcp", "/up/mcp/", "/mcp", "//mcp", "/mcp/", "/mcp/up/mcp", "/up/mcp/x"} {
		if c, body, err := raw(nil, http.MethodPost, srv.URL+path, "", strings.NewReader(initBody)); err != nil || c != http.StatusNotFound {
			t.Errorf("POST %s: %d %s %v", path, c, body, err)
		}
	}
	if h.Sessions() != 1 {
		t.Errorf("%d sessions after the refused paths", h.Sessions())
	}
}

// A token that resolves empty, or not at all, is no open door: every
// request is refused, the first one included.
func TestHTTPEmptyTokenRefusesEverything(t *testing.T) {
	for name, tok := range map[string]func() (string, error){
		"empty":      func() (string, error) { return "", nil },
		"unresolved": func() (string, error) { return "", errors.New("${file:/nonexistent}: no such file") },
	} {
		t.Run(name, func(t *testing.T) {
			r := newRig(t)
			srv, h := r.proxyHTTP("")
			h.Token = tok
			body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/mcp/up", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Authorization", "Bearer ")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable || h.Sessions() != 0 {
				t.Errorf("%s token: %s, %d sessions", name, resp.Status, h.Sessions())
			}
		})
	}
}
