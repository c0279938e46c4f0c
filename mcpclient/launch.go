package mcpclient

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/rugwatch/rugwatch/detect"
	"golang.org/x/sys/unix"
)

// Launch is what actually ran for a stdio server: the resolved executable
// and its SHA-256, and for package runners (npx, uvx, bunx, pipx) the
// package spec, plus the name and version the server reported. An upgrade
// that swaps the code behind an unchanged command line changes it, even
// when no tool text changes.
type Launch struct {
	Executable    string `json:"executable"`
	SHA256        string `json:"sha256"`
	Package       string `json:"package,omitempty"`
	ServerName    string `json:"server_name,omitempty"`
	ServerVersion string `json:"server_version,omitempty"`
	// ProtocolVersion is the revision negotiated with it.
	ProtocolVersion string `json:"protocol_version,omitempty"`
	// Tree is the digest of the installed package tree the server runs
	// ("sha256:<hex>", see hashTree): an npx install's whole
	// node_modules, or the node_modules package holding the executable or
	// script. The executable's SHA-256 alone misses a change to any other
	// file of the package, and an npx server can write its own install.
	// "over-limit:…" when the tree is over a bound (with a warning), so a
	// tree grown past it still changes the identity.
	Tree string `json:"tree,omitempty"`
	// PackageInfo is what a package runner resolved, and the package's
	// findings (see packages.go); nil for other commands.
	*PackageInfo

	// warnings are launchOf's, for resolvePackage to put on the listing;
	// not part of the identity.
	warnings []string
}

// HashCache remembers files' digests by path, device, inode, size, mtime
// and ctime, so a daemon does not re-read a 100 MB node binary, or the
// thousands of files of a package tree, on every poll (1–10 s under load,
// past a poll's timeout). The device is part of the key because an inode
// number is only unique on its own filesystem; the ctime because the
// owner of a file (an npx server owns its install) can write it and set
// its mtime back, but not its ctime.
type HashCache struct {
	mu sync.Mutex
	m  map[string]hashEntry
}

type hashEntry struct {
	size, mtime, ctime int64
	dev, ino           uint64
	sum                string
}

// maxHashCacheEntries bounds the cache: a server that renames every file
// of its tree on every poll would otherwise grow it without end. Past it,
// half the entries go (the map's random order picks which).
const maxHashCacheEntries = 1 << 17

// fileKey is what the cache keys the open file f by, and its mode, from
// one fstat of f: what is read is the file that was stat'ed, whatever
// replaces its path meanwhile.
func fileKey(f *os.File) (hashEntry, uint32, error) {
	var st unix.Stat_t
	var serr error
	rc, err := f.SyscallConn()
	if err != nil {
		return hashEntry{}, 0, err
	}
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil {
		return hashEntry{}, 0, err
	}
	if serr != nil {
		return hashEntry{}, 0, serr
	}
	return hashEntry{size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(), dev: uint64(st.Dev), ino: uint64(st.Ino)}, uint32(st.Mode), nil
}

// sum hashes the file at path, or returns the digest cached for the same
// file. ctx bounds the read: a poll's deadline covers hashing what it ran
// (a 99 MB node binary read under load would otherwise outlast it), and a
// cut read caches nothing. A path that is not a regular file is an error;
// it is opened non-blocking, so a FIFO cannot hold the poll.
func (c *HashCache) sum(ctx context.Context, path string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	key, mode, err := fileKey(f)
	if err != nil {
		return "", err
	}
	if mode&unix.S_IFMT != unix.S_IFREG {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	return c.sumOpen(ctx, path, f, key)
}

// sumOpen hashes the open file f, stat'ed as key, or returns the digest
// cached for path with the same key. It reads key.size bytes: a file that
// shrank meanwhile is an error, and one that grew is read as it was.
func (c *HashCache) sumOpen(ctx context.Context, path string, f *os.File, key hashEntry) (string, error) {
	if c != nil {
		c.mu.Lock()
		e, ok := c.m[path]
		c.mu.Unlock()
		if ok && e.size == key.size && e.mtime == key.mtime && e.ctime == key.ctime && e.dev == key.dev && e.ino == key.ino {
			return e.sum, nil
		}
	}
	h := sha256.New()
	buf := make([]byte, max(min(key.size, 1<<20), 512))
	n, err := io.CopyBuffer(h, ctxReader{ctx, io.LimitReader(f, key.size)}, buf)
	if err != nil {
		return "", err
	}
	if n != key.size {
		return "", fmt.Errorf("%s changed while it was read", path)
	}
	key.sum = hex.EncodeToString(h.Sum(nil))
	if c != nil {
		c.mu.Lock()
		if c.m == nil {
			c.m = map[string]hashEntry{}
		}
		if len(c.m) >= maxHashCacheEntries {
			for k := range c.m {
				delete(c.m, k)
				if len(c.m) < maxHashCacheEntries/2 {
					break
				}
			}
		}
		c.m[path] = key
		c.mu.Unlock()
	}
	return key.sum, nil
}

// ctxReader stops reading once ctx is done, between reads of at most
// the copy buffer's size.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// launchOf describes what ran for a stdio target, within ctx. The tree of
// a package the executable or a script argument lies in joins it here;
// an npx install's is resolvePackage's, which knows the cache npx used.
func launchOf(ctx context.Context, t Target, cache *HashCache, serverInfo json.RawMessage) (*Launch, error) {
	path, err := commandPath(t)
	if err != nil {
		return nil, err
	}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	sum, err := cache.sum(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("hashing %s: %w", path, err)
	}
	l := &Launch{Executable: path, SHA256: sum, Package: detect.PackageSpec(t.Command, t.Args), PackageInfo: packageInfoOf(t)}
	var info struct{ Name, Version string }
	if json.Unmarshal(serverInfo, &info) == nil {
		l.ServerName, l.ServerVersion = info.Name, info.Version
	}
	if filepath.Base(t.Command) != "npx" {
		if dir := codePackageDir(path, t.Args); dir != "" {
			if err := l.describeTree(ctx, cache, dir, "."); err != nil {
				return nil, err
			}
		}
	}
	return l, nil
}

// describeTree sets l.Tree to the digest of the package tree at rel below
// root (see readTree). Only a cut by ctx is an error (the poll's deadline
// fails the poll, as for the executable); a tree over a bound is recorded
// as such, and one that cannot be read is left out, each with a warning.
func (l *Launch) describeTree(ctx context.Context, cache *HashCache, root, rel string) error {
	tree, err := hashTree(ctx, cache, root, rel)
	var over *treeLimitError
	switch {
	case err == nil:
		l.Tree = tree
	case ctx.Err() != nil:
		return fmt.Errorf("hashing the package tree %s: %w", filepath.Join(root, rel), ctx.Err())
	case errors.As(err, &over):
		l.Tree = over.mark()
		l.warnings = append(l.warnings, "launch tree: "+err.Error())
	default:
		l.warnings = append(l.warnings, "launch tree: "+err.Error())
	}
	return nil
}

// codePackageDir is the node_modules package directory the code that runs
// lies in: the executable's (real path exe: a node_modules/.bin link
// resolves into its package), else the first script named by an absolute
// argument (node /…/node_modules/pkg/dist/index.js); "" for neither.
func codePackageDir(exe string, args []string) string {
	if dir := packageDirOf(exe); dir != "" {
		return dir
	}
	for _, a := range args {
		if !filepath.IsAbs(a) {
			continue
		}
		real, err := filepath.EvalSymlinks(a)
		if err != nil {
			continue
		}
		if fi, err := os.Stat(real); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if dir := packageDirOf(real); dir != "" {
			return dir
		}
	}
	return ""
}

// packageDirOf is the package directory holding the file at path p, the
// innermost node_modules/<name> or node_modules/@scope/<name>; "" when p
// lies in no package (node_modules/.bin is none).
func packageDirOf(p string) string {
	const nm = "/node_modules/"
	i := strings.LastIndex(p, nm)
	if i < 0 {
		return ""
	}
	base, parts := p[:i+len(nm)], strings.Split(p[i+len(nm):], "/")
	n := 1
	if strings.HasPrefix(parts[0], "@") {
		n = 2
	}
	// The package directory and at least one file below it.
	if len(parts) <= n || strings.HasPrefix(parts[0], ".") || parts[n-1] == "" || strings.HasPrefix(parts[n-1], ".") {
		return ""
	}
	return base + strings.Join(parts[:n], "/")
}

// Bounds on a package tree: an npx server can write its own install, so
// its tree is as hostile as the rest of what it sends.
const (
	maxTreeEntries = 20000
	maxTreeBytes   = 256 << 20
)

// treeLimitError is a package tree over a bound.
type treeLimitError struct {
	dir     string
	entries int   // entries listed; past maxTreeEntries, listing stopped
	bytes   int64 // the regular files' sizes, when all were listed
}

func (e *treeLimitError) Error() string {
	if e.entries > maxTreeEntries {
		return fmt.Sprintf("%s has more than %d entries; not hashed", e.dir, maxTreeEntries)
	}
	return fmt.Sprintf("%s holds %d bytes in %d entries, more than %d; not hashed", e.dir, e.bytes, e.entries, maxTreeBytes)
}

// mark is what the launch identity records for a tree over a bound: the
// count and size, which still change as it does.
func (e *treeLimitError) mark() string {
	if e.entries > maxTreeEntries {
		return fmt.Sprintf("over-limit:more than %d entries", maxTreeEntries)
	}
	return fmt.Sprintf("over-limit:%d entries, %d bytes", e.entries, e.bytes)
}

// treeEntry is one entry of a package tree, below its root.
type treeEntry struct {
	rel    string // slash-separated, relative to the root
	kind   string // dir, file, symlink, fifo, socket, device, chardevice or irregular
	exec   bool   // files: any execute bit
	size   int64  // files
	sum    string // files: SHA-256, hex
	target string // symlinks
}

// codeExt are the file names a runtime loads as code or package metadata.
var codeExt = map[string]bool{
	".js": true, ".mjs": true, ".cjs": true, ".jsx": true, ".ts": true, ".mts": true, ".cts": true, ".tsx": true,
	".json": true, ".node": true, ".wasm": true, ".py": true, ".pyc": true, ".pth": true, ".so": true, ".sh": true,
}

// loadable says whether an entry of a package tree can change what runs:
// a symlink, an executable, a file a runtime loads (by its name). What a
// server writes beside its code (server-memory keeps its graph in its own
// package directory, memory.jsonl) is data, and pinning it would raise a
// launch drift after every session that wrote it. Directories count
// through the paths of the files in them.
func loadable(e treeEntry) bool {
	switch e.kind {
	case "symlink":
		return true
	case "file":
		return e.exec || codeExt[strings.ToLower(path.Ext(e.rel))]
	}
	return false
}

// hashTree is the digest of the tree at rel below root (see readTree):
// "sha256:<hex>" over every entry below it, in the order of their relative paths, each as its
// quoted path, its kind, and for a regular file its execute bit, size and
// SHA-256, for a symlink its target.
func hashTree(ctx context.Context, cache *HashCache, root, rel string) (string, error) {
	entries, err := readTree(ctx, cache, root, rel, nil)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, e := range entries {
		if !loadable(e) {
			continue
		}
		fmt.Fprintf(h, "%s %s", strconv.Quote(e.rel), e.kind)
		switch e.kind {
		case "file":
			x := "-"
			if e.exec {
				x = "x"
			}
			fmt.Fprintf(h, " %s %d %s", x, e.size, e.sum)
		case "symlink":
			fmt.Fprintf(h, " %s", strconv.Quote(e.target))
		}
		h.Write([]byte{'\n'})
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// readTree lists the tree at rel below root, sorted by relative path, with
// the content digest of every regular file (from cache when unchanged),
// within ctx and the tree bounds. Every access stays below root (os.Root):
// rel may not lead out of it (a server that can write its npm cache could
// link its install elsewhere), a symlink in the tree is recorded, never
// followed out, and the walk never enters one.
// Other entries (a FIFO, a device) are listed, never opened; a file is
// opened non-blocking and checked regular after opening, so one swapped
// for a FIFO meanwhile cannot block. skip leaves out an entry and, for a
// directory, everything below it.
func readTree(ctx context.Context, cache *HashCache, root, rel string, skip func(rel string) bool) ([]treeEntry, error) {
	dir := filepath.Join(root, rel)
	top, err := os.OpenRoot(root)
	if err != nil {
		return nil, err
	}
	defer top.Close()
	tree, err := top.OpenRoot(rel)
	if err != nil {
		return nil, fmt.Errorf("opening %s in %s: %w", rel, root, err)
	}
	defer tree.Close()
	w := treeWalk{ctx: ctx, cache: cache, dir: dir, skip: skip}
	dirs := []string{"."}
	for len(dirs) > 0 {
		d := dirs[len(dirs)-1]
		dirs = dirs[:len(dirs)-1]
		// Each directory is a root of its own: a file in it is then one
		// openat away, not one per component of its path.
		sub, err := tree.OpenRoot(d)
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", filepath.Join(dir, d), err)
		}
		more, err := w.readDir(sub, d)
		sub.Close()
		if err != nil {
			return nil, err
		}
		dirs = append(dirs, more...)
	}
	if w.total > maxTreeBytes {
		return nil, &treeLimitError{dir: dir, entries: len(w.out), bytes: w.total}
	}
	slices.SortFunc(w.out, func(a, b treeEntry) int { return strings.Compare(a.rel, b.rel) })
	return w.out, nil
}

// treeWalk is one readTree's state.
type treeWalk struct {
	ctx   context.Context
	cache *HashCache
	dir   string
	skip  func(rel string) bool
	out   []treeEntry
	total int64 // the regular files' sizes so far
}

// readDir adds the entries of the directory d (opened as sub), reading
// it in batches so a huge one is never held whole, and returns its
// subdirectories. Past maxTreeEntries it stops with a *treeLimitError.
func (w *treeWalk) readDir(sub *os.Root, d string) ([]string, error) {
	f, err := sub.Open(".")
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", filepath.Join(w.dir, d), err)
	}
	defer f.Close()
	var dirs []string
	for {
		if err := w.ctx.Err(); err != nil {
			return nil, err
		}
		batch, rerr := f.ReadDir(256)
		for _, de := range batch {
			rel := path.Join(d, de.Name())
			if w.skip != nil && w.skip(rel) {
				continue
			}
			if len(w.out) >= maxTreeEntries {
				return nil, &treeLimitError{dir: w.dir, entries: maxTreeEntries + 1}
			}
			e := treeEntry{rel: rel, kind: kindOf(de.Type())}
			var err error
			switch e.kind {
			case "dir":
				dirs = append(dirs, rel)
			case "symlink":
				e.target, err = sub.Readlink(de.Name())
			case "file":
				err = w.hashFile(sub, de.Name(), &e)
			}
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", filepath.Join(w.dir, rel), err)
			}
			w.out = append(w.out, e)
		}
		if errors.Is(rerr, io.EOF) || (rerr == nil && len(batch) == 0) {
			return dirs, nil
		}
		if rerr != nil {
			return nil, fmt.Errorf("listing %s: %w", filepath.Join(w.dir, d), rerr)
		}
	}
}

// hashFile fills in e, the regular file name in sub: its size and execute
// bit, and its digest while the tree's content is within maxTreeBytes
// (past it, only sizes are taken, for the mark).
func (w *treeWalk) hashFile(sub *os.Root, name string, e *treeEntry) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	f, err := sub.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	key, mode, err := fileKey(f)
	if err != nil {
		return err
	}
	if mode&unix.S_IFMT != unix.S_IFREG {
		return errors.New("no longer a regular file")
	}
	e.size, e.exec = key.size, mode&0o111 != 0
	if w.total += key.size; w.total > maxTreeBytes {
		return nil
	}
	e.sum, err = w.cache.sumOpen(w.ctx, filepath.Join(w.dir, e.rel), f, key)
	return err
}

// kindOf names the type of a tree entry.
func kindOf(t fs.FileMode) string {
	switch {
	case t.IsDir():
		return "dir"
	case t.IsRegular():
		return "file"
	case t&fs.ModeSymlink != 0:
		return "symlink"
	case t&fs.ModeNamedPipe != 0:
		return "fifo"
	case t&fs.ModeSocket != 0:
		return "socket"
	case t&fs.ModeCharDevice != 0:
		return "chardevice"
	case t&fs.ModeDevice != 0:
		return "device"
	}
	return "irregular"
}
