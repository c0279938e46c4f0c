package notify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"io"
	"math/big"
	"mime/quotedprintable"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	smtp "github.com/emersion/go-smtp"

	"github.com/rugwatch/rugwatch/configs"
)

// smtpServer is a real SMTP server (go-smtp) in the test process, answering
// DATA as its script says and keeping what it accepted.
type smtpServer struct {
	Addr    string
	Host    string
	Port    int
	RootCAs *x509.CertPool // trusts the server's certificate when TLS is on

	user, pass string
	authEcho   bool              // reject AUTH quoting the password received (hostile server)
	script     func(n int) error // n counts DATA commands from 0; nil error accepts

	mu       sync.Mutex
	received []smtpMessage
	datas    int
}

type smtpMessage struct {
	From string
	To   []string
	Data []byte
}

type smtpMode int

const (
	smtpPlain    smtpMode = iota // no TLS at all (tls: none on loopback)
	smtpSTARTTLS                 // STARTTLS offered
	smtpImplicit                 // TLS from the first byte
)

// startSMTP starts a server on 127.0.0.1. With user set it offers AUTH
// PLAIN and requires it.
func startSMTP(t *testing.T, mode smtpMode, user, pass string, script func(int) error) *smtpServer {
	t.Helper()
	s := &smtpServer{user: user, pass: pass, script: script}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &smtpSession{srv: s}, nil
	}))
	srv.Domain = "localhost"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.AllowInsecureAuth = mode == smtpPlain
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if mode != smtpPlain {
		conf, pool := selfSigned(t, "127.0.0.1")
		s.RootCAs = pool
		if mode == smtpSTARTTLS {
			srv.TLSConfig = conf
		} else {
			ln = tls.NewListener(ln, conf)
		}
	}
	s.Addr = ln.Addr().String()
	host, port, _ := net.SplitHostPort(s.Addr)
	s.Host = host
	s.Port, _ = strconv.Atoi(port)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		// Close misses a listener that Serve has not registered yet.
		_ = ln.Close()
		<-done
	})
	return s
}

// tlsClientConfig trusts the server's certificate.
func (s *smtpServer) tlsClientConfig() *tls.Config { return &tls.Config{RootCAs: s.RootCAs} }

func (s *smtpServer) messages() []smtpMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]smtpMessage(nil), s.received...)
}

func (s *smtpServer) dataCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.datas
}

// emailConfig is a channel pointed at s.
func (s *smtpServer) emailConfig(mode string) configs.Email {
	return configs.Email{Name: "security", Host: s.Host, Port: s.Port, TLS: mode,
		From: "rugwatch@example.com", To: []string{"security@example.com", "oncall@example.com"}}
}

type smtpSession struct {
	srv    *smtpServer
	authed bool
	from   string
	to     []string
}

func (x *smtpSession) AuthMechanisms() []string {
	if x.srv.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (x *smtpSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if x.srv.authEcho {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
				Message: "bad credentials " + user + ":" + pass}
		}
		if user != x.srv.user || pass != x.srv.pass {
			return smtp.ErrAuthFailed
		}
		x.authed = true
		return nil
	}), nil
}

func (x *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if x.srv.user != "" && !x.authed {
		return smtp.ErrAuthRequired
	}
	x.from = from
	return nil
}

func (x *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.to = append(x.to, to)
	return nil
}

func (x *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	x.srv.mu.Lock()
	n := x.srv.datas
	x.srv.datas++
	x.srv.mu.Unlock()
	if x.srv.script != nil {
		if err := x.srv.script(n); err != nil {
			return err
		}
	}
	x.srv.mu.Lock()
	x.srv.received = append(x.srv.received, smtpMessage{From: x.from, To: x.to, Data: b})
	x.srv.mu.Unlock()
	return nil
}

func (x *smtpSession) Reset()        { x.from, x.to = "", nil }
func (x *smtpSession) Logout() error { return nil }

func smtpReply(code int, msg string) error {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCodeNotSet, Message: msg}
}

// selfSigned makes a server certificate for host and a pool that trusts it.
func selfSigned(t *testing.T, host string) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

func quotedPrintable(s string) io.Reader { return quotedprintable.NewReader(strings.NewReader(s)) }

func base64Reader(s string) io.Reader {
	return base64.NewDecoder(base64.StdEncoding, strings.NewReader(strings.NewReplacer("\r", "", "\n", "").Replace(s)))
}
