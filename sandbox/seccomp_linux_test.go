package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The probe child: the test binary re-executed with seccompChildEnv set
// runs every probe, with the filter when seccompFilterEnv is "1" and
// without it otherwise, prints one "name=outcome" line per probe and
// exits. It runs from init because TestMain belongs to another file.
const (
	seccompChildEnv  = "RUGWATCH_SECCOMP_TEST_CHILD"
	seccompFilterEnv = "RUGWATCH_SECCOMP_TEST_FILTER"
	unshareBin       = "/usr/bin/unshare"
)

func init() {
	if os.Getenv(seccompChildEnv) != "1" {
		return
	}
	os.Exit(seccompChild())
}

func seccompChild() int {
	if os.Getenv(seccompFilterEnv) == "1" {
		if err := installSeccomp(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range seccompProbes() {
		fmt.Printf("%s=%s\n", p.name, probeOutcome(p.run(ctx)))
	}
	return 0
}

type seccompProbe struct {
	name string
	run  func(context.Context) error
}

// seccompProbes are the calls the filter must refuse and the ordinary work
// it must leave alone. Every refused probe fails harmlessly without the
// filter too (a mount on a missing directory, an ioctl on a pipe), so the
// test changes nothing on the machine.
func seccompProbes() []seccompProbe {
	probes := []seccompProbe{
		{"threads_filtered", probeThreadsFiltered},
		// Refused.
		{"unshare_user", probeUnshareUser},
		{"clone_newuser", func(ctx context.Context) error {
			cmd := exec.CommandContext(ctx, "/bin/true")
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER}
			return cmd.Run()
		}},
		{"clone3", func(context.Context) error {
			// A size of 0 makes the kernel refuse it with EINVAL before
			// anything is created.
			_, _, e := unix.Syscall(unix.SYS_CLONE3, 0, 0, 0)
			return errnoOrNil(e)
		}},
		{"keyctl", func(context.Context) error {
			_, err := unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_SESSION_KEYRING, 1, 0, 0)
			return err
		}},
		{"socket_packet", func(context.Context) error { return probeSocket(unix.AF_PACKET, unix.SOCK_RAW, 0) }},
		{"mount_tmpfs", func(context.Context) error {
			return unix.Mount("rugwatch-probe", "/nonexistent/rugwatch-seccomp-probe", "tmpfs", 0, "")
		}},
		{"ioctl_tiocsti", func(context.Context) error { return probeIoctl(unix.TIOCSTI, 0) }},
		// The kernel reads the request as 32 bits: a high bit must not
		// carry TIOCSTI past the filter.
		{"ioctl_tiocsti_high", func(context.Context) error { return probeIoctl(unix.TIOCSTI, 1) }},
		{"ioctl_tioclinux", func(context.Context) error { return probeIoctl(unix.TIOCLINUX, 0) }},
		{"kexec_file_load", func(context.Context) error {
			// Bad descriptors: without the filter root gets EBADF.
			neg := -1
			return probeArchSyscall("kexec_file_load", uintptr(neg), uintptr(neg), 0)
		}},
		// Ordinary work.
		{"read_file", func(context.Context) error {
			_, err := os.ReadFile("/proc/self/status")
			return err
		}},
		{"tcp_listen", func(context.Context) error {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			return l.Close()
		}},
		{"socket_netlink", func(context.Context) error {
			return probeSocket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE)
		}},
		{"socketpair_unix", func(context.Context) error {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			return errors.Join(unix.Close(fds[0]), unix.Close(fds[1]))
		}},
		{"fork_exec", func(ctx context.Context) error { return exec.CommandContext(ctx, "/bin/true").Run() }},
		{"new_threads", probeNewThreads},
	}
	if runtime.GOARCH == "amd64" {
		probes = append(probes,
			seccompProbe{"iopl", func(context.Context) error { return probeArchSyscall("iopl", 0) }},
			seccompProbe{"x32_getpid", func(context.Context) error {
				_, _, e := unix.Syscall(x32SyscallBit|unix.SYS_GETPID, 0, 0, 0)
				return errnoOrNil(e)
			}},
		)
	}
	return probes
}

// probeOutcome is "ok", the errno's name, or a one-line error.
func probeOutcome(err error) string {
	var errno syscall.Errno
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &errno) && unix.ErrnoName(errno) != "":
		return unix.ErrnoName(errno)
	}
	return "error: " + strings.Join(strings.Fields(err.Error()), " ")
}

func errnoOrNil(e syscall.Errno) error {
	if e != 0 {
		return e
	}
	return nil
}

// probeUnshareUser runs unshare(1) rather than calling unshare(2): in a
// multi-threaded process the kernel refuses CLONE_NEWUSER with EINVAL,
// filter or not. The errno comes back as unshare's message.
func probeUnshareUser(ctx context.Context) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, unshareBin, "-U", "true")
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.ToLower(stderr.String())
		for _, e := range []unix.Errno{unix.EPERM, unix.EINVAL, unix.ENOSPC} {
			if strings.Contains(msg, e.Error()) {
				return e
			}
		}
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func probeSocket(family, typ, proto int) error {
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// probeIoctl calls ioctl on fd 0, which the test makes a pipe, with high
// as the upper 32 bits of the request. On a terminal TIOCSTI would really
// type, so it refuses to run there.
func probeIoctl(req uint32, high uint64) error {
	if _, err := unix.IoctlGetTermios(0, unix.TCGETS); err == nil {
		return errors.New("standard input is a terminal")
	}
	// TIOCLINUX's first byte is a subcode; 7 only reads the shift state.
	arg := byte(7)
	_, _, e := unix.Syscall(unix.SYS_IOCTL, 0, uintptr(high<<32|uint64(req)), uintptr(unsafe.Pointer(&arg)))
	return errnoOrNil(e)
}

// probeArchSyscall makes a call the filter numbers itself, by its name.
func probeArchSyscall(name string, args ...uintptr) error {
	arch, err := nativeArch()
	if err != nil {
		return err
	}
	i := slices.IndexFunc(arch.refusals, func(r refusal) bool { return r.name == name })
	if i < 0 {
		return fmt.Errorf("%s is not in the architecture's list", name)
	}
	var a [6]uintptr
	copy(a[:], args)
	_, _, e := unix.Syscall6(uintptr(arch.refusals[i].nr), a[0], a[1], a[2], a[3], a[4], a[5])
	return errnoOrNil(e)
}

// probeThreadsFiltered checks that every thread of the process, not only
// the one that installed the filter, runs under it with no_new_privs.
func probeThreadsFiltered(context.Context) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	var errs []error
	for _, task := range tasks {
		f, err := threadStatus(filepath.Join("/proc/self/task", task.Name(), "status"))
		if err != nil {
			return err
		}
		if f["Seccomp"] != "2" || f["NoNewPrivs"] != "1" {
			errs = append(errs, fmt.Errorf("thread %s has Seccomp %s NoNewPrivs %s", task.Name(), f["Seccomp"], f["NoNewPrivs"]))
		}
	}
	return errors.Join(errs...)
}

func threadStatus(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	fields := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields, sc.Err()
}

// probeNewThreads makes the Go runtime create OS threads (clone with
// CLONE_THREAD) and run a system call on each: more goroutines than the
// process has threads each lock a thread and hold it until all have
// reported. A new thread inherits the filter of the thread it was cloned
// from; it must have the same mode as this one.
func probeNewThreads(ctx context.Context) error {
	self, err := threadStatus("/proc/thread-self/status")
	if err != nil {
		return err
	}
	before, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	n := len(before) + 2
	tids := make(chan int, n)
	release := make(chan struct{})
	defer close(release)
	for range n {
		go func() {
			// Never unlocked: the thread ends with the goroutine.
			runtime.LockOSThread()
			tids <- unix.Gettid()
			<-release
		}()
	}
	seen := map[int]bool{}
	for range n {
		select {
		case tid := <-tids:
			seen[tid] = true
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if len(seen) != n {
		return fmt.Errorf("%d locked goroutines ran on %d threads", n, len(seen))
	}
	for tid := range seen {
		f, err := threadStatus(fmt.Sprintf("/proc/self/task/%d/status", tid))
		if err != nil {
			return err
		}
		if f["Seccomp"] != self["Seccomp"] {
			return fmt.Errorf("thread %d has Seccomp %s, this one %s", tid, f["Seccomp"], self["Seccomp"])
		}
	}
	after, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	if len(after) <= len(before) {
		return fmt.Errorf("no thread was created: %d before, %d after", len(before), len(after))
	}
	return nil
}

// runSeccompProbes runs the probe child and returns its outcomes by name
// and its raw output.
func runSeccompProbes(t *testing.T, filter bool) (map[string]string, string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	on := "0"
	if filter {
		on = "1"
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), seccompChildEnv+"=1", seccompFilterEnv+"="+on)
	// A pipe, never the terminal the tests may run in: TIOCSTI on it
	// would type into it.
	cmd.Stdin = strings.NewReader("")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe child (filter %v): %v\n%s%s", filter, err, out, stderr.Bytes())
	}
	got := map[string]string{}
	for line := range strings.Lines(string(out)) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			got[k] = v
		}
	}
	return got, string(out)
}

// TestSeccompProbes attacks through each refused call with the filter and
// without it: without, the attacks must work (or the test proves nothing);
// with, each must be refused with its errno while ordinary work goes on.
func TestSeccompProbes(t *testing.T) {
	if _, err := nativeArch(); err != nil {
		t.Skip(err)
	}
	if _, err := os.Stat(unshareBin); err != nil {
		t.Skip(err)
	}
	without, rawWithout := runSeccompProbes(t, false)
	with, rawWith := runSeccompProbes(t, true)
	t.Logf("without the filter:\n%s", rawWithout)
	t.Logf("with the filter:\n%s", rawWith)

	ordinary := []string{"read_file", "tcp_listen", "socket_netlink", "socketpair_unix", "fork_exec", "new_threads"}
	refused := map[string]string{
		"unshare_user":       "EPERM",
		"clone_newuser":      "EPERM",
		"clone3":             "ENOSYS",
		"keyctl":             "EPERM",
		"socket_packet":      "EAFNOSUPPORT",
		"mount_tmpfs":        "EPERM",
		"ioctl_tiocsti":      "EPERM",
		"ioctl_tiocsti_high": "EPERM",
		"ioctl_tioclinux":    "EPERM",
		"kexec_file_load":    "EPERM",
	}
	if runtime.GOARCH == "amd64" {
		refused["iopl"] = "EPERM"
		refused["x32_getpid"] = "ENOSYS"
	}
	if len(with) != len(refused)+len(ordinary)+1 || len(without) != len(with) {
		t.Fatalf("the probe child reported %d and %d probes, want %d", len(without), len(with), len(refused)+len(ordinary)+1)
	}

	for _, name := range []string{"unshare_user", "clone_newuser", "keyctl"} {
		if without[name] != "ok" {
			t.Errorf("without the filter %s=%s, want ok: the attack must work here for the test to mean anything", name, without[name])
		}
	}
	if without["threads_filtered"] == "ok" {
		t.Error("without the filter the threads report a filter")
	}
	for _, name := range ordinary {
		if without[name] != "ok" {
			t.Errorf("without the filter %s=%s, want ok", name, without[name])
		}
	}

	if with["threads_filtered"] != "ok" {
		t.Errorf("with the filter threads_filtered=%s", with["threads_filtered"])
	}
	for name, want := range refused {
		if with[name] != want {
			t.Errorf("with the filter %s=%s, want %s (without: %s)", name, with[name], want, without[name])
		}
	}
	for _, name := range ordinary {
		if with[name] != "ok" {
			t.Errorf("with the filter %s=%s, want ok", name, with[name])
		}
	}
}

// seccompInput is a struct seccomp_data as the kernel lays it out on a
// little-endian machine.
type seccompInput struct {
	arch uint32
	nr   uint32
	args [6]uint64
}

func (in seccompInput) bytes() []byte {
	b := make([]byte, seccompDataArgs+8*len(in.args))
	binary.LittleEndian.PutUint32(b[seccompDataNr:], in.nr)
	binary.LittleEndian.PutUint32(b[seccompDataArch:], in.arch)
	for i, a := range in.args {
		binary.LittleEndian.PutUint64(b[seccompDataArgs+8*i:], a)
	}
	return b
}

// evalBPF runs prog on in the way the kernel does, for the instructions
// the builder emits.
func evalBPF(t *testing.T, prog []unix.SockFilter, in seccompInput) uint32 {
	t.Helper()
	data := in.bytes()
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		ins := prog[pc]
		taken := false
		switch ins.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			if ins.K%4 != 0 || int(ins.K)+4 > len(data) {
				t.Fatalf("instruction %d loads offset %d", pc, ins.K)
			}
			acc = binary.LittleEndian.Uint32(data[ins.K:])
			continue
		case unix.BPF_RET | unix.BPF_K:
			return ins.K
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K:
			taken = acc == ins.K
		case unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K:
			taken = acc >= ins.K
		case unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			taken = acc&ins.K != 0
		default:
			t.Fatalf("instruction %d has unexpected code %#x", pc, ins.Code)
		}
		if taken {
			pc += int(ins.Jt)
		} else {
			pc += int(ins.Jf)
		}
	}
	t.Fatal("the program ran off its end")
	return 0
}

// TestSeccompProgram checks the program's shape and what it decides for
// each kind of call, including the argument tricks a filter can get wrong.
func TestSeccompProgram(t *testing.T) {
	arch, err := nativeArch()
	if err != nil {
		t.Skip(err)
	}
	prog, err := seccompProgram(arch)
	if err != nil {
		t.Fatal(err)
	}
	if len(prog) > unix.BPF_MAXINSNS {
		t.Fatalf("%d instructions", len(prog))
	}
	if last := prog[len(prog)-1]; last.Code != unix.BPF_RET|unix.BPF_K {
		t.Fatalf("the program ends in %#x, not a return", last.Code)
	}
	for pc, ins := range prog {
		if ins.Code&0x07 != unix.BPF_JMP {
			continue
		}
		// Jt and Jf are bytes, so no offset can exceed 255; what can go
		// wrong is a target past the end.
		if end := pc + 1 + int(max(ins.Jt, ins.Jf)); end >= len(prog) {
			t.Errorf("instruction %d jumps to %d of %d", pc, end, len(prog))
		}
	}

	const high = 1 << 32
	allow := uint32(unix.SECCOMP_RET_ALLOW)
	goThread := uint64(unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_SYSVSEM | unix.CLONE_THREAD)
	call := func(nr uint32, args ...uint64) seccompInput {
		in := seccompInput{arch: arch.audit, nr: nr}
		copy(in.args[:], args)
		return in
	}
	type tc struct {
		name string
		in   seccompInput
		want uint32
	}
	tests := []tc{
		{"foreign arch", seccompInput{arch: unix.AUDIT_ARCH_I386, nr: unix.SYS_GETPID}, unix.SECCOMP_RET_KILL_PROCESS},
		{"getpid", call(unix.SYS_GETPID), allow},
		{"personality", call(unix.SYS_PERSONALITY, 0xffffffff), allow},
		{"go thread", call(unix.SYS_CLONE, goThread), allow},
		{"fork", call(unix.SYS_CLONE, uint64(unix.SIGCHLD)), allow},
		{"vfork with pidfd", call(unix.SYS_CLONE, unix.CLONE_VFORK|unix.CLONE_VM|unix.CLONE_PIDFD|uint64(unix.SIGCHLD)), allow},
		{"clone high half only", call(unix.SYS_CLONE, high|uint64(unix.SIGCHLD)), allow},
		{"clone newuser in high-bit noise", call(unix.SYS_CLONE, high|unix.CLONE_NEWUSER), retErrno(unix.EPERM)},
		{"ioctl tcgets", call(unix.SYS_IOCTL, 0, unix.TCGETS), allow},
		{"ioctl tiocsti", call(unix.SYS_IOCTL, 0, unix.TIOCSTI), retErrno(unix.EPERM)},
		{"ioctl tiocsti high", call(unix.SYS_IOCTL, 0, high|unix.TIOCSTI), retErrno(unix.EPERM)},
		{"ioctl tioclinux", call(unix.SYS_IOCTL, 0, unix.TIOCLINUX), retErrno(unix.EPERM)},
		{"ioctl tiocsti as fd", call(unix.SYS_IOCTL, unix.TIOCSTI, unix.TCGETS), allow},
		{"socket packet", call(unix.SYS_SOCKET, unix.AF_PACKET), retErrno(unix.EAFNOSUPPORT)},
		{"socket packet high", call(unix.SYS_SOCKET, high|unix.AF_PACKET), retErrno(unix.EAFNOSUPPORT)},
		{"socket unix high", call(unix.SYS_SOCKET, high|unix.AF_UNIX), allow},
		{"socket vsock", call(unix.SYS_SOCKET, unix.AF_VSOCK), retErrno(unix.EAFNOSUPPORT)},
		{"socketpair packet", call(unix.SYS_SOCKETPAIR, unix.AF_PACKET), retErrno(unix.EAFNOSUPPORT)},
		{"socketpair unix", call(unix.SYS_SOCKETPAIR, unix.AF_UNIX), allow},
	}
	if arch.x32 {
		tests = append(tests,
			tc{"x32 read", call(x32SyscallBit | unix.SYS_READ), retErrno(unix.ENOSYS)},
			tc{"x32 mount", call(x32SyscallBit | unix.SYS_MOUNT), retErrno(unix.ENOSYS)},
		)
	}
	for _, f := range []uint64{unix.CLONE_NEWUSER, unix.CLONE_NEWNS, unix.CLONE_NEWPID, unix.CLONE_NEWNET,
		unix.CLONE_NEWUTS, unix.CLONE_NEWIPC, unix.CLONE_NEWCGROUP, unix.CLONE_NEWTIME} {
		tests = append(tests, tc{fmt.Sprintf("clone %#x", f), call(unix.SYS_CLONE, goThread|f), retErrno(unix.EPERM)})
	}
	for _, fam := range socketFamilies() {
		tests = append(tests, tc{fmt.Sprintf("socket family %d", fam), call(unix.SYS_SOCKET, uint64(fam)), allow})
	}
	for _, r := range append(refusedSyscalls(), arch.refusals...) {
		tests = append(tests, tc{r.name, call(r.nr), retErrno(r.errno)})
	}
	for _, tt := range tests {
		if got := evalBPF(t, prog, tt.in); got != tt.want {
			t.Errorf("%s: got %#x, want %#x", tt.name, got, tt.want)
		}
	}
}

// TestSeccompBuilderRefusesBadBlocks checks that the builder reports a
// block it cannot jump over instead of truncating the offset to a byte.
func TestSeccompBuilderRefusesBadBlocks(t *testing.T) {
	tests := []struct {
		name string
		body func(*bpfBuilder)
		ok   bool
	}{
		{"short", func(b *bpfBuilder) { b.ret(unix.SECCOMP_RET_ALLOW) }, true},
		{"255 long", func(b *bpfBuilder) {
			for range 254 {
				b.load(seccompDataNr)
			}
			b.ret(unix.SECCOMP_RET_ALLOW)
		}, true},
		{"256 long", func(b *bpfBuilder) {
			for range 255 {
				b.load(seccompDataNr)
			}
			b.ret(unix.SECCOMP_RET_ALLOW)
		}, false},
		{"no return", func(b *bpfBuilder) { b.load(argLow(0)) }, false},
		{"empty", func(*bpfBuilder) {}, false},
	}
	for _, tt := range tests {
		var b bpfBuilder
		b.onSyscall(unix.SYS_GETPID, tt.body)
		if (b.err == nil) != tt.ok {
			t.Errorf("%s: err %v", tt.name, b.err)
		}
	}
}
