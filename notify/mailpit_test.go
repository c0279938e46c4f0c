package notify

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/testkit"
)

// startMailpit runs a real mailpit that requires STARTTLS (self-signed
// certificate for localhost) and AUTH.
func startMailpit(t *testing.T, user, pass string) *testkit.Mailpit {
	t.Helper()
	authFile := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(authFile, []byte(user+":"+pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return testkit.StartMailpit(t,
		// sans: makes mailpit generate a self-signed certificate; the key
		// flag must say the same, or mailpit refuses to start.
		"--smtp-tls-cert", "sans:localhost", "--smtp-tls-key", "sans:localhost",
		"--smtp-require-starttls",
		"--smtp-auth-file", authFile)
}

func TestEmailThroughMailpit(t *testing.T) {
	const pass = "mailpit-pass-91c2"
	mp := startMailpit(t, "rugwatch", pass)
	port := mp.SMTPPort
	m := &Email{
		Config: configs.Email{Name: "security", Host: "localhost", Port: port, TLS: configs.TLSStartTLS,
			Username: "rugwatch", Password: secret(t, "${env:SMTP_PASSWORD}"),
			From: "rugwatch@example.com", To: []string{"security@example.com"}},
		Resolver: env(map[string]string{"SMTP_PASSWORD": pass}),
		// mailpit's certificate is self-signed and generated per run.
		TLSConfig: &tls.Config{InsecureSkipVerify: true},
	}
	e := driftEvent()
	e.Tool = "echo\r\nBcc: evil@x"
	if retry, err := m.Notify(context.Background(), e); err != nil {
		t.Fatalf("Notify = %v, %v", retry, err)
	}

	var list struct {
		Messages []struct {
			ID        string
			MessageID string
			Subject   string
			Bcc       []struct{ Address string }
		} `json:"messages"`
	}
	mp.GetJSON(t, "/api/v1/messages", &list)
	if len(list.Messages) != 1 {
		t.Fatalf("mailpit holds %d messages", len(list.Messages))
	}
	got := list.Messages[0]
	if want := `[rugwatch] CRITICAL tool.drifted everything/(unprintable tool name)`; got.Subject != want {
		t.Errorf("Subject %q, want %q", got.Subject, want)
	}
	if got.MessageID != e.ID+"@rugwatch" {
		t.Errorf("MessageID %q", got.MessageID)
	}
	if len(got.Bcc) != 0 {
		t.Errorf("Bcc %v", got.Bcc)
	}
	var msg struct {
		Text string
		To   []struct{ Address string }
	}
	mp.GetJSON(t, "/api/v1/message/"+got.ID, &msg)
	for _, want := range []string{"replace /description", `\u202e\e[2J`, string(e.ObservedDigest), "hidden-instructions"} {
		if !strings.Contains(msg.Text, want) {
			t.Errorf("body lacks %q:\n%s", want, msg.Text)
		}
	}
	if len(msg.To) != 1 || msg.To[0].Address != "security@example.com" {
		t.Errorf("To %v", msg.To)
	}

	// The wrong password is refused by a real server: permanent, named,
	// and not quoted.
	m.Resolver = env(map[string]string{"SMTP_PASSWORD": "wrong-" + strconv.Itoa(port)})
	retry, err := m.Notify(context.Background(), e)
	if err == nil || retry || !strings.Contains(err.Error(), "authenticate") {
		t.Errorf("wrong password: retry=%v err=%v", retry, err)
	}
	AssertNoSecrets(t, []string{pass, "wrong-" + strconv.Itoa(port)}, fmt.Sprint(err))
}
