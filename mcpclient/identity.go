package mcpclient

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/visible"
)

// RemoteIdentity is what identifies a remote server. The leaf's key is
// left out on purpose: ACME certificates rotate it every few weeks, so
// pinning it would cry wolf; the issuing CA's key and the names the leaf
// is valid for stay put across renewals.
type RemoteIdentity struct {
	// Origin is scheme://host:port of the configured URL.
	Origin string `json:"origin"`
	// CAKeySHA256 is the SHA-256 (hex) of the SubjectPublicKeyInfo of the
	// certificate that issued the leaf, as verified; CASubject names it
	// for humans and is not compared.
	CAKeySHA256 string   `json:"ca_key_sha256,omitempty"`
	CASubject   string   `json:"ca_subject,omitempty"`
	LeafSANs    []string `json:"leaf_sans,omitempty"`
	// ServerName is serverInfo.name; ProtocolVersion the revision
	// negotiated.
	ServerName      string             `json:"server_name,omitempty"`
	ProtocolVersion string             `json:"protocol_version,omitempty"`
	Findings        []rugwatch.Finding `json:"findings,omitempty"`
}

// tlsSeen keeps the TLS state of the first response of a session's HTTP
// client: the chain that answered initialize is the one pinned.
type tlsSeen struct {
	mu    sync.Mutex
	state *tls.ConnectionState
}

func (t *tlsSeen) note(cs *tls.ConnectionState) {
	if t == nil || cs == nil {
		return
	}
	t.mu.Lock()
	if t.state == nil {
		c := *cs
		t.state = &c
	}
	t.mu.Unlock()
}

func (t *tlsSeen) get() *tls.ConnectionState {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state
}

// describeIdentity fills the remote identity of an HTTP or SSE listing.
func (s *Session) describeIdentity(l *Listing) {
	l.RevisionChosen = s.opts.PreferHandshake
	if s.http == nil {
		return
	}
	bt, ok := s.http.Transport.(*boundedTransport)
	if !ok {
		return
	}
	id := RemoteIdentityOf(bt.origin, bt.tls.get(), s.Init.ServerInfo)
	id.ProtocolVersion = s.Init.ProtocolVersion
	l.Identity = id
}

// remoteIdentityOf builds the identity of origin from the TLS state of its
// answer (nil over plain http) and the serverInfo it reported.
func RemoteIdentityOf(origin string, cs *tls.ConnectionState, serverInfo json.RawMessage) *RemoteIdentity {
	id := &RemoteIdentity{Origin: origin}
	var info struct{ Name string }
	if json.Unmarshal(serverInfo, &info) == nil {
		id.ServerName = visible.Bounded(info.Name, maxIDText)
	}
	if cs != nil && len(cs.PeerCertificates) > 0 {
		leaf := cs.PeerCertificates[0]
		issuer := leaf
		switch {
		case len(cs.VerifiedChains) > 0 && len(cs.VerifiedChains[0]) > 1:
			issuer = cs.VerifiedChains[0][1]
		case len(cs.PeerCertificates) > 1:
			issuer = cs.PeerCertificates[1]
		}
		sum := sha256.Sum256(issuer.RawSubjectPublicKeyInfo)
		id.CAKeySHA256 = hex.EncodeToString(sum[:])
		id.CASubject = visible.Bounded(issuer.Subject.String(), maxIDText)
		id.LeafSANs = sans(leaf)
	}
	if u, err := url.Parse(origin); err == nil && u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		id.Findings = append(id.Findings, rugwatch.Finding{Rule: detect.RulePlaintextTransport, Severity: detect.SeverityOf(detect.RulePlaintextTransport), Path: "/identity/origin",
			Message: fmt.Sprintf("%s is reached over plain http://: anyone on the path reads and rewrites the tools the model gets; use https:// (require_tls: true refuses this)", origin)})
	}
	return id
}

// sans lists every name a leaf is valid for, sorted, bounded.
func sans(c *x509.Certificate) []string {
	var out []string
	out = append(out, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	for _, u := range c.URIs {
		out = append(out, u.String())
	}
	out = append(out, c.EmailAddresses...)
	if len(out) > 64 {
		out = out[:64]
	}
	for i := range out {
		out[i] = visible.Bounded(out[i], maxIDText)
	}
	slices.Sort(out)
	return out
}

// isLoopbackHost is configs.IsLoopbackHost's rule (monitor does not import
// configs): localhost or a loopback address.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
