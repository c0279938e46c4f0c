package clients

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch/configs"
)

// installRig is a copy of the discover fixtures and a rugwatch config
// that already has one of their servers.
type installRig struct {
	home, project, cfg string
}

const installRugwatch = "/opt/rugwatch/bin/rugwatch"

func newInstallRig(t *testing.T) *installRig {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/discover")); err != nil {
		t.Fatal(err)
	}
	r := &installRig{home: filepath.Join(dir, "home"), project: filepath.Join(dir, "project"), cfg: filepath.Join(dir, "rugwatch.yaml")}
	// "time" (VS Code's) is watched already, under a name of its own.
	cfg := "data_dir: ./data\nservers:\n- name: clock\n  command: uvx\n  args: [\"mcp-server-time\", \"--local-timezone=Europe/Berlin\"]\n# the end of the list\nnotify: {}\n"
	if err := os.WriteFile(r.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *installRig) install(t *testing.T, client string, force bool) (*InstallResult, error) {
	t.Helper()
	cfg, err := configs.Load(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanInstall(InstallOptions{Home: r.home, Project: r.project, Client: client, Rugwatch: installRugwatch, ConfigPath: r.cfg, Config: cfg, Force: force})
	if err != nil {
		return nil, err
	}
	return plan, plan.Apply()
}

func readJSONC(t *testing.T, path string) map[string]any {
	t.Helper()
	doc, err := readClientConfig(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return doc
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestInstallRoutesEveryClient: for each client, every entry rugwatch can
// watch becomes `rugwatch --config CFG proxy NAME` for a server of the
// config (added when it had none), the rest of each file is kept, the
// original is the backup, no literal secret reaches rugwatch's config,
// and --uninstall restores the file byte for byte.
func TestInstallRoutesEveryClient(t *testing.T) {
	for client := range Names {
		t.Run(client, func(t *testing.T) {
			r := newInstallRig(t)
			before := map[string][]byte{}
			for _, src := range clientSources(r.home, r.project) {
				if b, err := os.ReadFile(src.Path); err == nil && src.Client == Names[client] {
					before[src.Path] = b
				}
			}
			plan, err := r.install(t, client, true)
			if err != nil {
				t.Fatalf("install %s: %v", client, err)
			}
			cfg, err := configs.Load(r.cfg)
			if err != nil {
				t.Fatalf("the config after install does not load: %v\n%s", err, mustRead(t, r.cfg))
			}
			text := string(mustRead(t, r.cfg))
			for _, s := range fixtureSecrets {
				if strings.Contains(text, s) {
					t.Errorf("literal secret %s copied into rugwatch's config", s)
				}
			}
			routed := 0
			for _, f := range plan.Files {
				orig := before[f.Path]
				if f.Unchanged {
					continue
				}
				if got := mustRead(t, f.Backup); !bytes.Equal(got, orig) {
					t.Errorf("%s: backup differs from the original", f.Path)
				}
				refs, err := entries(mustRead(t, f.Path), sourceKey(r, f.Path))
				if err != nil {
					t.Fatal(err)
				}
				for _, sp := range refs {
					var e struct {
						Command string
						Args    []string
					}
					raw, _, err := memberValue(mustRead(t, f.Path), sp.container, sp.key)
					if err != nil {
						t.Fatal(err)
					}
					if err := json.Unmarshal(stripJSONC(raw), &e); err != nil {
						t.Fatal(err)
					}
					if e.Command != installRugwatch {
						continue // an entry rugwatch cannot watch, kept
					}
					routed++
					if len(e.Args) != 4 || e.Args[0] != "--config" || e.Args[1] != r.cfg || e.Args[2] != "proxy" {
						t.Errorf("%s %s: args %v", f.Path, sp.entry, e.Args)
						continue
					}
					if _, ok := cfg.Server(e.Args[3]); !ok {
						t.Errorf("%s %s routes to %q, which the config does not have", f.Path, sp.entry, e.Args[3])
					}
				}
				// Everything but the entries is as it was.
				a, b := readJSONC(t, f.Path), readJSONCBytes(t, orig)
				dropEntries(a)
				dropEntries(b)
				if ja, jb := mustJSON(a), mustJSON(b); ja != jb {
					t.Errorf("%s: the rest of the file changed:\n%s\n%s", f.Path, ja, jb)
				}
			}
			if routed == 0 {
				t.Fatalf("%s: nothing routed: %+v", client, plan)
			}

			// A second install routes nothing and keeps the first backup.
			plan2, err := r.install(t, client, true)
			if err != nil {
				t.Fatalf("second install: %v", err)
			}
			if len(plan2.Added) != 0 {
				t.Errorf("second install added %v", plan2.Added)
			}
			for _, f := range plan2.Files {
				if !f.Unchanged {
					t.Errorf("second install rewrote %s: %v", f.Path, f.Routed)
				}
			}

			files, err := Uninstall(r.home, r.project, client)
			if err != nil {
				t.Fatalf("uninstall: %v", err)
			}
			for _, f := range files {
				p := f.Path
				if !bytes.Equal(mustRead(t, p), before[p]) {
					t.Errorf("%s not restored byte for byte:\n%s", p, mustRead(t, p))
				}
				for _, left := range []string{p + BackupSuffix, p + RecordSuffix} {
					if _, err := os.Stat(left); err == nil {
						t.Errorf("%s left behind", left)
					}
				}
			}
		})
	}
}

// TestInstallSecretsTravelInTheClientEntry: a literal secret becomes a
// reference in rugwatch's config and its value moves into the rewritten
// entry's env, so the client still hands it over, to `rugwatch proxy`.
func TestInstallSecretsTravelInTheClientEntry(t *testing.T) {
	r := newInstallRig(t)
	if _, err := r.install(t, "cursor", false); err != nil {
		t.Fatal(err)
	}
	cfg, _ := configs.Load(r.cfg)
	brave, ok := cfg.Server("brave-search")
	if !ok || brave.Env["BRAVE_API_KEY"].Template() != "${env:BRAVE_API_KEY}" {
		t.Fatalf("brave-search in the config: %+v", brave)
	}
	doc := readJSONC(t, filepath.Join(r.home, ".cursor", "mcp.json"))
	entry := asObject(asObject(doc["mcpServers"])["brave-search"])
	if env := asObject(entry["env"]); env["BRAVE_API_KEY"] != "BSAfakeCursorFixture1234567890" {
		t.Errorf("the secret's value did not move into the entry's env: %v", entry)
	}
	// A value that was a reference already needs nothing from the entry.
	if env := asObject(asObject(asObject(doc["mcpServers"])["notion"])["env"]); len(env) != 0 {
		t.Errorf("notion's entry got env %v for a reference the client's environment resolves", env)
	}
}

// TestInstallRefusesToLoseComments: a VS Code file with a comment inside
// an entry is refused and left as it was (no backup, config unchanged);
// with --force only that entry's comment goes, the others stay.
func TestInstallRefusesToLoseComments(t *testing.T) {
	r := newInstallRig(t)
	ws := filepath.Join(r.project, ".vscode", "mcp.json")
	orig, cfgBefore := mustRead(t, ws), mustRead(t, r.cfg)
	if _, err := r.install(t, "vscode", false); err == nil || !strings.Contains(err.Error(), "comments") {
		t.Fatalf("want a refusal over comments, got %v", err)
	}
	if !bytes.Equal(mustRead(t, ws), orig) || !bytes.Equal(mustRead(t, r.cfg), cfgBefore) {
		t.Fatal("a refused install changed files")
	}
	if _, err := os.Stat(ws + BackupSuffix); err == nil {
		t.Fatal("a refused install left a backup")
	}
	if _, err := r.install(t, "vscode", true); err != nil {
		t.Fatal(err)
	}
	got := string(mustRead(t, ws))
	for _, keep := range []string{"// VS Code workspace MCP servers", "/* Prompted once, stored by VS Code. */", "// A comment-looking string must survive"} {
		if !strings.Contains(got, keep) {
			t.Errorf("comment %q outside the entries was lost:\n%s", keep, got)
		}
	}
	// The existing server is reused under its configured name.
	user := readJSONC(t, filepath.Join(r.home, ".config", "Code", "User", "mcp.json"))
	args, _ := asObject(asObject(user["servers"])["time"])["args"].([]any)
	if len(args) != 4 || args[3] != "clock" {
		t.Errorf("VS Code's time routes to %v, want the configured clock", args)
	}
}

func sourceKey(r *installRig, path string) string {
	for _, s := range clientSources(r.home, r.project) {
		if s.Path == path {
			return s.key
		}
	}
	return ""
}

func readJSONCBytes(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(stripJSONC(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// dropEntries replaces every server entry with its name only.
func dropEntries(doc map[string]any) {
	for _, k := range []string{"mcpServers", "servers"} {
		if m := asObject(doc[k]); m != nil {
			for n := range m {
				m[n] = "entry"
			}
		}
	}
	for _, p := range asObject(doc["projects"]) {
		if m := asObject(asObject(p)["mcpServers"]); m != nil {
			for n := range m {
				m[n] = "entry"
			}
		}
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }
