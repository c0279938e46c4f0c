package monitor

import (
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/rugwatch/rugwatch"
)

// Package findings for npx/uvx/bunx/pipx launches: a spec with no exact
// version runs whatever the registry serves today, and a name one edit
// from a well-known MCP server package is how typosquats get installed.

// wellKnownPackages is a small bundled list: the reference servers
// (@modelcontextprotocol/*) and the most used community servers on npm
// and PyPI. Not a registry listing; a name it lacks is not suspicious.
var wellKnownPackages = []string{
	"@modelcontextprotocol/server-everything", "@modelcontextprotocol/server-filesystem",
	"@modelcontextprotocol/server-memory", "@modelcontextprotocol/server-github",
	"@modelcontextprotocol/server-gitlab", "@modelcontextprotocol/server-postgres",
	"@modelcontextprotocol/server-sqlite", "@modelcontextprotocol/server-slack",
	"@modelcontextprotocol/server-puppeteer", "@modelcontextprotocol/server-brave-search",
	"@modelcontextprotocol/server-google-maps", "@modelcontextprotocol/server-gdrive",
	"@modelcontextprotocol/server-sequential-thinking", "@modelcontextprotocol/server-redis",
	"@modelcontextprotocol/server-aws-kb-retrieval", "@modelcontextprotocol/server-everart",
	"@modelcontextprotocol/inspector",
	"mcp-server-fetch", "mcp-server-git", "mcp-server-time", "mcp-server-sqlite",
	"@playwright/mcp", "@upstash/context7-mcp", "@notionhq/notion-mcp-server",
	"@supabase/mcp-server-supabase", "@stripe/mcp", "firecrawl-mcp", "@browserbasehq/mcp",
	"@sentry/mcp-server", "@cloudflare/mcp-server-cloudflare", "mcp-remote",
	"@azure/mcp", "@heroku/mcp-server", "@hubspot/mcp-server", "exa-mcp-server",
	"tavily-mcp", "@wonderwhy-er/desktop-commander", "@executeautomation/playwright-mcp-server",
}

// exactVersionRE is an exact semver (npm) or PEP 440 release pin.
var exactVersionRE = regexp.MustCompile(`^v?\d+\.\d+\.\d+([-+.][0-9A-Za-z.+-]*)?$|^\d+(\.\d+)*$`)

// splitPackageSpec splits "name@version" (npm, scoped names keep their
// leading @) and "name==version" (Python) into name and exact version
// ("" when the spec pins none).
func splitPackageSpec(spec string) (name, version string) {
	if n, v, ok := strings.Cut(spec, "=="); ok {
		return strings.TrimSpace(n), strings.TrimSpace(v)
	}
	at := strings.LastIndex(spec, "@")
	if at <= 0 {
		return spec, ""
	}
	return spec[:at], spec[at+1:]
}

// PackageFindings returns the unpinned-package and package-lookalike
// findings of a launch (command and args as configured); none for a
// command that is not a package runner.
func PackageFindings(command string, args []string) []rugwatch.Finding {
	spec := packageSpec(command, args)
	if spec == "" {
		return nil
	}
	var out []rugwatch.Finding
	name, version := splitPackageSpec(spec)
	if version == "" || !exactVersionRE.MatchString(version) {
		what := "no version"
		if version != "" {
			what = fmt.Sprintf("version %q, which is not exact", version)
		}
		out = append(out, rugwatch.Finding{Rule: RuleUnpinnedPackage, Severity: severityOf(RuleUnpinnedPackage), Path: "/launch/package",
			Message: fmt.Sprintf("%s runs %s with %s: whatever the registry serves today runs; pin it as %s@<version>",
				filepath.Base(command), quote(name), what, name)})
	}
	if near := lookalike(name); near != "" {
		out = append(out, rugwatch.Finding{Rule: RulePackageLookalike, Severity: severityOf(RulePackageLookalike), Path: "/launch/package",
			Message: fmt.Sprintf("package %s is one edit away from the well-known %s", quote(name), quote(near))})
	}
	return out
}

// lookalike returns the well-known package name is one edit (insertion,
// deletion, substitution or swap of neighbours) away from, or "".
func lookalike(name string) string {
	lower := strings.ToLower(name)
	var hits []string
	for _, k := range wellKnownPackages {
		if lower == k {
			return ""
		}
		if oneEdit(lower, k) {
			hits = append(hits, k)
		}
	}
	sort.Strings(hits)
	if len(hits) == 0 {
		return ""
	}
	return hits[0]
}

// oneEdit reports whether a and b are one Damerau edit apart.
func oneEdit(a, b string) bool {
	ra, rb := []rune(a), []rune(b)
	if len(ra) < len(rb) {
		ra, rb = rb, ra
	}
	switch len(ra) - len(rb) {
	case 0:
		diff := []int{}
		for i := range ra {
			if ra[i] != rb[i] {
				diff = append(diff, i)
				if len(diff) > 2 {
					return false
				}
			}
		}
		switch len(diff) {
		case 1:
			return true
		case 2:
			i, j := diff[0], diff[1]
			return j == i+1 && ra[i] == rb[j] && ra[j] == rb[i]
		}
		return false
	case 1:
		for i := range rb {
			if ra[i] != rb[i] {
				return string(ra[i+1:]) == string(rb[i:])
			}
		}
		return true
	}
	return false
}

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
	if packageSpec(t.Command, t.Args) == "" {
		return nil
	}
	return &PackageInfo{Findings: PackageFindings(t.Command, t.Args)}
}

// maxLockfileBytes bounds a lockfile read from an npx cache: the server
// that ran can write its own cache, so the file is as hostile as the rest.
const maxLockfileBytes = 16 << 20

// resolvePackage completes the package part of the listing's launch
// identity with what npx installed for the running server, and refuses the
// poll when the target pins an integrity the artifact does not have.
//
// The cache read is the one the server's npx actually used: a sandboxed
// server's npm cache lives in its persistent HOME on the host, which the
// daemon reads directly. The lockfile sits in a cache the running package
// can write, so the integrity says what npm verified when it installed,
// unless the package itself rewrote it since.
func (s *Session) resolvePackage(l *Listing) error {
	launch := l.Launch
	if launch == nil || launch.PackageInfo == nil || filepath.Base(s.target.Command) != "npx" {
		if s.target.Integrity != "" {
			return fmt.Errorf("integrity %s is set, but only an npx launch reports one", s.target.Integrity)
		}
		return nil
	}
	name, _ := splitPackageSpec(launch.Package)
	version, integrity, err := npxResolved(npmCacheDirs(s.target, s.proc != nil && s.proc.sandboxed), launch.Package, name)
	if err != nil {
		if s.target.Integrity != "" {
			return fmt.Errorf("confirming integrity %s of %s: %w; refusing a server whose artifact cannot be confirmed", s.target.Integrity, launch.Package, err)
		}
		l.Warnings = append(l.Warnings, "package integrity: "+err.Error())
		return nil
	}
	launch.PackageVersion, launch.Integrity = version, integrity
	if want := s.target.Integrity; want != "" && !slices.Contains(strings.Fields(integrity), want) {
		return fmt.Errorf("npx ran %s@%s with integrity %s, not the configured %s: a different artifact would run; refusing it",
			name, boundText(version, 64), boundText(integrity, 120), want)
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

// npxResolved reads the version and integrity npx installed for spec
// (package name) from the first cache dir that holds spec's install.
func npxResolved(cacheDirs []string, spec, name string) (version, integrity string, err error) {
	hash := npxDirHash(spec)
	var tried []string
	for _, c := range cacheDirs {
		dir := filepath.Join(c, "_npx", hash)
		v, i, err := lockedPackage(dir, name)
		if errors.Is(err, fs.ErrNotExist) {
			tried = append(tried, dir)
			continue
		}
		if err != nil {
			return "", "", fmt.Errorf("reading the npx install of %s in %s: %w", spec, dir, err)
		}
		return v, i, nil
	}
	return "", "", fmt.Errorf("no npx install of %s found (looked in %s)", spec, strings.Join(tried, ", "))
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
