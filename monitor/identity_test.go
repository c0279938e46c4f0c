package monitor

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/testkit/testservers"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, name string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert, key}
}

// leaf issues a fresh leaf (a new key each time, as a renewal makes) for
// 127.0.0.1 and the given DNS names.
func (ca testCA) leaf(t *testing.T, dns ...string) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "mcp"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: dns, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsMCP serves fixtureServer over Streamable HTTP with TLS, the
// certificate swappable between handshakes.
func tlsMCP(t *testing.T, cert *atomic.Pointer[tls.Certificate]) *httptest.Server {
	t.Helper()
	s := testservers.FixtureServer(2, 0)
	h := httptest.NewUnstartedServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true}))
	// GetConfigForClient, not GetCertificate: without SNI (an IP URL)
	// crypto/tls serves Certificates, which StartTLS fills.
	h.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return &tls.Config{Certificates: []tls.Certificate{*cert.Load()}}, nil
	}}
	h.StartTLS()
	t.Cleanup(h.Close)
	return h
}

// A renewed leaf from the same CA keeps the identity; a certificate from
// another CA (an impersonator who got one issued, or a hijacked name) is
// a critical identity.drifted, although every tool is unchanged: without
// the identity pin that poll would raise nothing at all.
func TestRemoteIdentityDrift(t *testing.T) {
	ca1, ca2 := newTestCA(t, "ca one"), newTestCA(t, "ca two")
	roots := x509.NewCertPool()
	roots.AddCert(ca1.cert)
	roots.AddCert(ca2.cert)
	var cert atomic.Pointer[tls.Certificate]
	cert.Store(ca1.leaf(t, "mcp.test"))
	srv := tlsMCP(t, &cert)
	// A second server, the same tools under another CA from the start.
	var cert2 atomic.Pointer[tls.Certificate]
	cert2.Store(ca2.leaf(t, "mcp.test"))
	other := tlsMCP(t, &cert2)

	h := newHarness(t)
	poll := func(url string) (*mcpclient.Listing, []rugwatch.Event) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		l, err := mcpclient.Poll(ctx, mcpclient.Target{Name: "remote", Transport: mcpclient.TransportHTTP, URL: url}, mcpclient.DialOptions{RootCAs: roots})
		if err != nil {
			t.Fatal(err)
		}
		_, evs := h.record(l, nil)
		return l, evs
	}
	drifts := func(evs []rugwatch.Event) []rugwatch.Event {
		var out []rugwatch.Event
		for _, e := range evs {
			if e.Type == rugwatch.EventIdentityDrifted {
				out = append(out, e)
			}
		}
		return out
	}
	l, _ := poll(srv.URL)
	id := l.Identity
	if id == nil || id.CAKeySHA256 == "" || !strings.HasPrefix(id.Origin, "https://127.0.0.1:") || id.CASubject != "CN=ca one" || len(id.LeafSANs) != 2 || id.ServerName == "" {
		t.Fatalf("identity %+v", id)
	}
	if len(id.Findings) != 0 {
		t.Fatalf("https has findings: %v", id.Findings)
	}

	cert.Store(ca1.leaf(t, "mcp.test")) // renewal: new leaf key, same CA
	l2, evs := poll(srv.URL)
	if d := drifts(evs); len(d) != 0 || l2.Identity.CAKeySHA256 != id.CAKeySHA256 {
		t.Fatalf("a renewed leaf drifted: %v", d)
	}

	cert.Store(ca2.leaf(t, "mcp.test")) // another CA
	_, evs = poll(srv.URL)
	d := drifts(evs)
	if len(d) != 1 || d[0].Severity != rugwatch.SeverityCritical || !strings.Contains(d[0].Message, "ca_key_sha256") {
		t.Fatalf("a new CA: %v", evs)
	}
	for _, e := range evs {
		if strings.HasPrefix(string(e.Type), "tool.") {
			t.Fatalf("the tools moved too (%v): the test would not show the pin is what caught it", e)
		}
	}
	// The same drift is raised once, not every poll.
	if _, evs = poll(srv.URL); len(drifts(evs)) != 0 {
		t.Fatalf("raised again: %v", evs)
	}
	// New leaf names under the pinned CA: a warning.
	cert.Store(ca1.leaf(t, "other.test"))
	if _, evs = poll(srv.URL); len(drifts(evs)) != 1 || drifts(evs)[0].Severity != rugwatch.SeverityWarning {
		t.Fatalf("new SANs: %v", evs)
	}
	// Another origin with the same tools: critical.
	if _, evs = poll(other.URL); len(drifts(evs)) != 1 || drifts(evs)[0].Severity != rugwatch.SeverityCritical {
		t.Fatalf("new origin: %v", evs)
	}
}

// Without the test roots the test CA is not trusted: the pool comes in
// through DialOptions, not through a global.
func TestRemoteIdentityRootsInjected(t *testing.T) {
	ca := newTestCA(t, "ca")
	var cert atomic.Pointer[tls.Certificate]
	cert.Store(ca.leaf(t))
	srv := tlsMCP(t, &cert)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := mcpclient.Poll(ctx, mcpclient.Target{Name: "remote", Transport: mcpclient.TransportHTTP, URL: srv.URL}, mcpclient.DialOptions{}); err == nil {
		t.Fatal("an untrusted CA was accepted")
	}
}

func TestPlaintextTransportFinding(t *testing.T) {
	for origin, want := range map[string]bool{
		"http://mcp.example.com:80": true, "http://10.0.0.5:3001": true,
		"http://127.0.0.1:3001": false, "http://localhost:80": false, "http://[::1]:80": false,
		"https://mcp.example.com:443": false,
	} {
		id := mcpclient.RemoteIdentityOf(origin, nil, nil)
		if got := len(id.Findings) == 1 && id.Findings[0].Rule == detect.RulePlaintextTransport; got != want {
			t.Errorf("%s: findings %v", origin, id.Findings)
		}
	}
}

// TestIdentityDriftIsApprovedWithLaunch: a human accepts a new identity
// with approve --launch (Ledger.Approve pinning the launch); the report is
// unclean until then and clean after, and the next poll raises nothing.
func TestIdentityDriftIsApprovedWithLaunch(t *testing.T) {
	ca1, ca2 := newTestCA(t, "ca one"), newTestCA(t, "ca two")
	roots := x509.NewCertPool()
	roots.AddCert(ca1.cert)
	roots.AddCert(ca2.cert)
	var cert atomic.Pointer[tls.Certificate]
	cert.Store(ca1.leaf(t, "mcp.test"))
	srv := tlsMCP(t, &cert)
	h := newHarness(t)
	poll := func() []rugwatch.Event {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		l, err := mcpclient.Poll(ctx, mcpclient.Target{Name: "remote", Transport: mcpclient.TransportHTTP, URL: srv.URL}, mcpclient.DialOptions{RootCAs: roots})
		if err != nil {
			t.Fatal(err)
		}
		_, evs := h.record(l, nil)
		return evs
	}
	poll()
	cert.Store(ca2.leaf(t, "mcp.test"))
	poll()
	if !h.server().IdentityDrifted || report.ServerReportOf(h.server(), mcpclient.TransportHTTP).IdentityDrifted != true {
		t.Fatal("the new CA did not leave the server identity-drifted")
	}
	if rep := (report.Report{Servers: []report.ServerReport{report.ServerReportOf(h.server(), mcpclient.TransportHTTP)}}); rep.Clean() {
		t.Fatal("a report with a drifted identity is clean")
	}
	if _, err := h.ledger().Approve(context.Background(), "srv", nil, true); err != nil {
		t.Fatal(err)
	}
	if h.server().IdentityDrifted {
		t.Fatal("approve --launch did not pin the new identity")
	}
	for _, e := range poll() {
		if e.Type == rugwatch.EventIdentityDrifted {
			t.Fatalf("drift raised again after it was approved: %+v", e)
		}
	}
}
