package sandbox

import (
	"errors"
	"fmt"
)

// Mode is how hard a caller insists on the sandbox.
type Mode string

// Modes of the `sandbox:` config key.
const (
	// Auto sandboxes, and runs unconfined, with a note, only where the
	// kernel itself refuses the namespaces. The zero Mode means Auto.
	Auto Mode = "auto"
	// Strict refuses to run a server the kernel will not sandbox.
	Strict Mode = "strict"
	// Off runs servers unsandboxed, as the daemon's own user: unsafe.
	Off Mode = "off"
)

// ParseMode checks a mode written in a config; "" is Auto. Anything else
// is an error: an unknown mode must never quietly mean auto.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", Auto:
		return Auto, nil
	case Strict, Off:
		return Mode(s), nil
	}
	return "", fmt.Errorf("sandbox mode %q: must be auto, strict or off", s)
}

// Network is what a sandboxed server may reach.
type Network string

// Networks of the `network:` config key.
const (
	// NetEgress (the default) gives the server a network namespace of its
	// own, with its own loopback and an HTTP proxy that reaches only the
	// destinations of its Egress allow-list.
	NetEgress Network = "egress"
	// NetNone gives it its own loopback and nothing else.
	NetNone Network = "none"
	// NetHost shares the host's network, loopback listeners, abstract
	// sockets and /proc/net included: unsafe.
	NetHost Network = "host"
)

// ParseNetwork checks a network written in a config; "" is NetEgress.
func ParseNetwork(s string) (Network, error) {
	switch Network(s) {
	case "", NetEgress:
		return NetEgress, nil
	case NetNone, NetHost:
		return Network(s), nil
	}
	return "", fmt.Errorf("network %q: must be egress, none or host", s)
}

// Mount grants a sandboxed server one more host path, at the same path.
type Mount struct {
	Path  string // absolute
	Write bool   // read-write; read-only otherwise
}

// Resources bound what one sandbox may use. Zero fields take the defaults.
type Resources struct {
	MemoryBytes int64   // per process (RLIMIT_DATA); default 512 MiB
	Pids        int     // processes and threads of the program (RLIMIT_NPROC, set at its exec in its own user namespace); default 256
	CPU         float64 // cores; enforced only with a delegated cgroup (see doc.go)
}

// Defaults of Resources.
const (
	DefaultMemoryBytes = 512 << 20
	DefaultPids        = 256
)

func (r Resources) withDefaults() Resources {
	// A race-enabled build (the test binary, which the tests also run as a
	// server) maps terabytes of shadow memory at start and cannot run under
	// a data limit: there, only an explicit limit applies.
	if r.MemoryBytes <= 0 && !raceBuild {
		r.MemoryBytes = DefaultMemoryBytes
	}
	if r.Pids <= 0 {
		r.Pids = DefaultPids
	}
	return r
}

// Spec is one program to run confined.
type Spec struct {
	Path string   // the executable; absolute, or looked up on the PATH of Env
	Args []string // argv, Args[0] included
	Env  []string // the program's whole environment; HOME is set from Home
	// Dir is the working directory; it must lie in Home or a mount.
	// "" is the HOME.
	Dir string
	// Home is the program's private, persistent HOME on the host: mounted
	// read-write at the same path and set as $HOME. "" gives it a fresh,
	// empty HOME that is gone when it exits.
	Home string
	// Mounts grant more of the host, explicitly.
	Mounts []Mount
	// Protect lists host paths that stay unreachable even where a grant
	// or the program's own code directory would expose them (the data
	// dir, the config, keys, secrets, the control socket).
	Protect []string
	// Network is what it may reach; "" is NetEgress.
	Network Network
	// Egress serves the egress path of NetEgress; nil refuses every
	// destination (and still reports each).
	Egress *Egress
	// Resources bound it.
	Resources Resources
}

// RefusedError says the kernel itself refused the sandbox: unprivileged
// user namespaces are disabled, used up, or stripped of their
// capabilities (AppArmor). It is the one error `sandbox: auto` runs a
// program unconfined for.
type RefusedError struct {
	Step string // what was being done, e.g. "creating namespaces"
	Err  error
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("the kernel refused the sandbox while %s: %v (see kernel.unprivileged_userns_clone, user.max_user_namespaces, kernel.apparmor_restrict_unprivileged_userns)", e.Step, e.Err)
}

func (e *RefusedError) Unwrap() error { return e.Err }

// SetupError says the sandbox could not be set up for any other reason: a
// missing path, a bad grant, a failed mount. The program did not run, and
// no mode runs it unconfined instead.
type SetupError struct {
	Step string
	Err  error
}

func (e *SetupError) Error() string {
	return fmt.Sprintf("sandbox: %s: %v", e.Step, e.Err)
}

func (e *SetupError) Unwrap() error { return e.Err }

// IsRefused reports whether err is the kernel's refusal of the sandbox.
func IsRefused(err error) bool {
	var re *RefusedError
	return errors.As(err, &re)
}

// Constants shared by the daemon and the stages it re-executes. A stage is
// recognised by both its argv[0] and an environment variable, so neither an
// odd argv[0] nor a stray variable alone turns a normal run into one.
const (
	launchArg0 = "rugwatch-sandbox-launch"
	initArg0   = "rugwatch-sandbox-init"
	execArg0   = "rugwatch-sandbox-exec"
	stageEnv   = "RUGWATCH_SANDBOX_STAGE"
	// nobody is the kernel uid and gid a root daemon's sandbox runs as.
	nobody = 65534
)

// The file descriptors every stage after the daemon finds its inputs on.
const (
	fdSpec   = 3 // the initSpec, JSON, from the daemon
	fdStatus = 4 // the init's one report back
	fdEgress = 5 // a unix socket: accepted egress connections travel to the daemon on it
)
