package notify

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"go/build"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch/configs"
)

// mailpitBinary finds mailpit on PATH or in GOPATH/bin. Without it the
// test skips, except in CI, where a missing real SMTP server is a failure.
func mailpitBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("mailpit"); err == nil {
		return p
	}
	for _, dir := range filepath.SplitList(build.Default.GOPATH) {
		p := filepath.Join(dir, "bin", "mailpit")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	msg := "mailpit not found on PATH or in $(go env GOPATH)/bin (go install github.com/axllent/mailpit@v1.33.1)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startMailpit runs a real mailpit that requires STARTTLS (self-signed
// certificate for localhost) and AUTH, and returns its SMTP port and API
// base URL.
func startMailpit(t *testing.T, user, pass string) (smtpPort int, api string) {
	t.Helper()
	bin := mailpitBinary(t)
	dir := t.TempDir()
	authFile := filepath.Join(dir, "auth")
	if err := os.WriteFile(authFile, []byte(user+":"+pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	smtpPort, httpPort := freePort(t), freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--smtp", fmt.Sprintf("127.0.0.1:%d", smtpPort),
		"--listen", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--database", filepath.Join(dir, "mailpit.db"),
		// sans: makes mailpit generate a self-signed certificate; the key
		// flag must say the same, or mailpit refuses to start.
		"--smtp-tls-cert", "sans:localhost", "--smtp-tls-key", "sans:localhost",
		"--smtp-require-starttls",
		"--smtp-auth-file", authFile,
		"--smtp-disable-rdns", "--disable-version-check", "--quiet")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		cancel()
		<-waited
	})
	api = fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(api + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-waited:
			t.Fatalf("mailpit exited:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mailpit not ready:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return smtpPort, api
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func TestEmailThroughMailpit(t *testing.T) {
	const pass = "mailpit-pass-91c2"
	port, api := startMailpit(t, "rugwatch", pass)
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
	getJSON(t, api+"/api/v1/messages", &list)
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
	getJSON(t, api+"/api/v1/message/"+got.ID, &msg)
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
