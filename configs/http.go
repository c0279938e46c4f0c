package configs

import (
	"net"
	"strconv"
)

// nonLoopback is why a non-loopback http_listen without a token is refused.
const nonLoopback = "must be a loopback address (localhost, 127.0.0.0/8, ::1) unless http_token is set " +
	"(a ${env:NAME} or ${file:PATH} reference: the bearer token every request but /healthz and /readyz must carry)"

// httpListen checks http_listen and http_token together: the listener
// serves /metrics and the read-only web view, which show every server's
// tools and findings, so anything but loopback needs a bearer token, and
// the token is a reference (${env:…} or ${file:…}), never a literal in
// the file.
func (v *validator) httpListen(c *Config) {
	if !c.HTTPToken.IsZero() && len(c.HTTPToken.references()) == 0 {
		v.fail("http_token", "must be a ${env:NAME} or ${file:PATH} reference, not a literal token")
	}
	if c.HTTPListen == "" {
		if !c.HTTPToken.IsZero() {
			v.fail("http_token", "only used with http_listen")
		}
		return
	}
	host, port, err := net.SplitHostPort(c.HTTPListen)
	if err != nil {
		v.fail("http_listen", "must be host:port")
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.fail("http_listen", "port must be a number between 0 and 65535")
		return
	}
	if !IsLoopbackHost(host) && c.HTTPToken.IsZero() {
		v.fail("http_listen", "%s", nonLoopback)
	}
}

// HTTPLoopback reports whether http_listen is a loopback address (where
// the web view also checks the Host header against DNS rebinding).
func (c *Config) HTTPLoopback() bool {
	host, _, err := net.SplitHostPort(c.HTTPListen)
	return err == nil && IsLoopbackHost(host)
}
