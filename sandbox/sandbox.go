package sandbox

import (
	"fmt"
)

// Mode is how hard a caller insists on the sandbox.
type Mode string

// Modes of the `sandbox:` config key.
const (
	// Auto sandboxes when the kernel allows it and runs unsandboxed, with
	// a note, when it refuses. The zero Mode means Auto.
	Auto Mode = "auto"
	// Strict refuses to run a server the kernel will not sandbox.
	Strict Mode = "strict"
	// Off runs servers unsandboxed, as the daemon's own user: unsafe.
	Off Mode = "off"
)

// ParseMode checks a mode written in a config; "" is Auto.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", Auto:
		return Auto, nil
	case Strict, Off:
		return Mode(s), nil
	}
	return "", fmt.Errorf("must be auto, strict or off")
}

// Spec is one server to run confined.
type Spec struct {
	Path string   // absolute path of the executable, resolved by the caller
	Args []string // argv, Args[0] included
	Env  []string // the server's whole environment
	Dir  string   // working directory; "" is the caller's
	// Hide lists paths the server must not reach. Missing paths, and paths
	// the sandbox user cannot reach anyway, are skipped.
	Hide []string
}

// UnavailableError says the sandbox could not be set up, almost always
// because the kernel refused user namespaces or mounts in them. The server
// did not run.
type UnavailableError struct {
	Step string // what the sandbox was doing, e.g. "creating namespaces"
	Err  error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("sandbox unavailable: %s: %v", e.Step, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// Constants shared by both sides of the re-exec. The init is recognised by
// both its argv[0] and an environment variable, so neither an odd argv[0]
// nor a stray variable alone turns a normal run into an init.
const (
	initArg0 = "rugwatch-sandbox-init"
	initEnv  = "RUGWATCH_SANDBOX_INIT"
	// nobody is the kernel uid and gid a root daemon's sandbox runs as.
	nobody = 65534
)

// initSpec is what the daemon sends the init over a pipe (not argv or the
// environment, which a server could read through /proc/1).
type initSpec struct {
	Spec
	UID  int  `json:"uid"`  // the server's uid and gid, in the nested namespace
	GID  int  `json:"gid"`  //
	Root bool `json:"root"` // the daemon runs as root (sandbox user is nobody)
	// DefaultDir says Dir is the daemon's working directory rather than a
	// configured one: when it is hidden the server starts in / instead.
	DefaultDir bool `json:"default_dir"`
	// ExeFD says the daemon hands the init the executable as fd 5: it
	// lives under the host's /tmp (gone under the private one) or where
	// the sandbox user cannot walk to it (a root daemon's `go run` cache).
	ExeFD bool `json:"exe_fd"`
	// TmpKeep are directories directly under the host's /tmp that the
	// server's executable (its real path: an npm bin is a link into its
	// package) lives in: bound read-only into the private /tmp, hidden
	// paths inside them still hidden, so a checkout under /tmp still runs.
	TmpKeep []string `json:"tmp_keep,omitempty"`
}
