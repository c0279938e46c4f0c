package mcpclient

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch/sandbox"
	"github.com/rugwatch/rugwatch/testkit"
	"github.com/rugwatch/rugwatch/testkit/hostile"
)

// outsideTmp is a directory others may enter, outside /tmp.
func outsideTmp(t testing.TB) string { return testkit.OutsideTmp(t, 0o755) }

// reachableSelf copies the test binary where the sandbox user may run it:
// go test builds it in a 0700 directory, closed to a root daemon's nobody.
func reachableSelf(t testing.TB, dir string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "monitor.test")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

type hostileFixture struct {
	target Target
	home   string // the user's HOME the server attacks
	marker string // the file it leaves in /var/tmp
	pub    string
}

// hostileForks is how many processes the hostile server tries to start.
const hostileForks = hostile.Forks

// newHostile is testdata/hostile.mjs against a laid-out machine
// (testkit/hostile), as a sandboxed stdio target.
func newHostile(t *testing.T, mode sandbox.Mode, env map[string]string) hostileFixture {
	t.Helper()
	f := hostile.New(t, "testdata/hostile.mjs", env)
	return hostileFixture{
		target: Target{
			Name: "hostile", Transport: TransportStdio, Command: f.Node, Args: []string{f.Script}, Env: f.Env,
			Sandbox: Sandbox{Mode: mode, Hide: f.Hide, Home: f.SandboxHome,
				// Explicit: a race-enabled test binary sets no default
				// memory limit (see sandbox.Resources).
				Resources: sandbox.Resources{MemoryBytes: 512 << 20}},
		},
		home: f.Home, marker: f.Marker, pub: f.Pub,
	}
}

func pollHostile(t *testing.T, target Target) (*Listing, map[string]any) {
	t.Helper()
	l, err := Poll(pollCtx(t, 90*time.Second), target, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tool, ok := l.Tool("report")
	if !ok {
		t.Fatalf("no report tool in %d tools", len(l.Tools))
	}
	var def struct{ Description string }
	if err := json.Unmarshal(tool.Raw, &def); err != nil {
		t.Fatal(err)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(def.Description), &r); err != nil {
		t.Fatalf("report %q: %v", def.Description, err)
	}
	return l, r
}

// hostileAttackNames are issue 18's attacks, each true when it worked.
var hostileAttackNames = []string{
	"read_ssh_key", "read_aws", "read_project_env", "write_bashrc", "replace_binary", "rewrite_client_config",
	"read_key", "write_store", "other_server_home", "parent_environ", "signal_parent", "control_socket",
	"ssh_agent", "dbus", "abstract_socket", "host_loopback", "proc_net", "rename_hidden_parent", "unshare", "memory_hog",
}

// TestHostileServerSandboxed runs issue 18's attacks from a hostile Node
// server under the default mode, where each must fail, and with sandbox:
// off, where each must work, or this test could not fail. It runs as root
// in CI and again as an ordinary user (.ci/run).
func TestHostileServerSandboxed(t *testing.T) {
	for _, mode := range []sandbox.Mode{"", sandbox.Off} {
		t.Run(fmt.Sprintf("mode=%q", mode), func(t *testing.T) {
			f := newHostile(t, mode, nil)
			l, got := pollHostile(t, f.target)
			t.Logf("uid %d: sandboxed=%v note=%q attacks=%v", os.Geteuid(), l.Sandboxed, l.SandboxNote, got)
			off := mode == sandbox.Off
			for _, a := range hostileAttackNames {
				if got[a] != off {
					t.Errorf("%s worked = %v, want %v", a, got[a], off)
				}
			}
			forks, _ := got["forks_started"].(float64)
			if off != (int(forks) == hostileForks) {
				t.Errorf("the server started %v of %d processes (sandboxed %v)", forks, hostileForks, !off)
			}
			_, err := os.Stat(filepath.Join("/var/tmp", f.marker))
			if left := err == nil; left != off {
				t.Errorf("a file the server wrote to /var/tmp is on the host: %v, want %v", left, off)
			}
			if l.Sandboxed == off {
				t.Errorf("Sandboxed = %v (note %q)", l.Sandboxed, l.SandboxNote)
			}
			if off && !strings.Contains(l.SandboxNote, "NOT SANDBOXED") {
				t.Errorf("no note says the server ran unsandboxed: %q", l.SandboxNote)
			}
			if b, err := os.ReadFile(f.pub); err != nil || string(b) != "PUBLIC-KEY" {
				t.Errorf("approver.pub = %q, %v", b, err)
			}
		})
	}
}

// findToken lists the host's processes whose command line holds token: a
// sandboxed grandchild's pid inside the sandbox means nothing out here.
func findToken(token string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(b), token) {
			out = append(out, pid)
		}
	}
	return out
}

// TestEscapedGrandchildGoneAfterPoll: a grandchild that dropped the poll
// marker, called setsid and double-forked outlives an unsandboxed poll
// and dies with a sandboxed one.
func TestEscapedGrandchildGoneAfterPoll(t *testing.T) {
	for i, mode := range []sandbox.Mode{"", sandbox.Off} {
		t.Run(fmt.Sprintf("mode=%q", mode), func(t *testing.T) {
			token := fmt.Sprintf("86398.%d%d", os.Getpid(), i)
			f := newHostile(t, mode, map[string]string{"HOSTILE_GRANDCHILD": token, "HOSTILE_FORKS": "0"})
			l, got := pollHostile(t, f.target)
			if got["grandchild_started"] != true {
				t.Fatalf("the grandchild never started: %v", got)
			}
			left := findToken(token)
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			switch {
			case l.Sandboxed && len(left) > 0:
				t.Errorf("grandchild %v survived a sandboxed poll", left)
			case !l.Sandboxed && mode != sandbox.Off:
				t.Errorf("not sandboxed: %s", l.SandboxNote)
			case mode == sandbox.Off && len(left) == 0:
				t.Errorf("the unsandboxed grandchild is gone too: the test cannot tell the sandbox works")
			}
		})
	}
}

// TestStrictRefusedWithoutUserNamespaces re-runs this test binary in a
// user namespace whose max_user_namespaces is 0, so the kernel refuses
// every new one, as where unprivileged user namespaces are disabled:
// strict fails the poll, auto polls unsandboxed and says why.
func TestStrictRefusedWithoutUserNamespaces(t *testing.T) {
	if os.Getenv("RUGWATCH_TEST_NO_USERNS") == "" {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(exe, "-test.run=^TestStrictRefusedWithoutUserNamespaces$", "-test.v")
		cmd.Env = append(os.Environ(), "RUGWATCH_TEST_NO_USERNS=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
		}
		out, err := cmd.CombinedOutput()
		t.Logf("in a namespace without user namespaces:\n%s", out)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), "strict refused:") {
			t.Fatal("the child never reached the refusal")
		}
		return
	}
	if err := os.WriteFile("/proc/sys/user/max_user_namespaces", []byte("0"), 0); err != nil {
		t.Fatalf("disabling user namespaces: %v", err)
	}
	target := selfTarget(t, "sdk", map[string]string{"TOOLS": "2"})
	target.Sandbox.Mode = sandbox.Strict
	_, err := Poll(pollCtx(t, 30*time.Second), target, DialOptions{})
	if !sandbox.IsRefused(err) || !strings.Contains(err.Error(), "strict") {
		t.Fatalf("strict poll err = %v, want a refusal naming strict", err)
	}
	t.Logf("strict refused: %v", err)
	target.Sandbox.Mode = sandbox.Auto
	l, err := Poll(pollCtx(t, 30*time.Second), target, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Sandboxed || !strings.Contains(l.SandboxNote, "NOT SANDBOXED") || len(l.Tools) != 2 {
		t.Errorf("auto: sandboxed=%v note=%q tools=%d", l.Sandboxed, l.SandboxNote, len(l.Tools))
	}
	t.Logf("auto: %s", l.SandboxNote)
}

// everythingStdio is the real server-everything from the repo's
// node_modules, over stdio.
func everythingStdio(t testing.TB) Target {
	t.Helper()
	p, err := filepath.Abs("../node_modules/.bin/mcp-server-everything")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("server-everything not installed: %v", err)
		}
		t.Skipf("server-everything not installed; run `npm ci` (%v)", err)
	}
	return Target{Name: "everything", Transport: TransportStdio, Command: p, Args: []string{"stdio"}}
}

// TestEverythingSandboxed polls the real npm server in the sandbox: node,
// its modules and a HOME it can use must all be reachable.
func TestEverythingSandboxed(t *testing.T) {
	target := everythingStdio(t)
	target.Sandbox.Hide = []string{outsideTmp(t)}
	l, err := Poll(pollCtx(t, 60*time.Second), target, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !l.Sandboxed {
		t.Fatalf("not sandboxed: %s", l.SandboxNote)
	}
	// 13 tools to any client, 4 more to one that can sample, elicit and
	// share roots: a poll asks as that client does.
	if _, ok := l.Tool("trigger-sampling-request"); len(l.Tools) != 17 || !ok || l.Partial {
		t.Errorf("%d tools (trigger-sampling-request listed: %v, partial %v), want 17, listed, not partial", len(l.Tools), ok, l.Partial)
	}
	// A client that declares nothing (the proxy's, say) is shown fewer,
	// and its listing says so.
	l, err = Poll(pollCtx(t, 60*time.Second), target, DialOptions{Capabilities: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Tools) != 13 || !l.Partial {
		t.Errorf("declaring nothing: %d tools, partial %v; want 13, partial", len(l.Tools), l.Partial)
	}
}

// TestSandboxAsUnprivilegedDaemon re-runs the sandbox tests as uid 65534,
// as a daemon run by an ordinary user, when this run is root.
func TestSandboxAsUnprivilegedDaemon(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("already unprivileged")
	}
	dir := outsideTmp(t)
	exe := reachableSelf(t, dir)
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(work, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	// The module's node_modules must be reachable from the copy's cwd.
	wd, _ := os.Getwd()
	cmd := exec.Command(exe, "-test.run=^(TestHostileServerSandboxed|TestEscapedGrandchildGoneAfterPoll|TestEverythingSandboxed|TestStrictRefusedWithoutUserNamespaces)$", "-test.v")
	cmd.Dir = wd
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + work, "TMPDIR=" + work, "RUGWATCH_TEST_OUTSIDE_TMP=" + work}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	t.Logf("as uid 65534:\n%s", out)
	if err != nil {
		t.Fatalf("as uid 65534: %v", err)
	}
	if strings.Contains(string(out), "--- SKIP") {
		t.Errorf("a test skipped as uid 65534")
	}
}

// BenchmarkPollStdio measures one whole poll of a stdio server (start,
// initialize, list 10 tools, stop) with and without the sandbox, side by
// side, so the sandbox's start-up cost per poll reads as the difference.
func BenchmarkPollStdio(b *testing.B) {
	self := reachableSelf(b, outsideTmp(b))
	for _, mode := range []sandbox.Mode{sandbox.Strict, sandbox.Off} {
		name := map[sandbox.Mode]string{sandbox.Strict: "Sandboxed", sandbox.Off: "Unsandboxed"}[mode]
		b.Run(name, func(b *testing.B) {
			target := Target{Name: "bench", Transport: TransportStdio, Command: self, Args: []string{"-test.run=^$"},
				Env: map[string]string{"RUGWATCH_TEST_SERVER": "sdk", "TOOLS": "10"}, Sandbox: Sandbox{Mode: mode}}
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				l, err := Poll(ctx, target, DialOptions{})
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				if len(l.Tools) != 10 || l.Sandboxed != (mode == sandbox.Strict) {
					b.Fatalf("%d tools, sandboxed %v", len(l.Tools), l.Sandboxed)
				}
			}
		})
	}
}

// A watch session is long: what its sandbox refused reaches the first
// listing taken after it, once.
func TestWatchListingCarriesRefusals(t *testing.T) {
	f := newHostile(t, "", map[string]string{"HOSTILE_CONNECT": "exfil.example.test:443"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan *Listing, 4)
	w := &Watcher{Target: f.target, Log: quietLog(), ConnectTimeout: 60 * time.Second,
		OnListing: func(_ context.Context, l *Listing, err error) {
			if err == nil && l != nil {
				got <- l
			}
		}}
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case l := <-got:
		if len(l.Refused) != 1 || l.Refused[0].Dest != "exfil.example.test:443" {
			t.Fatalf("the watch session's first listing carries %+v", l.Refused)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no listing from the watch session")
	}
}
