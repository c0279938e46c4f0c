package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/sandbox"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/testkit"
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

// hostileForks is how many processes the hostile server tries to start:
// more than the sandbox's default pids limit.
const hostileForks = 400

// newHostile lays out what a user running rugwatch has: a HOME with an ssh
// key, cloud credentials, a project's .env, a shell rc, the rugwatch
// binary on PATH, an MCP client's config and the approver key under
// ~/.config/rugwatch; rugwatch's data dir with a real bbolt store, the
// control socket and another server's HOME; an ssh-agent and a D-Bus
// socket; an abstract socket and a loopback listener of the host. Every
// file is open to everyone, so that only the sandbox can keep the server
// out. The server is testdata/hostile.mjs, run by node.
func newHostile(t *testing.T, mode sandbox.Mode, env map[string]string) hostileFixture {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	script, err := filepath.Abs("testdata/hostile.mjs")
	if err != nil {
		t.Fatal(err)
	}
	dir := outsideTmp(t)
	home := filepath.Join(dir, "home")
	files := map[string]string{
		".ssh/id_ed25519":  "SSH-PRIVATE",
		".aws/credentials": "AWS-SECRET",
		"project/.env":     "DOTENV-SECRET",
		".bashrc":          "# rc\n",
		"bin/rugwatch":     "#!/bin/sh\n",
		".config/Claude/claude_desktop_config.json": "{}",
		".config/rugwatch/approver.key":             "PRIVATE-KEY",
		"../data/approver.key":                      "PRIVATE-KEY",
		"../data/servers/other/home/secret":         "OTHER-SERVER-SECRET",
		"../keys/approver.pub":                      "PUBLIC-KEY",
	}
	for rel, body := range files {
		p := filepath.Join(home, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	db, err := store.Open(filepath.Join(data, "rugwatch.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := os.Chmod(filepath.Join(data, "rugwatch.db"), 0o666); err != nil {
		t.Fatal(err)
	}
	listen := func(network, addr string) net.Listener {
		ln, err := net.Listen(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		if network == "unix" && addr[0] != '@' {
			_ = os.Chmod(addr, 0o777)
		}
		return ln
	}
	listen("unix", filepath.Join(data, "rugwatch.sock"))
	listen("unix", filepath.Join(dir, "agent.sock"))
	listen("unix", filepath.Join(dir, "bus"))
	abstract := fmt.Sprintf("rugwatch-test-%d-%s", os.Getpid(), t.Name())
	listen("unix", "@"+abstract)
	loop := listen("tcp", "127.0.0.1:0")
	marker := fmt.Sprintf("rugwatch-hostile-%d-%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() { os.Remove(filepath.Join("/var/tmp", marker)) })
	e := map[string]string{
		"PATH":                  "/usr/local/bin:/usr/bin:/bin",
		"HOSTILE_HOME":          home,
		"HOSTILE_DATA":          data,
		"HOSTILE_OTHER":         filepath.Join(data, "servers", "other", "home", "secret"),
		"HOSTILE_PARENT":        strconv.Itoa(os.Getpid()),
		"HOSTILE_AGENT":         filepath.Join(dir, "agent.sock"),
		"HOSTILE_DBUS":          filepath.Join(dir, "bus"),
		"HOSTILE_ABSTRACT":      abstract,
		"HOSTILE_LOOPBACK_PORT": strconv.Itoa(loop.Addr().(*net.TCPAddr).Port),
		"HOSTILE_MARKER":        marker,
		"HOSTILE_FORKS":         strconv.Itoa(hostileForks),
	}
	for k, v := range env {
		e[k] = v
	}
	pub := filepath.Join(dir, "keys", "approver.pub")
	return hostileFixture{
		target: Target{
			Name: "hostile", Transport: TransportStdio, Command: node, Args: []string{script}, Env: e,
			Sandbox: Sandbox{Mode: mode, Hide: []string{data, pub, filepath.Join(home, ".config", "rugwatch")},
				Home: filepath.Join(data, "servers", "hostile", "home"),
				// Explicit: a race-enabled test binary sets no default
				// memory limit (see sandbox.Resources).
				Resources: sandbox.Resources{MemoryBytes: 512 << 20}},
		},
		home: home, marker: marker, pub: pub,
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
	if len(l.Tools) != 13 {
		t.Errorf("%d tools, want 13", len(l.Tools))
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

// TestRecorderKeepsSandboxNote: the record says whether the last poll ran
// sandboxed and why not, and the warning is logged once per server, not
// on every poll.
func TestRecorderKeepsSandboxNote(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "rugwatch.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var logs strings.Builder
	r := &Recorder{DB: db, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	note := "not sandboxed (sandbox: auto): sandbox unavailable: creating namespaces: operation not permitted"
	for range 3 {
		if _, _, err := r.Record("a", TransportStdio, &Listing{SandboxNote: note}, nil); err != nil {
			t.Fatal(err)
		}
	}
	rec, _, err := r.Record("b", TransportStdio, &Listing{Sandboxed: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Sandboxed || rec.SandboxNote != "" {
		t.Errorf("b: sandboxed=%v note=%q", rec.Sandboxed, rec.SandboxNote)
	}
	var a store.ServerRecord
	if err := db.View(func(tx *store.Tx) error {
		var err error
		a, _, err = tx.Server("a")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(a)
	if !strings.Contains(string(b), `"sandboxed":false`) || !strings.Contains(string(b), `"sandbox_note":"`+note+`"`) {
		t.Errorf("stored record lacks the sandbox fields: %s", b)
	}
	if n := strings.Count(logs.String(), "stdio server not sandboxed"); n != 1 {
		t.Errorf("warned %d times, want once:\n%s", n, logs.String())
	}
}

// TestNetworkRefusedIsAnEventEveryPoll: a destination the sandbox refused
// the server is a network.refused event naming the key that would allow
// it, on every poll, including one whose listing is unchanged (the fast
// path that skips evaluation).
func TestNetworkRefusedIsAnEventEveryPoll(t *testing.T) {
	f := newHostile(t, "", map[string]string{"HOSTILE_CONNECT": "exfil.example.test:443"})
	f.target.Sandbox.Allow = func(string) string { return "servers[0].egress (rugwatch.yaml line 7)" }
	h := newHarness(t)
	var mu sync.Mutex
	var events []rugwatch.Event
	p := &Poller{Recorder: h.rec, Log: quietLog(), OnEvent: func(e rugwatch.Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}}
	spec := ServerSpec{Name: "srv", Transport: TransportStdio, Timeout: 60 * time.Second, Resolve: func() (Target, error) { return f.target, nil }}
	for poll := 1; poll <= 2; poll++ {
		mu.Lock()
		events = nil
		mu.Unlock()
		if err := p.PollOne(pollCtx(t, 90*time.Second), spec); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		var refused []rugwatch.Event
		for _, e := range events {
			if e.Type == rugwatch.EventNetworkRefused {
				refused = append(refused, e)
			}
		}
		mu.Unlock()
		if len(refused) != 1 || refused[0].Severity != rugwatch.SeverityWarning ||
			!strings.Contains(refused[0].Message, "exfil.example.test:443") || !strings.Contains(refused[0].Message, "servers[0].egress (rugwatch.yaml line 7)") {
			t.Fatalf("poll %d: network.refused events %+v", poll, refused)
		}
	}
	// Allowed, the same server is let through the refusal and raises none.
	f.target.Sandbox.Egress = []string{"exfil.example.test:443"}
	events = nil
	if err := p.PollOne(pollCtx(t, 90*time.Second), spec); err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.Type == rugwatch.EventNetworkRefused {
			t.Fatalf("an allowed destination raised %+v", e)
		}
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
