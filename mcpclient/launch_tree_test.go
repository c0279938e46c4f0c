package mcpclient

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch/testkit/testservers"
)

// rewriteKeepingMtime writes body over the file at p and sets its mtime
// back, as the owner of a file can: only its ctime says it changed.
func rewriteKeepingMtime(p, body string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if err := os.WriteFile(p, []byte(body), fi.Mode()); err != nil {
		return err
	}
	return os.Chtimes(p, fi.ModTime(), fi.ModTime())
}

// The tree digest changes with anything of the package that can change
// what runs, and with nothing else: a file's mtime alone (the cache
// re-reads the file then, and finds the same content) or where the tree
// lies. The cache is warmed on the tree first, as a daemon's is.
func TestHashTreeChanges(t *testing.T) {
	base := map[string]string{
		"package.json":          `{"name":"pkg","version":"1.0.0"}`,
		"dist/index.js*":        "#!/usr/bin/env node\nimport './lib.mjs';\n",
		"dist/lib.mjs":          "export const x = 1;\n",
		"dist/deep/data.json":   `{"a":1}`,
		"node_modules/dep/a.js": "module.exports = 1;\n",
	}
	layout := func(t *testing.T) string {
		dir := t.TempDir()
		testservers.WriteFiles(t, dir, base)
		if err := os.Symlink("dist/lib.mjs", filepath.Join(dir, "link")); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(dir, "empty"), 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	in := func(dir, rel string) string { return filepath.Join(dir, filepath.FromSlash(rel)) }
	cases := []struct {
		name    string
		mutate  func(dir string) error
		changed bool
	}{
		{"nothing", func(string) error { return nil }, false},
		{"mtime only", func(dir string) error {
			return os.Chtimes(in(dir, "dist/lib.mjs"), time.Now(), time.Now().Add(time.Hour))
		}, false},
		{"same content rewritten", func(dir string) error {
			return os.WriteFile(in(dir, "dist/lib.mjs"), []byte(base["dist/lib.mjs"]), 0o644)
		}, false},
		{"content", func(dir string) error {
			return os.WriteFile(in(dir, "dist/lib.mjs"), []byte("export const x = 2;\nfetch('https://evil');\n"), 0o644)
		}, true},
		// The same size and the mtime set back: the cache must not serve
		// the old digest (its key has the ctime, which cannot be set back).
		{"content, same size, mtime set back", func(dir string) error {
			return rewriteKeepingMtime(in(dir, "dist/lib.mjs"), "export const x = 9;\n")
		}, true},
		{"a dependency's content", func(dir string) error {
			return rewriteKeepingMtime(in(dir, "node_modules/dep/a.js"), "module.exports = 2;\n")
		}, true},
		{"new file", func(dir string) error { return os.WriteFile(in(dir, "dist/extra.js"), nil, 0o644) }, true},
		// Data a server writes beside its code is not what runs (see
		// loadable): server-memory keeps its graph in its own package.
		{"new empty directory", func(dir string) error { return os.Mkdir(in(dir, "dist/more"), 0o755) }, false},
		{"a data file written beside the code", func(dir string) error {
			return os.WriteFile(in(dir, "dist/memory.jsonl"), []byte(`{"type":"entity"}`), 0o644)
		}, false},
		{"a package shadowing a dependency", func(dir string) error {
			if err := os.MkdirAll(in(dir, "dist/node_modules/dep"), 0o755); err != nil {
				return err
			}
			return os.WriteFile(in(dir, "dist/node_modules/dep/index.js"), []byte("evil"), 0o644)
		}, true},
		{"removed file", func(dir string) error { return os.Remove(in(dir, "dist/deep/data.json")) }, true},
		{"renamed file", func(dir string) error {
			return os.Rename(in(dir, "dist/deep/data.json"), in(dir, "dist/deep/data2.json"))
		}, true},
		{"exec bit set", func(dir string) error { return os.Chmod(in(dir, "dist/lib.mjs"), 0o755) }, true},
		{"exec bit cleared", func(dir string) error { return os.Chmod(in(dir, "dist/index.js"), 0o644) }, true},
		{"symlink target", func(dir string) error {
			if err := os.Remove(in(dir, "link")); err != nil {
				return err
			}
			return os.Symlink("dist/index.js", in(dir, "link"))
		}, true},
		{"file replaced by a symlink to it", func(dir string) error {
			p := in(dir, "dist/deep/data.json")
			if err := os.Rename(p, in(dir, "dist/data.json")); err != nil {
				return err
			}
			return os.Symlink("../data.json", p)
		}, true},
		{"fifo added", func(dir string) error { return syscall.Mkfifo(in(dir, "dist/pipe"), 0o644) }, false},
		{"an executable added", func(dir string) error { return os.WriteFile(in(dir, "dist/run"), []byte("#!/bin/sh\n"), 0o755) }, true},
	}
	var first string
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := layout(t)
			cache := &HashCache{}
			before, err := hashTree(t.Context(), cache, dir, ".")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(before, "sha256:") || len(before) != len("sha256:")+64 {
				t.Fatalf("tree %q", before)
			}
			// The same tree elsewhere, with other inodes and mtimes, is
			// the same tree.
			if first == "" {
				first = before
			} else if before != first {
				t.Fatalf("the same tree in another directory: %s, want %s", before, first)
			}
			if err := c.mutate(dir); err != nil {
				t.Fatal(err)
			}
			after, err := hashTree(t.Context(), cache, dir, ".")
			if err != nil {
				t.Fatal(err)
			}
			if (after != before) != c.changed {
				t.Fatalf("digest %s → %s, want changed %v", before, after, c.changed)
			}
			// What the cache says is what a cold read says.
			cold, err := hashTree(t.Context(), nil, dir, ".")
			if err != nil || cold != after {
				t.Fatalf("cold digest %s (%v), warm %s", cold, err, after)
			}
		})
	}
}

// The tree is hostile: a symlink out of it is recorded, never followed
// (what it points at may change without the tree changing), a FIFO does
// not block the walk, and a tree over a bound is an error whose mark says
// how far over it is, without reading content past the bound.
func TestHashTreeHostile(t *testing.T) {
	outside := t.TempDir()
	testservers.WriteFiles(t, outside, map[string]string{"secret": "one", "dir/file": "one"})
	dir := t.TempDir()
	testservers.WriteFiles(t, dir, map[string]string{"index.js": "x"})
	for name, target := range map[string]string{"file-out": filepath.Join(outside, "secret"), "dir-out": filepath.Join(outside, "dir"), "up": "../../.."} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Each walk has a guard of its own, which only turns a hang (a walk
	// that opened the fifo) into a failure: one shared by the whole test
	// also timed the making of 20,001 files, and ran out under -race on
	// a loaded machine.
	guard := func() context.Context {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		t.Cleanup(cancel)
		return ctx
	}
	before, err := hashTree(guard(), nil, dir, ".")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := readTree(guard(), nil, dir, ".", nil)
	if err != nil {
		t.Fatal(err)
	}
	var rels []string
	for _, e := range entries {
		rels = append(rels, e.rel+":"+e.kind)
	}
	if want := []string{"dir-out:symlink", "file-out:symlink", "index.js:file", "pipe:fifo", "up:symlink"}; !slices.Equal(rels, want) {
		t.Fatalf("entries %v, want %v", rels, want)
	}
	testservers.WriteFiles(t, outside, map[string]string{"secret": "two", "dir/file": "two", "dir/new": "x"})
	if after, err := hashTree(guard(), nil, dir, "."); err != nil || after != before {
		t.Fatalf("a change outside the tree changed it: %s → %s (%v)", before, after, err)
	}

	// Content over the bound: a sparse file takes no disk, and is never read.
	big := t.TempDir()
	testservers.WriteFiles(t, big, map[string]string{"a.js": "x"})
	if err := os.Truncate(filepath.Join(big, "a.js"), maxTreeBytes+1); err != nil {
		t.Fatal(err)
	}
	_, err = hashTree(guard(), nil, big, ".")
	var over *treeLimitError
	if !errors.As(err, &over) || over.mark() != "over-limit:1 entries, 268435457 bytes" {
		t.Fatalf("content over the bound: %v", err)
	}

	// Entries over the bound.
	many := t.TempDir()
	for i := range maxTreeEntries + 1 {
		f, err := os.Create(filepath.Join(many, strings.Repeat("f", 1+i%7)+hex.EncodeToString([]byte{byte(i >> 8), byte(i)})))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if _, err := hashTree(guard(), nil, many, "."); !errors.As(err, &over) || !strings.HasPrefix(over.mark(), "over-limit:more than 20000") {
		t.Fatalf("entries over the bound: %v", err)
	}

	// The poll's deadline stops the walk.
	done, cancelDone := context.WithCancel(t.Context())
	cancelDone()
	if _, err := hashTree(done, nil, dir, "."); !errors.Is(err, context.Canceled) {
		t.Fatalf("a done context: %v", err)
	}
}

func TestPackageDirOf(t *testing.T) {
	for p, want := range map[string]string{
		"/a/node_modules/pkg/dist/index.js":                      "/a/node_modules/pkg",
		"/a/node_modules/@scope/pkg/bin/cli.js":                  "/a/node_modules/@scope/pkg",
		"/a/node_modules/x/node_modules/@s/inner/i.js":           "/a/node_modules/x/node_modules/@s/inner",
		"/a/node_modules/pkg":                                    "",
		"/a/node_modules/@scope/pkg":                             "",
		"/a/node_modules/.bin/cli":                               "",
		"/usr/bin/node":                                          "",
		"/a/node_modules/../etc/passwd":                          "",
		"/home/u/.npm/_npx/5b2dd62b9d0bddd4/node_modules/p/i.js": "/home/u/.npm/_npx/5b2dd62b9d0bddd4/node_modules/p",
	} {
		if got := packageDirOf(p); got != want {
			t.Errorf("packageDirOf(%s) = %q, want %q", p, got, want)
		}
	}
}

// tgz is a gzip'd tar of files (rel → content), each under "package/"
// unless rel names its own top directory with a leading "/".
func tgz(t *testing.T, files map[string]string, extra ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	names := make([]string, 0, len(files))
	for rel := range files {
		names = append(names, rel)
	}
	slices.Sort(names)
	for _, rel := range names {
		name := "package/" + rel
		if r, ok := strings.CutPrefix(rel, "/"); ok {
			name = r
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(files[rel])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[rel])); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range extra {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// integrityOf is npm's integrity of a tarball.
func integrityOf(b []byte) string {
	sum := sha512.Sum512(b)
	return "sha512-" + base64.StdEncoding.EncodeToString(sum[:])
}

// cacheTarball stores a tarball in npm's content-addressed cache.
func cacheTarball(t *testing.T, cache string, tarball []byte) string {
	t.Helper()
	sum := sha512.Sum512(tarball)
	h := hex.EncodeToString(sum[:])
	p := filepath.Join(cache, "_cacache", "content-v2", "sha512", h[:2], h[2:4], h[4:])
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, tarball, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const (
	tinySpec    = "tiny-mcp@1.2.3"
	tinyName    = "tiny-mcp"
	tinyVersion = "1.2.3"
)

var tinyFiles = map[string]string{
	"package.json":  `{"name":"tiny-mcp","version":"1.2.3","bin":{"tiny-mcp":"dist/index.js"}}`,
	"dist/index.js": "#!/usr/bin/env node\nrequire('./util.js');\n",
	"dist/util.js":  "module.exports = () => 1;\n",
	"README.md":     "# tiny\n",
}

// tinyNpx lays out what `npx -y tiny-mcp@1.2.3` leaves in a HOME, by hand:
// the tarball in npm's cache, the lockfile, and the package installed
// from it with one dependency. npx is the test binary, serving one tool.
func tinyNpx(t *testing.T) (npx, home, installed string, integrity string) {
	t.Helper()
	dir := outsideTmp(t)
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	npx = filepath.Join(bin, "npx")
	if err := os.Rename(reachableSelf(t, bin), npx); err != nil {
		t.Fatal(err)
	}
	home = filepath.Join(dir, "home")
	cache := filepath.Join(home, ".npm")
	tarball := tgz(t, tinyFiles)
	integrity = integrityOf(tarball)
	cacheTarball(t, cache, tarball)
	install := filepath.Join(cache, "_npx", npxDirHash(tinySpec))
	lock := `{"name":"npx","lockfileVersion":3,"packages":{"":{"dependencies":{"tiny-mcp":"1.2.3"}},` +
		`"node_modules/tiny-mcp":{"version":"1.2.3","integrity":"` + integrity + `"},` +
		`"node_modules/dep":{"version":"1.0.0","integrity":"sha512-AAAA"}}}`
	testservers.WriteFiles(t, install, map[string]string{"package.json": `{"dependencies":{"tiny-mcp":"1.2.3"}}`, "package-lock.json": lock})
	installed = filepath.Join(install, "node_modules", tinyName)
	testservers.WriteFiles(t, installed, tinyFiles)
	testservers.WriteFiles(t, filepath.Join(install, "node_modules"), map[string]string{"dep/index.js": "module.exports = 0;\n", ".package-lock.json": lock})
	if err := os.Mkdir(filepath.Join(install, "node_modules", ".bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../tiny-mcp/dist/index.js", filepath.Join(install, "node_modules", ".bin", "tiny-mcp")); err != nil {
		t.Fatal(err)
	}
	return npx, home, installed, integrity
}

func pollTinyNpx(t *testing.T, npx, home, integrity string) (*Listing, error) {
	t.Helper()
	target := Target{Name: "npx", Transport: TransportStdio, Command: npx, Args: []string{"-test.run=^$", "-y", tinySpec},
		Env: map[string]string{"RUGWATCH_TEST_SERVER": "sdk", "TOOLS": "1", "HOME": home}, Sandbox: Sandbox{Home: home}, Integrity: integrity}
	return Poll(pollCtx(t, 30*time.Second), target, DialOptions{Hashes: &HashCache{}})
}

func hasWarning(l *Listing, parts ...string) bool {
	return slices.ContainsFunc(l.Warnings, func(w string) bool {
		for _, p := range parts {
			if !strings.Contains(w, p) {
				return false
			}
		}
		return true
	})
}

// The installed files of an npx package are checked against the tarball
// with the lockfile's integrity in npm's cache: the lockfile alone says
// what npm installed once, not what is there now (the server can write
// its install). Each case changes a fresh install; a pinned integrity
// refuses the poll naming what differs, and without one it is a warning.
func TestNpxInstalledFilesMatchTheTarball(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(t *testing.T, home, installed string)
		want   []string // in the error and the warning; none: it passes
	}{
		{"as installed", func(*testing.T, string, string) {}, nil},
		{"a nested node_modules", func(t *testing.T, _, installed string) {
			testservers.WriteFiles(t, installed, map[string]string{"node_modules/inner/i.js": "x"})
		}, nil},
		{"a file rewritten", func(t *testing.T, _, installed string) {
			if err := rewriteKeepingMtime(filepath.Join(installed, "dist", "util.js"), "module.exports = () => 2;\n"); err != nil {
				t.Fatal(err)
			}
		}, []string{`"dist/util.js" differs from the tarball`}},
		{"package.json rewritten", func(t *testing.T, _, installed string) {
			testservers.WriteFiles(t, installed, map[string]string{"package.json": `{"name":"tiny-mcp","version":"1.2.3","scripts":{"postinstall":"curl evil"}}`})
		}, []string{`"package.json" differs`}},
		{"a file added", func(t *testing.T, _, installed string) {
			testservers.WriteFiles(t, installed, map[string]string{"dist/hook.js": "x"})
		}, []string{`"dist/hook.js" is installed but not in the tarball`}},
		{"a file removed", func(t *testing.T, _, installed string) {
			if err := os.Remove(filepath.Join(installed, "README.md")); err != nil {
				t.Fatal(err)
			}
		}, []string{`"README.md" is in the tarball but not installed`}},
		{"a file replaced by a symlink", func(t *testing.T, _, installed string) {
			p := filepath.Join(installed, "dist", "util.js")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/etc/hostname", p); err != nil {
				t.Fatal(err)
			}
		}, []string{`"dist/util.js" is a symlink`}},
		{"the tarball gone", func(t *testing.T, home, _ string) {
			if err := os.RemoveAll(filepath.Join(home, ".npm", "_cacache")); err != nil {
				t.Fatal(err)
			}
		}, []string{"no tarball with integrity"}},
		{"the tarball swapped", func(t *testing.T, home, _ string) {
			p := cacheTarball(t, home+"/.npm", tgz(t, tinyFiles))
			evil := tgz(t, map[string]string{"package.json": tinyFiles["package.json"], "dist/index.js": "evil", "dist/util.js": "evil", "README.md": ""})
			if err := os.WriteFile(p, evil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{"does not have the integrity"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			npx, home, installed, integrity := tinyNpx(t)
			c.mutate(t, home, installed)
			l, err := pollTinyNpx(t, npx, home, "")
			if err != nil {
				t.Fatal(err)
			}
			if l.Launch.Integrity != integrity || l.Launch.PackageVersion != tinyVersion || !strings.HasPrefix(l.Launch.Tree, "sha256:") {
				t.Fatalf("launch %+v, warnings %v", l.Launch, l.Warnings)
			}
			_, perr := pollTinyNpx(t, npx, home, integrity)
			if c.want == nil {
				if hasWarning(l, "package integrity") || perr != nil {
					t.Fatalf("a matching install: warnings %v, pinned poll %v", l.Warnings, perr)
				}
				return
			}
			if !hasWarning(l, append([]string{"package integrity"}, c.want...)...) {
				t.Errorf("unpinned: warnings %v, want one with %q", l.Warnings, c.want)
			}
			if perr == nil || !strings.Contains(perr.Error(), "refusing it") || !strings.Contains(perr.Error(), c.want[0]) {
				t.Errorf("pinned: %v, want a refusal naming %q", perr, c.want)
			}
		})
	}
}

// The npx tree is the whole install's node_modules: a dependency of the
// package changes it, and the package's integrity check does not see it
// (the dependency has its own). A node_modules that leads out of the
// cache is not hashed.
func TestNpxTreeCoversTheInstall(t *testing.T) {
	npx, home, installed, _ := tinyNpx(t)
	l, err := pollTinyNpx(t, npx, home, "")
	if err != nil {
		t.Fatal(err)
	}
	tree := l.Launch.Tree
	modules := filepath.Dir(installed)
	if err := rewriteKeepingMtime(filepath.Join(modules, "dep", "index.js"), "module.exports = 1;\n"); err != nil {
		t.Fatal(err)
	}
	if l, err = pollTinyNpx(t, npx, home, ""); err != nil {
		t.Fatal(err)
	}
	if l.Launch.Tree == tree || hasWarning(l, "package integrity") {
		t.Fatalf("a changed dependency: tree %s (was %s), warnings %v", l.Launch.Tree, tree, l.Warnings)
	}
	// The server replaces its install's node_modules with a link to a tree
	// of the host: the daemon does not hash (or report on) that tree.
	elsewhere := filepath.Join(home, "elsewhere")
	if err := os.Rename(modules, elsewhere); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, modules); err != nil {
		t.Fatal(err)
	}
	if l, err = pollTinyNpx(t, npx, home, ""); err != nil {
		t.Fatal(err)
	}
	if l.Launch.Tree != "" || !hasWarning(l, "launch tree", "escapes") {
		t.Fatalf("node_modules out of the cache: tree %q, warnings %v", l.Launch.Tree, l.Warnings)
	}
}

// npm unpacks a tarball stripped of its first path component, skipping
// links and paths that would leave the package; the last of a duplicated
// path wins. The check reads it the same way.
func TestUntarFilesAsNpmUnpacks(t *testing.T) {
	b := tgz(t, map[string]string{"a.js": "1", "/other/b.js": "2", "/top.js": "3", "/package/../../esc.js": "4", "node_modules/x/i.js": "5"},
		&tar.Header{Name: "package/link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"},
		&tar.Header{Name: "package/a.js", Typeflag: tar.TypeReg, Size: 0, Mode: 0o644})
	files, err := untarFiles(t.Context(), bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"a.js", "b.js"}) {
		t.Fatalf("files %v", names)
	}
	if files["a.js"] != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Fatalf("the later a.js did not win: %s", files["a.js"])
	}
}
