package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/rugwatch/rugwatch/testkit"
)

// The test binary is re-executed as the sandbox init.
func TestMain(m *testing.M) {
	Init()
	if h := os.Getenv("SANDBOX_TEST_HARDEN"); h != "" {
		// A daemon stand-in: hardened or not, it says so and waits.
		if h == "1" {
			if err := HardenSelf(); err != nil {
				fmt.Println(err)
				os.Exit(1)
			}
		}
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	if os.Getenv("SANDBOX_TEST_NO_USERNS") != "" {
		// Re-run inside a user namespace that may create no more of them,
		// so the kernel itself refuses the sandbox.
		if err := os.WriteFile("/proc/sys/user/max_user_namespaces", []byte("0"), 0); err != nil {
			fmt.Fprintln(os.Stderr, "disabling user namespaces:", err)
			os.Exit(3)
		}
	}
	os.Exit(m.Run())
}

// outsideTmp makes a directory that is not under /tmp: the sandbox's /tmp
// is its own, which would hide anything there whatever the hide list says.
func outsideTmp(t *testing.T) string { return testkit.OutsideTmp(t, 0o755) }

// run runs script with sh, sandboxed or not, and returns its stdout.
func run(t *testing.T, sandboxed bool, spec Spec) (string, string, error) {
	t.Helper()
	var cmd *exec.Cmd
	var start func() error
	if sandboxed {
		c, err := Command(spec)
		if err != nil {
			t.Fatal(err)
		}
		cmd, start = c.Cmd, c.Start
	} else {
		cmd = exec.Command(spec.Path)
		cmd.Args, cmd.Env, cmd.Dir = spec.Args, spec.Env, spec.Dir
		start = cmd.Start
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := start(); err != nil {
		return "", "", err
	}
	err := cmd.Wait()
	return out.String(), errb.String(), err
}

func sh(script string, env ...string) Spec {
	return Spec{Path: "/bin/sh", Args: []string{"sh", "-c", script}, Env: append([]string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin"}, env...)}
}

// lines turns "key=value" lines into a map.
func lines(s string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

// attackScript tries, from inside, what a hostile server would; each line
// says whether one attempt worked.
const attackScript = `
try() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "$name=yes"; else echo "$name=no"; fi; }
try read_key cat "$DATA/approver.key"
try list_data ls "$DATA/sub"
try write_pub sh -c 'echo x >> "$PUB"'
try read_pub_content grep -q PUBKEY "$PUB"
try kill_parent kill -0 "$PARENT"
try parent_environ cat "/proc/$PARENT/environ"
try socket sh -c 'test -S "$SOCK"'
try umount umount -l "$DATA"
try unshare_umount unshare -Urm sh -c 'umount -l "$DATA" && cat "$DATA/approver.key"'
try bind_parent unshare -Urm sh -c 'mkdir -p /tmp/b && mount --bind "$(dirname "$DATA")" /tmp/b && cat /tmp/b/data/approver.key'
echo "uid=$(id -u)"
echo "procs=$(ls -d /proc/[0-9]* | wc -l)"
`

func attackFixture(t *testing.T) (Spec, []string) {
	t.Helper()
	dir := outsideTmp(t)
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(filepath.Join(data, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "approver.key"), []byte("PRIVATE"), 0o644); err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, "keys", "approver.pub")
	_ = os.MkdirAll(filepath.Dir(pub), 0o755)
	if err := os.WriteFile(pub, []byte("PUBKEY"), 0o666); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "ctl.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	_ = os.Chmod(sock, 0o777)
	spec := sh(attackScript, "DATA="+data, "PUB="+pub, "SOCK="+sock, "PARENT="+strconv.Itoa(os.Getpid()))
	return spec, []string{data, pub, sock}
}

func TestAttacksFromInside(t *testing.T) {
	spec, hide := attackFixture(t)
	out, errOut, err := run(t, false, spec)
	if err != nil {
		t.Fatalf("unsandboxed: %v\n%s", err, errOut)
	}
	before := lines(out)
	spec.Hide = hide
	out, errOut, err = run(t, true, spec)
	if err != nil {
		t.Fatalf("sandboxed: %v\n%s", err, errOut)
	}
	after := lines(out)
	t.Logf("unsandboxed: %v", before)
	t.Logf("sandboxed:   %v", after)
	// Each attack must work unsandboxed, or this test could not fail.
	for _, k := range []string{"read_key", "list_data", "write_pub", "kill_parent", "parent_environ", "socket"} {
		if before[k] != "yes" {
			t.Errorf("unsandboxed %s = %q, want yes: the test cannot tell the sandbox works", k, before[k])
		}
	}
	for _, k := range []string{"read_key", "list_data", "write_pub", "kill_parent", "parent_environ", "socket", "umount", "unshare_umount", "bind_parent"} {
		if after[k] != "no" {
			t.Errorf("sandboxed %s = %q, want no", k, after[k])
		}
	}
	if after["read_pub_content"] != "no" {
		t.Errorf("the hidden approver.pub still reads as itself")
	}
	// The init, the server and the few it runs just now.
	if n, _ := strconv.Atoi(after["procs"]); n == 0 || n > 6 {
		t.Errorf("the server sees %q processes in /proc", after["procs"])
	}
	// The unsandboxed run appended one line; the sandboxed one none.
	if b, err := os.ReadFile(hide[1]); err != nil || string(b) != "PUBKEYx\n" {
		t.Errorf("approver.pub after the sandboxed run = %q, %v", b, err)
	}
	wantUID := strconv.Itoa(os.Geteuid())
	if os.Geteuid() == 0 {
		wantUID = "65534"
	}
	if after["uid"] != wantUID {
		t.Errorf("uid in the sandbox = %q, want %s", after["uid"], wantUID)
	}
}

func TestOnlyTheGivenEnvironment(t *testing.T) {
	spec := Spec{Path: "/usr/bin/env", Args: []string{"env"}, Env: []string{"A=1", "HOME=/", "PATH=/bin"}}
	out, errOut, err := run(t, true, spec)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if got := strings.Fields(out); strings.Join(got, " ") != "A=1 HOME=/ PATH=/bin" {
		t.Errorf("environment in the sandbox = %q", got)
	}
}

func TestPrivateHomeWhenHomeIsClosed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs a root daemon, whose sandbox user cannot enter a 0700 home")
	}
	home := filepath.Join(outsideTmp(t), "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := run(t, true, sh(`echo "home=$HOME"; touch "$HOME/x" && echo writable=yes`, "HOME="+home))
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if m := lines(out); m["home"] != "/tmp/home" || m["writable"] != "yes" {
		t.Errorf("got %v, want a private writable HOME", m)
	}
}

// grandchildToken names the process a server leaves behind, so the host
// can look for it whatever its pid in the sandbox.
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

func TestDoubleForkedGrandchildDiesWithTheSandbox(t *testing.T) {
	for _, sandboxed := range []bool{false, true} {
		t.Run(fmt.Sprintf("sandboxed=%v", sandboxed), func(t *testing.T) {
			token := fmt.Sprintf("86399.%d%d", os.Getpid(), map[bool]int{false: 0, true: 1}[sandboxed])
			// setsid -f forks, env -i empties the environment, and the
			// middle process exits before the sleep does: a daemon-style
			// escape. head returns once the grandchild has said it runs,
			// so it is known to exist when the server exits.
			spec := sh(`env -i setsid -f sh -c 'echo started; exec sleep ` + token + ` >/dev/null 2>&1 </dev/null' | head -n 1`)
			out, errOut, err := run(t, sandboxed, spec)
			if err != nil {
				t.Fatalf("%v\n%s", err, errOut)
			}
			if !strings.Contains(out, "started") {
				t.Fatalf("the grandchild never started: %q %q", out, errOut)
			}
			left := findToken(token)
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			if sandboxed && len(left) > 0 {
				t.Errorf("grandchild %v survived the sandbox", left)
			}
			if !sandboxed && len(left) == 0 {
				t.Errorf("the unsandboxed grandchild is gone too: the test cannot tell the sandbox works")
			}
		})
	}
}

// TestRefusedWithoutUserNamespaces re-runs this test binary in a user
// namespace whose max_user_namespaces is 0: the kernel then refuses every
// new user namespace, as on a host where they are disabled.
func TestRefusedWithoutUserNamespaces(t *testing.T) {
	if h := os.Getenv("SANDBOX_TEST_HARDEN"); h != "" {
		// A daemon stand-in: hardened or not, it says so and waits.
		if h == "1" {
			if err := HardenSelf(); err != nil {
				fmt.Println(err)
				os.Exit(1)
			}
		}
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	if os.Getenv("SANDBOX_TEST_NO_USERNS") != "" {
		_, _, err := run(t, true, sh("echo hi"))
		var ue *UnavailableError
		if !errors.As(err, &ue) {
			t.Fatalf("err = %v, want *UnavailableError", err)
		}
		if !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("err = %v, want ENOSPC from clone", err)
		}
		t.Logf("refused: %v", err)
		out, _, err := run(t, false, sh("echo hi"))
		if err != nil || out != "hi\n" {
			t.Errorf("unsandboxed run = %q, %v", out, err)
		}
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestRefusedWithoutUserNamespaces$", "-test.v")
	cmd.Env = append(os.Environ(), "SANDBOX_TEST_NO_USERNS=1")
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

// TestAsUnprivilegedUser re-runs the package's tests as uid 65534, as an
// unprivileged daemon would run, when this run is root.
func TestAsUnprivilegedUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("already unprivileged")
	}
	dir := outsideTmp(t)
	copyExe := reachableExe(t, dir)
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(work, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(copyExe, "-test.run=^(TestAttacksFromInside|TestOnlyTheGivenEnvironment|TestDoubleForkedGrandchildDiesWithTheSandbox|TestRefusedWithoutUserNamespaces)$", "-test.v")
	cmd.Dir = work
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + work, "TMPDIR=" + work, "RUGWATCH_TEST_OUTSIDE_TMP=" + work}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	t.Logf("as uid 65534:\n%s", out)
	if err != nil {
		t.Fatalf("as uid 65534: %v", err)
	}
}

// TestHardenSelf: a process of the same user reads a daemon's environment
// through /proc unless the daemon made itself non-dumpable.
func TestHardenSelf(t *testing.T) {
	exe := reachableExe(t, outsideTmp(t))
	// Root reads any process's environ; both sides run as nobody then.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		cred = &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}
	}
	for _, harden := range []string{"0", "1"} {
		daemon := exec.Command(exe, "-test.run=^$")
		daemon.Env = []string{"SANDBOX_TEST_HARDEN=" + harden, "SECRET=hunter2"}
		daemon.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
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
			t.Fatalf("daemon said %q", line)
		}
		reader := exec.Command("cat", fmt.Sprintf("/proc/%d/environ", daemon.Process.Pid))
		reader.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		env, rerr := reader.Output()
		in.Close()
		_ = daemon.Wait()
		leaked := rerr == nil && bytes.Contains(env, []byte("hunter2"))
		if leaked != (harden == "0") {
			t.Errorf("hardened=%s: environ read = %v (%v)", harden, leaked, rerr)
		}
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
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestExecutableUnderTmpOrClosedDir: a binary under the host's /tmp (`go
// run`, test binaries) and, for a root daemon, one in a directory closed
// to others (`go run`'s cache in /root/.cache) still run sandboxed: the
// daemon hands the init the executable itself. Started by its path the
// same binary is not found (the private /tmp) or not reachable by the
// sandbox user, which is what the fd avoids.
func TestExecutableUnderTmpOrClosedDir(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	dirs := map[string]string{}
	tmp, err := os.MkdirTemp("/tmp", "rugwatch-exe-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	dirs["under /tmp"] = tmp
	if os.Geteuid() == 0 {
		closed := filepath.Join(outsideTmp(t), "closed")
		if err := os.Mkdir(closed, 0o700); err != nil {
			t.Fatal(err)
		}
		dirs["closed to others"] = closed
	}
	for name, dir := range dirs {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, "sandbox.test")
			if err := os.WriteFile(p, b, 0o755); err != nil {
				t.Fatal(err)
			}
			spec := Spec{Path: p, Args: []string{p, "-test.run=^TestNothing$"}, Env: []string{"PATH=/usr/bin:/bin"}}
			out, errOut, err := run(t, true, spec)
			if err != nil {
				t.Fatalf("sandboxed %s: %v\n%s%s", p, err, out, errOut)
			}
			if !strings.Contains(out, "ok") && !strings.Contains(out, "PASS") && !strings.Contains(out, "no tests to run") {
				t.Errorf("the binary did not run its test main: %q %q", out, errOut)
			}
			// Without the handed-over executable, the same start fails.
			c, err := Command(spec)
			if err != nil {
				t.Fatal(err)
			}
			if !c.spec.ExeFD {
				t.Fatalf("%s should need the executable handed over", p)
			}
			c.spec.ExeFD = false
			c.Stdout, c.Stderr = io.Discard, io.Discard
			if err := c.Start(); err == nil {
				c.Wait()
				t.Fatalf("%s started by its path alone; the test cannot tell the fix from no fix", p)
			}
		})
	}
}

// TestCheckoutUnderTmpRunsWithItsHiddenPathsHidden: a server whose code
// lives under the host's /tmp (a checkout there, its node_modules) runs
// sandboxed, its directory bound into the private /tmp, and a hidden path
// inside that directory (a data dir in the checkout) stays hidden. Without
// the directory kept, the same server is not found.
func TestCheckoutUnderTmpRunsWithItsHiddenPathsHidden(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "rugwatch-checkout-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "data", "approver.key")
	if err := os.MkdirAll(filepath.Dir(secret), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("PRIVATE"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "bin", "server")
	if err := os.MkdirAll(filepath.Dir(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// Like node loading its modules from the real path of its script,
	// the server reads a file of its own package by absolute path.
	lib := filepath.Join(dir, "bin", "lib")
	if err := os.WriteFile(lib, []byte("LIB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	body := "#!/bin/sh\ncat " + lib + "\ncat " + secret + " 2>/dev/null || echo hidden\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := Spec{Path: script, Args: []string{script}, Env: []string{"PATH=/usr/bin:/bin"}, Hide: []string{filepath.Dir(secret)}}
	out, errOut, err := run(t, true, spec)
	if err != nil {
		t.Fatalf("sandboxed server under /tmp: %v\n%s%s", err, out, errOut)
	}
	if !strings.Contains(out, "LIB") || strings.Contains(out, "PRIVATE") || !strings.Contains(out, "hidden") {
		t.Fatalf("want the server to read its own files and the data dir hidden, got %q", out)
	}
	// The protection off: without the kept directory its files are gone.
	c, err := Command(spec)
	if err != nil {
		t.Fatal(err)
	}
	c.spec.TmpKeep = nil
	var got bytes.Buffer
	c.Stdout, c.Stderr = &got, io.Discard
	if err := c.Start(); err == nil {
		_ = c.Wait()
	}
	if strings.Contains(got.String(), "LIB") {
		t.Fatal("the server read its files without its directory kept; the test cannot tell")
	}
}
