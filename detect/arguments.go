package detect

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/visible"
)

// Argument rules: what a model was talked into sending to a tool. They read
// the arguments of one tools/call against what the approved definition
// says the tool does (its traits): a string that is harmless to a
// note-taking tool is a traversal to one that opens files, and an address
// is a request forgery to one that fetches URLs.

// ToolTraits is what the argument rules read of an approved definition,
// once per definition rather than per call.
type ToolTraits struct {
	// Commands: its words say it runs commands; Hosts: it reaches hosts
	// (URLs, fetches, connects). A string argument to either may end up
	// in a shell or a request.
	Commands, Hosts bool
	// OpenWorld: it may reach the open world (openWorldHint, true by
	// MCP's default): where a secret a session received must not go.
	OpenWorld bool
	// PathParams and HostParams are the top-level parameters that take a
	// file path, and a URL or host, by their names or formats.
	PathParams, HostParams map[string]bool
}

var (
	// commandsRE marks a tool whose name or description says it runs
	// commands; hostsRE one that reaches hosts.
	commandsRE = regexp.MustCompile(`(?i)(\b|_)(shell|command|cmd|exec|execute|bash|sh|terminal|script|subprocess|ssh)(\b|_)`)
	hostsRE    = regexp.MustCompile(`(?i)(\b|_)(ping|traceroute|curl|wget|nslookup|dig|host|hostname|url|fetch|http|dns|network|connect|download|navigate|browse|request|webhook|scrape|crawl)(\b|_)`)
	// pathParamRE and hostParamRE are parameter names that take a path,
	// and a URL or host.
	pathParamRE = regexp.MustCompile(`(?i)^(path|paths|file|files|filename|file_?path|file_?name|filepath|dir|directory|dirname|folder|source|destination|src|dest|target|location|root|cwd|working_?dir(ectory)?|input_?path|output_?path|absolute_?path|relative_?path|uri)$|(path|file|dir|folder)$`)
	hostParamRE = regexp.MustCompile(`(?i)^(url|urls|uri|href|link|endpoint|host|hostname|address|addr|domain|server|target|website|site|page_?url|base_?url|webhook(_?url)?|callback(_?url)?|ip|destination)$|(url|uri|host|endpoint)$`)
)

// TraitsOf reads the traits of an approved definition.
func TraitsOf(def json.RawMessage) ToolTraits {
	var d struct {
		Name        string `json:"name"`
		Title       string `json:"title"`
		Description string `json:"description"`
		InputSchema struct {
			Properties map[string]struct {
				Type   any    `json:"type"`
				Format string `json:"format"`
			} `json:"properties"`
		} `json:"inputSchema"`
		Annotations struct {
			OpenWorldHint *bool `json:"openWorldHint"`
		} `json:"annotations"`
	}
	_ = json.Unmarshal(def, &d)
	words := d.Name + " " + d.Title + " " + d.Description
	tr := ToolTraits{
		Commands:   commandsRE.MatchString(words),
		Hosts:      hostsRE.MatchString(words),
		OpenWorld:  d.Annotations.OpenWorldHint == nil || *d.Annotations.OpenWorldHint,
		PathParams: map[string]bool{},
		HostParams: map[string]bool{},
	}
	for name, p := range d.InputSchema.Properties {
		switch {
		case p.Format == "uri" || p.Format == "url" || p.Format == "hostname" || p.Format == "ipv4" || p.Format == "ipv6":
			tr.HostParams[name] = true
		case hostParamRE.MatchString(name):
			tr.HostParams[name] = true
		case pathParamRE.MatchString(name):
			tr.PathParams[name] = true
		}
	}
	return tr
}

// injectionRE is a shell metacharacter chain or command substitution:
// ; && || | followed by a command word, $( ), backticks, ${ }, a
// redirection to a path, a newline followed by a command.
var injectionRE = regexp.MustCompile("\\$\\([^)]*\\)|`[^`]+`|\\$\\{[^}]+\\}|(;|&&|\\|\\||\\|)\\s*[A-Za-z./~_-]|>\\s*[/~]|\\n\\s*(sudo|rm|curl|wget|bash|sh|nc|python|perl|chmod|cat)\\b")

// ArgumentFindings returns the findings of one call's arguments to a tool
// with traits tr. carried, when not nil, says how many items of the
// session's taint (secrets and sensitive text earlier results carried)
// the strings hold.
func ArgumentFindings(tr ToolTraits, args map[string]any, carried func(strs []string) int) []rugwatch.Finding {
	var out []rugwatch.Finding
	add := func(rule, p string, sev rugwatch.Severity, msg string) {
		out = append(out, rugwatch.Finding{Rule: rule, Severity: sev, Path: p, Message: msg})
	}
	var all []string
	for k, v := range args {
		isPath, isHost := tr.PathParams[k], tr.HostParams[k]
		WalkStrings(v, "/arguments/"+PointerToken(k), 0, func(text, p string) {
			all = append(all, text)
			if tr.Commands || tr.Hosts {
				if loc := injectionRE.FindStringIndex(text); loc != nil {
					add(RuleArgumentInjection, p, rugwatch.SeverityCritical,
						fmt.Sprintf("argument to a tool that runs commands or reaches hosts carries %s", visible.Quote(text[loc[0]:loc[1]])))
				}
			}
			if isPath {
				pathFindings(text, p, add)
			}
			if isHost || tr.Hosts && looksLikeAddress(text) {
				if sev, why := destination(text); why != "" {
					add(RuleInternalDestination, p, sev, fmt.Sprintf("argument %s to a tool that reaches hosts: %s", visible.Quote(text), why))
				}
			}
		})
	}
	if tr.OpenWorld && carried != nil {
		if n := carried(all); n > 0 {
			add(RuleExfilChain, "/arguments", rugwatch.SeverityCritical,
				fmt.Sprintf("the arguments carry %d secret or sensitive item(s) this session received in a flagged result, to an open-world tool", n))
		}
	}
	return SortFindings(out)
}

// sensitiveReadREs are files no tool of an honest task reads for the
// model: keys, credentials, shell histories, another process's
// environment. A path argument naming one is critical whatever the
// directory it climbs from.
var sensitiveReadREs = append(compileAll(
	`(?i)/proc/(self|\d+|thread-self)/(environ|mem|maps|cmdline)\b`,
	`(?i)(^|/)\.(git-credentials|pgpass|my\.cnf|vault-token|boto|s3cfg)$`,
	`(?i)(^|/)(\.config/gh/hosts\.yml|\.config/gcloud/\S*|\.azure/\S*)$`,
), sensitiveREs...)

// pathFindings are the findings of one path argument.
func pathFindings(text, p string, add func(rule, p string, sev rugwatch.Severity, msg string)) {
	if text == "" || len(text) > 4096 {
		return
	}
	// Read as spelled and as a resolver would ("/proc//self/environ",
	// "/proc/./self/environ", percent-encoded, backslashes).
	clean := text
	if u, err := url.PathUnescape(clean); err == nil {
		clean = u
	}
	clean = path.Clean(strings.ReplaceAll(clean, `\`, "/"))
	for _, re := range sensitiveReadREs {
		subject := text
		loc := re.FindStringIndex(subject)
		if loc == nil {
			subject = clean
			loc = re.FindStringIndex(subject)
		}
		if loc != nil {
			add(RuleSensitivePath, p, rugwatch.SeverityCritical,
				fmt.Sprintf("a path argument names a secret or credential file: %s in %s", visible.Quote(subject[loc[0]:loc[1]]), visible.Quote(text)))
			break
		}
	}
	if climbs(text) {
		add(RulePathTraversal, p, SeverityOf(RulePathTraversal),
			fmt.Sprintf("a path argument climbs out of the directory it is read from: %s", visible.Quote(text)))
	}
}

// climbs reports whether path p (either separator, percent-encoded or
// not) has a ".." segment that leaves where it starts: "a/../b" stays,
// "../b" and "/srv/data/../../etc" do not.
func climbs(p string) bool {
	if strings.Contains(p, "%") {
		if u, err := url.PathUnescape(p); err == nil {
			p = u
		}
	}
	p = strings.ReplaceAll(p, `\`, "/")
	if !strings.Contains(p, "..") {
		return false
	}
	depth := 0
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	// An absolute path is checked against where it says it is: a ".."
	// that cleaning takes past a prefix the tool may hold to
	// ("/srv/data/../../etc") lands elsewhere.
	if strings.HasPrefix(p, "/") {
		clean := path.Clean(p)
		first := p
		if i := strings.Index(p, "/.."); i >= 0 {
			first = p[:i]
		}
		return !strings.HasPrefix(clean, path.Clean(first))
	}
	return false
}

// looksLikeAddress reports whether a string argument could be where a
// request goes: a URL or a bare host (no spaces, a dot or colon in it).
func looksLikeAddress(s string) bool {
	if len(s) > 2048 || strings.ContainsAny(s, " \t\n") {
		return false
	}
	return strings.Contains(s, "://") || strings.ContainsAny(s, ".:")
}

// metadataHosts are the cloud instance metadata services: what a request
// forgery is after (instance credentials).
var metadataHosts = map[string]string{
	"169.254.169.254":            "the cloud instance metadata service (AWS, Azure, GCP, OpenStack)",
	"fd00:ec2::254":              "the AWS instance metadata service (IPv6)",
	"169.254.170.2":              "the AWS ECS task metadata service",
	"100.100.100.200":            "the Alibaba Cloud metadata service",
	"metadata.google.internal":   "the GCP metadata service",
	"fd20:ce::254":               "the GCP metadata service (IPv6)",
	"metadata":                   "the GCP metadata service",
	"metadata.azure.com":         "the Azure metadata service",
	"instance-data":              "the AWS metadata service",
	"instance-data.ec2.internal": "the AWS metadata service",
}

// nat64 is the well-known NAT64 prefix: an IPv4 address inside it.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// destination is the severity and why of a URL or host argument that
// points inside: a metadata service (critical), a private, link-local or
// loopback address (warning: a browser tool opening localhost is a
// developer's everyday), or "" for anywhere else. Hosts written as one
// decimal or hex number ("2852039166" is 169.254.169.254) are read as
// addresses, as resolvers and curl read them.
func destination(s string) (rugwatch.Severity, string) {
	host := hostOf(s)
	if host == "" {
		return "", ""
	}
	if why, ok := metadataHosts[host]; ok {
		return rugwatch.SeverityCritical, why
	}
	ip, ok := parseHostIP(host)
	if !ok {
		if host == "localhost" || strings.HasSuffix(host, ".localhost") {
			return rugwatch.SeverityWarning, "a loopback host"
		}
		return "", ""
	}
	ip = ip.Unmap()
	if nat64.Contains(ip) {
		// 64:ff9b::a9fe:a9fe reaches 169.254.169.254 through NAT64.
		b := ip.As16()
		ip = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	if why, ok := metadataHosts[ip.String()]; ok {
		return rugwatch.SeverityCritical, why
	}
	switch {
	case ip.IsLoopback() || ip.IsUnspecified():
		return rugwatch.SeverityWarning, "a loopback address"
	case ip.IsLinkLocalUnicast():
		return rugwatch.SeverityCritical, "a link-local address (where metadata services live)"
	case ip.IsPrivate():
		return rugwatch.SeverityWarning, "a private network address"
	}
	return "", ""
}

// hostOf is the lower-case host of a URL or of host[:port], "" when s is
// neither. A URL net/url refuses is read by hand the way lenient clients
// read it (a backslash is a slash, the host follows the last @), so
// "http://example.com\\@169.254.169.254/" is not a way past the rules.
func hostOf(s string) string {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "//") {
		s = "http:" + s // scheme-relative
	}
	if i := strings.Index(s, "://"); i >= 0 {
		if u, err := url.Parse(s); err == nil && !strings.Contains(s, `\`) {
			return strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
		}
		// Clients disagree on a backslash: WHATWG reads it as a slash,
		// urllib3 as part of the user info. The host read last is the
		// one after the last @ before a real slash, the stricter reading
		// for a destination rule.
		s = s[i+3:]
		if j := strings.IndexAny(s, "/?#"); j >= 0 {
			s = s[:j]
		}
		if j := strings.LastIndexByte(s, '@'); j >= 0 {
			s = s[j+1:]
		}
		s = strings.ReplaceAll(s, `\`, "/")
	}
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		s = s[:i]
	}
	if strings.HasPrefix(s, "[") {
		if i := strings.IndexByte(s, ']'); i >= 0 {
			return strings.ToLower(s[1:i])
		}
	}
	if strings.Count(s, ":") == 1 {
		s = s[:strings.IndexByte(s, ':')]
	}
	return strings.ToLower(strings.TrimSuffix(s, "."))
}

// parseHostIP reads host as an IP address, also in the forms inet_aton
// and URL parsers accept: one to four dot-separated parts, each decimal,
// 0x hex or 0-prefixed octal, the last filling the bytes left
// ("0251.0376.0251.0376", "169.254.43518", "2852039166" are all
// 169.254.169.254).
func parseHostIP(host string) (netip.Addr, bool) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip, true
	}
	parts := strings.Split(host, ".")
	if len(parts) > 4 || host == "" {
		return netip.Addr{}, false
	}
	var v uint64
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 0, 32)
		if err != nil || p == "" {
			return netip.Addr{}, false
		}
		if i < len(parts)-1 {
			if n > 255 {
				return netip.Addr{}, false
			}
			v = v<<8 | n
			continue
		}
		rest := uint(4 - i) // bytes the last part fills
		if n >= 1<<(8*rest) {
			return netip.Addr{}, false
		}
		v = v<<(8*rest) | n
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

// WalkStrings calls fn with every string in v and its JSON pointer under
// path, at most 64 levels deep.
func WalkStrings(v any, p string, depth int, fn func(text, path string)) {
	if depth > 64 {
		return
	}
	switch x := v.(type) {
	case string:
		fn(x, p)
	case []any:
		for i, e := range x {
			WalkStrings(e, fmt.Sprintf("%s/%d", p, i), depth+1, fn)
		}
	case map[string]any:
		for k, e := range x {
			WalkStrings(e, p+"/"+PointerToken(k), depth+1, fn)
		}
	}
}
