package mcpclient

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/visible"
)

// newHTTPClient returns the client for one HTTP or SSE target. It never
// follows redirects, sends nothing to any origin but the target's own (a
// legacy SSE server names its POST endpoint in an "endpoint" event, and
// may name any URL there: another host on the monitor's network, or a
// collector), and caps every response body at max bytes.
//
// roots, when set, replaces the system roots (tests trust their own CA
// through DialOptions.RootCAs, never through a global).
func newHTTPClient(t Target, max int64, roots *x509.CertPool) (*http.Client, error) {
	u, err := url.Parse(t.URL)
	if err != nil {
		return nil, fmt.Errorf("parsing url: %w", err)
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	if roots != nil {
		base.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	// Validation refuses the headers rugwatch or its transport sets; a
	// target built elsewhere must not override them either. Decided once
	// here, not on every request.
	var headers map[string]string
	for k, v := range t.Headers {
		if configs.ReservedHeader(configs.ServerHeaders, k) {
			continue
		}
		if headers == nil {
			headers = make(map[string]string, len(t.Headers))
		}
		headers[k] = v
	}
	return &http.Client{
		Transport: &boundedTransport{
			base:    base,
			origin:  origin(u),
			headers: headers,
			max:     max,
			tls:     &tlsSeen{},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errRedirect
		},
	}, nil
}

var errRedirect = errors.New("server answered with a redirect; rugwatch does not follow redirects")

// origin is scheme://host:port with the host in lower case and the
// default port filled in, so that http://h/ and http://H:80/ are one
// origin.
func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return strings.ToLower(u.Scheme) + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

type boundedTransport struct {
	base    *http.Transport
	origin  string
	headers map[string]string
	max     int64
	// tls keeps the first answer's TLS state, for the remote identity.
	tls *tlsSeen
}

func (b *boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if o := origin(req.URL); o != b.origin {
		// Not even a request without headers: the body is rugwatch's
		// initialize and the request itself reaches whatever the server
		// pointed at.
		if req.Body != nil {
			_ = req.Body.Close() // RoundTrip owns the body, also on error
		}
		return nil, &HostileError{Reason: fmt.Sprintf("server sent rugwatch to %s; nothing is sent outside %s", visible.Bounded(o, maxIDText), b.origin)}
	}
	if len(b.headers) > 0 {
		req = req.Clone(req.Context())
		for k, v := range b.headers {
			req.Header.Set(k, v)
		}
	}
	resp, err := b.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	b.tls.note(resp.TLS)
	if resp.ContentLength > b.max {
		resp.Body.Close()
		return nil, &LimitError{Limit: "max_response_bytes", Value: b.max}
	}
	resp.Body = &limitedBody{rc: resp.Body, left: b.max, max: b.max}
	return resp, nil
}

// CloseIdleConnections closes the idle connections of the transport
// underneath. http.Client.CloseIdleConnections reaches only a transport
// that has this method: without it closeIdle did nothing, and as each poll
// has a transport of its own, every poll of a fleet left its keep-alive
// connection open (two goroutines and their buffers each) until the
// server dropped it, memory that grew with the fleet.
func (b *boundedTransport) CloseIdleConnections() { b.base.CloseIdleConnections() }

// limitedBody fails reads past max bytes instead of truncating silently, so
// a truncated listing can never pass for a complete one.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
	max  int64
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, &LimitError{Limit: "max_response_bytes", Value: l.max}
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.rc.Read(p)
	l.left -= int64(n)
	return n, err
}

func (l *limitedBody) Close() error { return l.rc.Close() }

// CloseIdle releases idle connections of the client.
func closeIdle(c *http.Client) {
	if c != nil {
		c.CloseIdleConnections()
	}
}
