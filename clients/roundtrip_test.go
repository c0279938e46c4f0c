package clients

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch/configs"
)

// testdata/install is one machine with every client set up the way their
// documentation shows: literal tokens, Claude Code's ${VAR}, Cursor's
// ${env:…} and envFile, VS Code's inputs, envFile and an OAuth remote,
// Windsurf's serverUrl, and two different servers called github and two
// called memory.

// installSecrets are its literal secrets: none may reach rugwatch's config.
var installSecrets = []string{"ghp_DesktopFAKE", "ctx7sk-FAKE", "BSAfakeCursorInstall", "ghp_WindsurfFAKE"}

const (
	desktopFile  = "home/Library/Application Support/Claude/claude_desktop_config.json"
	claudeJSON   = "home/.claude.json"
	mcpJSON      = "project/.mcp.json"
	cursorFile   = "home/.cursor/mcp.json"
	vscodeFile   = "home/.config/Code/User/mcp.json"
	windsurfFile = "home/.codeium/windsurf/mcp_config.json"
)

type machine struct {
	dir, home, project string
	cfg                string // rugwatch's config; none at first
}

func newMachine(t *testing.T) *machine {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/install")); err != nil {
		t.Fatal(err)
	}
	return &machine{dir: dir, home: filepath.Join(dir, "home"), project: filepath.Join(dir, "project"),
		cfg: filepath.Join(dir, "etc", "rugwatch.yaml")}
}

func (m *machine) path(rel string) string { return filepath.Join(m.dir, rel) }

func (m *machine) install(t *testing.T, client string, gateway bool) (*InstallResult, error) {
	t.Helper()
	var cfg *configs.Config
	if _, err := os.Stat(m.cfg); err == nil {
		if cfg, err = configs.Load(m.cfg); err != nil {
			t.Fatalf("the config does not load: %v", err)
		}
	}
	plan, err := PlanInstall(InstallOptions{Home: m.home, Project: m.project, Client: client, Rugwatch: installRugwatch,
		ConfigPath: m.cfg, Config: cfg, Gateway: gateway})
	if err != nil {
		return nil, err
	}
	return plan, plan.Apply()
}

func (m *machine) mustInstall(t *testing.T, client string, gateway bool) *InstallResult {
	t.Helper()
	plan, err := m.install(t, client, gateway)
	if err != nil {
		t.Fatalf("install %s: %v", client, err)
	}
	return plan
}

func (m *machine) config(t *testing.T) *configs.Config {
	t.Helper()
	cfg, err := configs.Load(m.cfg)
	if err != nil {
		t.Fatalf("the config does not load: %v", err)
	}
	return cfg
}

// entryOf decodes one entry of a client file.
func entryOf(t *testing.T, path string, container []string, key string) (map[string]any, []byte) {
	t.Helper()
	raw, ok, err := memberValue(mustRead(t, path), container, key)
	if err != nil || !ok {
		t.Fatalf("%s %s: %v (present %v)", path, entryName(container, key), err, ok)
	}
	v, err := decodeJSONC(raw)
	if err != nil {
		t.Fatal(err)
	}
	return asObject(v), raw
}

// userAdds is the server a user adds by hand between install and uninstall.
func userAdds(doc []byte) []byte {
	for _, c := range []string{`"mcpServers": {`, `"servers": {`} {
		if i := bytes.Index(doc, []byte(c)); i >= 0 {
			at := i + len(c)
			return slices.Concat(doc[:at], []byte("\n    \"added-later\": {\"command\": \"uvx\", \"args\": [\"mcp-server-added-later\"]},"), doc[at:])
		}
	}
	panic("no server list")
}

func args(e map[string]any) []string {
	var out []string
	for _, a := range asArray(e["args"]) {
		s, _ := a.(string)
		out = append(out, s)
	}
	return out
}

// TestInstallUninstallRoundTrip: for each client, with one entry per
// server and with the gateway, from a machine with no rugwatch config:
// the config is written and loads, holds no secret, every entry rugwatch
// can stand in for goes through it, the others are left byte for byte;
// a server the user adds afterwards survives --uninstall, which puts the
// file back as it was plus that server.
func TestInstallUninstallRoundTrip(t *testing.T) {
	type loc struct {
		file      string
		container []string
		key       string
	}
	cases := []struct {
		client       string
		routed, kept []loc
		gatewayIn    string
	}{
		{"claude-desktop", []loc{{desktopFile, []string{"mcpServers"}, "github"}, {desktopFile, []string{"mcpServers"}, "memory"}}, nil, desktopFile},
		{"claude-code", []loc{{claudeJSON, []string{"mcpServers"}, "context7"}, {claudeJSON, []string{"projects", "/work/app", "mcpServers"}, "github"}},
			[]loc{{mcpJSON, []string{"mcpServers"}, "sentry"}, {mcpJSON, []string{"mcpServers"}, "postgres"}}, claudeJSON},
		{"cursor", []loc{{cursorFile, []string{"mcpServers"}, "internal"}, {cursorFile, []string{"mcpServers"}, "brave-search"}}, nil, cursorFile},
		{"vscode", []loc{{vscodeFile, []string{"servers"}, "memory"}, {vscodeFile, []string{"servers"}, "perplexity"}},
			[]loc{{vscodeFile, []string{"servers"}, "github"}}, vscodeFile},
		{"windsurf", []loc{{windsurfFile, []string{"mcpServers"}, "github"}}, []loc{{windsurfFile, []string{"mcpServers"}, "figma"}}, windsurfFile},
	}
	for _, c := range cases {
		for _, gateway := range []bool{false, true} {
			name := c.client
			if gateway {
				name += "/gateway"
			}
			t.Run(name, func(t *testing.T) {
				m := newMachine(t)
				files := map[string][]byte{}
				for _, l := range slices.Concat(c.routed, c.kept) {
					files[l.file] = mustRead(t, m.path(l.file))
				}
				plan := m.mustInstall(t, c.client, gateway)
				if !plan.Created {
					t.Error("the install did not say it wrote the config")
				}
				cfg := m.config(t)
				text := string(mustRead(t, m.cfg))
				for _, s := range installSecrets {
					if strings.Contains(text, s) {
						t.Errorf("literal secret %s in rugwatch's config", s)
					}
				}
				for _, l := range c.routed {
					if gateway {
						if _, ok, _ := memberValue(mustRead(t, m.path(l.file)), l.container, l.key); ok {
							t.Errorf("%s %s still there beside the gateway", l.file, entryName(l.container, l.key))
						}
						continue
					}
					e, _ := entryOf(t, m.path(l.file), l.container, l.key)
					a := args(e)
					if e["command"] != installRugwatch || len(a) != 4 || a[0] != "--config" || a[1] != m.cfg || a[2] != "proxy" {
						t.Errorf("%s %s not routed: %v", l.file, entryName(l.container, l.key), e)
					} else if _, ok := cfg.Server(a[3]); !ok {
						t.Errorf("%s routes to %q, which the config lacks", entryName(l.container, l.key), a[3])
					}
				}
				for _, l := range c.kept {
					_, now := entryOf(t, m.path(l.file), l.container, l.key)
					before, _, _ := memberValue(files[l.file], l.container, l.key)
					if !bytes.Equal(now, before) {
						t.Errorf("%s %s changed: %s", l.file, entryName(l.container, l.key), now)
					}
				}
				if gateway {
					gws := 0
					for rel := range files {
						refs, _ := entries(mustRead(t, m.path(rel)), sourceKeyOf(rel))
						for _, r := range refs {
							if e, _ := entryOf(t, m.path(rel), r.container, r.key); e["command"] == installRugwatch {
								gws++
								if a := args(e); rel != c.gatewayIn || !slices.Equal(a, []string{"--config", m.cfg, "proxy", "--all"}) {
									t.Errorf("%s %s: %v", rel, r.entry, a)
								}
							}
						}
					}
					if gws != 1 {
						t.Errorf("%d rugwatch entries, want the one gateway", gws)
					}
				}
				for rel := range files {
					if st, err := os.Stat(m.path(rel) + RecordSuffix); err == nil && st.Mode().Perm() != 0o600 {
						t.Errorf("%s%s: mode %v, want 0600 (it keeps the entries' secrets)", rel, RecordSuffix, st.Mode().Perm())
					}
				}

				// The user adds a server by hand; --uninstall keeps it.
				first := c.routed[0].file
				withUsers := userAdds(mustRead(t, m.path(first)))
				if err := os.WriteFile(m.path(first), withUsers, 0o600); err != nil {
					t.Fatal(err)
				}
				files[first] = userAdds(files[first])
				if _, err := Uninstall(m.home, m.project, c.client); err != nil {
					t.Fatalf("uninstall: %v", err)
				}
				for rel, want := range files {
					got := mustRead(t, m.path(rel))
					// One entry per server comes back byte for byte; the
					// gateway's removed entries come back at the end.
					if !gateway && !bytes.Equal(got, want) || gateway && !sameJSON(got, want) {
						t.Errorf("%s after uninstall:\n%s\nwant:\n%s", rel, got, want)
					}
					for _, left := range []string{RecordSuffix, BackupSuffix} {
						if _, err := os.Stat(m.path(rel) + left); !errors.Is(err, fs.ErrNotExist) {
							t.Errorf("%s%s left behind", rel, left)
						}
					}
				}
				if _, ok, _ := memberValue(mustRead(t, m.path(first)), c.routed[0].container[:1], "added-later"); !ok {
					t.Error("the server the user added after the install is gone")
				}
			})
		}
	}
}

func sourceKeyOf(rel string) string {
	switch rel {
	case claudeJSON:
		return "claude.json"
	case vscodeFile:
		return "servers"
	}
	return "mcpServers"
}

// TestInstallSecretsKeepTheNamesUsersExport: installing every client into
// one config, each secret is a reference named as the server reads it (no
// GITHUB_GITHUB_…), a second different token under one name takes its
// client's suffix, references the clients make to the environment keep
// their names, and the export lists name every variable the config
// reads, so `serve` resolves every server with exactly those set.
func TestInstallSecretsKeepTheNamesUsersExport(t *testing.T) {
	m := newMachine(t)
	exported := map[string]Export{}
	for _, client := range []string{"claude-desktop", "claude-code", "cursor", "vscode", "windsurf"} {
		for _, e := range m.mustInstall(t, client, false).Exports {
			exported[e.Name] = e
		}
	}
	cfg := m.config(t)
	tmpl := func(server, kind, key string) string {
		s, ok := cfg.Server(server)
		if !ok {
			t.Fatalf("no server %s in the config", server)
		}
		if kind == "headers" {
			return s.Headers[key].Template()
		}
		return s.Env[key].Template()
	}
	for _, c := range []struct{ server, kind, key, want string }{
		{"github", "env", "GITHUB_PERSONAL_ACCESS_TOKEN", "${env:GITHUB_PERSONAL_ACCESS_TOKEN}"},
		{"context7", "headers", "CONTEXT7_API_KEY", "${env:CONTEXT7_API_KEY}"},
		{"github-claude-code", "env", "GITHUB_PERSONAL_ACCESS_TOKEN", "${env:GITHUB_PAT}"},
		{"internal", "env", "INTERNAL_MCP_TOKEN", "${env:INTERNAL_MCP_TOKEN}"},
		{"internal", "env", "INTERNAL_REGION", "${env:INTERNAL_REGION}"}, // from its envFile
		{"internal", "env", "LOG_LEVEL", "info"},
		{"brave-search", "env", "BRAVE_API_KEY", "${env:BRAVE_API_KEY}"},
		{"perplexity", "env", "PERPLEXITY_API_KEY", "${env:PERPLEXITY_API_KEY}"},
		{"github-windsurf", "env", "GITHUB_PERSONAL_ACCESS_TOKEN", "${env:GITHUB_PERSONAL_ACCESS_TOKEN_WINDSURF}"},
	} {
		if got := tmpl(c.server, c.kind, c.key); got != c.want {
			t.Errorf("%s %s.%s = %q, want %q", c.server, c.kind, c.key, got, c.want)
		}
	}
	// The values stay in the client's entry, under the same names.
	for _, c := range []struct {
		file, key, name, value string
	}{
		{desktopFile, "github", "GITHUB_PERSONAL_ACCESS_TOKEN", "ghp_DesktopFAKE000000000000000000000000000"},
		{cursorFile, "brave-search", "BRAVE_API_KEY", "BSAfakeCursorInstall1234567890"},
		{windsurfFile, "github", "GITHUB_PERSONAL_ACCESS_TOKEN_WINDSURF", "ghp_WindsurfFAKE11111111111111111111111111"},
		{vscodeFile, "perplexity", "PERPLEXITY_API_KEY", "${input:perplexity-key}"},
	} {
		container := []string{"mcpServers"}
		if c.file == vscodeFile {
			container = []string{"servers"}
		}
		e, _ := entryOf(t, m.path(c.file), container, c.key)
		if got := asObject(e["env"])[c.name]; got != c.value {
			t.Errorf("%s %s: env %s = %v", c.file, c.key, c.name, got)
		}
	}
	// Keys rugwatch does not use stay in the entry.
	vs, _ := entryOf(t, m.path(vscodeFile), []string{"servers"}, "perplexity")
	mem, _ := entryOf(t, m.path(vscodeFile), []string{"servers"}, "memory")
	cur, _ := entryOf(t, m.path(cursorFile), []string{"mcpServers"}, "internal")
	if vs["dev"] == nil || mem["envFile"] != "${userHome}/.config/Code/User/memory.env" || cur["envFile"] == nil || mem["type"] != "stdio" {
		t.Errorf("keys of the entries lost: %v / %v / %v", vs, mem, cur)
	}

	// Every ${env:} the config reads is in an export list; with exactly
	// those set, every server's env and headers resolve.
	r := configs.Resolver{LookupEnv: func(k string) (string, bool) {
		_, ok := exported[k]
		return "set", ok
	}}
	for _, s := range cfg.Servers {
		for k, v := range s.Env {
			if _, err := v.Resolve(r); err != nil {
				t.Errorf("%s env.%s: %v", s.Name, k, err)
			}
		}
		for k, v := range s.Headers {
			if _, err := v.Resolve(r); err != nil {
				t.Errorf("%s headers.%s: %v", s.Name, k, err)
			}
		}
	}
	if e := exported["INTERNAL_MCP_TOKEN"]; e.Source != "environment" || !strings.Contains(e.For, "Cursor reads it from your environment") {
		t.Errorf("Cursor's ${env:INTERNAL_MCP_TOKEN}: %+v", e)
	}
	if e := exported["GITHUB_PERSONAL_ACCESS_TOKEN"]; e.Source != "client-file" || !strings.Contains(e.For, "claude_desktop_config.json") {
		t.Errorf("where the token is: %+v", e)
	}
	if e := exported["PERPLEXITY_API_KEY"]; e.Source != "input" {
		t.Errorf("VS Code's input: %+v", e)
	}
	for name, e := range exported {
		for _, s := range installSecrets {
			if strings.Contains(e.For, s) {
				t.Errorf("export %s quotes a secret", name)
			}
		}
	}
}

// TestInstallNeverMergesDifferentServers: Claude Desktop's memory (its
// own MEMORY_FILE_PATH) and VS Code's (an envFile) are two servers, and so
// are two githubs with different tokens; the same server installed again
// after an uninstall is the one the config has.
func TestInstallNeverMergesDifferentServers(t *testing.T) {
	m := newMachine(t)
	m.mustInstall(t, "claude-desktop", false)
	plan := m.mustInstall(t, "vscode", false)
	m.mustInstall(t, "windsurf", false)
	cfg := m.config(t)
	desk, _ := cfg.Server("memory")
	if got := desk.Env["MEMORY_FILE_PATH"].Template(); got != "/Users/me/desktop-memory.json" || len(desk.Env) != 1 {
		t.Errorf("Claude Desktop's memory changed: %v", desk.Env)
	}
	vs, ok := cfg.Server("memory-vscode")
	if !ok || vs.Env["MEMORY_FILE_PATH"].Template() != "${env:MEMORY_FILE_PATH}" {
		t.Fatalf("VS Code's memory: %+v (added %v)", vs, plan.Added)
	}
	e, _ := entryOf(t, m.path(vscodeFile), []string{"servers"}, "memory")
	if a := args(e); a[len(a)-1] != "memory-vscode" {
		t.Errorf("VS Code's memory routes to %v", a)
	}
	ws, _ := entryOf(t, m.path(windsurfFile), []string{"mcpServers"}, "github")
	if a := args(ws); a[len(a)-1] != "github-windsurf" {
		t.Errorf("Windsurf's github routes to %v", a)
	}

	if _, err := Uninstall(m.home, m.project, "claude-desktop"); err != nil {
		t.Fatal(err)
	}
	again := m.mustInstall(t, "claude-desktop", false)
	if len(again.Added) != 0 {
		t.Errorf("installing Claude Desktop again added %v", again.Added)
	}
	e, _ = entryOf(t, m.path(desktopFile), []string{"mcpServers"}, "github")
	if a := args(e); a[len(a)-1] != "github" {
		t.Errorf("Claude Desktop's github routes to %v", a)
	}
}

// TestInstallLeavesSignInRemotes: VS Code's GitHub remote (OAuth, no
// credential in the entry) is not routed through the stdio proxy, which
// has nothing to sign in with; the install says so, naming file and entry.
func TestInstallLeavesSignInRemotes(t *testing.T) {
	m := newMachine(t)
	before, _, _ := memberValue(mustRead(t, m.path(vscodeFile)), []string{"servers"}, "github")
	plan := m.mustInstall(t, "vscode", false)
	if _, now := entryOf(t, m.path(vscodeFile), []string{"servers"}, "github"); !bytes.Equal(now, before) {
		t.Errorf("the OAuth remote was rewritten: %s", now)
	}
	if len(plan.Warnings) != 1 || !strings.Contains(plan.Warnings[0], m.path(vscodeFile)+`: servers["github"]`) || !strings.Contains(plan.Warnings[0], "OAuth") {
		t.Errorf("warnings %q", plan.Warnings)
	}
	for _, s := range m.config(t).Servers {
		if strings.Contains(s.URL, "githubcopilot") {
			t.Errorf("the OAuth remote was added to the config as %s", s.Name)
		}
	}
}

// TestInstallGatewayIsOneEntry: with --gateway a client gets one entry,
// `rugwatch --config CFG proxy --all`, handed every secret its servers
// need; installing again changes nothing, and mixing in one entry per
// server is refused, naming the file and the entry.
func TestInstallGatewayIsOneEntry(t *testing.T) {
	m := newMachine(t)
	plan := m.mustInstall(t, "vscode", true)
	doc := mustRead(t, m.path(vscodeFile))
	refs, err := entries(doc, "servers")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, r := range refs {
		keys = append(keys, r.key)
	}
	if !slices.Equal(keys, []string{"github", GatewayEntry}) {
		t.Fatalf("entries %v, want the OAuth remote and the gateway", keys)
	}
	gw, _ := entryOf(t, m.path(vscodeFile), []string{"servers"}, GatewayEntry)
	if !slices.Equal(args(gw), []string{"--config", m.cfg, "proxy", "--all"}) || gw["type"] != "stdio" ||
		asObject(gw["env"])["PERPLEXITY_API_KEY"] != "${input:perplexity-key}" || gw["envFile"] != filepath.Join(m.home, ".config/Code/User/memory.env") {
		t.Errorf("gateway entry %v", gw)
	}
	if plan.Files[0].Gateway != `servers["rugwatch"]` || !slices.Equal(plan.Added, []string{"memory", "perplexity"}) {
		t.Errorf("plan %+v", plan)
	}
	again := m.mustInstall(t, "vscode", true)
	if !again.Files[0].Unchanged || len(again.Added) != 0 {
		t.Errorf("a second gateway install changed things: %+v", again)
	}
	if !bytes.Equal(mustRead(t, m.path(vscodeFile)), doc) {
		t.Error("a second gateway install rewrote the file")
	}
	_, err = m.install(t, "vscode", false)
	if err == nil || !strings.Contains(err.Error(), m.path(vscodeFile)+`: servers["rugwatch"] is rugwatch's gateway`) {
		t.Errorf("one entry per server beside the gateway: %v", err)
	}
}

// TestUninstallLeavesWhatTheUserChanged: an entry the user edited after
// the install is theirs; the rest is undone, and the pre-install copy is
// kept for them to compare.
func TestUninstallLeavesWhatTheUserChanged(t *testing.T) {
	m := newMachine(t)
	m.mustInstall(t, "cursor", false)
	p := m.path(cursorFile)
	edited, err := setMember(mustRead(t, p), []string{"mcpServers"}, "brave-search", []byte(`{"command": "npx", "args": ["-y", "brave-search-mcp@2"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	files, err := Uninstall(m.home, m.project, "cursor")
	if err != nil {
		t.Fatal(err)
	}
	if f := files[0]; len(f.Restored) != 1 || len(f.Kept) != 1 || !strings.Contains(f.Kept[0], `mcpServers["brave-search"]: changed since the install`) || f.Backup != p+BackupSuffix {
		t.Errorf("uninstall %+v", f)
	}
	if e, _ := entryOf(t, p, []string{"mcpServers"}, "brave-search"); args(e)[1] != "brave-search-mcp@2" {
		t.Errorf("the user's entry was changed: %v", e)
	}
	if e, _ := entryOf(t, p, []string{"mcpServers"}, "internal"); e["command"] != "node" {
		t.Errorf("internal not put back: %v", e)
	}
}

// TestInstallErrorsNameFileAndKey: a client file rugwatch cannot edit
// safely is refused with its path and the key at fault, and nothing is
// written.
func TestInstallErrorsNameFileAndKey(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{`{"mcpServers": {"a": {"command": "x"}, "a": {"command": "y"}}}`, `mcpServers holds the key "a" twice`},
		{`{"mcpServers": {"a": {"command": "x"}}, "mcpServers": {}}`, `the file holds the key "mcpServers" twice`},
		{`{"mcpServers": []}`, `mcpServers is not a JSON object`},
	} {
		m := newMachine(t)
		p := m.path(windsurfFile)
		if err := os.WriteFile(p, []byte(c.doc), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := m.install(t, "windsurf", false)
		if err == nil || !strings.Contains(err.Error(), p+": ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.doc, err)
		}
		if _, err := os.Stat(m.cfg); err == nil {
			t.Errorf("%s: the config was written", c.doc)
		}
	}
}
