package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// ioTimeout keeps a broken test from hanging; nothing waits on it when
// the code works.
const ioTimeout = 10 * time.Second

// noLeaks checks, after every other cleanup of the test, that the test
// left no goroutine behind.
func noLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// serveOne makes a real loopback TCP pair, serves one end with e in a
// goroutine, and returns the other end and a channel closed when
// ServeConn has returned. The test waits for that return before it ends.
func serveOne(t *testing.T, ctx context.Context, e *Egress) (net.Conn, <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	_ = client.SetDeadline(time.Now().Add(ioTimeout))
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.ServeConn(ctx, server)
	}()
	t.Cleanup(func() {
		client.Close()
		select {
		case <-done:
		case <-time.After(ioTimeout):
			t.Error("ServeConn did not return once the client closed and the test ended")
		}
	})
	return client, done
}

// upstream is a real HTTP server that says what it received and counts
// the connections it accepted.
type upstream struct {
	*httptest.Server
	accepted atomic.Int32
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "uri=%s host=%s proxy-auth=%q x-hop=%q x-keep=%q ua=%q body=%q",
			r.RequestURI, r.Host, r.Header.Get("Proxy-Authorization"), r.Header.Get("X-Hop"),
			r.Header.Get("X-Keep"), r.Header.Get("User-Agent"), body)
	}))
	u.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.accepted.Add(1)
		}
	}
	u.Start()
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) addr() string { return u.Listener.Addr().String() }

func (u *upstream) port() string {
	_, p, _ := net.SplitHostPort(u.addr())
	return p
}

// exchange sends raw bytes and reads one response and its whole body.
func exchange(t *testing.T, c net.Conn, br *bufio.Reader, method, raw string) (*http.Response, string) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", raw, err)
	}
	if method == http.MethodConnect && resp.StatusCode == http.StatusOK {
		// What follows is the tunnel, not a body.
		return resp, ""
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body of the answer to %q: %v", raw, err)
	}
	return resp, string(body)
}

// waitReturn waits for ServeConn to return.
func waitReturn(t *testing.T, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(ioTimeout):
		t.Fatal("ServeConn did not return")
	}
}

// waitClosed waits until the proxy has closed its side of c.
func waitClosed(t *testing.T, r io.Reader) {
	t.Helper()
	if n, err := io.Copy(io.Discard, r); err != nil {
		t.Fatalf("the proxy did not close the connection (read %d more bytes): %v", n, err)
	}
}

// finish waits until the proxy has closed its side of c, closes the
// client's side as a client done with it would (after an error answer the
// proxy reads on until then, see answer), and waits for ServeConn to
// return.
func finish(t *testing.T, c net.Conn, br *bufio.Reader, done <-chan struct{}) {
	t.Helper()
	waitClosed(t, br)
	c.Close()
	waitReturn(t, done)
}

// recorder collects what a callback was called with.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) record(dest string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, dest)
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

func TestEgressConnectReachesAllowedAddress(t *testing.T) {
	noLeaks(t)
	up := startUpstream(t)
	var allowed recorder
	e := &Egress{Allow: []string{up.addr()}, OnAllowed: allowed.record}
	c, done := serveOne(t, t.Context(), e)
	br := bufio.NewReader(c)

	// The tunnelled request goes in the same write as CONNECT: the bytes
	// the proxy buffered after the headers must reach the upstream too.
	_, err := io.WriteString(c, "CONNECT "+up.addr()+" HTTP/1.1\r\nHost: "+up.addr()+"\r\n\r\n"+
		"GET /x HTTP/1.1\r\nHost: inner\r\nConnection: close\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	inner, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(inner.Body)
	if !strings.Contains(string(body), "uri=/x host=inner") {
		t.Errorf("through the tunnel the upstream answered %q", body)
	}
	finish(t, c, br, done)
	if got := allowed.got(); len(got) != 1 || got[0] != up.addr() {
		t.Errorf("OnAllowed calls: %q, want [%s]", got, up.addr())
	}
}

func TestEgressForwardsAbsoluteForm(t *testing.T) {
	noLeaks(t)
	up := startUpstream(t)
	e := &Egress{Allow: []string{up.addr()}}

	t.Run("GET", func(t *testing.T) {
		c, done := serveOne(t, t.Context(), e)
		br := bufio.NewReader(c)
		resp, body := exchange(t, c, br, http.MethodGet, "GET http://"+up.addr()+"/x?y=1 HTTP/1.1\r\n"+
			"Host: other.example\r\nProxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\n"+
			"Connection: X-Hop\r\nX-Hop: 1\r\nX-Keep: 2\r\nKeep-Alive: 5\r\n\r\n")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s", resp.Status, body)
		}
		// The upstream sees the origin form, the Host that was checked,
		// and no header meant for the proxy, not even the User-Agent Go
		// would add.
		want := fmt.Sprintf(`uri=/x?y=1 host=%s proxy-auth="" x-hop="" x-keep="2" ua="" body=""`, up.addr())
		if body != want {
			t.Errorf("upstream saw\n %s\nwant\n %s", body, want)
		}
		finish(t, c, br, done)
	})
	t.Run("POST with a chunked body", func(t *testing.T) {
		c, done := serveOne(t, t.Context(), e)
		br := bufio.NewReader(c)
		resp, body := exchange(t, c, br, http.MethodPost, "POST http://"+up.addr()+"/p HTTP/1.1\r\n"+
			"Host: "+up.addr()+"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `body="hello"`) {
			t.Fatalf("%s: %s", resp.Status, body)
		}
		finish(t, c, br, done)
	})
}

// TestEgressServesRealHTTPClients drives the proxy with net/http's own
// client, plain and through a CONNECT tunnel to a TLS server.
func TestEgressServesRealHTTPClients(t *testing.T) {
	noLeaks(t)
	plain := startUpstream(t)
	secure := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "secure")
	}))
	t.Cleanup(secure.Close)
	refused := startUpstream(t)
	e := &Egress{Allow: []string{plain.addr(), secure.Listener.Addr().String()}}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { e.ServeConn(ctx, c) })
		}
	})
	tr := &http.Transport{
		Proxy:           http.ProxyURL(&url.URL{Scheme: "http", Host: ln.Addr().String()}),
		TLSClientConfig: secure.Client().Transport.(*http.Transport).TLSClientConfig.Clone(),
	}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		ln.Close()
		cancel()
		wg.Wait()
	})
	client := &http.Client{Transport: tr, Timeout: ioTimeout}

	get := func(u string) (int, string, error) {
		resp, err := client.Get(u)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	if code, body, err := get(plain.URL + "/plain"); err != nil || code != http.StatusOK || !strings.Contains(body, "uri=/plain") {
		t.Errorf("http:// through the proxy: %d %q %v", code, body, err)
	}
	if code, body, err := get(secure.URL + "/"); err != nil || code != http.StatusOK || body != "secure" {
		t.Errorf("https:// through the proxy: %d %q %v", code, body, err)
	}
	if code, body, err := get(refused.URL + "/"); err != nil || code != http.StatusForbidden || !strings.Contains(body, refused.addr()+" refused") {
		t.Errorf("http:// to a destination not listed: %d %q %v", code, body, err)
	}
	if _, _, err := get(strings.Replace(refused.URL, "http:", "https:", 1)); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Errorf("https:// to a destination not listed: %v", err)
	}
	if n := refused.accepted.Load(); n != 0 {
		t.Errorf("the server not listed accepted %d connections", n)
	}
}

func TestEgressRefusesUnlisted(t *testing.T) {
	noLeaks(t)
	up := startUpstream(t)
	var refused recorder
	e := &Egress{
		Allow:     []string{"127.0.0.1:1", "*.example.org:" + up.port()},
		OnRefused: refused.record,
		Hint:      func(dest string) string { return "allow it with servers.x.egress: [" + dest + "]" },
	}
	ask := func(e *Egress, method, raw string) (*http.Response, string) {
		t.Helper()
		c, done := serveOne(t, t.Context(), e)
		br := bufio.NewReader(c)
		resp, body := exchange(t, c, br, method, raw)
		if resp.StatusCode != http.StatusOK {
			finish(t, c, br, done)
		}
		return resp, body
	}
	connect := "CONNECT " + up.addr() + " HTTP/1.1\r\n\r\n"

	for _, raw := range []string{connect, "GET http://" + up.addr() + "/ HTTP/1.1\r\n\r\n"} {
		resp, body := ask(e, strings.Fields(raw)[0], raw)
		want := "rugwatch: egress to " + up.addr() + " refused; allow it with servers.x.egress: [" + up.addr() + "]\n"
		if resp.StatusCode != http.StatusForbidden || body != want {
			t.Errorf("%q: %s %q, want 403 %q", raw, resp.Status, body, want)
		}
	}
	if got := refused.got(); len(got) != 1 || got[0] != up.addr() {
		t.Errorf("after two refusals of one destination OnRefused got %q, want once %s", got, up.addr())
	}
	// The destination is named lower-case without its trailing dot; the
	// wildcard covers names below example.org, not example.org.
	if resp, _ := ask(e, http.MethodConnect, "CONNECT Example.ORG.:"+up.port()+" HTTP/1.1\r\n\r\n"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("CONNECT to example.org: %s", resp.Status)
	}
	if got, want := refused.got(), []string{up.addr(), "example.org:" + up.port()}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("OnRefused calls %q, want %q", got, want)
	}
	if n := up.accepted.Load(); n != 0 {
		t.Fatalf("the upstream accepted %d connections while refused", n)
	}

	// The same request with the destination listed goes through.
	e = &Egress{Allow: []string{up.addr()}, OnRefused: refused.record}
	c, done := serveOne(t, t.Context(), e)
	br := bufio.NewReader(c)
	if resp, _ := exchange(t, c, br, http.MethodConnect, connect); resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT once listed: %s", resp.Status)
	}
	if resp, body := exchange(t, c, br, http.MethodGet, "GET /y HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.Contains(body, "uri=/y") {
		t.Errorf("through the tunnel once listed: %s %q", resp.Status, body)
	}
	finish(t, c, br, done)
	if n := up.accepted.Load(); n != 1 {
		t.Errorf("the upstream accepted %d connections once listed, want 1", n)
	}
}

// TestEgressNameResolvingToLocalIsRefused is the DNS rebinding attack: an
// allowed name whose owner points it at the host itself, or at the cloud
// metadata address. The same address, named as such, is reachable.
func TestEgressNameResolvingToLocalIsRefused(t *testing.T) {
	noLeaks(t)
	up := startUpstream(t)
	for _, tc := range []struct {
		pattern, resolvesTo string
	}{
		{"api.example.test", "127.0.0.1"},
		{"*.example.test", "127.0.0.1"},
		{"api.example.test", "::ffff:127.0.0.1"},
		{"api.example.test", "::1"},
		{"api.example.test", "0.0.0.0"},
		{"api.example.test", "169.254.169.254"},
		{"api.example.test", "fe80::1"},
		{"api.example.test", "224.0.0.1"},
		// Private networks, carrier-grade NAT (Alibaba's metadata), IPv6
		// unique-local (AWS's IPv6 metadata): a public name resolving
		// there is DNS rebinding into the host's networks.
		{"api.example.test", "10.1.2.3"},
		{"api.example.test", "192.168.1.10"},
		{"api.example.test", "172.17.0.1"},
		{"api.example.test", "100.100.100.200"},
		{"api.example.test", "fd00:ec2::254"},
	} {
		t.Run(tc.pattern+"="+tc.resolvesTo, func(t *testing.T) {
			var refused recorder
			e := &Egress{
				Allow:     []string{tc.pattern + ":" + up.port()},
				OnRefused: refused.record,
				lookup: func(_ context.Context, host string) ([]net.IPAddr, error) {
					if host != "api.example.test" {
						return nil, fmt.Errorf("unexpected lookup of %q", host)
					}
					return []net.IPAddr{{IP: net.IP(netip.MustParseAddr(tc.resolvesTo).AsSlice())}}, nil
				},
			}
			c, done := serveOne(t, t.Context(), e)
			br := bufio.NewReader(c)
			resp, body := exchange(t, c, br, http.MethodConnect, "CONNECT api.example.test:"+up.port()+" HTTP/1.1\r\n\r\n")
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "resolved to a local address") {
				t.Errorf("got %s %q, want 403 naming a local address", resp.Status, body)
			}
			finish(t, c, br, done)
			if got := refused.got(); len(got) != 1 || got[0] != "api.example.test:"+up.port() {
				t.Errorf("OnRefused calls: %q", got)
			}
		})
	}
	if n := up.accepted.Load(); n != 0 {
		t.Fatalf("the upstream accepted %d connections through a name", n)
	}

	for _, tc := range []struct{ pattern, dest string }{
		{up.addr(), up.addr()},
		{"localhost:" + up.port(), "localhost:" + up.port()},
	} {
		t.Run("literal "+tc.pattern, func(t *testing.T) {
			e := &Egress{Allow: []string{tc.pattern}}
			c, done := serveOne(t, t.Context(), e)
			br := bufio.NewReader(c)
			if resp, body := exchange(t, c, br, http.MethodConnect, "CONNECT "+tc.dest+" HTTP/1.1\r\n\r\n"); resp.StatusCode != http.StatusOK {
				t.Fatalf("CONNECT %s allowed as %s: %s %q", tc.dest, tc.pattern, resp.Status, body)
			}
			if _, body := exchange(t, c, br, http.MethodGet, "GET /z HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.Contains(body, "uri=/z") {
				t.Errorf("through the tunnel: %q", body)
			}
			finish(t, c, br, done)
		})
	}

	// With the system's resolver: the guard checks the address the socket
	// connects to, whoever resolved it.
	t.Run("hostname with the system resolver", func(t *testing.T) {
		name, err := os.Hostname()
		if err != nil {
			t.Skip(err)
		}
		addrs, err := net.DefaultResolver.LookupIPAddr(t.Context(), name)
		if err != nil || len(addrs) == 0 || !addrs[0].IP.IsLoopback() {
			t.Skipf("%s does not resolve to loopback here (%v, %v)", name, addrs, err)
		}
		if _, err := canonicalName(name); err != nil {
			t.Skip(err)
		}
		e := &Egress{Allow: []string{name + ":" + up.port()}}
		c, done := serveOne(t, t.Context(), e)
		br := bufio.NewReader(c)
		if resp, body := exchange(t, c, br, http.MethodConnect, "CONNECT "+name+":"+up.port()+" HTTP/1.1\r\n\r\n"); resp.StatusCode != http.StatusForbidden {
			t.Errorf("CONNECT %s (%v): %s %q", name, addrs, resp.Status, body)
		}
		finish(t, c, br, done)
	})
	if n := up.accepted.Load(); n != 2 {
		t.Errorf("the upstream accepted %d connections, want 2 (the literal and localhost)", n)
	}
}

func TestEgressHeaderBounds(t *testing.T) {
	noLeaks(t)
	t.Run("over 64 KiB", func(t *testing.T) {
		c, done := serveOne(t, t.Context(), &Egress{Allow: []string{"example.com:80"}})
		br := bufio.NewReader(c)
		var wg sync.WaitGroup
		// The client writes more than it will be read; a separate goroutine
		// so a full socket buffer cannot stop the test from reading.
		wg.Go(func() {
			_, _ = io.WriteString(c, "GET http://example.com/ HTTP/1.1\r\nX-Pad: "+strings.Repeat("a", 70<<10)+"\r\n\r\n")
		})
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("got %s, want 431", resp.Status)
		}
		waitClosed(t, br)
		c.Close()
		wg.Wait()
		waitReturn(t, done)
	})
	t.Run("nothing sent", func(t *testing.T) {
		c, done := serveOne(t, t.Context(), &Egress{headerTimeout: 50 * time.Millisecond})
		n, err := c.Read(make([]byte, 1))
		if !errors.Is(err, io.EOF) {
			t.Errorf("a silent client read %d bytes, %v; want the proxy to close at its deadline", n, err)
		}
		waitReturn(t, done)
	})
	t.Run("headers never finished", func(t *testing.T) {
		c, done := serveOne(t, t.Context(), &Egress{headerTimeout: 50 * time.Millisecond})
		if _, err := io.WriteString(c, "GET http://example.com/ HTTP/1.1\r\nX-Slow: "); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("a slow client read %d bytes, %v; want the proxy to close at its deadline", n, err)
		}
		waitReturn(t, done)
	})
}

func TestEgressBadRequests(t *testing.T) {
	noLeaks(t)
	up := startUpstream(t)
	e := &Egress{Allow: []string{up.addr(), "localhost:" + up.port()}}
	for _, raw := range []string{
		"GET /x HTTP/1.1\r\nHost: " + up.addr() + "\r\n\r\n",
		"GET https://" + up.addr() + "/ HTTP/1.1\r\n\r\n",
		"GET http://user:pw@" + up.addr() + "/ HTTP/1.1\r\n\r\n",
		"GET ftp://" + up.addr() + "/ HTTP/1.1\r\n\r\n",
		"CONNECT http://" + up.addr() + "/ HTTP/1.1\r\n\r\n",
		"CONNECT [127.0.0.1]:" + up.port() + " HTTP/1.1\r\n\r\n",
		"CONNECT 127.1:" + up.port() + " HTTP/1.1\r\n\r\n",
		"CONNECT localhost:+" + up.port() + " HTTP/1.1\r\n\r\n",
		"CONNECT " + up.addr() + "/x HTTP/1.1\r\n\r\n",
		"CONNECT " + up.addr() + "\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"garbage\r\n\r\n",
		"GET http://" + up.addr() + "/ HTTP/1.1\r\nBad Header: x\r\n\r\n",
	} {
		c, done := serveOne(t, t.Context(), e)
		br := bufio.NewReader(c)
		resp, body := exchange(t, c, br, strings.Fields(raw)[0], raw)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%q: got %s %q, want 400", raw, resp.Status, body)
		}
		finish(t, c, br, done)
	}
	if n := up.accepted.Load(); n != 0 {
		t.Errorf("the upstream accepted %d connections", n)
	}
}

func TestEgressContextEndsTunnel(t *testing.T) {
	noLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c, done := serveOne(t, ctx, &Egress{Allow: []string{ln.Addr().String()}})
	br := bufio.NewReader(c)
	if resp, _ := exchange(t, c, br, http.MethodConnect, "CONNECT "+ln.Addr().String()+" HTTP/1.1\r\n\r\n"); resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	far, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer far.Close()
	_ = far.SetDeadline(time.Now().Add(ioTimeout))

	// The tunnel carries bytes both ways before it is cut.
	buf := make([]byte, 4)
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(far, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("upstream read %q, %v", buf, err)
	}
	if _, err := io.WriteString(far, "pong"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("client read %q, %v", buf, err)
	}

	cancel()
	waitReturn(t, done)
	if n, err := br.Read(buf); !errors.Is(err, io.EOF) {
		t.Errorf("client side after cancel: read %d, %v; want EOF", n, err)
	}
	if n, err := far.Read(buf); !errors.Is(err, io.EOF) {
		t.Errorf("upstream side after cancel: read %d, %v; want EOF", n, err)
	}
}

// TestEgressContextEndsForward cancels while a forwarded request waits for
// an upstream that never answers: the request is already written, so only
// closing the upstream connection ends the wait.
func TestEgressContextEndsForward(t *testing.T) {
	noLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c, done := serveOne(t, ctx, &Egress{Allow: []string{ln.Addr().String()}})
	if _, err := io.WriteString(c, "GET http://"+ln.Addr().String()+"/ HTTP/1.1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	far, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer far.Close()
	_ = far.SetDeadline(time.Now().Add(ioTimeout))
	farBr := bufio.NewReader(far)
	if _, err := http.ReadRequest(farBr); err != nil {
		t.Fatalf("upstream reading the forwarded request: %v", err)
	}

	cancel()
	waitReturn(t, done)
	buf := make([]byte, 1)
	if n, err := c.Read(buf); !errors.Is(err, io.EOF) {
		t.Errorf("client side after cancel: read %d, %v; want EOF", n, err)
	}
	if n, err := farBr.Read(buf); !errors.Is(err, io.EOF) {
		t.Errorf("upstream side after cancel: read %d, %v; want EOF", n, err)
	}
}

func TestValidateEgressPattern(t *testing.T) {
	for _, p := range []string{
		"api.example.com:443",
		"API.Example.com.:443",
		"*.example.com:443",
		"*.a.example.com:8443",
		"127.0.0.1:8080",
		"[::1]:8080",
		"[2001:db8::1]:443",
		"[::ffff:127.0.0.1]:80",
		"localhost:11434",
		"vm:80",
		"xn--bcher-kva.example:443",
		"a-b.c1.example:65535",
		strings.Repeat("a", 63) + ".example:1",
	} {
		if err := ValidateEgressPattern(p); err != nil {
			t.Errorf("ValidateEgressPattern(%q): %v", p, err)
		}
	}
	for _, tc := range []struct{ p, says string }{
		{"", "host:port"},
		{"example.com", `"example.com:443"`},
		{"example.com:", "1 to 65535"},
		{"example.com:0", "1 to 65535"},
		{"example.com:65536", "1 to 65535"},
		{"example.com:+80", "1 to 65535"},
		{"example.com:http", "1 to 65535"},
		{"*", "*.example.com:443"},
		{"*:443", "*.example.com:443"},
		{"*.com:443", `"*.example.com:443"`},
		{"a.*.example.com:443", "*.example.com:443"},
		{"*.*.example.com:443", "*.example.com:443"},
		{"**.example.com:443", "*.example.com:443"},
		{"*example.com:443", "*.example.com:443"},
		{"*.127.0.0.1:80", "list each address"},
		{"::1:8080", "[2001:db8::1]:443"},
		{"::1", "[2001:db8::1]:443"},
		{"[127.0.0.1]:80", "only for an IPv6"},
		{"[example.com]:443", "only for an IPv6"},
		{"[fe80::1%eth0]:80", "without a zone"},
		{"exa mple.com:443", "letters, digits"},
		{"exa_mple.com:443", "letters, digits"},
		{"bücher.example:443", "xn--"},
		{"-a.example.com:443", "hyphen"},
		{"a..b:443", "1 to 63"},
		{strings.Repeat("a", 64) + ".example:443", "1 to 63"},
		{"127.1:80", "192.0.2.1"},
		{"0x7f000001:80", "192.0.2.1"},
		{"2130706433:80", "192.0.2.1"},
	} {
		err := ValidateEgressPattern(tc.p)
		if err == nil {
			t.Errorf("ValidateEgressPattern(%q) accepted it", tc.p)
		} else if !strings.Contains(err.Error(), tc.says) {
			t.Errorf("ValidateEgressPattern(%q) = %q; want it to say %q", tc.p, err, tc.says)
		}
	}
}

func TestEgressMatching(t *testing.T) {
	for _, tc := range []struct {
		pattern, dest string
		want          bool
	}{
		{"api.example.com:443", "API.Example.COM.:443", true},
		{"API.example.com.:443", "api.example.com:443", true},
		{"api.example.com:443", "api.example.com:80", false},
		{"api.example.com:443", "xapi.example.com:443", false},
		{"*.example.com:443", "a.example.com:443", true},
		{"*.example.com:443", "a.b.example.com:443", true},
		{"*.example.com:443", "example.com:443", false},
		{"*.example.com:443", "badexample.com:443", false},
		{"*.example.com:443", "a.example.com:8443", false},
		{"[::1]:8080", "[0:0:0:0:0:0:0:1]:8080", true},
		{"[2001:DB8::1]:443", "[2001:db8:0::1]:443", true},
		{"127.0.0.1:8080", "[::ffff:127.0.0.1]:8080", true},
		{"127.0.0.1:8080", "localhost:8080", false},
		{"localhost:8080", "127.0.0.1:8080", false},
		{"localhost:8080", "LOCALHOST.:8080", true},
		{"*.example.com:443", "[::1]:443", false},
	} {
		dest, err := parseHostPort(tc.dest)
		if err != nil {
			t.Fatalf("parseHostPort(%q): %v", tc.dest, err)
		}
		if got := permits([]string{tc.pattern}, dest); got != tc.want {
			t.Errorf("%q allows %q: %v, want %v", tc.pattern, tc.dest, got, tc.want)
		}
	}
}
