package clients

import (
	"fmt"
	"maps"
	"net/textproto"
	"regexp"
	"slices"
	"strings"

	"github.com/rugwatch/rugwatch/configs"
)

// Names: a discovered server keeps its client's name unless a different
// server has it, then it takes its client's as a suffix (github-windsurf).
// A secret becomes ${env:NAME} where NAME is what people export for it:
// the variable the server reads (GITHUB_PERSONAL_ACCESS_TOKEN), the id of
// the VS Code input that asks for it, a header named like a variable
// (CONTEXT7_API_KEY), else <SERVER>_<HEADER>. A name stands for one value
// only: a second, different secret under it takes its client's suffix
// (GITHUB_PERSONAL_ACCESS_TOKEN_WINDSURF). A reference the client already
// makes to its environment keeps its name, and no literal takes it.

// unknownValue is a claimed variable whose value rugwatch does not know
// (the user's own, or one its config names): never shared with a literal.
const unknownValue = "\x00unknown"

// namer hands out server and variable names.
type namer struct {
	servers map[string]bool
	vars    map[string]string // NAME -> the client value it stands for
}

func newNamer() *namer {
	return &namer{servers: map[string]bool{}, vars: map[string]string{}}
}

// server names a server base, or base-<client> when base is taken.
func (n *namer) server(base, client string) string {
	name := base
	if n.servers[name] && client != "" {
		name = base + "-" + client
	}
	root := name
	for i := 2; n.servers[name]; i++ {
		name = fmt.Sprintf("%s-%d", root, i)
	}
	n.servers[name] = true
	return name
}

// variable names the reference for value: the first candidate free or
// standing for the same value already.
func (n *namer) variable(cands []string, value string) string {
	try := func(c string) bool {
		v, ok := n.vars[c]
		if !ok {
			n.vars[c] = value
			return true
		}
		return v == value && value != unknownValue
	}
	for _, c := range cands {
		if try(c) {
			return c
		}
	}
	last := cands[len(cands)-1]
	for i := 2; ; i++ {
		if c := fmt.Sprintf("%s_%d", last, i); try(c) {
			return c
		}
	}
}

// claim records that NAME stands for value (unknownValue: not known).
func (n *namer) claim(name, value string) {
	if v, ok := n.vars[name]; !ok || v == unknownValue {
		n.vars[name] = value
	}
}

// reserveRefs claims every variable the servers' entries already read
// from the environment, before any literal is named.
func (n *namer) reserveRefs(servers []*Server) {
	for _, s := range servers {
		for _, v := range slices.Concat(slices.Collect(maps.Values(s.rawEnv)), slices.Collect(maps.Values(s.rawHdr))) {
			if t, isRef, ok := clientTemplate(v); ok && isRef {
				for _, m := range envRef.FindAllStringSubmatch(t, -1) {
					n.claim(m[1], unknownValue)
				}
			}
		}
		for _, v := range s.envFileVars {
			n.claim(v, unknownValue)
		}
	}
}

// part is a piece of a client's env or header value: template text that
// holds no secret, or a secret that becomes an ${env:} reference.
type part struct {
	tmpl   string
	secret bool
	value  string   // the client's value for the reference: a literal or a ${input:…}
	cands  []string // names for the reference, best first
}

var (
	envRef      = regexp.MustCompile(`\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}`)
	inputRefRE  = regexp.MustCompile(`\$\{input:([^}]*)\}`)
	refNameExpr = `\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}`
)

// valueParts splits the client's value of env var or header key (kind
// "env" or "header").
func (s *Server) valueParts(kind, key, raw string) []part {
	cands := s.varCandidates(kind, key)
	whole := []part{{secret: true, value: raw, cands: cands}}
	if locs := inputRefRE.FindAllStringSubmatchIndex(raw, -1); locs != nil {
		var parts []part
		last := 0
		lit := func(x string) bool {
			if x == "" {
				return true
			}
			t, _, ok := clientTemplate(x)
			if !ok || strings.HasSuffix(t, "$") || secretLike(x) {
				return false
			}
			parts = append(parts, part{tmpl: t})
			return true
		}
		for _, l := range locs {
			if !lit(raw[last:l[0]]) {
				return whole
			}
			// A header is best named by the input; an env var by itself.
			id := envVarName(raw[l[2]:l[3]])
			named := slices.Insert(slices.Clone(cands), 0, id)
			if kind == "env" {
				named = slices.Insert(slices.Clone(cands), 1, id)
			}
			parts = append(parts, part{secret: true, value: raw[l[0]:l[1]], cands: named})
			last = l[1]
		}
		if !lit(raw[last:]) {
			return whole
		}
		return parts
	}
	t, isRef, ok := clientTemplate(raw)
	switch {
	case !ok:
		return whole
	case isRef:
		return []part{{tmpl: t}}
	}
	if kind == "env" {
		if secretName(key) && raw != "" || secretLike(raw) {
			return whole
		}
		return []part{{tmpl: raw}}
	}
	ck := textproto.CanonicalMIMEHeaderKey(key)
	switch {
	case ck == "Authorization" && authSchemeRE.MatchString(raw):
		f := strings.Fields(raw)
		return []part{{tmpl: f[0] + " "}, {secret: true, value: f[1], cands: cands}}
	case ck == "Authorization" || secretName(key) || secretLike(raw):
		return whole
	}
	return []part{{tmpl: raw}}
}

// varCandidates are the names a reference for key may take.
func (s *Server) varCandidates(kind, key string) []string {
	base := key
	if kind == "header" && !(envNameRE.MatchString(key) && strings.Contains(key, "_")) {
		base = envVarName(s.Name, key)
	} else if kind == "header" {
		base = strings.ToUpper(key)
	}
	return []string{base, base + "_" + envVarName(s.client)}
}

// render turns parts into a template, naming each secret's reference and
// noting the value the client must hand over for it in carry.
func (n *namer) render(parts []part, carry map[string]string) string {
	var b strings.Builder
	for _, p := range parts {
		if !p.secret {
			b.WriteString(p.tmpl)
			continue
		}
		name := n.variable(p.cands, p.value)
		carry[name] = p.value
		b.WriteString("${env:" + name + "}")
	}
	return b.String()
}

// name fills in Env, Headers and carry for s, whose Name is set.
func (n *namer) name(s *Server) {
	s.Env, s.Headers, s.carry = nil, nil, map[string]string{}
	if len(s.rawEnv)+len(s.envFileVars) > 0 {
		s.Env = map[string]string{}
	}
	for _, v := range s.envFileVars {
		s.Env[v] = "${env:" + v + "}"
	}
	for _, k := range slices.Sorted(maps.Keys(s.rawEnv)) {
		s.Env[k] = n.render(s.valueParts("env", k, s.rawEnv[k]), s.carry)
	}
	if len(s.rawHdr) > 0 {
		s.Headers = map[string]string{}
	}
	for _, k := range slices.Sorted(maps.Keys(s.rawHdr)) {
		s.Headers[k] = n.render(s.valueParts("header", k, s.rawHdr[k]), s.carry)
	}
}

// matchConfigured reports whether cs, a server of rugwatch's config, is s:
// the same launch or URL and the same env and headers, where each secret
// of s's is a reference in cs whose value, where known, is s's. It fills
// in s's templates from cs and what the client must hand over for them.
func matchConfigured(cs configs.Server, s *Server, known map[string]string) bool {
	if cs.Transport != s.Transport || cs.Command != s.Command || !slices.Equal(cs.Args, s.Args) || cs.Cwd != s.Cwd || cs.URL != s.URL {
		return false
	}
	rawEnv := maps.Clone(s.rawEnv)
	if rawEnv == nil {
		rawEnv = map[string]string{}
	}
	for _, v := range s.envFileVars {
		if _, ok := rawEnv[v]; !ok {
			rawEnv[v] = "${env:" + v + "}"
		}
	}
	carry := map[string]string{}
	env, ok := matchTemplates(s, "env", cs.Env, rawEnv, known, carry)
	if !ok {
		return false
	}
	hdr, ok := matchTemplates(s, "header", cs.Headers, s.rawHdr, known, carry)
	if !ok {
		return false
	}
	s.Name, s.Env, s.Headers, s.carry = cs.Name, env, hdr, carry
	return true
}

func matchTemplates(s *Server, kind string, have map[string]configs.Secret, raw, known, carry map[string]string) (map[string]string, bool) {
	if len(have) != len(raw) {
		return nil, false
	}
	if len(raw) == 0 {
		return nil, true
	}
	out := map[string]string{}
	for k, v := range raw {
		h, ok := have[k]
		if !ok || !matchTemplate(h.Template(), s.valueParts(kind, k, v), known, carry) {
			return nil, false
		}
		out[k] = h.Template()
	}
	return out, true
}

// matchTemplate: tmpl is parts rendered with some names, none of which is
// known to stand for another value.
func matchTemplate(tmpl string, parts []part, known, carry map[string]string) bool {
	var expr strings.Builder
	expr.WriteString("^")
	for _, p := range parts {
		if p.secret {
			expr.WriteString(refNameExpr)
		} else {
			expr.WriteString(regexp.QuoteMeta(p.tmpl))
		}
	}
	expr.WriteString("$")
	m := regexp.MustCompile(expr.String()).FindStringSubmatch(tmpl)
	if m == nil {
		return false
	}
	i := 1
	for _, p := range parts {
		if !p.secret {
			continue
		}
		name := m[i]
		i++
		if v, ok := known[name]; ok && v != p.value {
			return false
		}
		if v, ok := carry[name]; ok && v != p.value {
			return false
		}
		carry[name] = p.value
	}
	return true
}

// envVarName makes an environment variable name of words: upper case,
// other characters "_", never a leading digit.
func envVarName(words ...string) string {
	var b strings.Builder
	for i, w := range words {
		if i > 0 {
			b.WriteByte('_')
		}
		for _, r := range strings.ToUpper(w) {
			if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
				b.WriteRune(r)
			} else {
				b.WriteByte('_')
			}
		}
	}
	n := b.String()
	if n == "" || n[0] >= '0' && n[0] <= '9' {
		n = "MCP_" + n
	}
	return n
}

// exports lists what the references of s need in the environment of
// `serve` and `check`, and where each value is.
func (s *Server) exports(home string) []Export {
	o := s.Origins[0]
	where := fmt.Sprintf("%s %s", displayPath(o.Path, home), o.Entry)
	var out []Export
	add := func(kind, key, tmpl string) {
		for _, m := range envRef.FindAllStringSubmatch(tmpl, -1) {
			n := m[1]
			e := Export{Name: n, Server: s.Name}
			v, carried := s.carry[n]
			switch {
			case carried && inputRefRE.MatchString(v):
				e.Source = "input"
				e.For = fmt.Sprintf("%s %s of server %s: what %s asks for as %s (%s)", kind, key, s.Name, o.Client, v, where)
			case carried:
				e.Source = "client-file"
				e.For = fmt.Sprintf("%s %s of server %s: its value is in %s", kind, key, s.Name, where)
			case slices.Contains(s.envFileVars, n):
				e.Source = "env-file"
				e.For = fmt.Sprintf("%s %s of server %s: from its envFile %s", kind, key, s.Name, displayPath(s.envFile, home))
			default:
				e.Source = "environment"
				e.For = fmt.Sprintf("%s %s of server %s: %s reads it from your environment (%s)", kind, key, s.Name, o.Client, where)
			}
			out = append(out, e)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		add("env", k, s.Env[k])
	}
	for _, k := range slices.Sorted(maps.Keys(s.Headers)) {
		add("header", k, s.Headers[k])
	}
	return out
}

// addExports appends es to list, once per name.
func addExports(list []Export, es ...Export) []Export {
	for _, e := range es {
		if !slices.ContainsFunc(list, func(x Export) bool { return x.Name == e.Name }) {
			list = append(list, e)
		}
	}
	return list
}
