package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// setupTimeout bounds the stages' work before the program runs: a mount on
// a hung network file system must not hold a poll forever.
const setupTimeout = 30 * time.Second

// Cmd is a program to run under one start policy: sandboxed, or, only
// where Mode allows it, unconfined. Set the exported fields (or take the
// pipes), then Start and Wait; Kill ends it and everything it started.
type Cmd struct {
	Mode Mode
	Spec Spec

	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// WaitDelay is exec.Cmd's: how long Wait waits for the I/O copying
	// after the program exited.
	WaitDelay time.Duration

	// Set by Start.
	Process *os.Process
	// Sandboxed says the program runs confined; Note says why it does
	// not (mode off, or the kernel's refusal under auto).
	Sandboxed bool
	Note      string

	cmd     *exec.Cmd
	closeAt []io.Closer // the child's ends of pipes, closed after Start
	egress  *egressLoop
}

// Command prepares spec to run under mode. Nothing starts until Start.
func Command(mode Mode, spec Spec) *Cmd {
	return &Cmd{Mode: mode, Spec: spec}
}

// StdinPipe returns a pipe connected to the program's standard input.
func (c *Cmd) StdinPipe() (io.WriteCloser, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	c.Stdin = r
	c.closeAt = append(c.closeAt, r)
	return w, nil
}

// StdoutPipe returns a pipe connected to the program's standard output.
func (c *Cmd) StdoutPipe() (io.ReadCloser, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	c.Stdout = w
	c.closeAt = append(c.closeAt, w)
	return r, nil
}

// Start applies the start policy, the one place that decides whether a
// program may run unconfined: off runs it so (unsafe, said in Note); auto
// and strict sandbox it; auto alone runs it unconfined, and says so, when
// the kernel itself refused. Any other failure fails the start.
func (c *Cmd) Start() error {
	defer func() {
		for _, f := range c.closeAt {
			f.Close()
		}
		c.closeAt = nil
	}()
	mode, err := ParseMode(string(c.Mode))
	if err != nil {
		return err
	}
	if mode == Off {
		c.Note = "NOT SANDBOXED: sandbox: off (the server runs as rugwatch's own user, unconfined)"
		return c.startUnconfined()
	}
	err = c.startSandboxed()
	if err == nil {
		c.Sandboxed = true
		return nil
	}
	if mode == Auto && IsRefused(err) {
		c.Note = "NOT SANDBOXED (sandbox: auto): " + err.Error()
		return c.startUnconfined()
	}
	return err
}

// Wait waits for the program to exit, and for its egress path to close.
func (c *Cmd) Wait() error {
	if c.cmd == nil {
		return errors.New("sandbox: not started")
	}
	err := c.cmd.Wait()
	if c.egress != nil {
		c.egress.stop()
	}
	return err
}

// Kill ends the program and everything it started: the sandbox's launcher
// (its init and the whole PID namespace die with it), or the unconfined
// program's process group.
func (c *Cmd) Kill() {
	if c.Process == nil {
		return
	}
	_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
	_ = c.Process.Kill()
}

func (c *Cmd) startUnconfined() error {
	path, err := lookPath(specPath(c.Spec), c.Spec.Env)
	if err != nil {
		return err
	}
	cmd := exec.Command(path)
	cmd.Args = c.Spec.Args
	if len(cmd.Args) == 0 {
		cmd.Args = []string{path}
	}
	cmd.Env = c.Spec.Env
	cmd.Dir = c.Spec.Dir
	if c.Spec.Home != "" {
		if err := makeHome(c.Spec.Home, false); err != nil {
			return err
		}
		cmd.Env = setEnv(cmd.Env, "HOME", c.Spec.Home)
		if cmd.Dir == "" {
			cmd.Dir = c.Spec.Home
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c.wire(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", path, err)
	}
	c.cmd, c.Process = cmd, cmd.Process
	return nil
}

func (c *Cmd) wire(cmd *exec.Cmd) {
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Stdin, c.Stdout, c.Stderr
	cmd.WaitDelay = c.WaitDelay
}

func specPath(s Spec) string {
	if s.Path != "" {
		return s.Path
	}
	if len(s.Args) > 0 {
		return s.Args[0]
	}
	return ""
}

// initSpec is what the daemon sends the init over a pipe (not argv or the
// environment, which a program could read through /proc/1).
type initSpec struct {
	Path string   `json:"path"` // real path of the executable, inside as outside
	Args []string `json:"args"`
	Env  []string `json:"env"`
	Dir  string   `json:"dir"`
	Home string   `json:"home"` // "" : a fresh tmpfs at freshHome
	UID  int      `json:"uid"`  // the program's uid and gid in its namespace
	GID  int      `json:"gid"`  //
	// InitUID and InitGID are the same user as the init's namespace sees
	// it: 0 (the daemon's own user) for an ordinary daemon, nobody for
	// root's, whose init is host root mapped to itself so that it can
	// bind what root's closed directories hold.
	InitUID   int       `json:"init_uid"`
	InitGID   int       `json:"init_gid"`
	Binds     []bind    `json:"binds"`
	Protect   []string  `json:"protect"`
	Network   Network   `json:"network"`
	Resources Resources `json:"resources"`
}

// bind is one host path granted at the same path. The init binds it by
// path in its copy of the host's mounts (a descriptor opened here would
// name a mount of another namespace, which the kernel refuses to bind).
type bind struct {
	Path  string `json:"path"`
	Dir   bool   `json:"dir"`
	Write bool   `json:"write"`
	// Dev and Ino are what the daemon saw at Path: the init binds that
	// file, or nothing.
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

// freshHome is where a program without a persistent HOME gets its own.
const freshHome = "/home/sandbox"

// plan turns a Spec into what the init needs.
func plan(s Spec) (initSpec, error) {
	is := initSpec{Env: s.Env, Protect: resolveAll(cleanAll(s.Protect)), Resources: s.Resources.withDefaults()}
	var err error
	if is.Network, err = ParseNetwork(string(s.Network)); err != nil {
		return is, &SetupError{Step: "reading the spec", Err: err}
	}
	path, err := lookPath(specPath(s), s.Env)
	if err != nil {
		return is, &SetupError{Step: "finding the executable", Err: err}
	}
	exe, code, err := codePaths(path, s.Args, s.Env)
	if err != nil {
		return is, &SetupError{Step: "finding the program's code", Err: err}
	}
	is.Path, is.Args = exe, s.Args
	if len(is.Args) == 0 {
		is.Args = []string{path}
	}
	is.UID, is.GID = os.Geteuid(), os.Getegid()
	root := is.UID == 0
	if root {
		is.UID, is.GID = nobody, nobody
		is.InitUID, is.InitGID = nobody, nobody
	}
	type grant struct {
		path  string
		write bool
	}
	var grants []grant
	for _, p := range code {
		grants = append(grants, grant{p, false})
	}
	if s.Home != "" {
		home := filepath.Clean(s.Home)
		if !filepath.IsAbs(home) {
			return is, &SetupError{Step: "preparing HOME", Err: fmt.Errorf("%s is not absolute", s.Home)}
		}
		if err := makeHome(home, root); err != nil {
			return is, err
		}
		is.Home = home
		grants = append(grants, grant{home, true})
	}
	for _, m := range s.Mounts {
		p := filepath.Clean(m.Path)
		if !filepath.IsAbs(p) {
			return is, &SetupError{Step: "granting mounts", Err: fmt.Errorf("%s is not absolute", m.Path)}
		}
		// What is granted is what the path resolves to now; the init binds
		// exactly that, refusing a link put in its way since.
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return is, &SetupError{Step: "granting " + p, Err: err}
		}
		for _, pr := range is.Protect {
			if within(real, pr) {
				return is, &SetupError{Step: "granting mounts", Err: fmt.Errorf("%s lies inside %s, which no server may reach", p, pr)}
			}
			// A protected path inside a writable grant is covered by path,
			// and the program could rename its way around the cover.
			if m.Write && within(pr, real) {
				return is, &SetupError{Step: "granting mounts", Err: fmt.Errorf("%s is granted writable and holds %s, which no server may reach: grant a directory beside it, or read-only", p, pr)}
			}
		}
		grants = append(grants, grant{real, m.Write})
	}
	// Parents before children: a grant under /tmp lands on the fresh /tmp,
	// one under a granted directory on top of that grant.
	sort.SliceStable(grants, func(i, j int) bool { return depth(grants[i].path) < depth(grants[j].path) })
	for _, g := range grants {
		fi, err := os.Stat(g.path)
		if err != nil {
			return is, &SetupError{Step: "granting " + g.path, Err: err}
		}
		b := bind{Path: g.path, Dir: fi.IsDir(), Write: g.write}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			b.Dev, b.Ino = uint64(st.Dev), st.Ino
		}
		is.Binds = append(is.Binds, b)
	}
	switch {
	case s.Dir != "":
		is.Dir = filepath.Clean(s.Dir)
	case is.Home != "":
		is.Dir = is.Home
	default:
		is.Dir = freshHome
	}
	return is, nil
}

// makeHome creates a persistent HOME, 0700, owned by the sandbox user: a
// root daemon's programs run as nobody and must be able to write it.
func makeHome(home string, root bool) error {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return &SetupError{Step: "creating HOME " + home, Err: err}
	}
	if root {
		if err := os.Lchown(home, nobody, nobody); err != nil {
			return &SetupError{Step: "handing HOME " + home + " to the sandbox user", Err: err}
		}
	}
	return nil
}

func cleanAll(paths []string) []string {
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		if p == "" {
			continue
		}
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		out = append(out, filepath.Clean(p))
	}
	return out
}

// resolveAll adds, for each path that resolves elsewhere through a link,
// what it resolves to: a protected path is covered by what it is, and by
// the name it was given.
func resolveAll(paths []string) []string {
	out := slices.Clone(paths)
	for _, p := range paths {
		if real, err := filepath.EvalSymlinks(p); err == nil && real != p {
			out = append(out, real)
		}
	}
	return out
}

func depth(p string) int {
	n := 0
	for _, c := range p {
		if c == '/' {
			n++
		}
	}
	return n
}

// initReport is the init's (or the launcher's) one message to the daemon.
// Empty Step means the program is running.
type initReport struct {
	Step    string `json:"step,omitempty"`
	Error   string `json:"error,omitempty"`
	Refused bool   `json:"refused,omitempty"` // the kernel refused the namespaces
}

// startSandboxed starts the launcher, which starts the init, which starts
// the program; it returns once the program runs or the first stage that
// failed has said why.
func (c *Cmd) startSandboxed() error {
	is, err := plan(c.Spec)
	if err != nil {
		return err
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return &SetupError{Step: "creating the spec pipe", Err: err}
	}
	defer specW.Close()
	statR, statW, err := os.Pipe()
	if err != nil {
		specR.Close()
		return &SetupError{Step: "creating the status pipe", Err: err}
	}
	defer statR.Close()
	var egressEnd *os.File
	if is.Network == NetEgress {
		var loop *egressLoop
		loop, egressEnd, err = startEgress(c.Spec.Egress)
		if err != nil {
			specR.Close()
			statW.Close()
			return &SetupError{Step: "opening the egress path", Err: err}
		}
		c.egress = loop
	}
	extra := []*os.File{specR, statW, egressEnd}
	cmd := &exec.Cmd{
		// The running binary itself, by its magic link: it resolves even
		// when the executable's directory is closed to the sandbox user,
		// and cannot be swapped for another file between here and the exec.
		Path:       "/proc/self/exe",
		Args:       []string{launchArg0, string(is.Network)},
		Env:        []string{stageEnv + "=launch"},
		ExtraFiles: extra,
		// The launcher dies with the daemon; the init with the launcher.
		// A session of its own: no controlling terminal reaches the
		// program (from a terminal, it could take the foreground and read
		// keystrokes, as bubblewrap's --new-session guards against), and
		// as a session leader it leads the process group Kill ends.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL},
	}
	if raceBuild {
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0")
	}
	c.wire(cmd)
	err = cmd.Start()
	specR.Close()
	statW.Close()
	if egressEnd != nil {
		egressEnd.Close()
	}
	if err != nil {
		c.stopEgress()
		return &SetupError{Step: "starting the sandbox launcher", Err: err}
	}
	deadline := time.Now().Add(setupTimeout)
	_ = specW.SetWriteDeadline(deadline)
	werr := json.NewEncoder(specW).Encode(is)
	specW.Close()
	_ = statR.SetReadDeadline(deadline)
	b, rerr := io.ReadAll(io.LimitReader(statR, 64<<10))
	var rep initReport
	switch {
	case rerr != nil:
		rep = initReport{Step: "waiting for the sandbox to start", Error: rerr.Error()}
	case len(b) == 0:
		// The stages died before they could say why; a write error to
		// them would say no more.
		rep = initReport{Step: "starting the sandbox", Error: "it exited without a report"}
		if werr != nil {
			rep.Error += " (" + werr.Error() + ")"
		}
	default:
		if err := json.Unmarshal(b, &rep); err != nil {
			rep = initReport{Step: "reading the sandbox's report", Error: err.Error()}
		}
	}
	if rep.Step == "" && rep.Error == "" {
		c.cmd, c.Process = cmd, cmd.Process
		return nil
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
	c.stopEgress()
	if rep.Refused {
		return &RefusedError{Step: rep.Step, Err: errors.New(rep.Error)}
	}
	return &SetupError{Step: rep.Step, Err: errors.New(rep.Error)}
}

func (c *Cmd) stopEgress() {
	if c.egress != nil {
		c.egress.stop()
		c.egress = nil
	}
}

// egressLoop receives the connections a sandbox's forwarder accepted and
// serves each with the Egress.
type egressLoop struct {
	conn   *net.UnixConn
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startEgress opens the socket pair the init passes connections over and
// starts serving it; the returned file is the init's end.
func startEgress(e *Egress) (*egressLoop, *os.File, error) {
	if e == nil {
		e = &Egress{}
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	ours := os.NewFile(uintptr(fds[0]), "egress")
	fc, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &egressLoop{conn: fc.(*net.UnixConn), cancel: cancel}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.receive(ctx, e)
	}()
	return l, os.NewFile(uintptr(fds[1]), "egress-init"), nil
}

func (l *egressLoop) receive(ctx context.Context, e *Egress) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		_, oobn, _, _, err := l.conn.ReadMsgUnix(buf, oob)
		if err != nil || oobn == 0 {
			return // the init is gone, or stop closed the socket
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			continue
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			f := os.NewFile(uintptr(fd), "egress-client")
			c, err := net.FileConn(f)
			f.Close()
			if err != nil {
				continue
			}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				e.ServeConn(ctx, c)
			}()
		}
	}
}

// stop ends the loop and every connection it serves, and waits for them.
func (l *egressLoop) stop() {
	l.cancel()
	l.conn.Close()
	l.wg.Wait()
}
