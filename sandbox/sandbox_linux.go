package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// setupTimeout bounds the init's work before the server runs: a mount on a
// hung network file system must not hold a poll forever.
const setupTimeout = 30 * time.Second

// Cmd is a server prepared to run in a sandbox. Set Stdin, Stdout and
// Stderr (or their pipes), WaitDelay and SysProcAttr.Setpgid on the
// embedded exec.Cmd as for any command, leave ExtraFiles alone, then call
// Start on the Cmd (not on the exec.Cmd) and Wait on either.
type Cmd struct {
	*exec.Cmd
	spec initSpec
}

// Command prepares spec to run sandboxed. Nothing starts until Start.
func Command(spec Spec) (*Cmd, error) {
	if !filepath.IsAbs(spec.Path) {
		return nil, fmt.Errorf("sandbox: executable %q is not an absolute path", spec.Path)
	}
	is := initSpec{Spec: spec, Root: os.Geteuid() == 0}
	is.ExeFD = strings.HasPrefix(filepath.Clean(spec.Path), "/tmp/") || (is.Root && !reachableByOthers(spec.Path))
	// What the server is given by path under the host's /tmp — its
	// executable, a script or directory among its arguments (`node
	// /tmp/checkout/server.js`), its working directory — is kept; the rest
	// of the host's /tmp is not there.
	keep := map[string]bool{}
	for _, p := range append([]string{spec.Path, spec.Dir}, spec.Args...) {
		if !filepath.IsAbs(p) {
			continue
		}
		if real, err := filepath.EvalSymlinks(p); err == nil {
			if top := tmpTop(real); top != "" && !keep[top] {
				keep[top] = true
				is.TmpKeep = append(is.TmpKeep, top)
			}
		}
	}
	if len(is.Args) == 0 {
		is.Args = []string{spec.Path}
	}
	is.Hide = make([]string, 0, len(spec.Hide))
	for _, h := range spec.Hide {
		if h == "" {
			continue
		}
		if abs, err := filepath.Abs(h); err == nil {
			h = abs
		}
		is.Hide = append(is.Hide, filepath.Clean(h))
	}
	if is.Dir == "" {
		// The init changes into it by name after mounting, so a working
		// directory on the hide list is hidden too; an inherited one
		// would still point at what lies beneath the mount.
		if wd, err := os.Getwd(); err == nil {
			is.Dir, is.DefaultDir = wd, true
		} else {
			is.Dir, is.DefaultDir = "/", true
		}
	}
	outerUID, outerGID := os.Geteuid(), os.Getegid()
	if is.Root {
		outerUID, outerGID = nobody, nobody
	}
	is.UID, is.GID = outerUID, outerGID

	attr := &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC,
		// The init is root of its namespace only; in the kernel's eyes it
		// is the daemon's own user, or nobody for a root daemon.
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: outerUID, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: outerGID, Size: 1}},
		// An unprivileged writer of gid_map must deny setgroups; root may
		// allow it, and must, to drop root's supplementary groups below.
		GidMappingsEnableSetgroups: is.Root,
		Pdeathsig:                  syscall.SIGKILL,
	}
	if is.Root {
		// Supplementary groups survive the namespace: gid 0 among them
		// would open every root-group-readable file to the server.
		attr.Credential = &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}}
	}
	cmd := &exec.Cmd{
		// The running binary itself, by its magic link: it resolves even
		// when the executable's directory is closed to nobody, and cannot
		// be swapped for another file between here and the exec.
		Path:        "/proc/self/exe",
		Args:        []string{initArg0},
		Env:         []string{initEnv + "=1"},
		SysProcAttr: attr,
	}
	if raceBuild {
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0")
	}
	return &Cmd{Cmd: cmd, spec: is}, nil
}

// initReport is the init's one message to the daemon: empty Step means
// the server is running.
type initReport struct {
	Step  string `json:"step,omitempty"`
	Error string `json:"error,omitempty"`
}

// Start starts the sandbox and the server in it, and returns once the
// server runs. On an *UnavailableError nothing is left running.
func (c *Cmd) Start() error {
	if len(c.ExtraFiles) != 0 {
		return errors.New("sandbox: ExtraFiles must be left empty")
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("sandbox: creating spec pipe: %w", err)
	}
	statR, statW, err := os.Pipe()
	if err != nil {
		specR.Close()
		specW.Close()
		return fmt.Errorf("sandbox: creating status pipe: %w", err)
	}
	defer statR.Close()
	c.ExtraFiles = []*os.File{specR, statW} // fds 3 and 4 of the init
	if c.spec.ExeFD {
		// The daemon opens the executable and hands the init fd 5 (see
		// initSpec.ExeFD).
		fd, err := unix.Open(c.spec.Path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			specR.Close()
			specW.Close()
			statW.Close()
			return &UnavailableError{Step: "opening the server's executable", Err: err}
		}
		exe := os.NewFile(uintptr(fd), c.spec.Path)
		defer exe.Close()
		c.ExtraFiles = append(c.ExtraFiles, exe)
	}
	err = c.Cmd.Start()
	specR.Close()
	statW.Close()
	if err != nil {
		specW.Close()
		step := "creating namespaces"
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EACCES) {
			step += " (unprivileged user namespaces disabled or used up: see kernel.unprivileged_userns_clone, user.max_user_namespaces, kernel.apparmor_restrict_unprivileged_userns)"
		}
		return &UnavailableError{Step: step, Err: err}
	}
	deadline := time.Now().Add(setupTimeout)
	_ = specW.SetWriteDeadline(deadline)
	werr := json.NewEncoder(specW).Encode(c.spec)
	specW.Close()
	_ = statR.SetReadDeadline(deadline)
	b, rerr := io.ReadAll(io.LimitReader(statR, 64<<10))
	var rep initReport
	switch {
	case rerr != nil:
		rep = initReport{Step: "waiting for the sandbox init", Error: rerr.Error()}
	case len(b) == 0:
		// The init died before it could say why; a write error to it
		// would say no more.
		rep = initReport{Step: "starting the sandbox init", Error: "it exited without a report"}
		if werr != nil {
			rep.Error += " (" + werr.Error() + ")"
		}
	default:
		if err := json.Unmarshal(b, &rep); err != nil {
			rep = initReport{Step: "reading the sandbox init's report", Error: err.Error()}
		}
	}
	if rep.Step == "" && rep.Error == "" {
		return nil
	}
	_ = c.Process.Kill()
	_ = c.Cmd.Wait()
	return &UnavailableError{Step: rep.Step, Err: errors.New(rep.Error)}
}

// reachableByOthers reports whether a user with no special rights can walk
// to path and execute it: every directory above it searchable by others,
// the file executable by others. A root daemon's sandbox runs as nobody.
func reachableByOthers(path string) bool {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o001 == 0 {
		return false
	}
	for dir := filepath.Dir(filepath.Clean(path)); ; dir = filepath.Dir(dir) {
		di, err := os.Stat(dir)
		if err != nil || di.Mode().Perm()&0o001 == 0 {
			return false
		}
		if dir == "/" {
			return true
		}
	}
}

// tmpTop is the directory directly under /tmp that path lies in, or "".
func tmpTop(path string) string {
	rest, ok := strings.CutPrefix(filepath.Clean(path), "/tmp/")
	if !ok || rest == "" {
		return ""
	}
	first, _, _ := strings.Cut(rest, "/")
	return "/tmp/" + first
}
