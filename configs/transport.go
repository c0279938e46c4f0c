package configs

import (
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
)

// IsLoopbackHost reports whether host (a bare host name or IP address, no
// port, no brackets: what url.URL.Hostname returns) names this machine:
// "localhost" in any case, 127.0.0.0/8 or ::1 (also IPv4-mapped).
//
// Names under .localhost are not loopback here. RFC 6761 asks resolvers to
// send them to loopback, but Go's resolver and /etc/hosts do not promise
// it, and DNS may answer for them; a guess wrong in the loopback direction
// would send a secret over plain text to another machine.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// plainRemote reports whether rawURL is plain http:// to a host other than
// loopback: a URL anyone on the path can read. An unparsable URL is not
// reported here; checkURL reports it.
func plainRemote(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil || !strings.EqualFold(u.Scheme, "http") {
		return false
	}
	return !IsLoopbackHost(u.Hostname())
}

// secretTransport refuses every header of h at p that carries a ${env:} or
// ${file:} reference when rawURL is plain http:// to a remote host: the
// reference marks the value as a credential, and plain http would hand it
// to every hop between here and the server. Literal header values are not
// judged (a literal is not known to be a secret, and "X-Team: ops" over
// http is fine).
func (v *validator) secretTransport(p, rawURL string, h map[string]Secret) {
	if len(h) == 0 || !plainRemote(rawURL) {
		return
	}
	for _, k := range slices.Sorted(maps.Keys(h)) {
		if len(h[k].references()) == 0 {
			continue
		}
		v.fail(p+".headers."+k, "carries a secret reference but url is plain http:// to a non-loopback host; use https:// (plain http only for localhost, 127.0.0.0/8, ::1)")
	}
}
