package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Init turns this process into the sandbox init when it was started as
// one, and never returns then; otherwise it returns at once. Call it first
// thing in main, and in TestMain of tests that start sandboxed servers
// (the test binary is re-executed as the init).
func Init() {
	if len(os.Args) != 1 || os.Args[0] != initArg0 || os.Getenv(initEnv) != "1" {
		return
	}
	os.Exit(runInit())
}

// Exit codes of the init when the server never ran.
const (
	exitSetup = 125 // the sandbox could not be set up; the report says why
)

func runInit() int {
	// no_new_privs and the parent-death signal belong to a thread, and the
	// server is started from this one: keep it.
	runtime.LockOSThread()
	_ = os.Unsetenv(initEnv)
	specF := os.NewFile(3, "sandbox-spec")
	status := os.NewFile(4, "sandbox-status")
	if specF == nil || status == nil {
		return exitSetup
	}
	report := func(step string, err error) int {
		b, _ := json.Marshal(initReport{Step: step, Error: err.Error()})
		_, _ = status.Write(b)
		_ = status.Close()
		return exitSetup
	}
	// A non-dumpable init's /proc/1 files belong to root of the user
	// namespace and cannot be read or traced by the server.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return report("making the init non-dumpable", err)
	}
	var sp initSpec
	err := json.NewDecoder(io.LimitReader(specF, 64<<20)).Decode(&sp)
	_ = specF.Close()
	if err != nil {
		return report("reading the spec", err)
	}
	// Nothing the init inherited beyond stdio and the status pipe may
	// reach the server.
	_ = unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)

	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return report("making mounts private", err)
	}
	if err := hideAll(sp.Hide); err != nil {
		return report("hiding paths", err)
	}
	// An executable under the host's /tmp (`go run`, a test binary) is
	// gone under the private /tmp, and one in a root daemon's cache is
	// closed to the sandbox user: the daemon passed it as an O_PATH
	// descriptor (fd 5), which the server is started from as
	// /proc/self/fd/3 — a binary, in practice (an interpreter would read
	// a script through the same path). The server keeps fd 3, a path-only
	// handle on its own executable.
	var exe *os.File
	path := sp.Path
	if sp.ExeFD {
		exe = os.NewFile(5, "server-executable")
		path = "/proc/self/fd/3"
	}
	// Directories of the host's /tmp the server's own code lives in are
	// held by descriptor before the private /tmp covers them, then bound
	// back read-only below, with the hiding mounts inside them.
	keep := make([]int, 0, len(sp.TmpKeep))
	for _, dir := range sp.TmpKeep {
		fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return report("holding "+dir, err)
		}
		keep = append(keep, fd)
	}
	// Fresh /tmp and /dev/shm after hiding: hidden paths under /tmp were
	// hidden from the host's view, and the server gets its own.
	if err := unix.Mount("tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size=256m"); err != nil {
		return report("mounting a private /tmp", err)
	}
	for i, dir := range sp.TmpKeep {
		if err := bindKept(keep[i], dir); err != nil {
			return report("keeping "+dir, err)
		}
	}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if err := unix.Mount("tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=64m"); err != nil {
			return report("mounting a private /dev/shm", err)
		}
	}
	// The init is PID 1 of the new PID namespace, so this /proc shows the
	// sandbox's processes and nothing of the daemon's.
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return report("mounting /proc", err)
	}
	env := sp.Env
	if home, ok := lookupEnv(env, "HOME"); !ok || unix.Access(home, unix.R_OK|unix.X_OK) != nil {
		// A root daemon's HOME is root's and closed to nobody: give the
		// server an empty private one rather than a broken one.
		if err := os.Mkdir("/tmp/home", 0o700); err != nil {
			return report("making a private HOME", err)
		}
		env = setEnv(env, "HOME", "/tmp/home")
	}
	dir := sp.Dir
	if sp.DefaultDir && unix.Access(dir, unix.X_OK) != nil {
		dir = "/"
	}
	if err := os.Chdir("/"); err != nil {
		return report("changing to /", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return report("setting no_new_privs", err)
	}
	// The server gets a user and mount namespace of its own: mounts copied
	// into a namespace owned by a less privileged user namespace are
	// locked, so the hiding mounts cannot be taken off, and as a non-root
	// user there it has no capabilities at all.
	files := []*os.File{os.Stdin, os.Stdout, os.Stderr}
	if exe != nil {
		files = append(files, exe)
	}
	proc, err := os.StartProcess(path, sp.Args, &os.ProcAttr{
		Dir:   dir,
		Env:   env,
		Files: files,
		Sys: &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: sp.UID, HostID: 0, Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: sp.GID, HostID: 0, Size: 1}},
			Credential:  &syscall.Credential{Uid: uint32(sp.UID), Gid: uint32(sp.GID), NoSetGroups: true},
			Pdeathsig:   syscall.SIGKILL,
		},
	})
	if err != nil {
		return report(fmt.Sprintf("starting the server as uid %d", sp.UID), err)
	}
	_, _ = status.Write([]byte("{}"))
	_ = status.Close()
	return reap(proc.Pid)
}

// bindKept binds the directory held by fd at dir, recursively (so the
// hiding mounts inside come along) and read-only.
func bindKept(fd int, dir string) error {
	defer unix.Close(fd)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", fd), dir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	return unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
}

// reap forwards termination signals to the server, reaps every process
// that ends up a child of PID 1, and returns the server's exit code once it
// has ended. Returning ends the PID namespace, and with it every process
// left in it.
func reap(server int) int {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		for s := range sigs {
			_ = syscall.Kill(server, s.(syscall.Signal))
		}
	}()
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

// hideAll makes every path unreachable: an empty, read-only tmpfs with
// mode 0000 over a directory, a read-only bind of an empty regular file
// over anything else (not /dev/null: a device opens for writing even on a
// read-only mount). A path that does not exist, or that the sandbox user
// cannot reach anyway, needs nothing.
func hideAll(paths []string) error {
	var files, dirs []string
	for _, p := range paths {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.ELOOP) {
				continue
			}
			return fmt.Errorf("%s: %w", p, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			dirs = append(dirs, p)
		} else {
			files = append(files, p)
		}
	}
	if len(files) > 0 {
		// The empty file lives on a scratch tmpfs over /dev/shm (or /proc),
		// both mounted afresh afterwards, so it is reachable from nowhere
		// but the binds.
		scratch := "/dev/shm"
		if fi, err := os.Stat(scratch); err != nil || !fi.IsDir() {
			scratch = "/proc"
		}
		if err := unix.Mount("tmpfs", scratch, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size=4k"); err != nil {
			return fmt.Errorf("mounting a scratch tmpfs on %s: %w", scratch, err)
		}
		empty := scratch + "/empty"
		if err := os.WriteFile(empty, nil, 0); err != nil {
			return err
		}
		for _, p := range files {
			if err := unix.Mount(empty, p, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if err := unix.Mount("", p, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
				return fmt.Errorf("%s: making it read-only: %w", p, err)
			}
		}
		if err := unix.Unmount(scratch, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmounting the scratch tmpfs: %w", err)
		}
	}
	for _, p := range dirs {
		if err := unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0000,size=4k,nr_inodes=1"); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

func lookupEnv(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], key+"="); ok {
			return v, true
		}
	}
	return "", false
}

func setEnv(env []string, key, val string) []string {
	out := make([]string, 0, len(env)+1)
	for _, e := range env {
		if !strings.HasPrefix(e, key+"=") {
			out = append(out, e)
		}
	}
	return append(out, key+"="+val)
}
