package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// maxHeaderBytes bounds the request line and headers together: a
	// hostile client must not make the daemon buffer without end.
	maxHeaderBytes = 64 << 10
	// defaultHeaderTimeout bounds how long a client may take to send its
	// headers, so an idle or trickling connection cannot be held forever.
	defaultHeaderTimeout = 30 * time.Second
	// dialTimeout bounds name resolution and connecting together.
	dialTimeout = 10 * time.Second
	// answerTimeout bounds writing an error answer to a client that does
	// not read it.
	answerTimeout = 10 * time.Second
	// lingerTimeout and lingerBytes bound how long and how much is read
	// after an error answer (see answer).
	lingerTimeout = time.Second
	lingerBytes   = 256 << 10
	// maxSeen bounds each set of reported destinations: a server that
	// tries random names must not grow the daemon's memory or flood
	// whoever OnRefused reports to. Past it, new destinations go
	// unreported (they are still refused or allowed as before).
	maxSeen = 4096
)

// Egress is the daemon's side of one sandbox's egress path: an HTTP proxy
// that lets a server reach only the destinations on its allow-list.
//
// A forwarder inside the sandbox's network namespace accepts the server's
// connections and hands each one over; ServeConn serves it. Every byte
// from the client is treated as hostile. The exported fields must not be
// changed once ServeConn has been called; the callbacks may be called from
// several connections at once.
type Egress struct {
	// Allow lists "host:port" patterns: a DNS name, "*.example.com:443"
	// (any name below example.com, not example.com itself), an IPv4
	// literal, or a bracketed IPv6 literal "[::1]:8080". Ports are exact.
	// Entries that ValidateEgressPattern rejects match nothing.
	//
	// A name other than "localhost" (and any name a wildcard covers) is
	// only reached at addresses that are not loopback, link-local,
	// unspecified or multicast, so a name whose DNS its owner controls
	// cannot be rebound to the host's own services or to a cloud metadata
	// endpoint. An address literal, or "localhost", allows exactly what it
	// names.
	Allow []string
	// OnRefused, if set, is called once per distinct refused destination
	// ("host:port", host lower-cased) for the life of this Egress value,
	// for at most maxSeen destinations.
	OnRefused func(dest string)
	// OnAllowed, if set, is called once per distinct destination that was
	// let through and connected to, for at most maxSeen destinations.
	OnAllowed func(dest string)
	// Pin, if set, narrows Allow to the destinations approved for the
	// server and reports the ones it uses (behaviour pinning, pin.go).
	Pin *Pin
	// Hint, if set, is appended to the refusal body (the caller says which
	// config key would allow the destination).
	Hint func(dest string) string

	// lookup resolves names; nil means net.DefaultResolver. Tests set it
	// to make a name resolve to loopback without editing /etc/hosts.
	lookup func(ctx context.Context, host string) ([]net.IPAddr, error)
	// headerTimeout, if not zero, replaces defaultHeaderTimeout (tests
	// shorten it).
	headerTimeout time.Duration

	mu      sync.Mutex
	refused map[string]struct{} // guarded by mu
	allowed map[string]struct{} // guarded by mu
	pinned  map[string]struct{} // guarded by mu: reported to Pin.OnUse
}

// ValidateEgressPattern says what is wrong with one allow-list entry, or
// nil. Config validation calls it.
func ValidateEgressPattern(p string) error {
	if _, err := parseEgressPattern(p); err != nil {
		return fmt.Errorf("egress pattern %q: %w", p, err)
	}
	return nil
}

// ServeConn serves one proxy client connection until it ends or ctx is
// done, and closes it.
func (e *Egress) ServeConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	// Closing the connection is what unblocks every read and write on it,
	// so that is how ctx ends the work below.
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	if ctx.Err() != nil {
		return
	}

	timeout := e.headerTimeout
	if timeout == 0 {
		timeout = defaultHeaderTimeout
	}
	lr := &io.LimitedReader{R: c, N: maxHeaderBytes}
	br := bufio.NewReader(lr)
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	req, err := http.ReadRequest(br)
	switch {
	case err == nil:
	case lr.N <= 0:
		answer(c, http.StatusRequestHeaderFieldsTooLarge, "rugwatch: request line and headers over 64 KiB")
		return
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		// Nothing (complete) was asked, so nothing is answered.
		return
	default:
		answer(c, http.StatusBadRequest, "rugwatch: malformed proxy request")
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	// The bound was on the headers; a body or a tunnel is as long as it is.
	lr.N = math.MaxInt64

	if req.Method == http.MethodConnect {
		e.serveConnect(ctx, c, br, req)
		return
	}
	// The request body, if any, reads through br: req.Body holds it.
	e.serveForward(ctx, c, req)
}

// serveConnect opens a tunnel for a CONNECT request.
func (e *Egress) serveConnect(ctx context.Context, c net.Conn, br *bufio.Reader, req *http.Request) {
	// The raw request target, not req.URL: net/http parses an authority
	// by pretending it is a URL, which accepts more than host:port.
	dest, err := parseHostPort(req.RequestURI)
	if err != nil {
		answer(c, http.StatusBadRequest, "rugwatch: CONNECT needs host:port")
		return
	}
	up := e.open(ctx, c, dest)
	if up == nil {
		return
	}
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		_ = up.Close()
		return
	}
	// From br, not c: it may hold bytes the client sent right after the
	// headers, which belong to the tunnel. A tunnel has no half-close
	// here: either side ending ends it.
	relay(ctx, c, up, func() error {
		_, _ = io.Copy(up, br)
		return io.EOF
	})
}

// relay runs send (client to upstream) and copies the upstream's answer to
// the client at once, until the answer ends or send fails; ctx ending
// closes both. up is closed when it returns.
func relay(ctx context.Context, c, up net.Conn, send func() error) {
	defer up.Close()
	stopUp := context.AfterFunc(ctx, func() { _ = up.Close() })
	defer stopUp()
	var wg sync.WaitGroup
	closeBoth := sync.OnceFunc(func() { _ = c.Close(); _ = up.Close() })
	wg.Go(func() {
		if err := send(); err != nil {
			closeBoth()
		}
	})
	wg.Go(func() { _, _ = io.Copy(c, up); closeBoth() })
	wg.Wait()
}

// serveForward forwards one absolute-form http:// request and streams the
// answer back.
func (e *Egress) serveForward(ctx context.Context, c net.Conn, req *http.Request) {
	u := req.URL
	switch {
	case u.Scheme == "https":
		answer(c, http.StatusBadRequest, "rugwatch: use CONNECT for https:// destinations")
		return
	case u.Scheme != "http" || u.Host == "" || u.Opaque != "" || u.User != nil:
		answer(c, http.StatusBadRequest, "rugwatch: this proxy takes CONNECT host:port or an absolute http:// URL without user info")
		return
	}
	for k := range req.Header {
		// textproto keeps a name with a space in it and req.Write would
		// silently drop it; a request that cannot be forwarded as it was
		// checked is refused instead.
		if !isToken(k) {
			answer(c, http.StatusBadRequest, "rugwatch: malformed header name")
			return
		}
	}
	hostport := u.Host
	if u.Port() == "" && !strings.HasSuffix(hostport, ":") {
		hostport += ":80"
	}
	dest, err := parseHostPort(hostport)
	if err != nil {
		answer(c, http.StatusBadRequest, "rugwatch: bad host in request URL")
		return
	}
	up := e.open(ctx, c, dest)
	if up == nil {
		return
	}
	originForm(req, dest)
	// Writing the request and reading the answer run at once: an upstream
	// may answer (100 Continue, or an early error) before the body is in.
	// The answer is copied as it comes: Connection: close makes the
	// upstream end it by closing.
	relay(ctx, c, up, func() error { return req.Write(up) })
}

// originForm turns a parsed proxy request into the one sent upstream: the
// origin-form target, the Host that was checked, no hop-by-hop headers,
// one request per connection.
func originForm(req *http.Request, dest hostPort) {
	u := req.URL
	req.URL = &url.URL{Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery}
	if req.URL.Path == "" {
		req.URL.Path = "/"
	}
	req.RequestURI = ""
	// The Host the client wrote may differ from the URL; send what was
	// allowed.
	req.Host = dest.host
	if dest.ip.Is6() {
		req.Host = "[" + dest.host + "]"
	}
	if dest.port != 80 {
		req.Host = dest.String()
	}
	for _, v := range req.Header.Values("Connection") {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				req.Header.Del(f)
			}
		}
	}
	// These concern only the client's connection to this proxy (and
	// Proxy-Authorization may be a credential the upstream must not see).
	for _, h := range []string{"Proxy-Authorization", "Proxy-Connection", "Connection", "Keep-Alive", "Te", "Trailer", "Upgrade"} {
		req.Header.Del(h)
	}
	// Trailers were announced by the (removed) Trailer header; dropping
	// them keeps what is sent consistent with what is announced.
	req.Trailer = nil
	req.Close = true
	// req.Write adds Go's User-Agent when there is none; an empty value
	// keeps the request as the client sent it.
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = []string{""}
	}
}

// isToken reports an HTTP token (RFC 9110 section 5.6.2), the syntax of a
// header name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// open decides whether dest may be reached and connects to it. When it
// may not, or cannot be reached, open answers the client itself and
// returns nil.
func (e *Egress) open(ctx context.Context, c net.Conn, dest hostPort) net.Conn {
	d := dest.String()
	if !permits(e.Allow, dest) {
		e.noteRefused(d)
		msg := "rugwatch: egress to " + d + " refused"
		if e.Hint != nil {
			if h := e.Hint(d); h != "" {
				msg += "; " + h
			}
		}
		answer(c, http.StatusForbidden, msg)
		return nil
	}
	if e.Pin.refuses(dest) {
		e.notePinned(dest, true)
		answer(c, http.StatusForbidden, "rugwatch: egress to "+d+" refused: not among the destinations approved for this server "+
			"(egress_mode: pinned); it stays refused until `rugwatch approve SERVER --launch` approves it")
		return nil
	}
	up, err := e.dial(ctx, dest)
	var local *localAddrError
	switch {
	case errors.As(err, &local):
		e.noteRefused(d)
		answer(c, http.StatusForbidden, fmt.Sprintf(
			"rugwatch: egress to %s refused: the name resolved to a local address (%s); "+
				"to reach a local service, allow its address itself, e.g. %s",
			d, local.addr, net.JoinHostPort(local.addr.String(), strconv.Itoa(int(dest.port)))))
		return nil
	case err != nil:
		answer(c, http.StatusBadGateway, fmt.Sprintf("rugwatch: could not reach %s: %v", d, err))
		return nil
	}
	e.noteAllowed(d)
	e.notePinned(dest, false)
	return up
}

// permits says whether any pattern of allow covers dest.
func permits(allow []string, dest hostPort) bool {
	for _, s := range allow {
		p, err := parseEgressPattern(s)
		if err == nil && p.matches(dest) {
			return true
		}
	}
	return false
}

// dial connects to dest. A name other than "localhost" may only connect
// to addresses that are not local (see refuseLocal).
func (e *Egress) dial(ctx context.Context, dest hostPort) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	var d net.Dialer
	port := strconv.Itoa(int(dest.port))
	if dest.ip.IsValid() {
		return d.DialContext(ctx, "tcp", dest.String())
	}
	if dest.host != "localhost" {
		d.Control = refuseLocal
	}
	lookup := e.lookup
	if lookup == nil {
		lookup = net.DefaultResolver.LookupIPAddr
	}
	addrs, err := lookup(ctx, dest.host)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", dest.host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolving %s: no addresses", dest.host)
	}
	// Resolved here rather than by the dialer so that tests can stand in
	// for DNS; the guard still checks each address actually connected to.
	var errs []error
	for _, a := range addrs {
		up, err := d.DialContext(ctx, "tcp", net.JoinHostPort(a.String(), port))
		if err == nil {
			return up, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// localAddrError is refuseLocal's refusal.
type localAddrError struct{ addr netip.Addr }

func (e *localAddrError) Error() string {
	return "refusing to connect a name to the local address " + e.addr.String()
}

// refuseLocal is a net.Dialer Control function: it sees the address the
// socket is about to connect to, after resolution, so neither a rebinding
// DNS answer nor a second lookup can slip a local address past it.
func refuseLocal(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("parsing the address being connected to: %w", err)
	}
	if ip := ap.Addr().Unmap(); isLocal(ip) {
		return &localAddrError{addr: ip}
	}
	return nil
}

// specialPrefixes are the ranges a public name has no business resolving
// to: private networks (the host's LAN, a Docker bridge), carrier-grade
// NAT (Alibaba's metadata service at 100.100.100.200), benchmarking, and
// IPv6 unique-local (AWS's IPv6 metadata service, fd00:ec2::254) and
// IPv4-translation ranges. An allow-list entry that is an address literal
// still reaches them: the user named it.
var specialPrefixes = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("fc00::/7"), netip.MustParsePrefix("64:ff9b::/96"), netip.MustParsePrefix("64:ff9b:1::/48"),
}

// isLocal reports addresses that reach the host itself, its link (where
// cloud metadata services live, 169.254.169.254), a private network, or
// no single host; and any address of the host's own interfaces.
func isLocal(ip netip.Addr) bool {
	if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsMulticast() || ip.IsUnspecified() ||
		// 0.0.0.0/8: Linux connects 0.x.y.z to the host itself.
		(ip.Is4() && ip.As4()[0] == 0) {
		return true
	}
	for _, p := range specialPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return hostAddress(ip)
}

// hostAddress reports whether ip is configured on one of this host's
// interfaces (a service bound to 0.0.0.0 answers on all of them).
func hostAddress(ip netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true // cannot tell: refuse
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if h, ok := netip.AddrFromSlice(n.IP); ok && h.Unmap() == ip {
				return true
			}
		}
	}
	return false
}

func (e *Egress) noteRefused(dest string) {
	if e.OnRefused != nil && e.firstTime(&e.refused, dest) {
		e.OnRefused(dest)
	}
}

func (e *Egress) noteAllowed(dest string) {
	if e.OnAllowed != nil && e.firstTime(&e.allowed, dest) {
		e.OnAllowed(dest)
	}
}

// firstTime records dest in *seen and says whether it was new. The
// callbacks run outside the lock, so a slow one does not hold up others.
func (e *Egress) firstTime(seen *map[string]struct{}, dest string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if *seen == nil {
		*seen = make(map[string]struct{})
	}
	if _, ok := (*seen)[dest]; ok || len(*seen) >= maxSeen {
		return false
	}
	(*seen)[dest] = struct{}{}
	return true
}

// answer writes a short text answer and ends the exchange.
func answer(c net.Conn, code int, msg string) {
	_ = c.SetWriteDeadline(time.Now().Add(answerTimeout))
	body := msg + "\n"
	if _, err := fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		code, http.StatusText(code), len(body), body); err != nil {
		return
	}
	// Closing a socket that still has unread input makes the kernel send
	// a reset, which can destroy the answer before the client reads it
	// (an oversized header, a body never read). So stop sending and read
	// what still comes, within a bound, before the caller closes.
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		return
	}
	_ = cw.CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(lingerTimeout))
	_, _ = io.CopyN(io.Discard, c, lingerBytes)
}

// hostPort is a destination, or an allow-list entry, in canonical form.
type hostPort struct {
	// host is a lower-case name without a trailing dot, or an IP address
	// in canonical form (an IPv4-mapped IPv6 address as IPv4).
	host string
	ip   netip.Addr // valid when host is an address
	port uint16
}

func (h hostPort) String() string { return net.JoinHostPort(h.host, strconv.Itoa(int(h.port))) }

// egressPattern is a parsed allow-list entry.
type egressPattern struct {
	// wildcard means any name strictly below host.
	wildcard bool
	hostPort
}

func (p egressPattern) matches(d hostPort) bool {
	if p.port != d.port || p.ip.IsValid() != d.ip.IsValid() {
		return false
	}
	if p.wildcard {
		return strings.HasSuffix(d.host, "."+p.host)
	}
	return p.host == d.host
}

// parseEgressPattern parses one allow-list entry; its errors say what to
// write instead.
func parseEgressPattern(s string) (egressPattern, error) {
	rest, wildcard := strings.CutPrefix(s, "*.")
	if strings.Contains(rest, "*") {
		return egressPattern{}, errors.New(`a wildcard may only be a whole first label, as in "*.example.com:443"`)
	}
	hp, err := parseHostPort(rest)
	if err != nil {
		return egressPattern{}, err
	}
	if wildcard {
		if hp.ip.IsValid() {
			return egressPattern{}, errors.New(`a wildcard covers names, not addresses; list each address, as in "192.0.2.1:443"`)
		}
		if !strings.Contains(hp.host, ".") {
			return egressPattern{}, fmt.Errorf(`"*.%s" would cover a whole top-level domain; name the domain, as in "*.example.%s:%d"`, hp.host, hp.host, hp.port)
		}
	}
	return egressPattern{wildcard: wildcard, hostPort: hp}, nil
}

// parseHostPort parses "host:port" strictly: a DNS name, an IPv4 address
// or a bracketed IPv6 address, and a port 1-65535.
func parseHostPort(s string) (hostPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		switch {
		case strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "["):
			return hostPort{}, errors.New(`put an IPv6 address in brackets, as in "[2001:db8::1]:443"`)
		case !strings.Contains(s, ":"):
			return hostPort{}, fmt.Errorf(`no port; write host:port, as in "%s:443"`, s)
		}
		return hostPort{}, fmt.Errorf(`write host:port, as in "api.example.com:443": %w`, err)
	}
	p, err := parsePort(port)
	if err != nil {
		return hostPort{}, err
	}
	if strings.HasPrefix(s, "[") {
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return hostPort{}, errors.New(`brackets are only for an IPv6 address without a zone, as in "[2001:db8::1]:443"`)
		}
		ip = ip.Unmap()
		return hostPort{host: ip.String(), ip: ip, port: p}, nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		// Unbracketed with a port, SplitHostPort only lets IPv4 through.
		return hostPort{host: ip.String(), ip: ip, port: p}, nil
	}
	name, err := canonicalName(host)
	if err != nil {
		return hostPort{}, err
	}
	return hostPort{host: name, port: p}, nil
}

func parsePort(s string) (uint16, error) {
	const msg = "the port must be a number from 1 to 65535"
	if s == "" || len(s) > 5 {
		return 0, errors.New(msg)
	}
	for _, b := range []byte(s) {
		if b < '0' || b > '9' {
			return 0, errors.New(msg)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, errors.New(msg)
	}
	return uint16(n), nil
}

// canonicalName checks a DNS name (ASCII letters, digits, hyphens, labels
// of 1-63) and returns it lower-cased without its trailing dot.
func canonicalName(host string) (string, error) {
	host = strings.TrimSuffix(host, ".")
	if host == "" || len(host) > 253 {
		return "", errors.New("a host name must be 1 to 253 characters")
	}
	b := []byte(host)
	numeric := true
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("%q: each dot-separated label must be 1 to 63 characters", host)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("%q: a label may not begin or end with a hyphen", host)
		}
		if !looksNumeric(label) {
			numeric = false
		}
	}
	for i, c := range b {
		switch {
		case 'A' <= c && c <= 'Z':
			b[i] = c + ('a' - 'A')
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.':
		default:
			return "", fmt.Errorf("%q: a host name has only letters, digits, hyphens and dots (write an internationalised name in its xn-- form)", host)
		}
	}
	if numeric {
		// Some resolvers read "127.1" or "0x7f000001" as an address.
		return "", fmt.Errorf("%q is not a valid IPv4 address; write four decimal numbers, as in \"192.0.2.1\"", host)
	}
	return string(b), nil
}

// looksNumeric reports a label that inet_aton would read as a number.
func looksNumeric(label string) bool {
	digits := "0123456789"
	if l := strings.ToLower(label); strings.HasPrefix(l, "0x") {
		label, digits = l[2:], "0123456789abcdef"
	}
	for _, c := range label {
		if !strings.ContainsRune(digits, c) {
			return false
		}
	}
	return true
}
