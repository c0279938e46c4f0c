package clients

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode"

	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/visible"
)

// source is one MCP client config file rugwatch knows how to read.
type source struct {
	Client string `json:"client"`
	Path   string `json:"path"`
	Found  bool   `json:"found"`
	Error  string `json:"error,omitempty"`
	// Servers is how many entries the file held.
	Servers int `json:"servers"`

	key     string // "mcpServers" or "servers"; "claude.json" for ~/.claude.json
	project string // workspace folder, for ${workspaceFolder}
}

// Origin says where one server entry was found.
type Origin struct {
	Client string `json:"client"`
	Path   string `json:"path"`
	Entry  string `json:"entry"` // e.g. mcpServers["github"]
}

// Server is one server found in the clients' config files, as `discover
// --json` prints it. Env and header values are templates: secrets are
// ${env:…} references, never values.
type Server struct {
	Name      string            `json:"name"`
	Origins   []Origin          `json:"origins"`
	Transport string            `json:"transport"`
	Command   string            `json:"command,omitempty"`
	Args      []string          `json:"args,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	Cwd       string            `json:"cwd,omitempty"`
	URL       string            `json:"url,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"`
	Notes     []string          `json:"notes,omitempty"`

	rawName string
	client  string            // the first origin's client, a key of Names
	ident   string            // the entry as written, to merge copies across clients
	rawEnv  map[string]string // as written; may hold secrets, never printed
	rawHdr  map[string]string
	// envFile is the absolute path of the entry's envFile; envFileVars
	// the names it sets (never its values), passed as ${env:NAME}.
	envFile     string
	envFileVars []string
	// signIn says why `rugwatch proxy` cannot stand in for this remote:
	// the client signs in to it itself.
	signIn     string
	clientVars bool // command or args need the client's ${…} expansion
	disabled   bool
	typed      bool // the entry names its "type"
	// carry maps each ${env:NAME} of Env and Headers that stands for a
	// value of the client's file (a literal, a VS Code ${input:…}) to
	// that value: what the client hands `rugwatch proxy` in its env.
	carry map[string]string
}

// Export is one environment variable `serve` and `check` need.
type Export struct {
	Name   string `json:"name"`
	Server string `json:"server"`
	// Source is where the value is: "client-file" (a literal in the
	// client's config, handed to `rugwatch proxy` by the client), "input"
	// (VS Code asks for it), "env-file" (the entry's envFile), or
	// "environment" (the client reads it from its own environment).
	Source string `json:"source"`
	For    string `json:"for"`
}

// Skipped is an entry that could not become a rugwatch server.
type Skipped struct {
	Origin
	Reason string `json:"reason"`
}

// Report is `discover --json`.
type Report struct {
	Sources []source  `json:"sources"`
	Servers []Server  `json:"servers"`
	Exports []Export  `json:"exports"`
	Skipped []Skipped `json:"skipped"`
}

// maxClientConfig bounds what discover reads from one file; ~/.claude.json
// grows with history but stays far below this.
const maxClientConfig = 32 << 20

// clientSources lists the config files of the MCP clients, user files first.
// %APPDATA% (Windows) is not searched.
func clientSources(home, project string) []source {
	h := func(p ...string) string { return filepath.Join(append([]string{home}, p...)...) }
	p := func(q ...string) string { return filepath.Join(append([]string{project}, q...)...) }
	src := []source{
		{Client: "Claude Desktop", Path: h("Library", "Application Support", "Claude", "claude_desktop_config.json"), key: "mcpServers"},
		{Client: "Claude Desktop", Path: h(".config", "Claude", "claude_desktop_config.json"), key: "mcpServers"},
		{Client: "Claude Code", Path: h(".claude.json"), key: "claude.json"},
		{Client: "Claude Code", Path: p(".mcp.json"), key: "mcpServers", project: project},
		{Client: "Cursor", Path: h(".cursor", "mcp.json"), key: "mcpServers"},
		{Client: "Cursor", Path: p(".cursor", "mcp.json"), key: "mcpServers", project: project},
		{Client: "VS Code", Path: h(".config", "Code", "User", "mcp.json"), key: "servers"},
		{Client: "VS Code", Path: h("Library", "Application Support", "Code", "User", "mcp.json"), key: "servers"},
		{Client: "VS Code", Path: p(".vscode", "mcp.json"), key: "servers", project: project},
		{Client: "Windsurf", Path: h(".codeium", "windsurf", "mcp_config.json"), key: "mcpServers"},
	}
	// --project at the home directory would list ~/.cursor/mcp.json twice.
	seen := map[string]bool{}
	out := src[:0]
	for _, s := range src {
		if c := filepath.Clean(s.Path); !seen[c] {
			seen[c] = true
			out = append(out, s)
		}
	}
	return out
}

// scanned is what the client files hold, before merging and naming.
type scanned struct {
	sources []source
	found   []Server
	skipped []Skipped
	// rugwatch are the entries that run rugwatch already.
	rugwatch []rugwatchEntry
}

// rugwatchEntry is a client entry that runs `rugwatch … proxy`.
type rugwatchEntry struct {
	Origin
	gateway bool              // proxy --all
	env     map[string]string // what the client hands it
	envFile string
}

// known is what the rugwatch entries hand over: NAME -> value.
func (sc *scanned) known() map[string]string {
	out := map[string]string{}
	for _, r := range sc.rugwatch {
		for k, v := range r.env {
			if _, ok := out[k]; !ok {
				out[k] = v
			}
		}
	}
	return out
}

// scan reads every client config under home and project.
func scan(home, project string) scanned {
	var sc scanned
	for _, src := range clientSources(home, project) {
		doc, err := readClientConfig(src.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			sc.sources = append(sc.sources, src)
			continue
		case err != nil:
			src.Found = true
			src.Error = err.Error()
			sc.sources = append(sc.sources, src)
			continue
		}
		src.Found = true
		type group struct {
			entries map[string]any
			prefix  string
			project string
		}
		var groups []group
		if src.key == "claude.json" {
			groups = append(groups, group{asObject(doc["mcpServers"]), "mcpServers", ""})
			projects := asObject(doc["projects"])
			for _, dir := range slices.Sorted(maps.Keys(projects)) {
				groups = append(groups, group{asObject(asObject(projects[dir])["mcpServers"]),
					fmt.Sprintf("projects[%q].mcpServers", dir), dir})
			}
		} else {
			groups = append(groups, group{asObject(doc[src.key]), src.key, src.project})
		}
		for _, g := range groups {
			for _, name := range slices.Sorted(maps.Keys(g.entries)) {
				src.Servers++
				o := Origin{Client: src.Client, Path: src.Path, Entry: fmt.Sprintf("%s[%q]", g.prefix, name)}
				s, reason := convertEntry(name, g.entries[name], g.project, home, filepath.Dir(src.Path))
				if reason != "" {
					sc.skipped = append(sc.skipped, Skipped{o, reason})
					continue
				}
				if s.runsRugwatch() {
					sc.rugwatch = append(sc.rugwatch, rugwatchEntry{o, slices.Contains(s.Args, "--all"), s.rawEnv, s.envFile})
					sc.skipped = append(sc.skipped, Skipped{o, "already goes through rugwatch"})
					continue
				}
				if g.project != "" && src.key == "claude.json" {
					s.Notes = append(s.Notes, "Claude Code project "+g.project)
				}
				s.Origins = []Origin{o}
				s.client = slugOf(src.Client)
				sc.found = append(sc.found, s)
			}
		}
		sc.sources = append(sc.sources, src)
	}
	return sc
}

// slugOf is the CLI's name of a client (a key of Names).
func slugOf(client string) string {
	for k, v := range Names {
		if v == client {
			return k
		}
	}
	return ""
}

// merge makes the same server set up in several places one server.
func merge(found []Server) []*Server {
	byIdent := map[string]*Server{}
	var out []*Server
	for i := range found {
		s := &found[i]
		if m, ok := byIdent[s.ident]; ok {
			m.Origins = append(m.Origins, s.Origins...)
			continue
		}
		byIdent[s.ident] = s
		out = append(out, s)
	}
	return out
}

// Discover reads every client config under home and project.
func Discover(home, project string) Report {
	sc := scan(home, project)
	rep := Report{Sources: sc.sources, Servers: []Server{}, Exports: []Export{}, Skipped: append([]Skipped{}, sc.skipped...)}
	n := newNamer()
	for k, v := range sc.known() {
		n.claim(k, v)
	}
	servers := merge(sc.found)
	n.reserveRefs(servers)
	for _, s := range servers {
		s.Name = n.server(normalizeServerName(s.rawName), s.client)
		n.name(s)
		if s.signIn != "" {
			s.Notes = append(s.Notes, s.signIn+"; where it needs one, give it a token under headers")
		}
		rep.Servers = append(rep.Servers, *s)
		rep.Exports = addExports(rep.Exports, s.exports(home)...)
	}
	return rep
}

func readClientConfig(path string) (map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxClientConfig+1))
	if err != nil {
		return nil, fmt.Errorf("reading: %w", err)
	}
	if len(data) > maxClientConfig {
		return nil, fmt.Errorf("larger than %d MiB", maxClientConfig>>20)
	}
	d := json.NewDecoder(bytes.NewReader(stripJSONC(data)))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		// The decoder's message never quotes the file's values.
		return nil, fmt.Errorf("not valid JSON (with comments): %v", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("not a JSON object")
	}
	return m, nil
}

// stripJSONC turns JSONC (VS Code's JSON with comments and trailing commas)
// into JSON: // and /* */ comments outside strings become spaces, a comma
// before } or ] is dropped, a UTF-8 BOM is removed. Newlines are kept, so
// decoder offsets still point at the right line.
func stripJSONC(in []byte) []byte {
	in = bytes.TrimPrefix(in, []byte("\xef\xbb\xbf"))
	out := make([]byte, 0, len(in))
	lastComma := -1 // index in out of a comma that may be trailing
	for i := 0; i < len(in); i++ {
		c := in[i]
		switch {
		case c == '"':
			lastComma = -1
			out = append(out, c)
			for i++; i < len(in); i++ {
				out = append(out, in[i])
				if in[i] == '\\' && i+1 < len(in) {
					i++
					out = append(out, in[i])
				} else if in[i] == '"' {
					break
				}
			}
		case c == '/' && i+1 < len(in) && in[i+1] == '/':
			for i < len(in) && in[i] != '\n' {
				out = append(out, ' ')
				i++
			}
			if i < len(in) {
				out = append(out, '\n')
			}
		case c == '/' && i+1 < len(in) && in[i+1] == '*':
			out = append(out, ' ', ' ')
			i += 2
			for ; i < len(in) && !(in[i] == '*' && i+1 < len(in) && in[i+1] == '/'); i++ {
				if in[i] == '\n' {
					out = append(out, '\n')
				} else {
					out = append(out, ' ')
				}
			}
			if i < len(in) {
				out = append(out, ' ', ' ')
				i++
			}
		case c == ',':
			lastComma = len(out)
			out = append(out, c)
		case c == '}' || c == ']':
			if lastComma >= 0 {
				out[lastComma] = ' '
			}
			lastComma = -1
			out = append(out, c)
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			out = append(out, c)
		default:
			lastComma = -1
			out = append(out, c)
		}
	}
	return out
}

func asObject(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func asString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return fmt.Sprint(x), true
	}
	return "", false
}

func asStringMap(v any) (map[string]string, []string) {
	var bad []string
	out := map[string]string{}
	for k, val := range asObject(v) {
		s, ok := asString(val)
		if !ok {
			bad = append(bad, k)
			continue
		}
		out[k] = s
	}
	sort.Strings(bad)
	return out, bad
}

// convertEntry turns one client entry into a server, or says why not.
func convertEntry(name string, v any, project, home, dir string) (Server, string) {
	e := asObject(v)
	if e == nil {
		return Server{}, "not a JSON object"
	}
	s := Server{rawName: name}
	typ, _ := asString(e["type"])
	typ = strings.ToLower(typ)
	if t, ok := asString(e["transport"]); ok && typ == "" {
		typ = strings.ToLower(t)
	}
	command, _ := asString(e["command"])
	rawURL, _ := asString(e["url"])
	if rawURL == "" {
		rawURL, _ = asString(e["serverUrl"])
	}
	if d, ok := e["disabled"].(bool); ok && d {
		s.disabled = true
		s.Notes = append(s.Notes, "disabled in the client")
	}
	_, s.typed = e["type"]
	expand := func(x string) string {
		if project != "" {
			x = strings.ReplaceAll(x, "${workspaceFolder}", project)
		}
		return strings.ReplaceAll(x, "${userHome}", home)
	}
	switch {
	case command != "" && (typ == "" || typ == "stdio"):
		s.Transport = configs.TransportStdio
		s.Command = expand(command)
		for _, a := range asArray(e["args"]) {
			str, ok := asString(a)
			if !ok {
				return s, "args holds something other than strings"
			}
			s.Args = append(s.Args, expand(str))
		}
		if i := argSecret(s.Args); i >= 0 {
			// rugwatch keeps secrets as ${env:} references, never as
			// values in its config; an argument cannot be one.
			return s, fmt.Sprintf("args[%d] carries a credential; move it into env (the server's own variable) and add the server by hand with an ${env:} reference", i)
		}
		if strings.Contains(s.Command+strings.Join(s.Args, " "), "${") {
			s.clientVars = true
			s.Notes = append(s.Notes, "command or args hold a ${…} variable the client expands and rugwatch does not")
		}
		if cwd, ok := asString(e["cwd"]); ok && cwd != "" {
			cwd = expand(cwd)
			if !filepath.IsAbs(cwd) {
				cwd = filepath.Join(dir, cwd)
			}
			s.Cwd = cwd
		}
		var bad []string
		s.rawEnv, bad = asStringMap(e["env"])
		if len(bad) > 0 {
			s.Notes = append(s.Notes, "env values that are not strings were left out: "+strings.Join(bad, ", "))
		}
		for _, k := range slices.Sorted(maps.Keys(s.rawEnv)) {
			if !envNameRE.MatchString(k) {
				s.Notes = append(s.Notes, fmt.Sprintf("env %s left out: not a valid variable name", visible.Line(k)))
				delete(s.rawEnv, k)
			}
		}
		if f, ok := asString(e["envFile"]); ok && f != "" {
			s.envFile = expand(f)
			if !filepath.IsAbs(s.envFile) {
				s.envFile = filepath.Join(dir, s.envFile)
			}
			vars, err := envFileNames(s.envFile)
			if err != nil {
				s.Notes = append(s.Notes, fmt.Sprintf("envFile %s: %v; its variables are not passed", visible.Line(s.envFile), err))
			}
			for _, v := range vars {
				if _, ok := s.rawEnv[v]; !ok {
					s.envFileVars = append(s.envFileVars, v)
				}
			}
			if len(s.envFileVars) > 0 {
				s.Notes = append(s.Notes, fmt.Sprintf("envFile %s: its variables are passed as ${env:…} references", visible.Line(s.envFile)))
			}
		}
	case rawURL != "":
		switch typ {
		case "sse":
			s.Transport = configs.TransportSSE
		case "", "http", "streamable-http", "streamablehttp", "streamable_http":
			s.Transport = configs.TransportHTTP
		default:
			return s, fmt.Sprintf("transport %q is not one rugwatch speaks (http, sse, stdio)", visible.Line(typ))
		}
		u, err := url.Parse(expand(rawURL))
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "":
			return s, "url is not an http(s) URL with a host"
		case u.User != nil:
			return s, "url carries credentials (user:password@); add the server by hand with an Authorization header"
		}
		for k := range u.Query() {
			if secretName(k) {
				return s, fmt.Sprintf("url carries a credential in its query (%s=…); rugwatch keeps secrets in headers as ${env:} references, add the server by hand", visible.Line(k))
			}
		}
		if typ == "" && strings.HasSuffix(strings.TrimSuffix(u.Path, "/"), "/sse") {
			s.Transport = configs.TransportSSE
			s.Notes = append(s.Notes, "no type given; the /sse path suggests legacy HTTP+SSE")
		}
		s.URL = u.String()
		var bad []string
		s.rawHdr, bad = asStringMap(e["headers"])
		if len(bad) > 0 {
			s.Notes = append(s.Notes, "header values that are not strings were left out: "+strings.Join(bad, ", "))
		}
		for _, k := range slices.Sorted(maps.Keys(s.rawHdr)) {
			v := s.rawHdr[k]
			if !validHeaderName(k) || configs.ReservedHeader(configs.ServerHeaders, textproto.CanonicalMIMEHeaderKey(k)) || strings.ContainsAny(v, "\r\n") {
				s.Notes = append(s.Notes, fmt.Sprintf("header %s left out: rugwatch sets it itself or it is malformed", visible.Line(k)))
				delete(s.rawHdr, k)
			}
		}
		s.signIn = signInReason(e, s.rawHdr)
	case command != "":
		return s, fmt.Sprintf("type %q with a command", visible.Line(typ))
	default:
		return s, "neither command nor url"
	}
	id, _ := json.Marshal([]any{s.Transport, s.Command, s.Args, s.Cwd, s.rawEnv, s.envFile, s.URL, s.rawHdr})
	s.ident = string(id)
	return s, ""
}

func asArray(v any) []any {
	a, _ := v.([]any)
	return a
}

// normalizeServerName makes a client's server key a rugwatch name:
// lower case, runs of other characters become one "-".
func normalizeServerName(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-':
			b.WriteRune(r)
			dash = r == '-'
		case !dash:
			b.WriteByte('-')
			dash = true
		}
	}
	out := strings.TrimLeft(b.String(), "-._")
	out = strings.TrimRight(out, "-")
	if out == "" || !configs.ValidName(out) {
		out = "server" + strings.TrimLeft("-"+out, "-")
		if !configs.ValidName(out) {
			out = "server"
		}
	}
	return out
}

var secretNameParts = []string{"KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "AUTH", "CREDENTIAL", "COOKIE", "SESSION", "PRIVATE"}

// secretName reports an env var, header or query parameter name that
// holds a credential.
func secretName(name string) bool {
	u := strings.ToUpper(name)
	for _, p := range secretNameParts {
		if strings.Contains(u, p) {
			return true
		}
	}
	return false
}

var (
	secretValueRE = regexp.MustCompile(`^(sk-|sk_live_|rk_live_|ghp_|gho_|ghu_|ghs_|github_pat_|glpat-|xox[abposr]-|AKIA|ASIA|AIza|eyJ|npm_|hf_|pypi-|whsec_|sq0|shpat_)`)
	tokenishRE    = regexp.MustCompile(`^[A-Za-z0-9_\-+/=.]{24,}$`)
	bareRefRE     = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}`)
	authSchemeRE  = regexp.MustCompile(`^(?i)(bearer|basic|token|bot)\s+\S+$`)
	envNameRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// argSecret returns the index of the first argument that carries a
// credential, -1 for none: a URL with a password, a --token=VALUE (or
// --token VALUE) flag, or a value that looks like a key whatever it is
// called. Client references (${…}) are not values.
func argSecret(args []string) int {
	for i, a := range args {
		if strings.Contains(a, "${") {
			continue
		}
		if u, err := url.Parse(a); err == nil && u.User != nil {
			if _, ok := u.User.Password(); ok {
				return i
			}
		}
		name, value, isFlag := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && isFlag && value != "" && secretName(name) {
			return i
		}
		if i > 0 && strings.HasPrefix(args[i-1], "-") && !strings.Contains(args[i-1], "=") &&
			secretName(strings.TrimLeft(args[i-1], "-")) && !strings.HasPrefix(a, "-") && a != "" {
			return i
		}
		if secretLike(value) || secretLike(a) {
			return i
		}
	}
	return -1
}

// secretLike reports a value that looks like a credential whatever its
// name: a known token prefix, or a long random-looking string.
func secretLike(v string) bool {
	if secretValueRE.MatchString(v) {
		return true
	}
	if !tokenishRE.MatchString(v) || strings.HasPrefix(v, "/") || strings.HasPrefix(v, "http") {
		return false
	}
	var letter, digit bool
	for _, r := range v {
		letter = letter || unicode.IsLetter(r)
		digit = digit || unicode.IsDigit(r)
	}
	return letter && digit
}

// clientTemplate turns a value from a client config into a rugwatch
// Secret template. Client references to the environment (${env:X} in
// Cursor and VS Code, ${X} and ${X:-default} in Claude Code) become
// ${env:X}; ref reports that the value held such a reference, so it is
// kept as it is. Any other ${…} (VS Code's ${input:…}) cannot be resolved
// by rugwatch: ok is false and the value must become a reference of its own.
func clientTemplate(v string) (t string, ref, ok bool) {
	if !strings.Contains(v, "${") {
		return v, false, true
	}
	t = bareRefRE.ReplaceAllString(v, "$${env:$1}")
	if _, err := configs.NewSecret(t); err == nil {
		return t, true, true
	}
	return "", false, false
}

// signInReason says why a remote entry cannot go through `rugwatch
// proxy`: rugwatch connects with the headers of its config only, so a
// remote the client signs in to (OAuth) stays the client's.
func signInReason(e map[string]any, hdr map[string]string) string {
	for _, k := range slices.Sorted(maps.Keys(e)) {
		if l := strings.ToLower(k); strings.Contains(l, "oauth") || l == "auth" {
			return fmt.Sprintf("its entry configures sign-in (%s), which rugwatch cannot do for the client", visible.Line(k))
		}
	}
	for k, v := range hdr {
		if v != "" && (textproto.CanonicalMIMEHeaderKey(k) == "Authorization" || secretName(k)) {
			return ""
		}
	}
	return "a remote with no credential in its entry: the client signs in to it itself (OAuth), or it needs none; rugwatch cannot sign in for the client"
}

// maxEnvFile bounds what is read of an envFile.
const maxEnvFile = 1 << 20

// envFileNames reads the variable names a dotenv file sets, never keeping
// a value. PATH and HOME are left out: the sandbox sets them.
func envFileNames(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errors.New("not found")
		}
		return nil, errors.New("not readable")
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxEnvFile+1))
	if err != nil || len(data) > maxEnvFile {
		return nil, fmt.Errorf("not readable or larger than %d KiB", maxEnvFile>>10)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		l = strings.TrimSpace(strings.TrimPrefix(l, "export "))
		name, _, ok := strings.Cut(l, "=")
		name = strings.TrimSpace(name)
		if !ok || !envNameRE.MatchString(name) || name == "PATH" || name == "HOME" || slices.Contains(out, name) {
			continue
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out, nil
}

// runsRugwatch reports an entry that runs `rugwatch … proxy` already.
func (s *Server) runsRugwatch() bool {
	return s.Command != "" && filepath.Base(s.Command) == "rugwatch" && slices.Contains(s.Args, "proxy")
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}

// displayPath shows path with the home directory as ~.
func displayPath(path, home string) string {
	if rel, err := filepath.Rel(home, path); err == nil && !strings.HasPrefix(rel, "..") {
		return filepath.Join("~", rel)
	}
	return path
}

// yamlString quotes s as a YAML double-quoted scalar with every control,
// format or non-printing character escaped, so the output is valid YAML
// and shows what a client file holds.
func yamlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == unicode.ReplacementChar || visible.Hidden(r) || !unicode.IsPrint(r) && r != ' ':
			if r > 0xffff {
				fmt.Fprintf(&b, `\U%08x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// yamlComment renders untrusted text for a YAML comment: one line, visible.
func yamlComment(s string) string { return visible.Line(s) }

// grantedDirs are the existing directories a discovered stdio server was
// handed by absolute path (its args and cwd): under rugwatch's allow-list
// sandbox it sees none of them unless granted. Never "/" (the whole host
// is not a grant).
func grantedDirs(s Server) []string {
	var out []string
	for _, p := range append(append([]string(nil), s.Args...), s.Cwd) {
		if !filepath.IsAbs(p) {
			continue
		}
		p = filepath.Clean(p)
		if p == "/" || slices.Contains(out, p) {
			continue
		}
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			out = append(out, p)
		}
	}
	return out
}

// WriteYAML prints rep as a rugwatch config: what was read and skipped,
// and the exports the secret references need, as comments, then the
// `servers:` list.
func WriteYAML(w io.Writer, rep Report, home string) error {
	var b strings.Builder
	files := 0
	for _, s := range rep.Sources {
		if s.Found {
			files++
		}
	}
	fmt.Fprintf(&b, "# rugwatch discover: %d server(s) from %d MCP client config file(s). No server was started.\n", len(rep.Servers), files)
	for _, s := range rep.Sources {
		switch {
		case s.Error != "":
			fmt.Fprintf(&b, "#   %s %s: skipped, %s\n", s.Client, yamlComment(displayPath(s.Path, home)), yamlComment(s.Error))
		case s.Found:
			fmt.Fprintf(&b, "#   %s %s: %d entr%s\n", s.Client, yamlComment(displayPath(s.Path, home)), s.Servers, plural(s.Servers, "y", "ies"))
		}
	}
	for _, sk := range rep.Skipped {
		fmt.Fprintf(&b, "# skipped %s %s in %s: %s\n", sk.Client, yamlComment(sk.Entry), yamlComment(displayPath(sk.Path, home)), yamlComment(sk.Reason))
	}
	if len(rep.Exports) > 0 {
		b.WriteString("# Secrets were not copied. Export these before rugwatch polls (or switch them to ${file:…}):\n")
		for _, e := range rep.Exports {
			fmt.Fprintf(&b, "#   export %s=…   # %s\n", e.Name, yamlComment(e.For))
		}
	}
	if len(rep.Servers) == 0 {
		b.WriteString("servers: []\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	b.WriteString("servers:\n")
	for i, s := range rep.Servers {
		if i > 0 {
			b.WriteString("\n")
		}
		for _, o := range s.Origins {
			fmt.Fprintf(&b, "  # from %s: %s %s\n", o.Client, yamlComment(displayPath(o.Path, home)), yamlComment(o.Entry))
		}
		for _, n := range s.Notes {
			fmt.Fprintf(&b, "  # note: %s\n", yamlComment(n))
		}
		fmt.Fprintf(&b, "  - name: %s\n", yamlString(s.Name))
		if s.Command != "" {
			fmt.Fprintf(&b, "    command: %s\n", yamlString(s.Command))
			if len(s.Args) > 0 {
				b.WriteString("    args:\n")
				for _, a := range s.Args {
					fmt.Fprintf(&b, "      - %s\n", yamlString(a))
				}
			}
			if s.Cwd != "" {
				fmt.Fprintf(&b, "    cwd: %s\n", yamlString(s.Cwd))
			}
			writeYAMLMap(&b, "env", s.Env)
			if dirs := grantedDirs(s); len(dirs) > 0 {
				// The sandbox shows a server only what is granted: the
				// directories the client handed it become explicit,
				// read-only grants the user reviews here.
				b.WriteString("    # the directories its args name, read-only; mode: rw if it must write there\n")
				b.WriteString("    mounts:\n")
				for _, d := range dirs {
					fmt.Fprintf(&b, "      - {path: %s, mode: ro}\n", yamlString(d))
				}
			}
		} else {
			fmt.Fprintf(&b, "    url: %s\n", yamlString(s.URL))
			fmt.Fprintf(&b, "    transport: %s\n", s.Transport)
			writeYAMLMap(&b, "headers", s.Headers)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeYAMLMap(b *strings.Builder, key string, m map[string]string) {
	if len(m) == 0 {
		return
	}
	fmt.Fprintf(b, "    %s:\n", key)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(b, "      %s: %s\n", yamlString(k), yamlString(m[k]))
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
