package clients

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rugwatch/rugwatch/configs"
)

// `discover --install CLIENT` routes a client's MCP servers through
// rugwatch. Each entry rugwatch can stand in for becomes
//
//	{"command": "/abs/rugwatch", "args": ["--config", "/abs/rugwatch.yaml", "proxy", "<name>"]}
//
// or, with Gateway, all of them make way for one entry per client file,
// `rugwatch --config /abs/rugwatch.yaml proxy --all`. rugwatch's config
// (written when there is none) gets the servers it did not have, as
// `discover` prints them; a server it has already, defined the same way,
// is reused, and a different server under a taken name gets its client's
// as a suffix.
//
// Secrets stay where they were: rugwatch's config gets ${env:NAME}
// references, and the values (or the VS Code ${input:…} that asks for
// them) stay in the client's file, in the env of the entry that starts
// rugwatch. The entry's other keys (envFile, disabled, timeouts, keys
// rugwatch does not know) are kept. A remote the client signs in to
// itself (OAuth) is left as it is: rugwatch has no credential for it.
//
// The client file is edited in place, by key (see edit.go). A comment
// inside an entry being replaced would be lost while installed, so such a
// file is refused unless Force. What was done is recorded next to the
// file in <file>.rugwatch-install.json, each entry as it was and as
// rugwatch wrote it; --uninstall undoes exactly that, leaving whatever the
// user changed or added since. The first install also keeps the original
// as <file>.rugwatch-backup.

const (
	// BackupSuffix names the copy of a client file before the first install.
	BackupSuffix = ".rugwatch-backup"
	// RecordSuffix names the record of what installs did to a client file.
	RecordSuffix = ".rugwatch-install.json"
	// GatewayEntry is the name of the gateway's entry in a client file.
	GatewayEntry = "rugwatch"
)

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
	ConfigPath    string // absolute path of rugwatch's config
	// Config is the config at ConfigPath; nil when there is none yet, and
	// the install writes one.
	Config  *configs.Config
	Gateway bool // one `rugwatch proxy --all` entry instead of one per server
	Force   bool // rewrite entries even if comments inside them are lost
}

// InstallFileResult is what an install did to one client file.
type InstallFileResult struct {
	Path      string   `json:"path"`
	Backup    string   `json:"backup"`
	Record    string   `json:"record"`
	Routed    []string `json:"routed"`            // `entry -> rugwatch server`
	Gateway   string   `json:"gateway,omitempty"` // the gateway's entry, with Gateway
	Kept      []string `json:"kept,omitempty"`    // entries left as they were, with why
	Unchanged bool     `json:"unchanged,omitempty"`
}

// InstallResult is the whole install.
type InstallResult struct {
	Files []InstallFileResult `json:"files"`
	// Config is rugwatch's config; Created says the install writes it.
	Config  string `json:"config"`
	Created bool   `json:"created"`
	// Added are the servers appended to rugwatch's config.
	Added []string `json:"added"`
	// Warnings are entries left as they were that still need the user.
	Warnings []string `json:"warnings"`
	// Exports are the variables the routed servers' references read.
	Exports []Export `json:"exports"`
	// ConfigYAML is what was appended (empty when nothing was).
	ConfigYAML string `json:"-"`
	// NewConfig is the rugwatch config's full new text (nil: unchanged).
	NewConfig []byte `json:"-"`
	writes    map[string]fileWrite
}

type fileWrite struct {
	data   []byte
	record record
}

// record is what installs did to one client file.
type record struct {
	Note    string        `json:"note"`
	Entries []entryRecord `json:"entries"`
}

// entryRecord is one entry an install changed.
type entryRecord struct {
	Container []string `json:"container"`
	Key       string   `json:"key"`
	Original  *string  `json:"original"` // as it was; null: rugwatch added it
	Wrote     *string  `json:"wrote"`    // as rugwatch wrote it; null: rugwatch removed it
}

const recordNote = "written by `rugwatch discover --install`; `--uninstall` reads it to undo exactly what the install did"

// newConfigHead starts the config an install writes when there is none.
const newConfigHead = `# rugwatch's config, written by ` + "`rugwatch discover --install`" + `.
# Every key, with its default: configs/rugwatch.example.yaml in rugwatch's repository.
data_dir: ./data
`

// planner works out one install.
type planner struct {
	o      InstallOptions
	client string
	sc     scanned
	known  map[string]string // what rugwatch entries hand over already
	n      *namer
	res    *InstallResult
	routed map[string]*Server // path\x00entry -> the server it goes to
	why    map[string]string  // path\x00entry -> why it stays as it is
	added  []Server
	// the gateway entry's env, envFile and whether entries name a type
	gwEnv     map[string]string
	gwEnvFile string
	gwTyped   bool
}

// PlanInstall works out an install without writing anything.
func PlanInstall(o InstallOptions) (*InstallResult, error) {
	client, ok := Names[o.Client]
	if !ok {
		return nil, fmt.Errorf("unknown client %q (one of: %s)", o.Client, strings.Join(slices.Sorted(maps.Keys(Names)), ", "))
	}
	p := &planner{o: o, client: client, sc: scan(o.Home, o.Project),
		res:    &InstallResult{Config: o.ConfigPath, Created: o.Config == nil, Added: []string{}, Warnings: []string{}, Exports: []Export{}, writes: map[string]fileWrite{}},
		routed: map[string]*Server{}, why: map[string]string{}, gwEnv: map[string]string{}}
	var files []source
	for _, src := range p.sc.sources {
		if src.Client != client || !src.Found {
			continue
		}
		if src.Error != "" {
			return nil, fmt.Errorf("%s: %s", src.Path, src.Error)
		}
		files = append(files, src)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no %s config file found under %s or %s", client, o.Home, o.Project)
	}
	if err := p.checkMode(); err != nil {
		return nil, err
	}
	p.seed()
	p.assign()
	targets := p.gatewayFiles(files)
	for _, src := range files {
		fr, err := p.editFile(src, slices.Contains(targets, src.Path))
		if err != nil {
			return nil, err
		}
		p.res.Files = append(p.res.Files, fr)
	}
	if err := p.configText(); err != nil {
		return nil, err
	}
	return p.res, nil
}

// checkMode refuses to mix one entry per server with the gateway in one
// client: it would list every tool twice.
func (p *planner) checkMode() error {
	for _, r := range p.sc.rugwatch {
		if r.Client != p.client {
			continue
		}
		undo := fmt.Sprintf("rugwatch discover --install %s --uninstall", p.o.Client)
		switch {
		case p.o.Gateway && !r.gateway:
			return fmt.Errorf("%s: %s runs `rugwatch proxy` for one server: undo that install first (%s), then install with --gateway", r.Path, r.Entry, undo)
		case !p.o.Gateway && r.gateway:
			return fmt.Errorf("%s: %s is rugwatch's gateway: install again with --gateway, or undo it first (%s)", r.Path, r.Entry, undo)
		case r.gateway && r.envFile != "" && p.gwEnvFile == "":
			p.gwEnvFile = r.envFile
		}
	}
	return nil
}

// seed tells the namer the names rugwatch's config and the client files
// use already, with the values the rugwatch entries hand over for them.
func (p *planner) seed() {
	p.n = newNamer()
	p.known = p.sc.known()
	for k, v := range p.known {
		p.n.claim(k, v)
	}
	if p.o.Config == nil {
		return
	}
	for _, cs := range p.o.Config.Servers {
		p.n.servers[cs.Name] = true
		for _, t := range slices.Concat(slices.Collect(maps.Values(cs.Env)), slices.Collect(maps.Values(cs.Headers))) {
			for _, m := range envRef.FindAllStringSubmatch(t.Template(), -1) {
				p.n.claim(m[1], unknownValue)
			}
		}
	}
}

// assign decides, for each server of the client, whether it is routed and
// to which of rugwatch's servers: one configured the same way, else a new
// one under a name no other server has.
func (p *planner) assign() {
	for _, sk := range p.sc.skipped {
		if sk.Client == p.client {
			p.why[sk.Path+"\x00"+sk.Entry] = sk.Reason
		}
	}
	var mine []Server
	for _, s := range p.sc.found {
		if s.Origins[0].Client == p.client {
			mine = append(mine, s)
		}
	}
	servers := merge(mine)
	p.n.reserveRefs(servers)
	for _, s := range servers {
		if reason, warn := p.unroutable(s); reason != "" {
			for _, o := range s.Origins {
				p.why[o.Path+"\x00"+o.Entry] = reason
				if warn {
					p.res.Warnings = append(p.res.Warnings, fmt.Sprintf("%s: %s left as it is: %s", o.Path, o.Entry, reason))
				}
			}
			continue
		}
		if !p.configured(s) {
			s.Name = p.n.server(normalizeServerName(s.rawName), s.client)
			p.n.name(s)
			p.added = append(p.added, *s)
			p.res.Added = append(p.res.Added, s.Name)
		}
		for _, o := range s.Origins {
			p.routed[o.Path+"\x00"+o.Entry] = s
		}
		p.res.Exports = addExports(p.res.Exports, s.exports(p.o.Home)...)
		if p.o.Gateway {
			maps.Copy(p.gwEnv, s.carry)
			if s.envFile != "" {
				p.gwEnvFile = s.envFile
			}
			p.gwTyped = p.gwTyped || s.typed
		}
	}
}

// configured finds s among the servers of rugwatch's config.
func (p *planner) configured(s *Server) bool {
	if p.o.Config == nil {
		return false
	}
	for _, cs := range p.o.Config.Servers {
		if matchConfigured(cs, s, p.known) {
			for k, v := range s.carry {
				p.n.claim(k, v)
			}
			return true
		}
	}
	return false
}

// unroutable says why s stays as it is, and whether the user must hear it.
func (p *planner) unroutable(s *Server) (string, bool) {
	switch {
	case s.signIn != "":
		return s.signIn + "; not added to rugwatch's config (add it by hand with a token under headers to watch it)", true
	case s.clientVars:
		return "its command or args hold a ${…} variable the client expands and rugwatch does not; route it by hand with the value written out", true
	case p.o.Gateway && s.disabled:
		return "disabled in the client; the gateway would serve it", false
	case p.o.Gateway && s.envFile != "" && p.gwEnvFile != "" && s.envFile != p.gwEnvFile:
		return fmt.Sprintf("its envFile %s is not the gateway entry's %s, and one entry has one envFile", s.envFile, p.gwEnvFile), true
	}
	return "", false
}

// gatewayFiles are the client files that get the gateway's entry: each
// user-level file (one per platform's location), else the first found.
func (p *planner) gatewayFiles(files []source) []string {
	if !p.o.Gateway || len(p.routed) == 0 {
		return nil
	}
	var out []string
	for _, f := range files {
		if f.project == "" {
			out = append(out, f.Path)
		}
	}
	if len(out) == 0 {
		out = append(out, files[0].Path)
	}
	return out
}

// editFile works out the new text of one client file and its record.
func (p *planner) editFile(src source, gateway bool) (InstallFileResult, error) {
	fr := InstallFileResult{Path: src.Path, Backup: src.Path + BackupSuffix, Record: src.Path + RecordSuffix, Routed: []string{}}
	orig, err := os.ReadFile(src.Path)
	if err != nil {
		return fr, fmt.Errorf("reading %s: %w", src.Path, err)
	}
	refs, err := entries(orig, src.key)
	if err != nil {
		return fr, fmt.Errorf("%s: %w", src.Path, err)
	}
	doc := orig
	var recs []entryRecord
	var gwRef *entryRef
	for _, ref := range refs {
		k := src.Path + "\x00" + ref.entry
		s := p.routed[k]
		if s == nil {
			switch why := p.why[k]; {
			case p.isGateway(src.Path, ref.entry):
				gwRef = &ref
			case why != "":
				fr.Kept = append(fr.Kept, ref.entry+": "+why)
			default:
				fr.Kept = append(fr.Kept, ref.entry+": not a server rugwatch can watch (see `rugwatch discover`)")
			}
			continue
		}
		cur, _, err := memberValue(doc, ref.container, ref.key)
		if err != nil {
			return fr, fmt.Errorf("%s: %s: %w", src.Path, ref.entry, err)
		}
		if hasComment(cur) && !p.o.Force {
			return fr, fmt.Errorf("%s: %s has comments inside it that rewriting would lose; edit them out or pass --force", src.Path, ref.entry)
		}
		if p.o.Gateway {
			doc, err = deleteMember(doc, ref.container, ref.key)
			recs = append(recs, entryRecord{ref.container, ref.key, ptr(string(cur)), nil})
			fr.Routed = append(fr.Routed, ref.entry+" -> "+s.Name+" (through the gateway)")
		} else {
			var value []byte
			if value, err = proxiedEntry(cur, s, p.o.Rugwatch, p.o.ConfigPath); err == nil {
				doc, err = setMember(doc, ref.container, ref.key, value)
			}
			recs = append(recs, entryRecord{ref.container, ref.key, ptr(string(cur)), ptr(string(value))})
			fr.Routed = append(fr.Routed, ref.entry+" -> "+s.Name)
		}
		if err != nil {
			return fr, fmt.Errorf("%s: %s: %w", src.Path, ref.entry, err)
		}
	}
	if gateway {
		var rec *entryRecord
		var err error
		if doc, rec, err = p.gatewayEdit(doc, src, gwRef); err != nil {
			return fr, fmt.Errorf("%s: %w", src.Path, err)
		}
		if rec != nil {
			recs = append(recs, *rec)
			fr.Gateway = entryName(rec.Container, rec.Key)
		}
	}
	if len(recs) == 0 {
		fr.Unchanged = true
		return fr, nil
	}
	old, err := readRecord(fr.Record)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fr, fmt.Errorf("%s: %w", fr.Record, err)
	}
	p.res.writes[src.Path] = fileWrite{doc, mergeRecord(old, recs)}
	return fr, nil
}

func (p *planner) isGateway(path, entry string) bool {
	return slices.ContainsFunc(p.sc.rugwatch, func(r rugwatchEntry) bool { return r.gateway && r.Path == path && r.Entry == entry })
}

// gatewayEdit adds the gateway's entry to a file, or brings an existing
// one's env up to date.
func (p *planner) gatewayEdit(doc []byte, src source, existing *entryRef) ([]byte, *entryRecord, error) {
	if existing != nil {
		cur, _, err := memberValue(doc, existing.container, existing.key)
		if err != nil {
			return nil, nil, err
		}
		value, err := gatewayEntry(cur, p.o.Rugwatch, p.o.ConfigPath, p.gwEnv, p.gwEnvFile, p.gwTyped)
		if err != nil || sameJSON(cur, value) {
			return doc, nil, err
		}
		if doc, err = setMember(doc, existing.container, existing.key, value); err != nil {
			return nil, nil, err
		}
		return doc, &entryRecord{existing.container, existing.key, ptr(string(cur)), ptr(string(value))}, nil
	}
	container := []string{src.key}
	if src.key == "claude.json" {
		container = []string{"mcpServers"}
	}
	obj, err := locate(doc, container)
	if err != nil && !errors.Is(err, errNoObject) {
		return nil, nil, err
	}
	key := GatewayEntry
	for i := 2; obj != nil; i++ {
		if _, _, taken := obj.member(key); !taken {
			break
		}
		key = fmt.Sprintf("%s-%d", GatewayEntry, i)
	}
	value, err := gatewayEntry(nil, p.o.Rugwatch, p.o.ConfigPath, p.gwEnv, p.gwEnvFile, p.gwTyped)
	if err != nil {
		return nil, nil, err
	}
	if doc, err = addMember(doc, container, key, value); err != nil {
		return nil, nil, err
	}
	return doc, &entryRecord{container, key, nil, ptr(string(value))}, nil
}

// configText works out rugwatch's new config: the added servers appended,
// to a new file when there is none.
func (p *planner) configText() error {
	if len(p.added) == 0 {
		p.res.Created = false
		return nil
	}
	var b strings.Builder
	if err := writeServerItems(&b, p.added, p.o.Home); err != nil {
		return err
	}
	p.res.ConfigYAML = b.String()
	old := []byte(newConfigHead)
	if p.o.Config != nil {
		var err error
		if old, err = os.ReadFile(p.o.ConfigPath); err != nil {
			return fmt.Errorf("reading %s: %w", p.o.ConfigPath, err)
		}
	}
	p.res.NewConfig = appendServers(old, p.res.ConfigYAML)
	if _, err := configs.Parse(p.res.NewConfig, p.o.ConfigPath); err != nil {
		return fmt.Errorf("the servers to add do not make a valid config (nothing was written): %w", err)
	}
	return nil
}

// Apply writes what PlanInstall worked out: rugwatch's config first (a
// client pointing at a server rugwatch does not know would be refused),
// then for each client file its backup (the first time), its record, and
// the file.
func (r *InstallResult) Apply() error {
	if r.NewConfig != nil {
		if r.Created {
			if err := os.MkdirAll(filepath.Dir(r.Config), 0o700); err != nil {
				return fmt.Errorf("creating the directory of %s: %w", r.Config, err)
			}
			if _, err := os.Stat(r.Config); err == nil {
				return fmt.Errorf("%s appeared while the install was planned; run it again", r.Config)
			}
		}
		if err := writeAtomic(r.Config, r.NewConfig); err != nil {
			return fmt.Errorf("writing %s: %w", r.Config, err)
		}
	}
	for _, f := range r.Files {
		w, ok := r.writes[f.Path]
		if !ok {
			continue
		}
		if err := backup(f.Path); err != nil {
			return err
		}
		if err := writeRecord(f.Record, w.record); err != nil {
			return err
		}
		if err := writeAtomic(f.Path, w.data); err != nil {
			return fmt.Errorf("writing %s: %w", f.Path, err)
		}
	}
	return nil
}

func ptr(s string) *string { return &s }

// mergeRecord adds this install's entries to the record: an entry changed
// again keeps the original of the first change when what it changes is
// rugwatch's own writing.
func mergeRecord(old record, recs []entryRecord) record {
	out := record{Note: recordNote, Entries: old.Entries}
	for _, r := range recs {
		i := slices.IndexFunc(out.Entries, func(e entryRecord) bool { return slices.Equal(e.Container, r.Container) && e.Key == r.Key })
		if i < 0 {
			out.Entries = append(out.Entries, r)
			continue
		}
		if prev := out.Entries[i]; prev.Wrote != nil && r.Original != nil && sameJSON([]byte(*prev.Wrote), []byte(*r.Original)) {
			r.Original = prev.Original
		}
		out.Entries[i] = r
	}
	return out
}

func readRecord(path string) (record, error) {
	var r record
	data, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("not a record of rugwatch's: %v", err)
	}
	return r, nil
}

// writeRecord writes the record 0600: the originals it keeps may hold
// the client's secrets.
func writeRecord(path string, r record) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(path, append(data, '\n')); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Chmod(path, 0o600)
}

// proxiedEntry is the rewritten entry: rugwatch proxy in the server's
// place, handing it in env the values rugwatch's references stand for,
// every other key of the entry (envFile, disabled, timeouts, …) kept.
func proxiedEntry(orig []byte, s *Server, rugwatch, cfgPath string) ([]byte, error) {
	v, err := decodeJSONC(orig)
	if err != nil {
		return nil, err
	}
	entry, _ := v.(map[string]any)
	if entry == nil {
		return nil, errors.New("not a JSON object")
	}
	_, hadType := entry["type"]
	for _, k := range []string{"command", "args", "env", "cwd", "url", "serverUrl", "headers", "type", "transport"} {
		delete(entry, k)
	}
	entry["command"] = rugwatch
	entry["args"] = []string{"--config", cfgPath, "proxy", s.Name}
	if hadType {
		entry["type"] = "stdio"
	}
	if len(s.carry) > 0 {
		entry["env"] = s.carry
	}
	return renderEntry(entry)
}

// gatewayEntry is the gateway's entry: `rugwatch proxy --all`, handed
// every value the routed servers' references stand for. An existing
// entry's own keys are kept and its env extended.
func gatewayEntry(cur []byte, rugwatch, cfgPath string, env map[string]string, envFile string, typed bool) ([]byte, error) {
	entry := map[string]any{}
	merged := map[string]any{}
	if cur != nil {
		v, err := decodeJSONC(cur)
		if err != nil {
			return nil, err
		}
		if m, ok := v.(map[string]any); ok {
			entry = m
		}
		maps.Copy(merged, asObject(entry["env"]))
	}
	for k, v := range env {
		merged[k] = v
	}
	entry["command"] = rugwatch
	entry["args"] = []string{"--config", cfgPath, "proxy", "--all"}
	delete(entry, "env")
	if len(merged) > 0 {
		entry["env"] = merged
	}
	if envFile != "" {
		entry["envFile"] = envFile
	}
	if typed {
		entry["type"] = "stdio"
	}
	return renderEntry(entry)
}

// renderEntry writes an entry on one line, command and args first as
// people write them, the rest sorted.
func renderEntry(entry map[string]any) ([]byte, error) {
	keys := []string{"command", "args"}
	for _, k := range slices.Sorted(maps.Keys(entry)) {
		if k != "command" && k != "args" {
			keys = append(keys, k)
		}
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		for j, v := range []any{k, entry[k]} {
			vb, err := marshalNoEscape(v)
			if err != nil {
				return nil, err
			}
			b.Write(vb)
			if j == 0 {
				b.WriteString(": ")
			}
		}
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}

func marshalNoEscape(v any) ([]byte, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return []byte(strings.TrimSpace(b.String())), nil
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
