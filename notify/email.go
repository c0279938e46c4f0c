package notify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"time"

	mail "github.com/wneessen/go-mail"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/visible"
)

// EmailDialTimeout is the default bound on connecting and on each SMTP
// command.
const EmailDialTimeout = 15 * time.Second

// Email sends events as plain-text mail over SMTP.
type Email struct {
	Config   configs.Email
	Resolver configs.Resolver
	// TLSConfig overrides the TLS settings (tests: a self-signed server).
	// nil means the system roots with the configured host as server name.
	// It is not configurable from YAML.
	TLSConfig *tls.Config
	// DialTimeout bounds the connection and each command; 0 means
	// EmailDialTimeout.
	DialTimeout time.Duration
	// Now stamps the Date header; nil means time.Now.
	Now func() time.Time
}

// Name is "email:<name>".
func (m *Email) Name() string { return "email:" + m.Config.Name }

// Notify sends e to every configured recipient in one message. An SMTP 4xx
// reply or a network failure is retryable, a 5xx reply permanent.
func (m *Email) Notify(ctx context.Context, e rugwatch.Event) (bool, error) {
	var forms []string
	retry, err := m.notify(ctx, e, &forms)
	if err != nil {
		err = fmt.Errorf("%s: %w", m.Name(), err)
	}
	return retry, scrub(err, forms)
}

func (m *Email) notify(ctx context.Context, e rugwatch.Event, forms *[]string) (bool, error) {
	cfg := m.Config
	addr := net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
	msg, err := m.message(e)
	if err != nil {
		return false, fmt.Errorf("compose message: %w", err)
	}

	timeout := m.DialTimeout
	if timeout <= 0 {
		timeout = EmailDialTimeout
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if m.TLSConfig != nil {
		tlsConf = m.TLSConfig.Clone()
	}
	if tlsConf.ServerName == "" {
		tlsConf.ServerName = cfg.Host
	}
	opts := []mail.Option{
		mail.WithPort(cfg.Port),
		mail.WithTimeout(timeout),
		mail.WithTLSConfig(tlsConf),
	}
	switch cfg.TLS {
	case configs.TLSStartTLS, "":
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	case configs.TLSImplicit:
		opts = append(opts, mail.WithSSL())
	case configs.TLSNone:
		// configs validates this; checked again because a Config built in
		// code skips validation, and a password must not cross a network
		// in the clear.
		if !configs.IsLoopbackHost(cfg.Host) {
			return false, fmt.Errorf("tls none refused for non-loopback host %s", cfg.Host)
		}
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	default:
		return false, fmt.Errorf("unknown tls mode %q", cfg.TLS)
	}
	if cfg.Username != "" && !cfg.Password.IsZero() {
		pass, err := cfg.Password.Resolve(m.Resolver)
		if err != nil {
			return false, fmt.Errorf("resolve password: %w", err)
		}
		*forms = append(*forms, secretForms(pass)...)
		// What AUTH PLAIN puts on the wire, in case a server echoes it.
		*forms = append(*forms, base64.StdEncoding.EncodeToString([]byte("\x00"+cfg.Username+"\x00"+pass)))
		opts = append(opts,
			mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover),
			mail.WithUsername(cfg.Username),
			mail.WithPassword(pass))
	}
	client, err := mail.NewClient(cfg.Host, opts...)
	if err != nil {
		return false, fmt.Errorf("set up SMTP client for %s: %w", addr, err)
	}

	conn, err := client.DialToSMTPClientWithContext(ctx)
	if err != nil {
		return smtpRetry(err), fmt.Errorf("%s %s: %w", dialStep(err), addr, err)
	}
	// After DATA was accepted the message is the server's; a failing QUIT
	// changes nothing about that.
	defer func() { _ = client.CloseWithSMTPClient(conn) }()

	if err := client.SendWithSMTPClient(conn, msg); err != nil {
		// A SendError's text names the SMTP step (MAIL FROM, RCPT TO,
		// DATA…) and carries the server's reply code.
		err = fmt.Errorf("send message to %s: %w", addr, err)
		var se *mail.SendError
		if errors.As(err, &se) {
			switch se.Reason {
			case mail.ErrGetSender, mail.ErrGetRcpts, mail.ErrNoUnencoded:
				return false, err
			}
			if code := se.ErrorCode(); code != 0 {
				return code < 500, err
			}
		}
		return smtpRetry(err), err
	}
	return false, nil
}

// dialStep names the part of connecting that err came from: go-mail does
// connect, greeting, EHLO, STARTTLS and AUTH in one call.
func dialStep(err error) string {
	var (
		opErr    *net.OpError
		certErr  *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		alertErr tls.AlertError
		recErr   tls.RecordHeaderError
	)
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "SMTP AUTH failed"), strings.Contains(msg, "SMTP AUTH"),
		errors.Is(err, mail.ErrNoSupportedAuthDiscovered), errors.Is(err, mail.ErrPlainAuthNotSupported),
		errors.Is(err, mail.ErrLoginAuthNotSupported):
		return "authenticate at"
	case strings.Contains(msg, "STARTTLS"):
		return "start TLS with"
	case errors.As(err, &certErr), errors.As(err, &unknown), errors.As(err, &hostErr),
		errors.As(err, &alertErr), errors.As(err, &recErr), strings.HasPrefix(msg, "tls:"):
		return "TLS handshake with"
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return "connect to"
	}
	return "greet (EHLO)"
}

// smtpRetry classifies a failure without a SendError code: a 5xx reply is
// permanent; everything else (network, TLS, 4xx, timeouts) may pass.
func smtpRetry(err error) bool {
	var tpErr *textproto.Error
	if errors.As(err, &tpErr) {
		return tpErr.Code < 500
	}
	return true
}

// message composes the mail for e. Only rugwatch's own text and names
// that pass headerToken reach headers; everything from the server is
// in the body, rendered by package visible.
func (m *Email) message(e rugwatch.Event) (*mail.Msg, error) {
	msg := mail.NewMsg(mail.WithNoDefaultUserAgent())
	if err := msg.From(m.Config.From); err != nil {
		return nil, fmt.Errorf("from address: %w", err)
	}
	if err := msg.To(m.Config.To...); err != nil {
		return nil, fmt.Errorf("to address: %w", err)
	}
	msg.Subject(Subject(e))
	msg.SetMessageIDWithValue(messageID(e.ID))
	now := time.Now
	if m.Now != nil {
		now = m.Now
	}
	msg.SetDateWithValue(now())
	msg.SetUserAgent("rugwatch")
	msg.SetBodyString(mail.TypeTextPlain, Body(e))
	return msg, nil
}

// Subject is "[rugwatch] <SEVERITY> <type> <server>/<tool>". A header
// carries no text a server chose: every part must be a plain token
// (headerToken), else a neutral placeholder stands in its place and the
// body, rendered by package visible, says what it was. Escaping alone is
// not enough: an escaped name still lets a server write what the reader's
// inbox list shows (a fake "[rugwatch] INFO" prefix, 500 characters that
// push the real severity out of view, words dressed as another tool).
func Subject(e rugwatch.Event) string {
	s := fmt.Sprintf("[rugwatch] %s %s %s",
		strings.ToUpper(headerToken(string(e.Severity), "(unknown severity)")),
		headerToken(string(e.Type), "(unknown type)"),
		// Server names are restricted by configs already; checked again
		// because an Event may come from a store written under another
		// config, or be built in code.
		headerToken(e.Server, "(unprintable server name)"))
	if e.Tool != "" {
		s += "/" + headerToken(e.Tool, "(unprintable tool name)")
	}
	return s
}

// maxHeaderToken bounds one name in a header; longer tool names exist, and
// get the placeholder.
const maxHeaderToken = 64

// headerToken returns s when it is 1 to maxHeaderToken characters of
// [A-Za-z0-9._-], else placeholder.
func headerToken(s, placeholder string) string {
	if s == "" || len(s) > maxHeaderToken {
		return placeholder
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '.' || c == '_' || c == '-' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return placeholder
		}
	}
	return s
}

// messageID is "<evt_…@rugwatch>" without the brackets, so that a resend
// of the same event is recognisably the same message. Anything outside
// the id alphabet is dropped: it is a header.
func messageID(eventID string) string {
	var b strings.Builder
	for _, r := range eventID {
		if r < 0x80 && (r == '_' || r == '-' || r == '.' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		b.WriteString("unknown")
	}
	return b.String() + "@rugwatch"
}

// Body is the plain-text mail body for e.
func Body(e rugwatch.Event) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("rugwatch recorded %s (severity %s).", visible.Line(string(e.Type)), visible.Line(string(e.Severity)))
	line("")
	line("Server:   %s", visible.Line(e.Server))
	if e.Tool != "" {
		line("Tool:     %s", visible.Line(e.Tool))
	}
	if e.ApprovedDigest != "" {
		line("Approved: %s", visible.Line(string(e.ApprovedDigest)))
	}
	if e.ObservedDigest != "" {
		line("Observed: %s", visible.Line(string(e.ObservedDigest)))
	}
	line("When:     %s", e.OccurredAt.UTC().Format(time.RFC3339))
	line("Event id: %s", visible.Line(e.ID))
	if e.Seq > 0 {
		// What the receiver keeps to prove, later, that the log was not
		// cut or rolled back behind this alert.
		line("Log head: seq %d, chain head %s", e.Seq, visible.Line(string(e.ChainHead)))
		line("          check it with: rugwatch verify --head %d:%s", e.Seq, visible.Line(string(e.ChainHead)))
	}
	if e.Message != "" {
		line("")
		line("%s", visible.Text(e.Message))
	}
	if len(e.Changes) > 0 {
		line("")
		line("Changes (%d):", len(e.Changes))
		for _, c := range e.Changes {
			line("")
			line("  %s %s", visible.Line(c.Op), visible.Line(c.Path))
			if len(c.Old) > 0 {
				line("    old: %s", indent(visible.Text(jsonText(c.Old))))
			}
			if len(c.New) > 0 {
				line("    new: %s", indent(visible.Text(jsonText(c.New))))
			}
			if old, nw, ok := bothStrings(c.Old, c.New); ok {
				if wd, ok := visible.WordDiff(old, nw); ok {
					line("    word diff ([-removed-] {+inserted+}): %s", wd)
				}
			}
		}
	}
	if len(e.Findings) > 0 {
		line("")
		line("Findings (%d):", len(e.Findings))
		for _, f := range e.Findings {
			line("  [%s] %s at %s: %s", visible.Line(string(f.Severity)), visible.Line(f.Rule),
				visible.Line(f.Path), visible.Message(f.Message))
		}
	}
	line("")
	line("Review with: rugwatch diff %s", shellWord(e.Server))
	return b.String()
}

// jsonText shows a JSON string value as its text (so that hidden
// characters are what visible escapes, not JSON escapes), anything else as
// the JSON itself.
func jsonText(raw []byte) string {
	var s string
	if len(raw) > 0 && raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err == nil {
			return s
		}
	}
	return string(raw)
}

// bothStrings decodes a replace of one JSON string by another.
func bothStrings(a, b []byte) (string, string, bool) {
	var x, y string
	if len(a) == 0 || len(b) == 0 || a[0] != '"' || b[0] != '"' {
		return "", "", false
	}
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return "", "", false
	}
	return x, y, true
}

// indent continues a multi-line value under its label.
func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n         ") }

// shellWord quotes a server name for a copy-pasted command line.
func shellWord(s string) string {
	s = visible.Line(s)
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789._-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
