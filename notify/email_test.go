package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"mime"
	"net/mail"
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch/configs"
)

func parseMail(t *testing.T, data []byte) (*mail.Message, string) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("received message does not parse: %v\n%s", err, data)
	}
	body, err := io.ReadAll(m.Body)
	if err != nil {
		t.Fatal(err)
	}
	return m, string(body)
}

func decodeHeader(t *testing.T, v string) string {
	t.Helper()
	s, err := new(mime.WordDecoder).DecodeHeader(v)
	if err != nil {
		t.Fatalf("decode header %q: %v", v, err)
	}
	return s
}

func TestEmailMessageOverPlainLoopback(t *testing.T) {
	srv := startSMTP(t, smtpPlain, "", "", nil)
	m := &Email{Config: srv.emailConfig(configs.TLSNone)}
	e := driftEvent()
	retry, err := m.Notify(context.Background(), e)
	if err != nil || retry {
		t.Fatalf("Notify = %v, %v", retry, err)
	}
	msgs := srv.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	if msgs[0].From != "rugwatch@example.com" || strings.Join(msgs[0].To, ",") != "security@example.com,oncall@example.com" {
		t.Errorf("envelope %s → %v", msgs[0].From, msgs[0].To)
	}
	msg, body := parseMail(t, msgs[0].Data)
	if got, want := decodeHeader(t, msg.Header.Get("Subject")), "[rugwatch] CRITICAL tool.drifted everything/echo"; got != want {
		t.Errorf("Subject %q, want %q", got, want)
	}
	if got := msg.Header.Get("Message-Id"); got != "<"+e.ID+"@rugwatch>" {
		t.Errorf("Message-ID %q", got)
	}
	if !strings.HasPrefix(msg.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("Content-Type %q", msg.Header.Get("Content-Type"))
	}
	text := decodeBody(t, msg, body)
	for _, want := range []string{
		"everything", "echo", string(e.ApprovedDigest), string(e.ObservedDigest),
		"replace /description", `old: Echoes the input`, `\u202e`, `\e[2J`,
		"add /inputSchema/properties/sidenote", `new: {"type":"string"}`,
		"[critical] hidden-instructions at /description", e.ID,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("body lacks %q:\n%s", want, text)
		}
	}
	if strings.ContainsAny(text, "\x1b\u202e") {
		t.Errorf("body carries raw control or bidi characters:\n%q", text)
	}
}

// decodeBody undoes the transfer encoding go-mail chose.
func decodeBody(t *testing.T, msg *mail.Message, body string) string {
	t.Helper()
	switch strings.ToLower(msg.Header.Get("Content-Transfer-Encoding")) {
	case "quoted-printable":
		b, err := io.ReadAll(quotedPrintable(body))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	case "base64":
		b, err := io.ReadAll(base64Reader(body))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	return body
}

// A tool name is the server's to choose; CR/LF in it must never become a
// header of ours.
func TestEmailHeaderInjectionImpossible(t *testing.T) {
	srv := startSMTP(t, smtpPlain, "", "", nil)
	m := &Email{Config: srv.emailConfig(configs.TLSNone)}
	e := driftEvent()
	e.Tool = "echo\r\nBcc: evil@x"
	e.Server = "srv\nX-Injected: 1\r\n\r\nbody"
	if _, err := m.Notify(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	msgs := srv.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	for _, rcpt := range msgs[0].To {
		if strings.Contains(rcpt, "evil") {
			t.Errorf("injected recipient %s", rcpt)
		}
	}
	msg, _ := parseMail(t, msgs[0].Data)
	for _, h := range []string{"Bcc", "X-Injected"} {
		if v, ok := msg.Header[h]; ok {
			t.Errorf("injected header %s: %v", h, v)
		}
	}
	subject := decodeHeader(t, msg.Header.Get("Subject"))
	// Neither name is a plain token, so neither reaches the header at all.
	if want := `[rugwatch] CRITICAL tool.drifted (unprintable server name)/(unprintable tool name)`; subject != want {
		t.Errorf("Subject %q, want %q", subject, want)
	}
	if strings.ContainsAny(subject, "\r\n") {
		t.Errorf("subject holds a raw line break")
	}
}

func TestEmailSMTPReplyClassification(t *testing.T) {
	for _, c := range []struct {
		code  int
		retry bool
	}{{451, true}, {452, true}, {550, false}, {554, false}} {
		srv := startSMTP(t, smtpPlain, "", "", func(int) error { return smtpReply(c.code, "scripted") })
		m := &Email{Config: srv.emailConfig(configs.TLSNone)}
		retry, err := m.Notify(context.Background(), driftEvent())
		if err == nil || retry != c.retry {
			t.Errorf("SMTP %d: retry=%v err=%v", c.code, retry, err)
			continue
		}
		// The step is named, and so is the server.
		if !strings.Contains(err.Error(), "DATA") || !strings.Contains(err.Error(), srv.Addr) {
			t.Errorf("SMTP %d: error does not say what it was doing: %v", c.code, err)
		}
	}
}

func TestEmailSTARTTLSVerifiedWithAuth(t *testing.T) {
	srv := startSMTP(t, smtpSTARTTLS, "rugwatch", "smtp-pass-4f9a", nil)
	cfg := srv.emailConfig(configs.TLSStartTLS)
	cfg.Username = "rugwatch"
	cfg.Password = secret(t, "${env:SMTP_PASSWORD}")
	m := &Email{Config: cfg, Resolver: env(map[string]string{"SMTP_PASSWORD": "smtp-pass-4f9a"}),
		TLSConfig: &tls.Config{RootCAs: srv.RootCAs}}
	if retry, err := m.Notify(context.Background(), driftEvent()); err != nil {
		t.Fatalf("Notify = %v, %v", retry, err)
	}
	if n := len(srv.messages()); n != 1 {
		t.Fatalf("%d messages", n)
	}

	// A wrong password is a 535: permanent, and the step is named.
	m.Resolver = env(map[string]string{"SMTP_PASSWORD": "wrong-password-77"})
	retry, err := m.Notify(context.Background(), driftEvent())
	if err == nil || retry || !strings.Contains(err.Error(), "authenticate") {
		t.Errorf("wrong password: retry=%v err=%v", retry, err)
	}

	// Without trusting the server's certificate nothing is sent.
	m.Resolver = env(map[string]string{"SMTP_PASSWORD": "smtp-pass-4f9a"})
	m.TLSConfig = nil
	_, err = m.Notify(context.Background(), driftEvent())
	if err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Errorf("untrusted certificate: %v", err)
	}
	if n := len(srv.messages()); n != 1 {
		t.Errorf("%d messages after failures, want still 1", n)
	}
}

func TestEmailImplicitTLS(t *testing.T) {
	srv := startSMTP(t, smtpImplicit, "", "", nil)
	m := &Email{Config: srv.emailConfig(configs.TLSImplicit), TLSConfig: &tls.Config{RootCAs: srv.RootCAs}}
	if retry, err := m.Notify(context.Background(), driftEvent()); err != nil {
		t.Fatalf("Notify = %v, %v", retry, err)
	}
	if n := len(srv.messages()); n != 1 {
		t.Fatalf("%d messages", n)
	}
}

// A server that does not offer STARTTLS (or an attacker stripping it)
// gets nothing in the clear.
func TestEmailSTARTTLSMandatory(t *testing.T) {
	srv := startSMTP(t, smtpPlain, "", "", nil)
	m := &Email{Config: srv.emailConfig(configs.TLSStartTLS)}
	retry, err := m.Notify(context.Background(), driftEvent())
	if err == nil || !retry || !strings.Contains(err.Error(), "start TLS") {
		t.Errorf("no STARTTLS: retry=%v err=%v", retry, err)
	}
	if srv.dataCount() != 0 {
		t.Error("message sent without TLS")
	}
}

func TestEmailNoTLSOnlyForLoopback(t *testing.T) {
	m := &Email{Config: configs.Email{Name: "m", Host: "smtp.example.com", Port: 25, TLS: configs.TLSNone,
		From: "a@example.com", To: []string{"b@example.com"}}}
	retry, err := m.Notify(context.Background(), driftEvent())
	if err == nil || retry || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("tls none to a remote host: retry=%v err=%v", retry, err)
	}
}

func TestEmailConnectFailureRetries(t *testing.T) {
	srv := startSMTP(t, smtpPlain, "", "", nil)
	cfg := srv.emailConfig(configs.TLSNone)
	cfg.Port = 1 // nothing listens there
	m := &Email{Config: cfg}
	retry, err := m.Notify(context.Background(), driftEvent())
	if err == nil || !retry || !strings.Contains(err.Error(), "connect to") {
		t.Errorf("refused connection: retry=%v err=%v", retry, err)
	}
}
