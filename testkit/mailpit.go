package testkit

import (
	"context"
	"encoding/json"
	"go/build"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// MailpitVersion is the mailpit .ci/run installs.
const MailpitVersion = "v1.33.1"

// MailpitBinary finds mailpit on PATH or in GOPATH/bin. Without it the
// test skips, except in CI, where a missing real SMTP server is a failure.
func MailpitBinary(t testing.TB) string {
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
	msg := "mailpit not found on PATH or in $(go env GOPATH)/bin (go install github.com/axllent/mailpit@" + MailpitVersion + ")"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Mailpit is a real mailpit run for one test.
type Mailpit struct {
	// SMTPPort is the loopback port mailpit's SMTP server listens on.
	SMTPPort int
	// Client reaches mailpit's HTTP API; use it with URL.
	Client *http.Client
	out    *Output
}

// URL is the API address for path ("/api/v1/messages"). The host part is
// a placeholder: Client dials mailpit's Unix socket whatever it says.
func (m *Mailpit) URL(path string) string { return "http://mailpit" + path }

// Logs is what mailpit has printed, for failure messages.
func (m *Mailpit) Logs() string { return m.out.String() }

// GetJSON decodes the API's answer to GET path into v.
func (m *Mailpit) GetJSON(t testing.TB, path string, v any) {
	t.Helper()
	resp, err := m.Client.Get(m.URL(path))
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// StartMailpit runs mailpit until the test ends; extra are more flags
// (STARTTLS, an auth file). It returns once both servers accept
// connections.
//
// No port is picked in advance. The HTTP API listens on a Unix socket,
// and mailpit prints its "[http] starting on unix:…" line only after that
// socket listens, so the line is the API's ready signal. SMTP must be TCP
// (the code under test dials host and port), so mailpit binds
// 127.0.0.1:0 and the kernel chooses a port no one else holds. mailpit
// prints the address it was given (":0"), and prints its SMTP line before
// it binds, so the port and the moment it listens are read from /proc
// (ListeningPorts), looked at on a short tick until the socket appears:
// the kernel's socket table is the only witness mailpit leaves. Probing a
// free port and retrying on a collision would still let a connection
// reach whatever else took the port in between.
func StartMailpit(t testing.TB, extra ...string) *Mailpit {
	t.Helper()
	bin := MailpitBinary(t)
	// Not t.TempDir: a Unix socket path must fit in 108 bytes, and test
	// names make those long.
	dir, err := os.MkdirTemp("", "mailpit-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	args := append([]string{
		"--smtp", "127.0.0.1:0",
		"--listen", "unix:" + sock + ":0600",
		"--database", filepath.Join(dir, "mailpit.db"),
		"--smtp-disable-rdns", "--disable-version-check",
	}, extra...)
	cmd := exec.Command(bin, args...)
	out := &Output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mailpit: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	out.WaitFor(t, "[http] starting on unix:", exited, 30*time.Second)
	m := &Mailpit{out: out, Client: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}}
	t.Cleanup(m.Client.CloseIdleConnections)
	m.SMTPPort = waitListening(t, cmd.Process.Pid, exited, out, 30*time.Second)
	return m
}

// WaitListening returns the one TCP port pid listens on, once it does
// (a server started on port 0 says where only through /proc).
func WaitListening(t testing.TB, pid int, exited <-chan struct{}, out *Output, timeout time.Duration) int {
	t.Helper()
	return waitListening(t, pid, exited, out, timeout)
}

// waitListening returns the one TCP port pid listens on, once it does.
func waitListening(t testing.TB, pid int, exited <-chan struct{}, out *Output, timeout time.Duration) int {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ports, err := ListeningPorts(pid)
		if err != nil {
			select {
			case <-exited:
				t.Fatalf("process exited before listening:\n%s", out.String())
			default:
			}
			t.Fatalf("find the listening ports of pid %d: %v", pid, err)
		}
		switch len(ports) {
		case 0:
		case 1:
			return ports[0]
		default:
			t.Fatalf("pid %d listens on %v, want one TCP port", pid, ports)
		}
		select {
		case <-exited:
			t.Fatalf("process exited before listening:\n%s", out.String())
		case <-deadline.C:
			t.Fatalf("pid %d not listening within %v:\n%s", pid, timeout, out.String())
		case <-tick.C:
		}
	}
}
