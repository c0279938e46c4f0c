package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// systemPrefixes are the host directories every sandbox gets read-only
// anyway; code found in them needs no grant of its own.
var systemPrefixes = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

func isSystem(path string) bool {
	for _, p := range systemPrefixes {
		if within(path, p) {
			return true
		}
	}
	return false
}

// within reports whether path is dir or lies below it; both clean and
// absolute.
func within(path, dir string) bool {
	if dir == "/" {
		return true
	}
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// lookPath finds an executable on the PATH the program will have (not the
// daemon's), so a configured PATH decides which executable runs.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) {
			return "", fmt.Errorf("executable %q: a relative path is ambiguous in a sandbox; write it absolute", name)
		}
		return name, nil
	}
	pathEnv, ok := lookupEnv(env, "PATH")
	if !ok {
		pathEnv = "/usr/local/bin:/usr/bin:/bin"
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if !filepath.IsAbs(dir) {
			continue // a relative PATH entry means the daemon's cwd: never
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("executable %q not found on PATH %q", name, pathEnv)
}

// codePaths lists what of the host a program needs to run besides the
// system directories: its executable, the interpreter its #! line names,
// the package tree around either, and scripts named by absolute path among
// its arguments (by extension or #! line). Each entry is a real path (symlinks resolved), to be bound
// read-only at that same path. exe is the real path to execute.
//
// Directories named as arguments are never implied (a filesystem server's
// root is data, not code): they need an explicit mount.
func codePaths(path string, args, env []string) (exe string, paths []string, err error) {
	exe, err = filepath.EvalSymlinks(path)
	if err != nil {
		return "", nil, fmt.Errorf("resolving the executable %s: %w", path, err)
	}
	seen := map[string]bool{}
	add := func(p string) {
		if p == "" || isSystem(p) || seen[p] {
			return
		}
		seen[p] = true
		paths = append(paths, p)
	}
	add(codeRoot(exe, false))
	if clean := filepath.Clean(path); clean != exe && !isSystem(clean) {
		// A runtime reached through a link outside the system directories
		// (a venv's bin/python → /usr/bin/python3.11): the runtime finds
		// its environment beside the link (pyvenv.cfg, site-packages), so
		// the link's installation prefix is code too.
		add(codeRoot(clean, true))
	}
	if interp := shebang(exe); interp != "" {
		if ip, err := interpreterPath(interp, env); err == nil {
			add(codeRoot(ip, true))
		}
	}
	if !isSystem(exe) && shebang(exe) == "" {
		// A runtime outside the system directories (node under ~/.nvm)
		// run directly: its installation prefix, for its own libraries.
		add(codeRoot(exe, true))
	}
	for _, a := range args[min(1, len(args)):] {
		if !filepath.IsAbs(a) {
			continue
		}
		real, err := filepath.EvalSymlinks(a)
		if err != nil {
			continue
		}
		// Only scripts: a data file named as an argument (a state file,
		// a database) is the server's data, granted with a mount or not
		// at all, never bound read-only over its own path.
		if fi, err := os.Stat(real); err == nil && fi.Mode().IsRegular() && (scriptExt(real) || shebang(real) != "") {
			add(codeRoot(real, false))
		}
	}
	// Longest first is not needed; parents before children is, for the
	// mounts: the init sorts by depth.
	return exe, dedupeNested(paths), nil
}

// codeRoot is what to grant for one file of code: the outermost
// node_modules it lies in (a package's dependencies are hoisted there), an
// interpreter's installation prefix (…/bin/node → …), a script's directory
// (its siblings are its modules), or the file itself.
func codeRoot(real string, runtime bool) string {
	if i := strings.Index(real, "/node_modules/"); i >= 0 {
		return real[:i+len("/node_modules")]
	}
	if isSystem(real) {
		return real
	}
	dir := filepath.Dir(real)
	if runtime {
		if filepath.Base(dir) == "bin" {
			prefix := filepath.Dir(dir)
			home, _ := os.UserHomeDir()
			if fi, err := os.Stat(filepath.Join(prefix, "lib")); err == nil && fi.IsDir() &&
				prefix != "/" && prefix != home && prefix != filepath.Join(home, ".local") {
				return prefix
			}
		}
		return real
	}
	if shebang(real) != "" || scriptExt(real) {
		return dir
	}
	return real
}

func scriptExt(p string) bool {
	switch filepath.Ext(p) {
	case ".js", ".mjs", ".cjs", ".ts", ".py":
		return true
	}
	return false
}

// shebang is the interpreter a script's #! line names ("node" for
// "#!/usr/bin/env node"), or "".
func shebang(path string) string {
	// Non-blocking and not through a link: a file swapped for a FIFO must
	// not hang the daemon's poll, nor a link lead it elsewhere.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	buf := make([]byte, 256)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return ""
	}
	line, _, _ := bytes.Cut(buf[:n], []byte("\n"))
	rest, ok := bytes.CutPrefix(line, []byte("#!"))
	if !ok {
		return ""
	}
	fields := strings.Fields(string(rest))
	if len(fields) == 0 {
		return ""
	}
	if filepath.Base(fields[0]) == "env" {
		for _, f := range fields[1:] {
			if !strings.HasPrefix(f, "-") {
				return f
			}
		}
		return ""
	}
	return fields[0]
}

func interpreterPath(interp string, env []string) (string, error) {
	p, err := lookPath(interp, env)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(p)
}

// dedupeNested drops paths that lie inside another path of the list.
func dedupeNested(paths []string) []string {
	out := paths[:0]
	for i, p := range paths {
		inside := false
		for j, q := range paths {
			if i != j && p != q && within(p, q) {
				inside = true
				break
			}
		}
		if !inside {
			out = append(out, p)
		}
	}
	return out
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
