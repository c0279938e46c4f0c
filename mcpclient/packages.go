package mcpclient

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
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
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/visible"
)

// Package findings for npx/uvx/bunx/pipx launches: a spec with no exact
// version runs whatever the registry serves today, and a name one edit
// from a well-known MCP server package is how typosquats get installed.

// PackageInfo is the part of a launch identity that a package runner
// decides: the version it resolved and the registry's integrity hash of
// the artifact (npm's lockfile "integrity", sha512-…), and the findings
// of the package spec. It is embedded in Launch, so its fields are the
// launch identity's, pinned and compared with the rest.
type PackageInfo struct {
	PackageVersion string             `json:"package_version,omitempty"`
	Integrity      string             `json:"integrity,omitempty"`
	Findings       []rugwatch.Finding `json:"findings,omitempty"`
}

// packageInfoOf is the package part of t's launch identity as far as the
// command line tells (its findings); nil for a command that is not a
// package runner.
func packageInfoOf(t Target) *PackageInfo {
	if detect.PackageSpec(t.Command, t.Args) == "" {
		return nil
	}
	return &PackageInfo{Findings: detect.PackageFindings(t.Command, t.Args)}
}

// maxLockfileBytes bounds a lockfile read from an npx cache: the server
// that ran can write its own cache, so the file is as hostile as the rest.
const maxLockfileBytes = 16 << 20

// resolvePackage completes the package part of the listing's launch
// identity with what npx installed for the running server, and refuses the
// poll when the target pins an integrity the artifact does not have, or
// the installed files are not the artifact's.
//
// The cache read is the one the server's npx actually used: a sandboxed
// server's npm cache lives in its persistent HOME on the host, which the
// daemon reads directly. The lockfile sits in a cache the running package
// can write, so the integrity says what npm verified when it installed,
// unless the package itself rewrote it since; the installed files, which
// it can rewrite too, are checked against the tarball with that integrity
// in npm's cache, and their tree joins the identity.
func (s *Session) resolvePackage(ctx context.Context, l *Listing) error {
	launch := l.Launch
	if launch != nil {
		l.Warnings = append(l.Warnings, launch.warnings...)
		launch.warnings = nil
	}
	if launch == nil || launch.PackageInfo == nil || filepath.Base(s.target.Command) != "npx" {
		if s.target.Integrity != "" {
			return fmt.Errorf("integrity %s is set, but only an npx launch reports one", s.target.Integrity)
		}
		return nil
	}
	name, _ := detect.SplitPackageSpec(launch.Package)
	in, err := findNpxInstall(npmCacheDirs(s.target, s.proc != nil && s.proc.sandboxed), launch.Package, name)
	if in.dir != "" {
		// The tree joins the identity even when the lockfile says nothing
		// usable: it is what runs.
		if err := launch.describeTree(ctx, s.opts.Hashes, in.cache, in.modulesRel()); err != nil {
			return err
		}
		l.Warnings = append(l.Warnings, launch.warnings...)
		launch.warnings = nil
	}
	if err != nil {
		if s.target.Integrity != "" {
			return fmt.Errorf("confirming integrity %s of %s: %w; refusing a server whose artifact cannot be confirmed", s.target.Integrity, launch.Package, err)
		}
		l.Warnings = append(l.Warnings, "package integrity: "+err.Error())
		return nil
	}
	launch.PackageVersion, launch.Integrity = in.version, in.integrity
	if want := s.target.Integrity; want != "" && !slices.Contains(strings.Fields(in.integrity), want) {
		return fmt.Errorf("npx ran %s@%s with integrity %s, not the configured %s: a different artifact would run; refusing it",
			name, visible.Bounded(in.version, 64), visible.Bounded(in.integrity, 120), want)
	}
	if err := in.verifyInstalled(ctx, s.opts.Hashes, name); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("confirming the installed files of %s: %w", launch.Package, ctx.Err())
		}
		if s.target.Integrity != "" {
			return fmt.Errorf("npx ran %s@%s from files that are not its artifact's (integrity %s): %w; refusing it",
				name, visible.Bounded(in.version, 64), s.target.Integrity, err)
		}
		l.Warnings = append(l.Warnings, "package integrity: "+err.Error())
	}
	return nil
}

// npmCacheDirs lists, most likely first, where the server's npm keeps its
// cache, as the daemon reaches it: a sandboxed server's HOME is its
// persistent one on the host (a fresh one, gone with the poll, cannot be
// read at all).
func npmCacheDirs(t Target, sandboxed bool) []string {
	var dirs []string
	for _, k := range []string{"npm_config_cache", "NPM_CONFIG_CACHE"} {
		if v := t.Env[k]; v != "" && !sandboxed {
			dirs = append(dirs, v)
		}
	}
	home := t.Sandbox.Home
	if home == "" && !sandboxed {
		var ok bool
		if home, ok = t.Env["HOME"]; !ok {
			home = os.Getenv("HOME")
		}
	}
	if home != "" {
		dirs = append(dirs, filepath.Join(home, ".npm"))
	}
	return dirs
}

// npxDirHash is the directory npx installs a set of package specs into,
// under <cache>/_npx/: the first 16 hex digits of the SHA-512 of the
// sorted specs joined by newlines (npm's libnpmexec).
func npxDirHash(specs ...string) string {
	specs = slices.Clone(specs)
	sort.Strings(specs)
	sum := sha512.Sum512([]byte(strings.Join(specs, "\n")))
	return hex.EncodeToString(sum[:])[:16]
}

// npxInstall is one npx install of a spec: the cache it is in, its
// directory under <cache>/_npx/ and the node_modules there, and the
// version and integrity its lockfile records for the package.
type npxInstall struct {
	cache, dir, modules string
	version, integrity  string
}

// npxResolved reads the version and integrity npx installed for spec
// (package name) from the first cache dir that holds spec's install.
func npxResolved(cacheDirs []string, spec, name string) (version, integrity string, err error) {
	in, err := findNpxInstall(cacheDirs, spec, name)
	return in.version, in.integrity, err
}

// findNpxInstall finds spec's install in the first cache dir that holds
// one (a lockfile), and reads name's entry from its lockfile. On an error
// reading the lockfile, the install found is returned with it.
func findNpxInstall(cacheDirs []string, spec, name string) (npxInstall, error) {
	hash := npxDirHash(spec)
	var tried []string
	for _, c := range cacheDirs {
		dir := filepath.Join(c, "_npx", hash)
		v, i, err := lockedPackage(dir, name)
		if errors.Is(err, fs.ErrNotExist) {
			tried = append(tried, dir)
			continue
		}
		in := npxInstall{cache: c, dir: dir, modules: filepath.Join(dir, "node_modules")}
		if err != nil {
			return in, fmt.Errorf("reading the npx install of %s in %s: %w", spec, dir, err)
		}
		in.version, in.integrity = v, i
		return in, nil
	}
	return npxInstall{}, fmt.Errorf("no npx install of %s found (looked in %s)", spec, strings.Join(tried, ", "))
}

// modulesRel is the install's node_modules relative to its cache, which
// the daemon reads it below: the server can write its npm cache, and a
// link it planted there must not make the daemon read, and report on,
// another tree.
func (in npxInstall) modulesRel() string {
	return filepath.Join("_npx", filepath.Base(in.dir), "node_modules")
}

// lockedPackage reads name's entry from an npx install's lockfile: the
// hidden node_modules/.package-lock.json npm writes on install, else the
// package-lock.json beside it.
func lockedPackage(dir, name string) (version, integrity string, err error) {
	var raw []byte
	for _, p := range []string{filepath.Join(dir, "node_modules", ".package-lock.json"), filepath.Join(dir, "package-lock.json")} {
		raw, err = readBounded(p, maxLockfileBytes)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", "", err
		}
	}
	if err != nil {
		return "", "", err
	}
	var lock struct {
		Packages map[string]struct {
			Version   string `json:"version"`
			Integrity string `json:"integrity"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(raw, &lock); err != nil {
		return "", "", fmt.Errorf("parsing the lockfile: %w", err)
	}
	e, ok := lock.Packages["node_modules/"+name]
	if !ok || e.Integrity == "" {
		return "", "", fmt.Errorf("the lockfile has no integrity for %s", name)
	}
	return e.Version, e.Integrity, nil
}

// readBounded reads a whole file of at most max bytes.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is over %d bytes", path, max)
	}
	return b, nil
}

// Bounds on a package tarball read from npm's cache (the server can
// write the cache): its compressed size; what it unpacks to is bounded as
// an installed tree is (maxTreeEntries, maxTreeBytes).
const maxTarballBytes = 64 << 20

// maxDifferences is how many differing files an error names.
const maxDifferences = 5

// verifyInstalled checks that the files installed for package name are
// the ones in the tarball with the install's integrity, which npm keeps
// content-addressed in its cache: the tarball's SHA-512 must be the
// integrity's, every regular file in it (less its first path component,
// as npm unpacks it) must be installed with the same content, and nothing
// else may be installed. The package's own node_modules (its nested
// dependencies, other packages) is left out, on both sides.
func (in npxInstall) verifyInstalled(ctx context.Context, cache *HashCache, name string) error {
	if !validPackageName(name) {
		return fmt.Errorf("%s is not a package name to find the install of", visible.Quote(name))
	}
	want, err := tarballFiles(ctx, in.cache, in.integrity)
	if err != nil {
		return err
	}
	dir := filepath.Join(in.modules, filepath.FromSlash(name))
	got, err := readTree(ctx, cache, in.cache, filepath.Join(in.modulesRel(), filepath.FromSlash(name)),
		func(rel string) bool { return rel == "node_modules" })
	if err != nil {
		return fmt.Errorf("reading the installed package: %w", err)
	}
	var diffs []string
	for _, e := range got {
		sum, ok := want[e.rel]
		delete(want, e.rel)
		switch {
		case e.kind == "dir":
			if ok {
				diffs = append(diffs, strconv.Quote(e.rel)+" is a directory, a file in the tarball")
			}
		case !ok && !loadable(e):
			// Data the server wrote beside its code (see loadable).
		case !ok:
			diffs = append(diffs, strconv.Quote(e.rel)+" is installed but not in the tarball")
		case e.kind != "file":
			diffs = append(diffs, strconv.Quote(e.rel)+" is a "+e.kind+", a file in the tarball")
		case e.sum != sum:
			diffs = append(diffs, strconv.Quote(e.rel)+" differs from the tarball")
		}
	}
	for rel := range want {
		diffs = append(diffs, strconv.Quote(rel)+" is in the tarball but not installed")
	}
	if len(diffs) == 0 {
		return nil
	}
	sort.Strings(diffs)
	more := ""
	if len(diffs) > maxDifferences {
		more = fmt.Sprintf(" (and %d more)", len(diffs)-maxDifferences)
		diffs = diffs[:maxDifferences]
	}
	return fmt.Errorf("the installed %s is not the tarball with its integrity: %s%s", dir, visible.Bounded(strings.Join(diffs, "; "), 1000), more)
}

// validPackageName accepts an npm package name as a path below
// node_modules: name or @scope/name, no empty, dot or dot-dot segment.
func validPackageName(name string) bool {
	parts := strings.Split(name, "/")
	if len(parts) > 2 || (len(parts) == 2) != strings.HasPrefix(name, "@") {
		return false
	}
	for _, p := range parts {
		if p == "" || p == "." || p == ".." || strings.ContainsAny(p, "\\\x00") {
			return false
		}
	}
	return true
}

// tarballFiles reads the tarball with the given integrity from npm's
// content-addressed cache (<cache>/_cacache/content-v2/sha512/…) and
// returns the SHA-256 of each regular file in it by its path as npm
// installs it. The tarball's SHA-512 must be the integrity's: a missing or
// different one is an error, so is one over the bounds.
func tarballFiles(ctx context.Context, cacheDir, integrity string) (map[string]string, error) {
	digest, err := sha512Of(integrity)
	if err != nil {
		return nil, err
	}
	h := hex.EncodeToString(digest)
	rel := filepath.Join("_cacache", "content-v2", "sha512", h[:2], h[2:4], h[4:])
	root, err := os.OpenRoot(cacheDir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("no tarball with integrity %s in npm's cache: %w", visible.Bounded(integrity, 120), err)
	}
	defer f.Close()
	key, mode, err := fileKey(f)
	if err != nil {
		return nil, err
	}
	if mode&unix.S_IFMT != unix.S_IFREG || key.size > maxTarballBytes {
		return nil, fmt.Errorf("the cached tarball %s is not a regular file of at most %d bytes", filepath.Join(cacheDir, rel), maxTarballBytes)
	}
	// The tarball is unpacked as it is hashed; what it held counts only
	// once the whole of it matched the integrity.
	sha := sha512.New()
	r := ctxReader{ctx, io.LimitReader(f, key.size)}
	files, err := untarFiles(ctx, io.TeeReader(r, sha))
	if err != nil {
		return nil, fmt.Errorf("reading the cached tarball %s: %w", filepath.Join(cacheDir, rel), err)
	}
	if _, err := io.Copy(sha, r); err != nil {
		return nil, err
	}
	if !bytes.Equal(sha.Sum(nil), digest) {
		return nil, fmt.Errorf("the cached tarball %s does not have the integrity %s", filepath.Join(cacheDir, rel), visible.Bounded(integrity, 120))
	}
	return files, nil
}

// sha512Of decodes the sha512 digest of an integrity (SRI: space-separated
// "<algorithm>-<base64>[?options]").
func sha512Of(integrity string) ([]byte, error) {
	for _, f := range strings.Fields(integrity) {
		b64, ok := strings.CutPrefix(f, "sha512-")
		if !ok {
			continue
		}
		b64, _, _ = strings.Cut(b64, "?")
		d, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && len(d) == sha512.Size {
			return d, nil
		}
	}
	return nil, fmt.Errorf("integrity %s has no sha512 digest to find the tarball by", visible.Bounded(integrity, 120))
}

// untarFiles reads a gzip'd npm tarball: each regular file's SHA-256 by
// its path less the first component (npm unpacks "package/x" as "x"),
// the last of a duplicated path winning as in an unpack. Links (npm
// unpacks none), directories, and paths that would leave the package are
// left out, as is the package's node_modules; entries and content are
// bounded as an installed tree is.
func untarFiles(ctx context.Context, r io.Reader) (map[string]string, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	files := map[string]string{}
	var entries int
	var total int64
	buf := make([]byte, 64<<10)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			return nil, err
		}
		if entries++; entries > maxTreeEntries {
			return nil, fmt.Errorf("more than %d entries", maxTreeEntries)
		}
		//lint:ignore SA1019 npm's old tarballs use the deprecated type.
		if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA {
			continue
		}
		_, rel, ok := strings.Cut(hdr.Name, "/")
		rel = path.Clean(rel)
		if !ok || !filepath.IsLocal(rel) || rel == "node_modules" || strings.HasPrefix(rel, "node_modules/") {
			continue
		}
		if total += hdr.Size; total > maxTreeBytes {
			return nil, fmt.Errorf("more than %d bytes unpacked", maxTreeBytes)
		}
		h := sha256.New()
		if _, err := io.CopyBuffer(h, ctxReader{ctx, tr}, buf); err != nil {
			return nil, err
		}
		files[rel] = hex.EncodeToString(h.Sum(nil))
	}
}
