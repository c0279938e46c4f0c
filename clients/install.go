package clients

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/rugwatch/rugwatch/configs"
)

// `discover --install CLIENT` routes a client's MCP servers through
// `rugwatch proxy`: each entry of the client's config files becomes
//
//	{"command": "/abs/rugwatch", "args": ["--config", "/abs/rugwatch.yaml", "proxy", "<name>"]}
//
// and rugwatch's config gets the servers it did not have. The client file
// is edited in place: only the bytes of each rewritten entry change, so
// the rest of the file (its other keys, their order, JSONC comments) is
// kept as it was. A comment inside an entry being replaced would be lost,
// so such a file is refused unless Force. The first install keeps the
// original as <file>.rugwatch-backup (never overwritten: it stays the
// pristine copy), and --uninstall puts it back.
//
// Secrets stay where they were: rugwatch's config gets ${env:…}
// references (as `discover` prints them), and the values those references
// need travel in the rewritten entry's env, in the client's file, which
// the client hands to `rugwatch proxy` when it starts it.

// BackupSuffix names the backup of a client config next to it.
const BackupSuffix = ".rugwatch-backup"

// Names maps the CLI's client names to discover's.
var Names = map[string]string{
	"claude-desktop": "Claude Desktop",
	"claude-code":    "Claude Code",
	"cursor":         "Cursor",
	"vscode":         "VS Code",
	"windsurf":       "Windsurf",
}

// InstallOptions says what an install routes through which rugwatch.
type InstallOptions struct {
	Home, Project string
	Client        string // a key of Names
	Rugwatch      string // absolute path of the rugwatch executable
	Config        *configs.Config
	Force         bool // rewrite entries even if comments inside them are lost
}

// InstallFileResult is what an install did to one client file.
type InstallFileResult struct {
	Path      string   `json:"path"`
	Backup    string   `json:"backup"`
	Routed    []string `json:"routed"`              // client entry -> rugwatch server, "entry -> name"
	Kept      []string `json:"kept,omitempty"`      // entries left as they were, with why
	Unchanged bool     `json:"unchanged,omitempty"` // nothing to rewrite
}

// InstallResult is the whole install.
type InstallResult struct {
	Files []InstallFileResult `json:"files"`
	// Added are the servers appended to rugwatch's config.
	Added []string `json:"added"`
	// ConfigYAML is what was appended (empty when nothing was).
	ConfigYAML string `json:"-"`
	// NewConfig is the rugwatch config's full new text (nil: unchanged).
	NewConfig []byte `json:"-"`
	// rewritten client files, by path, written by Apply.
	writes map[string][]byte
}

// PlanInstall works out an install without writing anything.
func PlanInstall(o InstallOptions) (*InstallResult, error) {
	client, ok := Names[o.Client]
	if !ok {
		names := make([]string, 0, len(Names))
		for k := range Names {
			names = append(names, k)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("unknown client %q (one of: %s)", o.Client, strings.Join(names, ", "))
	}
	rep := Discover(o.Home, o.Project)
	cfgPath, err := filepath.Abs(o.Config.Path)
	if err != nil {
		return nil, err
	}
	// Which rugwatch server each discovered one is: one already configured
	// with the same launch, or a new one under a name no server has.
	taken := map[string]bool{}
	for _, s := range o.Config.Servers {
		taken[s.Name] = true
	}
	res := &InstallResult{Added: []string{}, writes: map[string][]byte{}}
	byOrigin := map[string]*Server{} // path + "\x00" + entry
	nameOf := map[*Server]string{}
	var added []Server
	for i := range rep.Servers {
		s := &rep.Servers[i]
		inClient := false
		for _, og := range s.Origins {
			if og.Client == client {
				inClient = true
				byOrigin[og.Path+"\x00"+og.Entry] = s
			}
		}
		if !inClient || s.proxiedBy(o.Rugwatch) {
			continue
		}
		if name, ok := sameServer(o.Config, s); ok {
			nameOf[s] = name
			continue
		}
		name := s.Name
		for n := 2; taken[name]; n++ {
			name = fmt.Sprintf("%s-%d", s.Name, n)
		}
		taken[name] = true
		s.Name = name
		nameOf[s] = name
		added = append(added, *s)
		res.Added = append(res.Added, name)
	}
	for _, src := range rep.Sources {
		if src.Client != client || !src.Found {
			continue
		}
		fr := InstallFileResult{Path: src.Path, Backup: src.Path + BackupSuffix, Routed: []string{}}
		if src.Error != "" {
			return nil, fmt.Errorf("%s: %s", src.Path, src.Error)
		}
		orig, err := os.ReadFile(src.Path)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", src.Path, err)
		}
		spans, err := entrySpans(orig, src.key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src.Path, err)
		}
		var edits []spanEdit
		for _, sp := range spans {
			s := byOrigin[src.Path+"\x00"+sp.entry]
			if s == nil {
				fr.Kept = append(fr.Kept, sp.entry+": not a server rugwatch can watch (see `rugwatch discover`)")
				continue
			}
			name, ok := nameOf[s]
			if !ok {
				fr.Kept = append(fr.Kept, sp.entry+": already goes through rugwatch")
				continue
			}
			if sp.commented && !o.Force {
				return nil, fmt.Errorf("%s: %s has comments inside it that rewriting would lose; edit them out or pass --force", src.Path, sp.entry)
			}
			value, err := proxiedEntry(orig[sp.start:sp.end], s, name, o.Rugwatch, cfgPath)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", src.Path, sp.entry, err)
			}
			edits = append(edits, spanEdit{sp.start, sp.end, value})
			fr.Routed = append(fr.Routed, sp.entry+" -> "+name)
		}
		if len(edits) == 0 {
			fr.Unchanged = true
		} else {
			res.writes[src.Path] = applyEdits(orig, edits)
		}
		res.Files = append(res.Files, fr)
	}
	if len(res.Files) == 0 {
		return nil, fmt.Errorf("no %s config file found under %s or %s", client, o.Home, o.Project)
	}
	if len(added) > 0 {
		var b strings.Builder
		if err := writeServerItems(&b, added, o.Home); err != nil {
			return nil, err
		}
		res.ConfigYAML = b.String()
		old, err := os.ReadFile(o.Config.Path)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", o.Config.Path, err)
		}
		res.NewConfig = appendServers(old, res.ConfigYAML)
		if _, err := configs.Parse(res.NewConfig, o.Config.Path); err != nil {
			return nil, fmt.Errorf("the servers to add do not make a valid config (nothing was written): %w", err)
		}
	}
	return res, nil
}

// Apply writes what PlanInstall worked out: rugwatch's config first (a
// client pointing at a server rugwatch does not know would be refused),
// then each client file, its original kept as the backup.
func (r *InstallResult) Apply(configPath string) error {
	if r.NewConfig != nil {
		if err := writeAtomic(configPath, r.NewConfig); err != nil {
			return fmt.Errorf("writing %s: %w", configPath, err)
		}
	}
	for _, f := range r.Files {
		data, ok := r.writes[f.Path]
		if !ok {
			continue
		}
		if err := backup(f.Path); err != nil {
			return err
		}
		if err := writeAtomic(f.Path, data); err != nil {
			return fmt.Errorf("writing %s: %w", f.Path, err)
		}
	}
	return nil
}

// Uninstall puts back each of the client's files from its backup and
// removes the backup. It reports the files restored.
func Uninstall(home, project, clientKey string) ([]string, error) {
	client, ok := Names[clientKey]
	if !ok {
		return nil, fmt.Errorf("unknown client %q", clientKey)
	}
	var restored []string
	for _, src := range clientSources(home, project) {
		if src.Client != client {
			continue
		}
		b := src.Path + BackupSuffix
		data, err := os.ReadFile(b)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return restored, fmt.Errorf("reading %s: %w", b, err)
		}
		if err := writeAtomic(src.Path, data); err != nil {
			return restored, fmt.Errorf("restoring %s: %w", src.Path, err)
		}
		if err := os.Remove(b); err != nil {
			return restored, fmt.Errorf("removing %s: %w", b, err)
		}
		restored = append(restored, src.Path)
	}
	if len(restored) == 0 {
		return nil, fmt.Errorf("no %s config file has a %s to restore", client, BackupSuffix)
	}
	return restored, nil
}

// backup copies path to path+BackupSuffix unless a backup is there: the
// first one is the original, a second install must not replace it with
// an already routed file.
func backup(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path+BackupSuffix, os.O_WRONLY|os.O_CREATE|os.O_EXCL, st.Mode().Perm())
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating the backup of %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing the backup of %s: %w", path, err)
	}
	return f.Close()
}

// writeAtomic replaces path with data, keeping its mode.
func writeAtomic(path string, data []byte) error {
	mode := os.FileMode(0o600)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".rugwatch-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// proxiedBy reports an entry that already runs `rugwatch proxy`.
func (s *Server) proxiedBy(rugwatch string) bool {
	return s.Command != "" && (s.Command == rugwatch || filepath.Base(s.Command) == "rugwatch") && slices.Contains(s.Args, "proxy")
}

// sameServer finds a server of c launched as s is.
func sameServer(c *configs.Config, s *Server) (string, bool) {
	for _, cs := range c.Servers {
		if s.Command != "" && cs.Command == s.Command && slices.Equal(cs.Args, s.Args) && cs.Cwd == s.Cwd {
			return cs.Name, true
		}
		if s.URL != "" && cs.URL == s.URL {
			return cs.Name, true
		}
	}
	return "", false
}

// proxiedEntry is the rewritten entry: rugwatch proxy in the server's
// place, with the values of the references rugwatch's config holds for
// it in env, and the entry's other settings (disabled, timeouts, …) kept.
func proxiedEntry(orig []byte, s *Server, name, rugwatch, cfgPath string) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(stripJSONC(orig)))
	d.UseNumber()
	var entry map[string]any
	if err := d.Decode(&entry); err != nil {
		return nil, err
	}
	_, hadType := entry["type"]
	for _, k := range []string{"command", "args", "env", "cwd", "url", "serverUrl", "headers", "type", "transport", "envFile"} {
		delete(entry, k)
	}
	entry["command"] = rugwatch
	entry["args"] = []string{"--config", cfgPath, "proxy", name}
	if hadType {
		entry["type"] = "stdio"
	}
	if env := s.referenceValues(); len(env) > 0 {
		entry["env"] = env
	}
	// command and args first, as people write them; the rest sorted.
	keys := []string{"command", "args"}
	for _, k := range slices.Sorted(maps.Keys(entry)) {
		if k != "command" && k != "args" {
			keys = append(keys, k)
		}
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		for _, v := range []any{k, entry[k]} {
			var vb bytes.Buffer
			enc := json.NewEncoder(&vb)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(v); err != nil {
				return nil, err
			}
			b.Write(bytes.TrimSpace(vb.Bytes()))
			if v == any(k) {
				b.WriteString(": ")
			}
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// referenceValues maps each ${env:NAME} rugwatch's config holds for s in
// place of a value of the client's to that value: what `rugwatch proxy`
// needs in its environment to start the server as the client did.
func (s *Server) referenceValues() map[string]string {
	out := map[string]string{}
	for k, t := range s.Env {
		if n, ok := soleRef(t); ok && !refersToEnv(s.rawEnv[k], n) {
			out[n] = s.rawEnv[k]
		}
	}
	for k, t := range s.Headers {
		raw := s.rawHdr[k]
		if scheme, rest, ok := strings.Cut(t, " "); ok {
			if n, ok := soleRef(rest); ok && strings.HasPrefix(raw, scheme+" ") {
				if v := strings.TrimPrefix(raw, scheme+" "); !refersToEnv(v, n) {
					out[n] = v
				}
				continue
			}
		}
		if n, ok := soleRef(t); ok && !refersToEnv(raw, n) {
			out[n] = raw
		}
	}
	return out
}

func soleRef(t string) (string, bool) {
	n, ok := strings.CutPrefix(t, "${env:")
	if !ok || !strings.HasSuffix(n, "}") {
		return "", false
	}
	n = strings.TrimSuffix(n, "}")
	return n, envNameRE.MatchString(n)
}

// refersToEnv: the client's value already was a reference to the same
// variable of its environment, which `rugwatch proxy` inherits.
func refersToEnv(raw, name string) bool {
	t, isRef, ok := clientTemplate(raw)
	return ok && isRef && t == "${env:"+name+"}"
}

// entrySpan is one server entry of a client file: where its value's bytes
// are, and the entry string discover names it by.
type entrySpan struct {
	entry      string
	start, end int
	commented  bool // the original bytes hold a comment or trailing comma
}

type spanEdit struct {
	start, end int
	value      []byte
}

// entrySpans finds the server entries of a client file (key as in
// clientSources) in its own bytes. stripJSONC keeps every offset (comments
// become spaces), except a leading BOM's three bytes.
func entrySpans(orig []byte, key string) ([]entrySpan, error) {
	shift := 0
	if bytes.HasPrefix(orig, []byte("\xef\xbb\xbf")) {
		shift = 3
	}
	clean := stripJSONC(orig)
	d := json.NewDecoder(bytes.NewReader(clean))
	var spans []entrySpan
	var containers [][]string
	if key == "claude.json" {
		containers = [][]string{{"mcpServers"}, {"projects", "*", "mcpServers"}}
	} else {
		containers = [][]string{{key}}
	}
	var walk func(path []string) error
	walk = func(path []string) error {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		if tok != json.Delim('{') {
			return skipRest(d, tok)
		}
		atContainer := slices.ContainsFunc(containers, func(c []string) bool { return matchPath(c, path) })
		for d.More() {
			kt, err := d.Token()
			if err != nil {
				return err
			}
			k, _ := kt.(string)
			sub := append(slices.Clone(path), k)
			if atContainer {
				start := int(d.InputOffset())
				for start < len(clean) && (clean[start] == ' ' || clean[start] == '\t' || clean[start] == '\n' || clean[start] == '\r' || clean[start] == ':') {
					start++
				}
				var raw json.RawMessage
				if err := d.Decode(&raw); err != nil {
					return err
				}
				end := int(d.InputOffset())
				spans = append(spans, entrySpan{entry: entryName(path, k), start: start + shift, end: end + shift,
					commented: hasComment(orig[start+shift:end+shift], clean[start:end])})
				continue
			}
			if slices.ContainsFunc(containers, func(c []string) bool { return len(c) > len(sub)-1 && matchPath(c[:len(sub)], sub) }) {
				if err := walk(sub); err != nil {
					return err
				}
				continue
			}
			var skip json.RawMessage
			if err := d.Decode(&skip); err != nil {
				return err
			}
		}
		_, err = d.Token() // }
		return err
	}
	if err := walk(nil); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("not valid JSON (with comments): %v", err)
	}
	return spans, nil
}

// hasComment reports a comment in orig, given its stripJSONC form: a
// dropped trailing comma is the only other difference, and losing it is
// harmless.
func hasComment(orig, clean []byte) bool {
	for i := range orig {
		if orig[i] != clean[i] && orig[i] != ',' {
			return true
		}
	}
	return false
}

func matchPath(pattern, path []string) bool {
	if len(pattern) != len(path) {
		return false
	}
	for i := range pattern {
		if pattern[i] != "*" && pattern[i] != path[i] {
			return false
		}
	}
	return true
}

// entryName spells an entry as discover's origins do.
func entryName(container []string, name string) string {
	if len(container) == 3 { // projects, dir, mcpServers
		return fmt.Sprintf("projects[%q].mcpServers[%q]", container[1], name)
	}
	return fmt.Sprintf("%s[%q]", container[0], name)
}

// skipRest consumes the rest of a value whose first token was tok.
func skipRest(d *json.Decoder, tok json.Token) error {
	if tok != json.Delim('[') && tok != json.Delim('{') {
		return nil
	}
	depth := 1
	for depth > 0 {
		t, err := d.Token()
		if err != nil {
			return err
		}
		switch t {
		case json.Delim('['), json.Delim('{'):
			depth++
		case json.Delim(']'), json.Delim('}'):
			depth--
		}
	}
	return nil
}

func applyEdits(orig []byte, edits []spanEdit) []byte {
	sort.Slice(edits, func(i, j int) bool { return edits[i].start < edits[j].start })
	var out []byte
	last := 0
	for _, e := range edits {
		out = append(out, orig[last:e.start]...)
		out = append(out, e.value...)
		last = e.end
	}
	return append(out, orig[last:]...)
}

// writeServerItems renders servers as discover's YAML list items.
func writeServerItems(b *strings.Builder, servers []Server, home string) error {
	var full strings.Builder
	if err := WriteYAML(&full, Report{Servers: servers}, home); err != nil {
		return err
	}
	_, items, ok := strings.Cut(full.String(), "\nservers:\n")
	if !ok {
		return errors.New("discover wrote no servers")
	}
	b.WriteString("  # added by rugwatch discover --install\n")
	b.WriteString(items)
	return nil
}

// appendServers adds YAML list items (indented two spaces) to the config's
// servers: list, at its end, re-indented to the list's own indentation;
// a config with no list (or servers: []) gets one.
func appendServers(cfg []byte, items string) []byte {
	lines := strings.SplitAfter(string(cfg), "\n")
	head := -1
	for i, l := range lines {
		rest, ok := strings.CutPrefix(strings.TrimRight(l, "\r\n"), "servers:")
		if rest = strings.TrimSpace(rest); ok && (rest == "" || strings.HasPrefix(rest, "#")) {
			head = i
			break
		}
	}
	if head < 0 {
		// No block list: drop a flow `servers: []` and start one.
		var kept []string
		for _, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(l), "servers:") && !strings.HasPrefix(l, " ") {
				continue
			}
			kept = append(kept, l)
		}
		out := strings.Join(kept, "")
		if out != "" && !strings.HasSuffix(out, "\n") {
			out += "\n"
		}
		return []byte(out + "servers:\n" + items)
	}
	end := len(lines)
	indent := -1
	for i := head + 1; i < len(lines); i++ {
		l := lines[i]
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		ind := len(l) - len(strings.TrimLeft(l, " "))
		if indent < 0 && strings.HasPrefix(t, "-") {
			indent = ind
		}
		if ind == 0 && !strings.HasPrefix(t, "-") || indent >= 0 && ind < indent {
			end = i
			break
		}
	}
	if indent < 0 {
		indent = 2
	}
	if indent != 2 {
		var re strings.Builder
		for _, l := range strings.SplitAfter(items, "\n") {
			if l == "" {
				continue
			}
			if strings.HasPrefix(l, "  ") {
				l = strings.Repeat(" ", indent) + l[2:]
			}
			re.WriteString(l)
		}
		items = re.String()
	}
	// Back up over trailing blank lines so the items join the list.
	for end > head+1 && strings.TrimSpace(lines[end-1]) == "" {
		end--
	}
	before := strings.Join(lines[:end], "")
	if !strings.HasSuffix(before, "\n") {
		before += "\n"
	}
	return []byte(before + "\n" + items + strings.Join(lines[end:], ""))
}
