package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rugwatch/rugwatch/testkit"
)

// The environment variables that turn the test binary into something else
// than a test run: the sandbox's programs and daemon stand-ins.
const (
	// hardenEnv: a daemon stand-in, hardened when "1", that says "ready"
	// and waits for its stdin to close (TestHardenSelf).
	hardenEnv = "SANDBOX_TEST_HARDEN"
	// noUsernsEnv: run the tests in a user namespace that may create no
	// more of them (TestRefusedWithoutUserNamespaces).
	noUsernsEnv = "SANDBOX_TEST_NO_USERNS"
	// httpGetEnv: an HTTP client program, run inside the sandbox, that
	// gets the URL and prints "status=CODE" or "error=…".
	httpGetEnv = "SANDBOX_TEST_HTTP_GET"
	// daemonStartEnv: a hardened daemon stand-in that starts a program,
	// "sandbox" through Command, "direct" the way the old code did, and
	// prints what came of it (TestHardenedDaemonStillSandboxes).
	daemonStartEnv = "SANDBOX_TEST_DAEMON_START"
	// daemonHardenEnv "0" leaves that stand-in dumpable.
	daemonHardenEnv = "SANDBOX_TEST_DAEMON_HARDEN"
)

// The test binary is re-executed as the sandbox's stages, as programs run
// in it and as daemon stand-ins.
func TestMain(m *testing.M) {
	Init()
	if h := os.Getenv(hardenEnv); h != "" {
		os.Exit(hardenedStandIn(h == "1"))
	}
	if what := os.Getenv(daemonStartEnv); what != "" {
		os.Exit(daemonStart(what, os.Getenv(daemonHardenEnv) != "0"))
	}
	if u := os.Getenv(httpGetEnv); u != "" {
		os.Exit(httpGet(u))
	}
	if os.Getenv(noUsernsEnv) != "" {
		// Inside a user namespace of its own, which may create no more of
		// them: the kernel itself refuses the sandbox.
		if err := os.WriteFile("/proc/sys/user/max_user_namespaces", []byte("0"), 0); err != nil {
			fmt.Fprintln(os.Stderr, "disabling user namespaces:", err)
			os.Exit(3)
		}
	}
	os.Exit(m.Run())
}

// hardenedStandIn is a daemon, hardened or not, that says so and waits.
func hardenedStandIn(harden bool) int {
	if harden {
		if err := HardenSelf(); err != nil {
			fmt.Println(err)
			return 1
		}
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// daemonStart is a daemon that hardened itself first, as rugwatch's does,
// and then starts a program: "sandbox" strictly sandboxed through
// Command, "direct" in a new user namespace by exec.Cmd alone, which is
// what the old code did from the daemon itself.
func daemonStart(what string, harden bool) int {
	if harden {
		if err := HardenSelf(); err != nil {
			fmt.Println("harden:", err)
			return 1
		}
	}
	switch what {
	case "sandbox":
		c := Command(Strict, shSpec("echo ok"))
		c.Stdout, c.Stderr = os.Stdout, os.Stderr
		if err := c.Start(); err != nil {
			fmt.Println("start:", err)
			return 1
		}
		err := c.Wait()
		fmt.Printf("sandboxed=%v\nwait=%v\n", c.Sandboxed, err)
	case "direct":
		cmd := exec.Command("/bin/true")
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
		}
		fmt.Printf("direct=%v\n", cmd.Run())
	default:
		fmt.Println("unknown start", what)
		return 1
	}
	return 0
}

// httpGet is an HTTP client program. It sends every request to
// HTTP_PROXY when that is set, as curl and Python do: Go's own
// ProxyFromEnvironment never proxies a loopback destination, and the
// sandbox's loopback is its own, so it would never reach the host's
// 127.0.0.1 at all.
func httpGet(u string) int {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = func(*http.Request) (*url.URL, error) {
		if p := os.Getenv("HTTP_PROXY"); p != "" {
			return url.Parse(p)
		}
		return nil, nil
	}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	resp, err := client.Get(u)
	if err != nil {
		fmt.Printf("error=%v\n", err)
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Printf("status=%d\nbody=%s\n", resp.StatusCode, strings.TrimSpace(string(body)))
	return 0
}

// outsideTmp makes a directory that is not under /tmp: the sandbox's /tmp
// and /var/tmp are its own.
func outsideTmp(t *testing.T) string { return testkit.OutsideTmp(t, 0o755) }

// shSpec runs script with sh.
func shSpec(script string, env ...string) Spec {
	return Spec{
		Path: "/bin/sh",
		Args: []string{"sh", "-c", script},
		Env:  append([]string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin"}, env...),
	}
}

// ran is one finished run.
type ran struct {
	c              *Cmd
	stdout, stderr string
	err            error // Wait's
}

// run starts spec under mode and waits for it; a failed start fails the
// test.
func run(t *testing.T, mode Mode, spec Spec) ran {
	t.Helper()
	c := Command(mode, spec)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Start(); err != nil {
		t.Fatalf("starting %q under %s: %v", spec.Args, mode, err)
	}
	err := c.Wait()
	return ran{c: c, stdout: out.String(), stderr: errb.String(), err: err}
}

// runOK is run for a program that must succeed, under the sandbox when
// mode is not Off.
func runOK(t *testing.T, mode Mode, spec Spec) map[string]string {
	t.Helper()
	r := run(t, mode, spec)
	if r.err != nil {
		t.Fatalf("%q under %s: %v\nstdout: %s\nstderr: %s", spec.Args, mode, r.err, r.stdout, r.stderr)
	}
	if want := mode != Off; r.c.Sandboxed != want {
		t.Fatalf("%q under %s: Sandboxed = %v (%s)", spec.Args, mode, r.c.Sandboxed, r.c.Note)
	}
	return keyValues(r.stdout)
}

// keyValues turns "key=value" lines into a map.
func keyValues(s string) map[string]string {
	m := map[string]string{}
	for l := range strings.Lines(s) {
		if k, v, ok := strings.Cut(strings.TrimRight(l, "\n"), "="); ok {
			m[k] = v
		}
	}
	return m
}

// words is a space-separated list, sorted.
func words(s string) []string {
	w := strings.Fields(s)
	slices.Sort(w)
	return w
}

// sandboxUID is the uid the sandboxed program runs as.
func sandboxUID() int {
	if os.Geteuid() == 0 {
		return nobody
	}
	return os.Geteuid()
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func makeDir(t *testing.T, path string, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

const rootScript = `
list() { ls -A "$@" | tr '\n' ' '; }
echo "root=$(list /)"
echo "etc=$(list /etc)"
echo "dev=$(list /dev)"
echo "var=$(list /var)"
echo "home=$(list /home)"
echo "users=$(cut -d: -f1 /etc/passwd | tr '\n' ' ')"
test -e "$HOSTHOME" && echo hosthome=yes || echo hosthome=no
test -e "$CWD" && echo cwd=yes || echo cwd=no
echo "whoami=$(whoami)"
echo "id=$(id -u):$(id -g)"
echo "groups=$(id -G)"
echo "hostname=$(cat /proc/sys/kernel/hostname)"
`

// TestAllowListRoot: the program's root holds what the allow-list grants
// and nothing else of the host; unconfined, the same script sees the host.
func TestAllowListRoot(t *testing.T) {
	hostHome, err := os.UserHomeDir()
	if err != nil || hostHome == "/" {
		t.Skipf("no home of its own to look for (%q, %v)", hostHome, err)
	}
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	spec := shSpec(rootScript, "HOSTHOME="+hostHome, "CWD="+cwd)
	in := runOK(t, Strict, spec)
	out := runOK(t, Off, spec)
	t.Logf("sandboxed: %q", in)

	wantRoot := []string{"dev", "etc", "home", "proc", "tmp", "var"}
	for _, p := range []string{"/bin", "/sbin", "/usr", "/lib", "/lib32", "/lib64", "/libx32"} {
		if _, err := os.Lstat(p); err == nil {
			wantRoot = append(wantRoot, p[1:])
		}
	}
	slices.Sort(wantRoot)
	if got := words(in["root"]); !slices.Equal(got, wantRoot) {
		t.Errorf("/ in the sandbox = %q, want %q", got, wantRoot)
	}
	if !slices.Contains(words(out["root"]), "sys") {
		t.Errorf("/ unconfined = %q lacks sys: the test cannot tell the sandbox's root from the host's", out["root"])
	}

	allowedEtc := map[string]bool{"passwd": true, "group": true}
	for _, p := range etcFiles {
		allowedEtc[filepath.Base(p)] = true
	}
	for _, name := range words(in["etc"]) {
		if !allowedEtc[name] && !strings.HasPrefix(name, "python3") {
			t.Errorf("/etc in the sandbox holds %s, which no allow-list entry grants", name)
		}
	}
	for _, name := range []string{"shadow", "gshadow", "hostname", "machine-id", "sudoers", "subuid", "environment", "ssh"} {
		if slices.Contains(words(in["etc"]), name) {
			t.Errorf("/etc/%s is in the sandbox", name)
		}
	}
	if _, err := os.Stat("/etc/shadow"); err == nil && !slices.Contains(words(out["etc"]), "shadow") {
		t.Errorf("unconfined, /etc = %q lacks shadow: the test cannot tell", out["etc"])
	}
	for _, name := range words(in["dev"]) {
		if !slices.Contains(devNodes, name) && !slices.Contains([]string{"fd", "stdin", "stdout", "stderr", "shm"}, name) {
			t.Errorf("/dev in the sandbox holds %s", name)
		}
	}
	if got := words(in["var"]); !slices.Equal(got, []string{"tmp"}) {
		t.Errorf("/var in the sandbox = %q, want only tmp", got)
	}
	if got := words(in["home"]); !slices.Equal(got, []string{"sandbox"}) {
		t.Errorf("/home in the sandbox = %q, want only sandbox", got)
	}

	uid := sandboxUID()
	name := "rugwatch"
	if uid == nobody {
		name = "nobody"
	}
	wantUsers := []string{"root", name}
	if name != "nobody" {
		wantUsers = append(wantUsers, "nobody")
	}
	slices.Sort(wantUsers)
	if got := words(in["users"]); !slices.Equal(got, wantUsers) {
		t.Errorf("/etc/passwd in the sandbox names %q, want %q", got, wantUsers)
	}
	if len(words(out["users"])) <= len(wantUsers) {
		t.Errorf("the host's passwd names only %q: the test cannot tell", out["users"])
	}
	if in["whoami"] != name {
		t.Errorf("whoami in the sandbox = %q, want %s", in["whoami"], name)
	}
	gid := os.Getegid()
	if os.Geteuid() == 0 {
		gid = nobody
	}
	if want := fmt.Sprintf("%d:%d", uid, gid); in["id"] != want {
		t.Errorf("id in the sandbox = %q, want %s", in["id"], want)
	}
	if os.Geteuid() == 0 && in["groups"] != "65534" {
		// Root's supplementary groups must not follow it in.
		t.Errorf("groups in the sandbox = %q, want 65534 alone", in["groups"])
	}
	if in["hosthome"] != "no" || in["cwd"] != "no" {
		t.Errorf("the sandbox sees the host's HOME %s (%s) or the working directory %s (%s)", hostHome, in["hosthome"], cwd, in["cwd"])
	}
	if out["hosthome"] != "yes" || out["cwd"] != "yes" {
		t.Errorf("unconfined, HOME = %s, cwd = %s: the test cannot tell", out["hosthome"], out["cwd"])
	}
	if in["hostname"] != "rugwatch-sandbox" || out["hostname"] == in["hostname"] {
		t.Errorf("hostname in the sandbox = %q, unconfined %q", in["hostname"], out["hostname"])
	}
}

// attackScript tries, from inside, what a hostile server would; each line
// says whether one attempt worked.
const attackScript = `
try() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "$name=yes"; else echo "$name=no"; fi; }
try mount sh -c 'mount -t tmpfs none "$SCRATCH" && umount "$SCRATCH"'
try umount_cover umount -l "$DATA"
try unshare unshare -Urm true
try unshare_uncover unshare -Urm sh -c 'umount -l "$DATA" && cat "$DATA/secret"'
try proc1_environ cat /proc/1/environ
try parent_environ cat "/proc/$PARENT/environ"
try kill_parent kill -0 "$PARENT"
try read_protected cat "$DATA/secret"
try list_protected ls "$DATA"
try read_granted cat "$GRANT/beside"
echo "uid=$(id -u)"
echo "procs=$(ls -d /proc/[0-9]* | wc -l)"
`

// TestAttacksFromInside runs one hostile script sandboxed and unconfined:
// each attack that works unconfined (where it can: some need root) must
// fail in the sandbox.
func TestAttacksFromInside(t *testing.T) {
	grant := outsideTmp(t)
	data := makeDir(t, filepath.Join(grant, "data"), 0o755)
	writeFile(t, filepath.Join(data, "secret"), "PRIVATE", 0o644)
	writeFile(t, filepath.Join(grant, "beside"), "GRANTED", 0o644)
	scratch := makeDir(t, filepath.Join(grant, "scratch"), 0o755)
	// Unconfined root really mounts on scratch; take it off whatever the
	// script managed.
	t.Cleanup(func() { _ = unix.Unmount(scratch, unix.MNT_DETACH) })

	spec := shSpec(attackScript, "GRANT="+grant, "DATA="+data, "SCRATCH="+scratch, "PARENT="+strconv.Itoa(os.Getpid()))
	spec.Mounts = []Mount{{Path: grant}}
	spec.Protect = []string{data}
	in := runOK(t, Strict, spec)
	out := runOK(t, Off, spec)
	t.Logf("sandboxed:  %v", in)
	t.Logf("unconfined: %v", out)

	root := os.Geteuid() == 0
	// The host's PID 1 may be closed even to root (non-dumpable); where
	// this test can read it, so can the unconfined script.
	_, err := os.ReadFile("/proc/1/environ")
	works := map[string]bool{
		"mount":          root,
		"unshare":        true,
		"proc1_environ":  err == nil,
		"parent_environ": true,
		"kill_parent":    true,
		"read_protected": true,
		"list_protected": true,
		"read_granted":   true,
	}
	for k, want := range works {
		if want && out[k] != "yes" {
			t.Errorf("unconfined %s = %q, want yes: the test cannot tell the sandbox works", k, out[k])
		}
	}
	for _, k := range []string{"mount", "umount_cover", "unshare", "unshare_uncover", "proc1_environ", "parent_environ", "kill_parent", "read_protected", "list_protected"} {
		if in[k] != "no" {
			t.Errorf("sandboxed %s = %q, want no", k, in[k])
		}
	}
	if in["read_granted"] != "yes" {
		t.Errorf("sandboxed, the granted file beside the protected dir does not read: %q", in["read_granted"])
	}
	if in["uid"] != strconv.Itoa(sandboxUID()) {
		t.Errorf("uid in the sandbox = %q, want %d", in["uid"], sandboxUID())
	}
	// The init, the script and the few it runs just now.
	if n, _ := strconv.Atoi(in["procs"]); n == 0 || n > 6 {
		t.Errorf("the sandbox sees %q processes in /proc", in["procs"])
	}
}

// TestOnlyTheGivenEnvironment: the program gets the Spec's environment,
// its HOME and, with the egress path, the proxy variables: nothing of the
// daemon's or the stages'.
func TestOnlyTheGivenEnvironment(t *testing.T) {
	t.Setenv("RUGWATCH_TEST_DAEMON_SECRET", "hunter2")
	spec := Spec{Path: "/usr/bin/env", Args: []string{"env"}, Env: []string{"A=1", "HOME=/", "PATH=/bin"}, Network: NetNone}
	r := run(t, Strict, spec)
	if r.err != nil {
		t.Fatalf("%v\n%s", r.err, r.stderr)
	}
	if got, want := words(r.stdout), []string{"A=1", "HOME=" + freshHome, "PATH=/bin"}; !slices.Equal(got, want) {
		t.Errorf("environment in the sandbox = %q, want %q", got, want)
	}

	spec.Network = NetEgress
	r = run(t, Strict, spec)
	if r.err != nil {
		t.Fatalf("%v\n%s", r.err, r.stderr)
	}
	var keys []string
	for _, kv := range words(r.stdout) {
		k, _, _ := strings.Cut(kv, "=")
		keys = append(keys, k)
	}
	want := append([]string{"A", "HOME", "PATH"}, ProxyVariables()...)
	slices.Sort(keys)
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Errorf("environment with egress has %q, want %q", keys, want)
	}
}

// findToken lists the host pids whose command line holds token, so the
// host can look for what a program left behind whatever its pid inside.
func findToken(token string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(b, []byte(token)) {
			out = append(out, pid)
		}
	}
	return out
}

// killAll kills pids and waits, on a pidfd each, until every one has
// exited, so that no test runs among another's dying processes.
func killAll(pids []int) {
	var fds []int
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // gone already
		}
		_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		fds = append(fds, fd)
	}
	for _, fd := range fds {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(pfd, 10_000); !errors.Is(err, unix.EINTR) {
				break
			}
		}
		unix.Close(fd)
	}
}

func TestDoubleForkedGrandchildDiesWithTheSandbox(t *testing.T) {
	for i, mode := range []Mode{Off, Strict} {
		t.Run(string(mode), func(t *testing.T) {
			token := fmt.Sprintf("86399.%d%d", os.Getpid(), i)
			// setsid -f forks, env -i empties the environment, and the
			// middle process exits before the sleep does: a daemon-style
			// escape. head returns once the grandchild has said it runs,
			// so it is known to exist when the program exits.
			r := run(t, mode, shSpec(`env -i setsid -f sh -c 'echo started; exec sleep `+token+` >/dev/null 2>&1 </dev/null' | head -n 1`))
			left := findToken(token)
			killAll(left)
			if r.err != nil || !strings.Contains(r.stdout, "started") {
				t.Fatalf("the grandchild never started: %v %q %q", r.err, r.stdout, r.stderr)
			}
			if mode != Off && len(left) > 0 {
				t.Errorf("grandchild %v survived the sandbox", left)
			}
			if mode == Off && len(left) == 0 {
				t.Errorf("the unconfined grandchild is gone too: the test cannot tell the sandbox works")
			}
		})
	}
}

// reachableExe copies the test binary where nobody may run it: go test
// builds it in a 0700 directory.
func reachableExe(t *testing.T, dir string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "sandbox.test")
	writeFile(t, p, string(b), 0o755)
	return p
}

// nobodyCred runs a stand-in as nobody when the test runs as root, as
// itself otherwise.
func nobodyCred() *syscall.Credential {
	if os.Geteuid() != 0 {
		return nil
	}
	return &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}
}

// TestHardenedDaemonStillSandboxes: a daemon that made itself
// non-dumpable, as rugwatch does before it reads a secret, still starts a
// sandbox. The failure this guards against is shown beside it: the same
// daemon creating the user namespace itself, as the old code did, is
// refused the write of the child's uid_map, which then belongs to root.
func TestHardenedDaemonStillSandboxes(t *testing.T) {
	exe := reachableExe(t, outsideTmp(t))
	standIn := func(what, harden string) map[string]string {
		t.Helper()
		cmd := exec.Command(exe)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "GORACE=atexit_sleep_ms=0", daemonStartEnv + "=" + what, daemonHardenEnv + "=" + harden}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobodyCred()}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("stand-in %s (harden %s): %v\n%s", what, harden, err, out)
		}
		t.Logf("stand-in %s (harden %s): %q", what, harden, out)
		m := keyValues(string(out))
		m["output"] = string(out)
		return m
	}

	got := standIn("sandbox", "1")
	if !strings.HasPrefix(got["output"], "ok\n") || got["sandboxed"] != "true" || got["wait"] != "<nil>" {
		t.Errorf("the hardened daemon's sandbox: %q", got["output"])
	}

	got = standIn("direct", "1")
	if got["direct"] == "<nil>" || !strings.Contains(got["direct"], "permission denied") {
		t.Errorf("the hardened daemon made a user namespace itself: direct=%q; want permission denied, or the test shows nothing", got["direct"])
	}
	// What refuses it is the hardening: undone, the old way works.
	got = standIn("direct", "0")
	if got["direct"] != "<nil>" {
		t.Errorf("an unhardened daemon could not make a user namespace either (%q): the test cannot tell", got["direct"])
	}
}

// TestHardenSelf: a process of the same user reads a daemon's environment
// through /proc unless the daemon made itself non-dumpable.
func TestHardenSelf(t *testing.T) {
	exe := reachableExe(t, outsideTmp(t))
	for _, harden := range []string{"0", "1"} {
		daemon := exec.Command(exe)
		daemon.Env = []string{hardenEnv + "=" + harden, "SECRET=hunter2", "GORACE=atexit_sleep_ms=0"}
		// Root reads any process's environ; both sides run as nobody then.
		daemon.SysProcAttr = &syscall.SysProcAttr{Credential: nobodyCred()}
		in, err := daemon.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out, err := daemon.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := daemon.Start(); err != nil {
			t.Fatal(err)
		}
		if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
			in.Close()
			_ = daemon.Wait()
			t.Fatalf("daemon said %q", line)
		}
		reader := exec.Command("/bin/cat", fmt.Sprintf("/proc/%d/environ", daemon.Process.Pid))
		reader.SysProcAttr = &syscall.SysProcAttr{Credential: nobodyCred()}
		env, rerr := reader.Output()
		in.Close()
		_ = daemon.Wait()
		leaked := rerr == nil && bytes.Contains(env, []byte("hunter2"))
		if leaked != (harden == "0") {
			t.Errorf("hardened=%s: environ read = %v (%v)", harden, leaked, rerr)
		}
	}
}

// TestRefusedWithoutUserNamespaces re-runs this test in a user namespace
// whose max_user_namespaces is 0: the kernel then refuses every new user
// namespace, as on a host where they are disabled. Strict refuses to run;
// auto runs unconfined and says so.
func TestRefusedWithoutUserNamespaces(t *testing.T) {
	if os.Getenv(noUsernsEnv) != "" {
		c := Command(Strict, shSpec("echo hi"))
		c.Stdout, c.Stderr = io.Discard, io.Discard
		err := c.Start()
		if err == nil {
			_ = c.Wait()
			t.Fatal("strict ran with user namespaces disabled")
		}
		if !IsRefused(err) {
			t.Fatalf("strict: err = %v, want the kernel's refusal", err)
		}
		if c.Process != nil || c.Sandboxed {
			t.Errorf("strict: Process %v, Sandboxed %v after a refusal", c.Process, c.Sandboxed)
		}
		if !strings.Contains(err.Error(), syscall.ENOSPC.Error()) {
			t.Errorf("strict: err = %v, want ENOSPC from clone", err)
		}
		r := run(t, Auto, shSpec("echo hi"))
		if r.err != nil || r.stdout != "hi\n" {
			t.Fatalf("auto: %q, %v\n%s", r.stdout, r.err, r.stderr)
		}
		if r.c.Sandboxed || !strings.Contains(r.c.Note, "NOT SANDBOXED") {
			t.Errorf("auto: Sandboxed = %v, Note = %q", r.c.Sandboxed, r.c.Note)
		}
		t.Logf("refused: %v; auto: %s", err, r.c.Note)
		return
	}
	// The protection off: where the kernel allows it, strict sandboxes.
	if got := runOK(t, Strict, shSpec("echo hi=yes")); got["hi"] != "yes" {
		t.Fatalf("strict with user namespaces: %v", got)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestRefusedWithoutUserNamespaces$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), noUsernsEnv+"=1", "GORACE=atexit_sleep_ms=0")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("refused:")) {
		t.Fatalf("the child did not reach the refusal:\n%s", out)
	}
}

// TestSetupErrorNeverFallsBack: auto runs a program unconfined only on
// the kernel's refusal. A bad grant fails the start in every mode, and an
// unknown mode is an error, never auto.
func TestSetupErrorNeverFallsBack(t *testing.T) {
	dir := outsideTmp(t)
	mark := filepath.Join(dir, "ran")
	spec := shSpec(`touch "$MARK"`, "MARK="+mark)
	spec.Mounts = []Mount{{Path: filepath.Join(dir, "missing")}}
	for _, mode := range []Mode{Auto, Strict, "", "bogus", "Off"} {
		c := Command(mode, spec)
		c.Stdout, c.Stderr = io.Discard, io.Discard
		err := c.Start()
		if err == nil {
			_ = c.Wait()
			t.Fatalf("mode %q: a start with a missing mount succeeded (Sandboxed %v, %s)", mode, c.Sandboxed, c.Note)
		}
		if IsRefused(err) {
			t.Errorf("mode %q: %v reads as the kernel's refusal", mode, err)
		}
		var se *SetupError
		if isMode := mode == Auto || mode == Strict || mode == ""; isMode != errors.As(err, &se) {
			t.Errorf("mode %q: err = %v (%T)", mode, err, err)
		}
		if c.Process != nil || c.Sandboxed || c.Note != "" {
			t.Errorf("mode %q: Process %v, Sandboxed %v, Note %q after a failed start", mode, c.Process, c.Sandboxed, c.Note)
		}
	}
	if _, err := os.Stat(mark); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the program ran after a failed start: %v", err)
	}
	for _, s := range []string{"bogus", "Off", "AUTO", " strict"} {
		if m, err := ParseMode(s); err == nil {
			t.Errorf("ParseMode(%q) = %q, want an error", s, m)
		}
	}
	// The protection off: the same program, where it may run, runs.
	run(t, Off, spec)
	if _, err := os.Stat(mark); err != nil {
		t.Fatalf("the program did not run unconfined either: the test cannot tell: %v", err)
	}
}

// TestExecutableUnderTmpOrClosedDir: a binary under the host's /tmp (`go
// run`, test binaries) and, for a root daemon, one in a directory closed
// to others (`go run`'s cache in /root/.cache) still runs sandboxed: the
// executable itself is granted, whatever the directories above it.
func TestExecutableUnderTmpOrClosedDir(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp("/tmp", "rugwatch-exe-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	dirs := map[string]string{"under /tmp": tmp}
	if os.Geteuid() == 0 {
		dirs["closed to others"] = makeDir(t, filepath.Join(outsideTmp(t), "closed"), 0o700)
	}
	for name, dir := range dirs {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, "sandbox.test")
			writeFile(t, p, string(b), 0o755)
			env := []string{"PATH=/usr/bin:/bin"}
			if raceBuild {
				env = append(env, "GORACE=atexit_sleep_ms=0")
			}
			r := run(t, Strict, Spec{Path: p, Args: []string{p, "-test.run=^TestNothing$"}, Env: env})
			if r.err != nil || !r.c.Sandboxed {
				t.Fatalf("sandboxed %s: %v (Sandboxed %v)\n%s%s", p, r.err, r.c.Sandboxed, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout, "PASS") {
				t.Errorf("the binary did not run its test main: %q %q", r.stdout, r.stderr)
			}
		})
	}
}

// TestProtectedInsideGrantedCode: a script's directory is granted as its
// code; a data dir and a config file inside it that Protect lists stay
// unreadable while the script's own files read. Without the Protect
// entries the same script reads them.
func TestProtectedInsideGrantedCode(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "rugwatch-checkout-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	makeDir(t, dir, 0o755)
	data := makeDir(t, filepath.Join(dir, "data"), 0o755)
	writeFile(t, filepath.Join(data, "approver.key"), "PRIVATE", 0o644)
	config := filepath.Join(dir, "config.env")
	writeFile(t, config, "TOKEN", 0o644)
	writeFile(t, filepath.Join(dir, "lib"), "LIB", 0o644)
	script := filepath.Join(dir, "server")
	writeFile(t, script, fmt.Sprintf(`#!/bin/sh
echo "lib=$(cat %[1]s/lib)"
echo "secret=$(cat %[1]s/data/approver.key 2>/dev/null)"
echo "config=$(cat %[1]s/config.env 2>/dev/null)"
`, dir), 0o755)

	spec := Spec{Path: script, Args: []string{script}, Env: []string{"PATH=/usr/bin:/bin"}, Protect: []string{data, config}}
	in := runOK(t, Strict, spec)
	if in["lib"] != "LIB" || in["secret"] != "" || in["config"] != "" {
		t.Errorf("with Protect: %v, want lib read and the data dir and config unreadable", in)
	}
	spec.Protect = nil
	out := runOK(t, Strict, spec)
	if out["lib"] != "LIB" || out["secret"] != "PRIVATE" || out["config"] != "TOKEN" {
		t.Errorf("without Protect: %v, want everything in the code directory read: the test cannot tell", out)
	}
}

// TestPersistentHome: Spec.Home is the program's own and lasts; another
// Home does not see it; without Home each run starts from an empty one.
func TestPersistentHome(t *testing.T) {
	base := outsideTmp(t)
	home1, home2 := filepath.Join(base, "home1"), filepath.Join(base, "home2")
	spec := shSpec(`echo "home=$HOME"; echo "pwd=$(pwd)"; echo "ls=$(ls -A -w0 -C "$HOME")"
test -e "$OTHER/state" && echo other=yes || echo other=no
echo persisted > "$HOME/state" && echo wrote=yes`, "OTHER="+home1)
	spec.Home = home1

	got := runOK(t, Strict, spec)
	if got["home"] != home1 || got["pwd"] != home1 || got["ls"] != "" || got["wrote"] != "yes" {
		t.Fatalf("first run with Home %s: %v", home1, got)
	}
	if b, err := os.ReadFile(filepath.Join(home1, "state")); err != nil || string(b) != "persisted\n" {
		t.Fatalf("the host's %s/state = %q, %v", home1, b, err)
	}
	if got := runOK(t, Strict, spec); got["ls"] != "state" {
		t.Errorf("second run with Home %s: %v, want the state the first left", home1, got)
	}

	spec.Home = home2
	if got := runOK(t, Strict, spec); got["home"] != home2 || got["ls"] != "" || got["other"] != "no" {
		t.Errorf("run with Home %s: %v, want its own empty HOME and no sight of %s", home2, got, home1)
	}
	// The protection off: unconfined, the other HOME is right there.
	if got := runOK(t, Off, spec); got["other"] != "yes" {
		t.Errorf("unconfined with Home %s: %v: the test cannot tell", home2, got)
	}

	spec.Home = ""
	for i := range 2 {
		got := runOK(t, Strict, spec)
		if got["home"] != freshHome || got["pwd"] != freshHome || got["ls"] != "" || got["wrote"] != "yes" {
			t.Errorf("run %d without Home: %v, want an empty, writable %s", i, got, freshHome)
		}
	}
}

// TestMounts: a read-only grant reads and does not write, a read-write one
// writes, nothing beside either shows; a grant inside a protected path is
// refused before anything runs.
func TestMounts(t *testing.T) {
	parent := outsideTmp(t)
	// 0777: as root the program is nobody, and only the mount may stop it.
	ro := makeDir(t, filepath.Join(parent, "ro"), 0o777)
	rw := makeDir(t, filepath.Join(parent, "rw"), 0o777)
	writeFile(t, filepath.Join(ro, "file"), "RO", 0o644)
	sibling := makeDir(t, filepath.Join(parent, "sibling"), 0o755)
	writeFile(t, filepath.Join(sibling, "file"), "SIB", 0o644)
	spec := shSpec(`echo "read_ro=$(cat "$RO/file")"
touch "$RO/new" 2>/dev/null && echo write_ro=yes || echo write_ro=no
mount -o remount,rw "$RO" 2>/dev/null && echo remount_ro=yes || echo remount_ro=no
touch "$RW/new" && echo write_rw=yes || echo write_rw=no
test -e "$SIB/file" && echo sibling=yes || echo sibling=no
echo "parent=$(ls -A -w0 -C "$PARENT")"`, "RO="+ro, "RW="+rw, "SIB="+sibling, "PARENT="+parent)
	spec.Mounts = []Mount{{Path: ro}, {Path: rw, Write: true}}

	in := runOK(t, Strict, spec)
	want := map[string]string{"read_ro": "RO", "write_ro": "no", "remount_ro": "no", "write_rw": "yes", "sibling": "no"}
	for k, v := range want {
		if in[k] != v {
			t.Errorf("sandboxed %s = %q, want %q", k, in[k], v)
		}
	}
	if got := words(in["parent"]); !slices.Equal(got, []string{"ro", "rw"}) {
		t.Errorf("the mounts' parent in the sandbox lists %q, want ro and rw alone", got)
	}
	if _, err := os.Stat(filepath.Join(rw, "new")); err != nil {
		t.Errorf("the write to the rw mount did not reach the host: %v", err)
	}
	if _, err := os.Stat(filepath.Join(ro, "new")); err == nil {
		t.Errorf("the ro mount was written")
	}
	out := runOK(t, Off, spec)
	if out["write_ro"] != "yes" || out["sibling"] != "yes" {
		t.Errorf("unconfined: %v: the test cannot tell", out)
	}

	protected := makeDir(t, filepath.Join(parent, "protected", "inner"), 0o755)
	for _, mode := range []Mode{Strict, Auto} {
		c := Command(mode, Spec{Path: "/bin/true", Mounts: []Mount{{Path: protected}}, Protect: []string{filepath.Dir(protected)}})
		err := c.Start()
		if err == nil {
			_ = c.Wait()
			t.Fatalf("%s: a mount inside a protected path was granted", mode)
		}
		var se *SetupError
		if !errors.As(err, &se) || IsRefused(err) || c.Process != nil {
			t.Errorf("%s: err = %v (%T), Process %v; want a SetupError and nothing run", mode, err, err, c.Process)
		}
	}
}

// netScript connects to the host's port directly, past any proxy, and
// says whether /proc/net/tcp lists the host's listener.
const netScript = `
import socket, sys
port = int(sys.argv[1])
try:
    socket.create_connection(("127.0.0.1", port), 10).close()
    print("connect=yes")
except OSError as e:
    print("connect=no")
    print(e, file=sys.stderr)
want = "0100007F:%04X" % port
listed = any(f[1] == want and f[3] == "0A" for f in (l.split() for l in open("/proc/net/tcp").readlines()[1:]))
print("listed=%s" % ("yes" if listed else "no"))
`

// TestNetworkIsolation: with the egress network a program reaches the
// host's loopback only through the proxy, and only where the allow-list
// names it; with none, nothing; with host, everything, which is what shows
// the isolation is what refused it.
func TestNetworkIsolation(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello")
	}))
	srv.Listener.Close()
	srv.Listener = testkit.ListenBelowEphemeral(t)
	srv.Start()
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	dest := u.Host // 127.0.0.1:PORT
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := []string{httpGetEnv + "=" + srv.URL}
	if raceBuild {
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	get := func(network Network, e *Egress) map[string]string {
		t.Helper()
		got := runOK(t, Strict, Spec{Path: exe, Args: []string{exe}, Env: env, Network: network, Egress: e})
		t.Logf("GET %s, network %s: %v", srv.URL, network, got)
		return got
	}

	if got := get(NetEgress, &Egress{Allow: []string{dest}}); got["status"] != "200" || got["body"] != "hello" {
		t.Errorf("egress allowing %s: %v, want 200 hello", dest, got)
	}
	var mu sync.Mutex
	var refused []string
	e := &Egress{OnRefused: func(d string) {
		mu.Lock()
		defer mu.Unlock()
		refused = append(refused, d)
	}}
	if got := get(NetEgress, e); got["status"] != "403" {
		t.Errorf("egress allowing nothing: %v, want 403", got)
	}
	mu.Lock()
	if !slices.Equal(refused, []string{dest}) {
		t.Errorf("OnRefused saw %q, want %s once", refused, dest)
	}
	mu.Unlock()
	if got := get(NetNone, nil); !strings.HasPrefix(got["error"], "Get ") {
		t.Errorf("network none: %v, want an error", got)
	}
	if got := get(NetHost, nil); got["status"] != "200" {
		t.Errorf("network host: %v, want 200: the test cannot tell", got)
	}

	port := u.Port()
	direct := func(network Network) map[string]string {
		t.Helper()
		spec := Spec{Path: "/usr/bin/python3", Args: []string{"python3", "-c", netScript, port}, Env: []string{"PATH=/usr/bin:/bin"}, Network: network, Egress: &Egress{Allow: []string{dest}}}
		got := runOK(t, Strict, spec)
		t.Logf("direct to %s, network %s: %v", dest, network, got)
		return got
	}
	if got := direct(NetEgress); got["connect"] != "no" || got["listed"] != "no" {
		t.Errorf("egress, even allowing %s: %v; want no direct connection and no sight of the listener", dest, got)
	}
	if got := direct(NetHost); got["connect"] != "yes" || got["listed"] != "yes" {
		t.Errorf("network host: %v: the test cannot tell", got)
	}
}

// forkScript forks up to 600 sleepers, each named by the token, and
// prints how many forks it made and how many of them run sleep. It waits
// for each child's exec before the next fork (a close-on-exec pipe ends
// at the exec, or carries a byte when it failed), so that every sleeper
// it counts is one /proc already shows by the token when it exits: a
// child still inside its exec has no command line yet, and a scan of
// /proc right after the bomb returned missed the last few now and then.
const forkScript = `
import os, sys
forks = started = 0
for i in range(600):
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        break
    if pid == 0:
        os.close(r)
        fd = os.open("/dev/null", os.O_RDWR)
        for i in (0, 1, 2):
            os.dup2(fd, i)
        try:
            os.execv("/bin/sleep", ["sleep", sys.argv[1]])
        finally:
            os.write(w, b"x")
            os._exit(1)
    forks += 1
    os.close(w)
    failed = os.read(r, 1)
    os.close(r)
    if failed:
        os.waitpid(pid, 0)
    else:
        started += 1
print("forks=%d\nstarted=%d" % (forks, started), flush=True)
`

// TestResourceLimits: a fork bomb meets the Pids bound, and whatever it
// started dies with the sandbox; an allocation past MemoryBytes fails.
// Unconfined, both go through.
func TestResourceLimits(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		spec := Spec{
			Path: "/usr/bin/python3",
			Args: []string{"python3", "-c", "try:\n    b = bytearray(1 << 30)\n    print('alloc=yes')\nexcept MemoryError:\n    print('alloc=no')\n"},
			Env:  []string{"PATH=/usr/bin:/bin"}, Resources: Resources{MemoryBytes: 256 << 20},
		}
		got := runOK(t, Strict, spec)
		t.Logf("sandboxed: %v", got)
		if got["alloc"] != "no" {
			t.Errorf("sandboxed under 256 MiB, 1 GiB: %v, want a MemoryError", got)
		}
		if got = runOK(t, Off, spec); got["alloc"] != "yes" {
			t.Errorf("unconfined, 1 GiB: %v: the test cannot tell", got)
		}
	})
	t.Run("pids", func(t *testing.T) {
		for i, mode := range []Mode{Strict, Off} {
			token := fmt.Sprintf("599.%d%d", os.Getpid(), i)
			spec := Spec{Path: "/usr/bin/python3", Args: []string{"python3", "-c", forkScript, token}, Env: []string{"PATH=/usr/bin:/bin"}, Resources: Resources{Pids: 64}}
			c := Command(mode, spec)
			var out, errb bytes.Buffer
			c.Stdout, c.Stderr = &out, &errb
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { killAll(findToken(token)) })
			err := c.Wait()
			left := findToken(token)
			killAll(left)
			kv := keyValues(out.String())
			forks, _ := strconv.Atoi(kv["forks"])
			n, _ := strconv.Atoi(kv["started"])
			t.Logf("%s: the fork bomb forked %d and started %d; %d still ran when it exited", mode, forks, n, len(left))
			if err != nil || n == 0 {
				t.Fatalf("%s: %v, %q\n%s", mode, err, out.String(), errb.String())
			}
			switch mode {
			case Strict:
				if forks >= 64 {
					t.Errorf("sandboxed, the fork bomb forked %d processes under a bound of 64", forks)
				}
				if len(left) > 0 {
					t.Errorf("sandboxed, %d sleepers outlived the sandbox", len(left))
				}
			case Off:
				// Every sleeper started is found: a scan that missed any
				// could miss a survivor of the sandbox too.
				if forks != 600 || n != 600 || len(left) != n {
					t.Errorf("unconfined, the fork bomb forked %d and started %d, %d running: the test cannot tell", forks, n, len(left))
				}
			}
		}
	})
}

// unprivilegedTests are the tests that mean something run by an ordinary
// user's daemon too.
var unprivilegedTests = []string{
	"TestAllowListRoot", "TestAttacksFromInside", "TestOnlyTheGivenEnvironment",
	"TestDoubleForkedGrandchildDiesWithTheSandbox", "TestHardenedDaemonStillSandboxes", "TestHardenSelf",
	"TestRefusedWithoutUserNamespaces", "TestSetupErrorNeverFallsBack", "TestExecutableUnderTmpOrClosedDir",
	"TestProtectedInsideGrantedCode", "TestPersistentHome", "TestMounts", "TestNetworkIsolation", "TestResourceLimits",
}

// TestAsUnprivilegedUser re-runs the package's sandbox tests as uid 65534,
// as an unprivileged daemon would run, when this run is root.
func TestAsUnprivilegedUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("already unprivileged")
	}
	dir := outsideTmp(t)
	exe := reachableExe(t, dir)
	work := makeDir(t, filepath.Join(dir, "work"), 0o755)
	if err := os.Chown(work, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^("+strings.Join(unprivilegedTests, "|")+")$", "-test.v", "-test.count=1")
	cmd.Dir = work
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + work, "TMPDIR=" + work, "RUGWATCH_TEST_OUTSIDE_TMP=" + work}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobodyCred()}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("as uid 65534: %v\n%s", err, out)
	}
	t.Logf("as uid 65534:\n%s", out)
	for _, name := range unprivilegedTests {
		if !bytes.Contains(out, []byte("--- PASS: "+name+" ")) && !bytes.Contains(out, []byte("--- SKIP: "+name+" ")) {
			t.Errorf("as uid 65534, %s did not run", name)
		}
	}
}

// BenchmarkStart measures a start and exit of /bin/true sandboxed and
// unconfined: the difference is what the sandbox costs per start.
func BenchmarkStart(b *testing.B) {
	for _, bc := range []struct {
		name string
		mode Mode
		net  Network
	}{{"Unconfined", Off, ""}, {"Sandboxed", Strict, NetEgress}, {"SandboxedNoNetwork", Strict, NetNone}} {
		b.Run(bc.name, func(b *testing.B) {
			spec := Spec{Path: "/bin/true", Args: []string{"true"}, Network: bc.net}
			for b.Loop() {
				c := Command(bc.mode, spec)
				if err := c.Start(); err != nil {
					b.Fatal(err)
				}
				if err := c.Wait(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
