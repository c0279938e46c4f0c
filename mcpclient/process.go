package mcpclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rugwatch/rugwatch/sandbox"
)

// markerVar tags every process of one poll: descendants inherit it even
// after they leave the process group and the session (setsid) and are
// reparented away, so stop can still find them in /proc.
const markerVar = "RUGWATCH_POLL"

// childEnv builds the whole environment of a stdio server: PATH and HOME
// from ours, the poll's marker, then the server's configured variables.
// Nothing else of ours crosses, so the monitor's own secrets (webhook
// secrets, SMTP passwords, tokens of other servers) never reach a server
// it does not trust.
func childEnv(configured map[string]string, marker string) []string {
	env := make([]string, 0, len(configured)+3)
	env = append(env, markerVar+"="+marker)
	for _, k := range []string{"PATH", "HOME"} {
		if _, set := configured[k]; set {
			continue
		}
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	for k, v := range configured {
		env = append(env, k+"="+v)
	}
	return env
}

// process is one stdio server child, started under the sandbox's one
// start policy (see sandbox.Cmd).
type process struct {
	cmd    *sandbox.Cmd
	stdin  io.WriteCloser
	stdout io.ReadCloser
	stderr *CapBuffer
	waited chan struct{}
	waitMu sync.Mutex
	err    error

	marker   string
	stopOnce sync.Once

	// sandboxed says the server runs in the sandbox; sandboxNote says why
	// it does not (mode off, or the kernel refused under auto).
	sandboxed   bool
	sandboxNote string
}

// refusals collects the destinations a server's egress path refused during
// one poll, each once, in the order they came.
type refusals struct {
	mu    sync.Mutex
	seen  map[string]bool
	dests []Refusal
	taken int // dests before it are on a listing already (take)
}

// Refusal is one destination the sandbox's egress path refused a server,
// and the config key that would allow it.
type Refusal struct {
	Dest  string `json:"dest"`
	Allow string `json:"allow,omitempty"`
}

func (r *refusals) add(dest, allow string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen[dest] {
		return
	}
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	r.seen[dest] = true
	r.dests = append(r.dests, Refusal{Dest: dest, Allow: allow})
}

func (r *refusals) list() []Refusal {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.dests)
}

// take returns the refusals no listing has carried yet: a long session
// (a watch, a proxy's upstream) reports each destination once, on the
// listing after it was refused.
func (r *refusals) take() []Refusal {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.dests[r.taken:])
	r.taken = len(r.dests)
	return out
}

// EgressRefusedError is a failed poll during which the sandbox refused the
// server destinations: often the reason it failed (npx could not reach its
// registry).
type EgressRefusedError struct {
	Refused []Refusal
	Err     error
}

func (e *EgressRefusedError) Error() string {
	dests := make([]string, len(e.Refused))
	for i, r := range e.Refused {
		dests[i] = r.Dest
	}
	return fmt.Sprintf("%v (the sandbox refused the server network access to %s)", e.Err, strings.Join(dests, ", "))
}

func (e *EgressRefusedError) Unwrap() error { return e.Err }

// sandboxSpec is what the sandbox runs for t.
func sandboxSpec(t Target, path string, env []string) sandbox.Spec {
	sb := t.Sandbox
	spec := sandbox.Spec{
		Path: path, Args: append([]string{t.Command}, t.Args...), Env: env, Dir: t.Cwd,
		Home: sb.Home, Mounts: sb.Mounts, Protect: sb.Hide, Network: sb.Network, Resources: sb.Resources,
		Egress: &sandbox.Egress{Allow: sb.Egress, Pin: sb.sandboxPin()},
	}
	if sb.refused != nil {
		spec.Egress.OnRefused = func(dest string) {
			allow := ""
			if sb.Allow != nil {
				allow = sb.Allow(dest)
			}
			sb.refused.add(dest, allow)
		}
	}
	return spec
}

func startProcess(t Target, maxStderr int) (*process, error) {
	if t.Command == "" {
		return nil, errors.New("no command")
	}
	path, err := commandPath(t)
	if err != nil {
		return nil, err
	}
	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	marker := hex.EncodeToString(rnd[:])
	cmd := sandbox.Command(t.Sandbox.Mode, sandboxSpec(t, path, childEnv(t.Env, marker)))
	// A descendant that keeps stderr or stdout open must not hold Wait,
	// and with it the poll, past the child's exit.
	cmd.WaitDelay = time.Second
	p := &process{cmd: cmd, stderr: &CapBuffer{max: maxStderr}, waited: make(chan struct{}), marker: marker}
	cmd.Stderr = p.stderr
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("opening stdin of %q: %w", t.Command, err)
	}
	if p.stdout, err = cmd.StdoutPipe(); err != nil {
		p.stdin.Close()
		return nil, fmt.Errorf("opening stdout of %q: %w", t.Command, err)
	}
	if err := cmd.Start(); err != nil {
		p.stdin.Close()
		p.stdout.Close()
		if sandbox.IsRefused(err) && t.Sandbox.Mode == sandbox.Strict {
			return nil, fmt.Errorf("starting %q: refused by sandbox: strict: %w", t.Command, err)
		}
		return nil, fmt.Errorf("starting %q: %w", t.Command, err)
	}
	p.sandboxed, p.sandboxNote = cmd.Sandboxed, cmd.Note
	go func() {
		err := cmd.Wait()
		p.waitMu.Lock()
		p.err = err
		p.waitMu.Unlock()
		close(p.waited)
	}()
	return p, nil
}

// exited reports the exit error once the process has ended.
func (p *process) exited() (bool, error) {
	select {
	case <-p.waited:
		p.waitMu.Lock()
		defer p.waitMu.Unlock()
		return true, p.err
	default:
		return false, nil
	}
}

// stop ends the server and everything it started: stdin is closed so a
// well-behaved server can exit, then after grace the whole process group
// and any descendant that left the group get SIGKILL. It returns once the
// child has been reaped. A sandboxed child is the sandbox's init, whose
// exit kills everything left in its PID namespace; the kills below are
// the only net for an unsandboxed one, and belt and braces otherwise.
func (p *process) stop(grace time.Duration) {
	p.stopOnce.Do(func() {
		pid := p.cmd.Process.Pid
		// Collect descendants first: once the leader dies they are reparented
		// and can no longer be found by walking down from it.
		desc := descendants(pid)
		_ = p.stdin.Close()
		select {
		case <-p.waited:
		case <-time.After(grace):
		}
		desc = append(desc, descendants(pid)...)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		for _, d := range desc {
			_ = syscall.Kill(d, syscall.SIGKILL)
		}
		// Whatever double-forked and called setsid still carries the
		// poll's marker in its environment.
		for _, d := range marked(p.marker) {
			_ = syscall.Kill(d, syscall.SIGKILL)
		}
		<-p.waited
	})
}

// marked lists the processes whose environment holds this poll's marker.
func marked(marker string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	needle := []byte(markerVar + "=" + marker + "\x00")
	self := os.Getpid()
	var out []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n == self {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		if bytes.Contains(append(b, 0), needle) {
			out = append(out, n)
		}
	}
	return out
}

// descendants walks /proc for every process whose ancestry leads to pid.
// It is best effort: a process that double-forks and calls setsid between
// two walks can escape, which Pdeathsig and the process group cover for
// the common cases.
func descendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	parent := make(map[int]int, len(entries))
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name may hold spaces and parens; fields resume after
		// the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		parent[n] = pp
	}
	var out []int
	for n := range parent {
		for a, hops := parent[n], 0; a > 1 && hops < 64; a, hops = parent[a], hops+1 {
			if a == pid {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

// CapBuffer keeps the first max bytes written to it, so that a chatty or
// hostile server's stderr cannot grow without bound, and notes how much was
// dropped.
type CapBuffer struct {
	mu      sync.Mutex
	max     int
	buf     bytes.Buffer
	dropped int64
}

// NewCapBuffer keeps the first max bytes written to it.
func NewCapBuffer(max int) *CapBuffer { return &CapBuffer{max: max} }

func (c *CapBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.max - c.buf.Len()
	if room > 0 {
		n := min(room, len(p))
		c.buf.Write(p[:n])
		c.dropped += int64(len(p) - n)
	} else {
		c.dropped += int64(len(p))
	}
	return len(p), nil
}

func (c *CapBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := strings.TrimSpace(c.buf.String())
	if c.dropped > 0 {
		s += fmt.Sprintf(" … (%d more bytes dropped)", c.dropped)
	}
	return s
}

// waitCtx is a small helper so callers can wait for the child or a context.
func (p *process) waitCtx(ctx context.Context) error {
	select {
	case <-p.waited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
