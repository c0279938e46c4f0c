package detect

import (
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/visible"
)

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
func SplitPackageSpec(spec string) (name, version string) {
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
	spec := PackageSpec(command, args)
	if spec == "" {
		return nil
	}
	var out []rugwatch.Finding
	name, version := SplitPackageSpec(spec)
	if version == "" || !exactVersionRE.MatchString(version) {
		what := "no version"
		if version != "" {
			what = fmt.Sprintf("version %q, which is not exact", version)
		}
		out = append(out, rugwatch.Finding{Rule: RuleUnpinnedPackage, Severity: SeverityOf(RuleUnpinnedPackage), Path: "/launch/package",
			Message: fmt.Sprintf("%s runs %s with %s: whatever the registry serves today runs; pin it as %s@<version>",
				filepath.Base(command), visible.Quote(name), what, name)})
	}
	if near := lookalike(name); near != "" {
		out = append(out, rugwatch.Finding{Rule: RulePackageLookalike, Severity: SeverityOf(RulePackageLookalike), Path: "/launch/package",
			Message: fmt.Sprintf("package %s is one edit away from the well-known %s", visible.Quote(name), visible.Quote(near))})
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

// packageSpec finds the package a runner was asked to run: the first
// argument that is not a flag, or the value of --package/-p/--from/--spec.
func PackageSpec(command string, args []string) string {
	runner := filepath.Base(command)
	switch runner {
	case "npx", "uvx", "bunx", "pipx", "pnpx":
	default:
		return ""
	}
	if runner == "pipx" && len(args) > 0 && args[0] == "run" {
		args = args[1:]
	}
	valueFlags := map[string]bool{"--package": true, "-p": true, "--from": true, "--spec": true, "--python": true, "--with": true, "--registry": true, "--cache": true}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if k, v, ok := strings.Cut(a, "="); ok && (k == "--package" || k == "--from" || k == "--spec") {
			return v
		}
		if valueFlags[a] {
			if (a == "--package" || a == "-p" || a == "--from" || a == "--spec") && i+1 < len(args) {
				return args[i+1]
			}
			i++
			continue
		}
		if strings.HasPrefix(a, "-") {
			continue
		}
		return a
	}
	return ""
}
