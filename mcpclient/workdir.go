package mcpclient

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Where a stdio server runs must not depend on where rugwatch runs: the
// daemon's cwd is wherever its unit started it, and `rugwatch proxy`'s is
// wherever the proxy's client (an editor, an agent) happened to be, often
// a project with its own node_modules. The server's working directory is
// fixed by the config (sandbox.Spec.Dir: the configured cwd, else the
// server's persistent HOME, the same for the poller and the proxy), and
// the executable that runs, which the launch identity hashes, is resolved
// from there too: a relative command, or a relative entry of PATH, is
// relative to that directory, as exec resolves a relative path against
// the child's Dir.

// workDir is the directory a stdio server runs in as the host sees it:
// its configured cwd, else its persistent HOME (sandbox.Spec's rule for
// an empty Dir), else "" (a scan's fresh HOME, which only the sandbox
// sees).
func (t Target) workDir() string {
	if t.Cwd != "" {
		return t.Cwd
	}
	return t.Sandbox.Home
}

// commandPath is the absolute path of the executable t runs: its command
// looked up on the PATH the child will have (a configured PATH decides,
// not ours), relative names resolved against workDir. Only a target
// without one (a scan) resolves against our own cwd: the shell the user
// typed the command in.
func commandPath(t Target) (string, error) {
	base := t.workDir()
	if base == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", fmt.Errorf("finding command %q: %w", t.Command, err)
		}
		base = wd
	}
	at := func(p string) string {
		if filepath.IsAbs(p) {
			return filepath.Clean(p)
		}
		return filepath.Join(base, p)
	}
	if strings.Contains(t.Command, "/") {
		p := at(t.Command)
		if !isExecutable(p) {
			return "", fmt.Errorf("finding command %q (as %s, from the server's working directory %s): %w", t.Command, p, base, exec.ErrNotFound)
		}
		return p, nil
	}
	pathEnv, ok := t.Env["PATH"]
	if !ok {
		pathEnv = os.Getenv("PATH")
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		if p := filepath.Join(at(dir), t.Command); isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("finding command %q on PATH (relative entries from the server's working directory %s): %w", t.Command, base, exec.ErrNotFound)
}

// isExecutable reports whether p is a file anyone may execute.
func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}
