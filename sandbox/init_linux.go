package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The stages start from this package's initialisation, not from main:
// Go initialises every package a binary imports before main runs, and
// rugwatch's (the SDK, sigstore, the JSON Schema validator…) cost each
// of the three stages milliseconds they have no use for. This package
// imports only the standard library and x/sys, and its import path sorts
// before most, so it runs early.
func init() { Init() }

// Init turns this process into one of the sandbox's stages when it was
// started as one, and never returns then; otherwise it returns at once.
// The package's own initialisation calls it; calling it first thing in
// main, and in TestMain of tests that start sandboxed programs, is
// harmless and says where the stages begin.
func Init() {
	stage := os.Getenv(stageEnv)
	if stage == "" || len(os.Args) == 0 {
		return
	}
	switch {
	case stage == "launch" && os.Args[0] == launchArg0 && len(os.Args) == 2:
		os.Exit(runLauncher())
	case stage == "init" && os.Args[0] == initArg0 && len(os.Args) == 1:
		os.Exit(runInit())
	case stage == "exec" && os.Args[0] == execArg0 && len(os.Args) >= 5:
		runExec()
	}
}

// exitSetup is a stage's exit code when the program never ran; the report
// says why.
const exitSetup = 125

// reporter writes a stage's one report to the daemon and closes the pipe.
func reporter(status *os.File) func(step string, err error, refused bool) int {
	return func(step string, err error, refused bool) int {
		b, _ := json.Marshal(initReport{Step: step, Error: err.Error(), Refused: refused})
		_, _ = status.Write(b)
		_ = status.Close()
		return exitSetup
	}
}

// kernelRefused reports whether an error of creating or first using namespaces is
// the kernel's policy rather than a fault: disabled or exhausted user
// namespaces (EPERM, EINVAL, ENOSPC, EUSERS), or namespaces without
// capabilities (AppArmor's restriction makes the first mount fail with
// EPERM or EACCES).
func kernelRefused(err error) bool {
	for _, e := range []error{unix.EPERM, unix.EINVAL, unix.ENOSPC, unix.EUSERS, unix.EACCES} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// runLauncher is the first stage: a fresh exec of this binary, run by the
// daemon without namespaces. It exists because the daemon is not dumpable:
// a non-dumpable process's children start non-dumpable too, their
// /proc/<pid>/uid_map then belongs to root, and an ordinary user's daemon
// could not map the sandbox's user namespace. An exec resets that, so the
// launcher, dumpable and holding nothing secret, creates the namespaces and
// then makes itself non-dumpable too.
func runLauncher() int {
	// The init's parent-death signal belongs to this thread.
	runtime.LockOSThread()
	status := os.NewFile(fdStatus, "sandbox-status")
	report := reporter(status)
	network := Network(os.Args[1])
	files := make([]*os.File, 0, 3)
	for fd := fdSpec; fd <= fdEgress; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			files = append(files, nil) // not handed over (no egress path)
			continue
		}
		files = append(files, os.NewFile(uintptr(fd), "sandbox-fd-"+strconv.Itoa(fd)))
	}
	flags := uintptr(unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS)
	if network != NetHost {
		flags |= unix.CLONE_NEWNET
	}
	uid, gid := os.Geteuid(), os.Getegid()
	root := uid == 0
	// The init is root of its namespace only: in the kernel's eyes the
	// daemon's own user. A root daemon's init is root mapped to itself,
	// so that it can bind what root's closed directories hold, beside
	// nobody, the user its programs run as; its capabilities still reach
	// no further than its own namespaces.
	uidMap := []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}}
	gidMap := []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}}
	if root {
		uidMap = append(uidMap, syscall.SysProcIDMap{ContainerID: nobody, HostID: nobody, Size: 1})
		gidMap = append(gidMap, syscall.SysProcIDMap{ContainerID: nobody, HostID: nobody, Size: 1})
	}
	attr := &syscall.SysProcAttr{
		Cloneflags:  flags,
		UidMappings: uidMap,
		GidMappings: gidMap,
		// An unprivileged writer of gid_map must deny setgroups; root may
		// allow it, and must, to drop root's supplementary groups below.
		GidMappingsEnableSetgroups: root,
		Pdeathsig:                  syscall.SIGKILL,
	}
	if root {
		// Supplementary groups survive the namespace: gid 0 among them
		// would open every root-group-readable file to the program.
		attr.Credential = &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}}
	}
	cmd := &exec.Cmd{
		Path:        "/proc/self/exe",
		Args:        []string{initArg0},
		Env:         []string{stageEnv + "=init"},
		Stdin:       os.Stdin,
		Stdout:      os.Stdout,
		Stderr:      os.Stderr,
		ExtraFiles:  files,
		SysProcAttr: attr,
	}
	if raceBuild {
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0")
	}
	if err := cmd.Start(); err != nil {
		return report("creating namespaces", err, kernelRefused(err))
	}
	// Only the init holds the pipes now, so the daemon hears its report
	// and its end.
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	forward(cmd.Process.Pid)
	err := cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if err != nil {
		return exitSetup
	}
	return 0
}

// forward passes termination signals on to pid.
func forward(pid int) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		for s := range sigs {
			_ = syscall.Kill(pid, s.(syscall.Signal))
		}
	}()
}

// runInit is the second stage: PID 1 of the sandbox's namespaces. It builds
// the program's root from nothing (see root_linux.go), isolates its network,
// bounds its resources, starts it through the exec stage and reaps.
func runInit() int {
	// no_new_privs and the parent-death signal belong to a thread, and the
	// exec stage is started from this one: keep it.
	runtime.LockOSThread()
	_ = os.Unsetenv(stageEnv)
	status := os.NewFile(fdStatus, "sandbox-status")
	report := reporter(status)
	// A non-dumpable init's /proc/1 files belong to root of the user
	// namespace and cannot be read or traced by the program.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return report("making the init non-dumpable", err, false)
	}
	var sp initSpec
	specF := os.NewFile(fdSpec, "sandbox-spec")
	err := json.NewDecoder(io.LimitReader(specF, 64<<20)).Decode(&sp)
	_ = specF.Close()
	if err != nil {
		return report("reading the spec", err, false)
	}
	// Nothing the init holds may reach the program.
	_ = unix.CloseRange(fdSpec, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)

	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return report("making mounts private", err, kernelRefused(err))
	}
	_ = unix.Sethostname([]byte("rugwatch-sandbox"))
	if sp.Network != NetHost {
		if err := loopbackUp(); err != nil {
			return report("bringing up the sandbox's loopback", err, false)
		}
	}
	if step, err := buildRoot(&sp); err != nil {
		return report(step, err, false)
	}
	if err := limit(); err != nil {
		return report("setting resource limits", err, false)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return report("setting no_new_privs", err, false)
	}
	env := setEnv(sp.Env, "HOME", homeOf(sp))
	if sp.Network == NetEgress {
		port, err := forwardEgress(os.NewFile(fdEgress, "egress"))
		if err != nil {
			return report("starting the egress forwarder", err, false)
		}
		env = proxyEnv(env, port)
	}
	if _, err := os.Stat(sp.Path); err != nil {
		return report("finding the executable in the sandbox", err, false)
	}
	// The program runs in a user and mount namespace of its own: mounts
	// copied into a namespace owned by a less privileged user namespace
	// are locked, so none can be taken off to uncover what lies beneath,
	// and as a non-root user there it has no capabilities at all. The
	// exec stage installs the system-call filter and becomes the program.
	argv := append([]string{execArg0, strconv.FormatInt(sp.Resources.MemoryBytes, 10), strconv.Itoa(sp.Resources.Pids), sp.Path}, sp.Args...)
	proc, err := os.StartProcess("/proc/self/exe", argv, &os.ProcAttr{
		Dir:   sp.Dir,
		Env:   append(env, stageEnv+"=exec"),
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys: &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: sp.UID, HostID: sp.InitUID, Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: sp.GID, HostID: sp.InitGID, Size: 1}},
			Credential:  &syscall.Credential{Uid: uint32(sp.UID), Gid: uint32(sp.GID), NoSetGroups: true},
			Pdeathsig:   syscall.SIGKILL,
		},
	})
	if err != nil {
		return report(fmt.Sprintf("starting the program as uid %d", sp.UID), err, false)
	}
	_, _ = status.Write([]byte("{}"))
	_ = status.Close()
	return reap(proc.Pid)
}

func homeOf(sp initSpec) string {
	if sp.Home != "" {
		return sp.Home
	}
	return freshHome
}

// ProxyVariables are the variables a sandbox with an egress path sets for
// its program: every proxy convention a program may honour (curl, Python,
// Go's net/http, npm and npx, global-agent, and Node's own fetch and http
// from 22.21 and 24 on), pointed at the sandbox's forwarder. A program
// that ignores them meets a network with no route out, and its connection
// fails at once.
func ProxyVariables() []string {
	return []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "npm_config_proxy", "npm_config_https_proxy",
		"GLOBAL_AGENT_HTTP_PROXY", "NO_PROXY", "no_proxy", "NODE_USE_ENV_PROXY"}
}

func proxyEnv(env []string, port int) []string {
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	for _, k := range ProxyVariables() {
		switch k {
		case "NO_PROXY", "no_proxy":
			// Empty: the sandbox's loopback is its own, so 127.0.0.1
			// through the proxy is the host's, reached only where the
			// allow-list names it (a local API the user granted). Go's
			// net/http never proxies loopback names whatever this says:
			// a Go server reaches a granted local API by another of the
			// host's addresses.
			env = setEnv(env, k, "")
		case "NODE_USE_ENV_PROXY":
			env = setEnv(env, k, "1")
		default:
			env = setEnv(env, k, url)
		}
	}
	return env
}

// runExec is the last stage: already the program's user in its own
// namespaces, it installs the system-call filter and execs the program.
func runExec() {
	mem, err1 := strconv.ParseInt(os.Args[1], 10, 64)
	pids, err2 := strconv.ParseInt(os.Args[2], 10, 64)
	if err1 != nil || err2 != nil || mem < 0 || pids < 0 {
		fmt.Fprintf(os.Stderr, "rugwatch sandbox: bad limits %q %q\n", os.Args[1], os.Args[2])
		os.Exit(exitSetup)
	}
	path, argv := os.Args[3], os.Args[4:]
	env := make([]string, 0, len(os.Environ()))
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, stageEnv+"=") {
			env = append(env, e)
		}
	}
	// Everything execve needs is built before the limits are set: from
	// then on no Go code may run. This stage's own runtime started
	// without them (a race-enabled build maps terabytes of shadow memory
	// and could not start, nor start a thread, under a data limit), and
	// its threads are gone at the exec, so the process limit counts the
	// program's own tasks alone.
	pathp, err := syscall.BytePtrFromString(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "rugwatch sandbox: exec %q: %v\n", path, err)
		os.Exit(127)
	}
	argvp, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "rugwatch sandbox: exec %q: %v\n", path, err)
		os.Exit(127)
	}
	envp, err := syscall.SlicePtrFromStrings(env)
	if err != nil {
		fmt.Fprintf(os.Stderr, "rugwatch sandbox: exec %q: %v\n", path, err)
		os.Exit(127)
	}
	if err := installSeccomp(); err != nil {
		fmt.Fprintf(os.Stderr, "rugwatch sandbox: installing the system-call filter: %v\n", err)
		os.Exit(exitSetup)
	}
	runtime.LockOSThread()
	step, errno := limitAndExec(mem, pids, pathp, argvp, envp)
	fmt.Fprintf(os.Stderr, "rugwatch sandbox: %s %s: %v\n", step, path, errno)
	os.Exit(127)
}

// limitAndExec sets the memory and process limits and execs, in raw
// system calls with nothing in between; it returns only on failure.
func limitAndExec(mem, pids int64, path *byte, argv, envp []*byte) (string, unix.Errno) {
	for _, l := range []struct {
		res int
		v   int64
	}{{unix.RLIMIT_DATA, mem}, {unix.RLIMIT_NPROC, pids}} {
		if l.v <= 0 {
			continue
		}
		lim := unix.Rlimit{Cur: uint64(l.v), Max: uint64(l.v)}
		if _, _, e := unix.RawSyscall6(unix.SYS_PRLIMIT64, 0, uintptr(l.res), uintptr(unsafe.Pointer(&lim)), 0, 0, 0); e != 0 {
			return "setting a resource limit for", e
		}
	}
	_, _, e := unix.RawSyscall(unix.SYS_EXECVE, uintptr(unsafe.Pointer(path)), uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envp[0])))
	return "exec", e
}

// reap forwards termination signals to the program, reaps every process
// that ends up a child of PID 1, and returns the program's exit code once it
// has ended. Returning ends the PID namespace, and with it every process
// left in it.
func reap(server int) int {
	forward(server)
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return exitSetup
		}
		if pid != server {
			continue
		}
		switch {
		case ws.Exited():
			return ws.ExitStatus()
		case ws.Signaled():
			return 128 + int(ws.Signal())
		}
	}
}

// limit sets what the init itself sets for the program: no core dumps of
// hostile code into its HOME. The memory and process limits are the exec
// stage's (see runExec).
func limit() error {
	return unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{})
}
