package control

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/store"
)

// The test binary doubles as a client of the socket: re-executed with
// RUGWATCH_TEST_DIAL set, it calls "verify" there and prints what came back.
func TestMain(m *testing.M) {
	if path := os.Getenv("RUGWATCH_TEST_DIAL"); path != "" {
		c, ok := Dial(context.Background(), path)
		if !ok {
			fmt.Println("refused")
			os.Exit(0)
		}
		if _, err := c.Verify(context.Background(), nil); err != nil {
			fmt.Println("error:", err)
			os.Exit(0)
		}
		fmt.Println("answered")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// lockedBuffer collects log lines from the accept loop's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serveVerify serves a backend that answers only Verify, on a socket whose
// file modes are opened wide, so that only the peer check stands between
// another user and the daemon (the attack this test plays).
func serveVerify(t *testing.T, peers Peers) (path string, logs *lockedBuffer) {
	t.Helper()
	// t.TempDir's parent is 0700; another uid must reach the socket.
	dir, err := os.MkdirTemp("", "rugwatch-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "data", "rugwatch.sock")
	logs = &lockedBuffer{}
	ln, err := Listen(path, peers, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Dir(path), path} {
		if err := os.Chmod(p, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	srv := &http.Server{Handler: Handler(func() Backend { return verifyOnly{} }, slog.New(slog.NewTextHandler(logs, nil)))}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return path, logs
}

type verifyOnly struct{ Backend }

func (verifyOnly) Verify(context.Context, *store.Head) (report.VerifyReport, error) {
	return report.VerifyReport{SchemaVersion: 1, OK: true}, nil
}

// worldExecutable copies the test binary where another uid may run it
// (go test builds it in a 0700 directory).
func worldExecutable(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rugwatch-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "control.test")
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}

func dialAs(t *testing.T, exe, path string, attr *syscall.SysProcAttr) string {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "RUGWATCH_TEST_DIAL="+path)
	cmd.SysProcAttr = attr
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestPeerFromAnotherUID: a process of another uid that reaches the socket
// is refused and logged with its pid and uid; allowed by control.allow_uids
// the same process gets its answer (so the test can fail).
func TestPeerFromAnotherUID(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a client as another uid")
	}
	nobody := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	exe := worldExecutable(t)
	path, logs := serveVerify(t, Peers{})
	if got := dialAs(t, exe, path, nobody); got != "refused" {
		t.Errorf("uid 65534, not allowed: %q, want refused", got)
	}
	if l := logs.String(); !strings.Contains(l, "control socket refused a connection") || !strings.Contains(l, "uid=65534") || !strings.Contains(l, "pid=") {
		t.Errorf("refusal not logged with pid and uid:\n%s", l)
	}
	path, _ = serveVerify(t, Peers{UIDs: []int{65534}})
	if got := dialAs(t, exe, path, nobody); got != "answered" {
		t.Errorf("uid 65534 in allow_uids: %q, want answered", got)
	}
}

// TestPeerInAnotherNamespace: a process in its own user and PID namespace
// — where a sandboxed stdio server runs — is refused even though its uid,
// seen from the daemon, is the daemon's own.
func TestPeerInAnotherNamespace(t *testing.T) {
	uid, gid := os.Getuid(), os.Getgid()
	sandboxed := &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWPID,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}},
	}
	path, logs := serveVerify(t, Peers{})
	out, err := func() (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "RUGWATCH_TEST_DIAL="+path)
		cmd.SysProcAttr = sandboxed
		b, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(b)), err
	}()
	if err != nil {
		t.Skipf("this kernel refuses user namespaces here: %v %s", err, out)
	}
	if out != "refused" {
		t.Errorf("client in another user and PID namespace: %q, want refused", out)
	}
	if !strings.Contains(logs.String(), "another user or PID namespace") {
		t.Errorf("refusal not logged:\n%s", logs.String())
	}
	// The same client in the daemon's namespaces is answered.
	if got := dialAs(t, os.Args[0], path, nil); got != "answered" {
		t.Errorf("client in the daemon's namespaces: %q, want answered", got)
	}
}
