package clients

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch/configs"
)

var showDiscover = flag.Bool("show-discover", false, "print discover's output on the fixtures")

// fixtureSecrets are the literal secrets of testdata/discover: none may
// reach the output.
var fixtureSecrets = []string{
	"ghp_FAKEdiscoverFixture", "ghp_OTHERfakeFixture", "sk-FAKEclaudeCodeFixture", "BSAfakeCursorFixture",
	"FAKEqueryKey", "hunter2FAKE", "changeme", "a1b2c3d4e5f6a7b8c9d0",
}

func runDiscoverFixture(t *testing.T, extra ...string) (string, string) {
	t.Helper()
	home, _ := filepath.Abs("testdata/discover/home")
	project, _ := filepath.Abs("testdata/discover/project")
	var out bytes.Buffer
	rep := Discover(home, project)
	var err error
	if len(extra) == 1 && extra[0] == "--json" {
		enc := json.NewEncoder(&out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		err = enc.Encode(rep)
	} else {
		err = WriteYAML(&out, rep, home)
	}
	if err != nil {
		t.Fatalf("discover: %v\n%s", err, out.String())
	}
	return out.String(), project
}

func TestDiscoverYAMLIsAValidConfig(t *testing.T) {
	out, project := runDiscoverFixture(t)
	if *showDiscover {
		t.Log("\n" + out)
	}
	for _, s := range fixtureSecrets {
		if strings.Contains(out, s) {
			t.Errorf("secret %q in the output", s)
		}
	}
	cfg, err := configs.Parse([]byte(out), filepath.Join(t.TempDir(), "rugwatch.yaml"))
	if err != nil {
		t.Fatalf("Parse rejects discover's output: %v\n%s", err, out)
	}
	got := map[string]configs.Server{}
	for _, s := range cfg.Servers {
		got[s.Name] = s
	}
	want := map[string]string{ // name → transport
		"github": "stdio", "github-claude-code": "stdio", "github-windsurf": "stdio", "my-files": "stdio", "never-run": "stdio",
		"memory": "stdio", "remote-api": "http", "sentry": "sse", "db": "stdio", "linear": "sse",
		"brave-search": "stdio", "notion": "http", "local-tool": "stdio", "fetch": "stdio", "github-copilot": "http",
		"workspace": "stdio", "time": "stdio", "context7": "http", "puppeteer": "stdio",
	}
	for n, tr := range want {
		s, ok := got[n]
		if !ok {
			t.Errorf("server %s missing", n)
			continue
		}
		if s.Transport != tr {
			t.Errorf("%s: transport %s, want %s", n, s.Transport, tr)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d servers, want %d", len(got), len(want))
	}
	tmpl := func(server, kind, key string) string {
		s := got[server]
		m := s.Env
		if kind == "headers" {
			m = s.Headers
		}
		return m[key].Template()
	}
	checks := []struct{ server, kind, key, want string }{
		// The name the server reads is the name exported; a second,
		// different token under it takes its client's suffix.
		{"github", "env", "GITHUB_PERSONAL_ACCESS_TOKEN", "${env:GITHUB_PERSONAL_ACCESS_TOKEN}"},
		{"github-claude-code", "env", "GITHUB_PERSONAL_ACCESS_TOKEN", "${env:GITHUB_PAT}"},
		{"github-windsurf", "env", "GITHUB_PERSONAL_ACCESS_TOKEN", "${env:GITHUB_PERSONAL_ACCESS_TOKEN_WINDSURF}"},
		{"never-run", "env", "LOG_LEVEL", "debug"},
		{"never-run", "env", "TEMPLATE", "${env:TEMPLATE}"},
		{"never-run", "env", "SENTRY_DSN_HASH", "${env:SENTRY_DSN_HASH}"},
		{"db", "env", "DATABASE_URL", "${env:DATABASE_URL}"},
		{"db", "env", "DB_PASSWORD", "${env:DB_PASSWORD}"},
		{"brave-search", "env", "BRAVE_API_KEY", "${env:BRAVE_API_KEY}"},
		{"remote-api", "headers", "Authorization", "Bearer ${env:REMOTE_API_AUTHORIZATION}"},
		{"remote-api", "headers", "X-Team", "blue"},
		{"notion", "headers", "Authorization", "Bearer ${env:NOTION_TOKEN}"},
		{"github-copilot", "headers", "Authorization", "Bearer ${env:GITHUB_TOKEN}"}, // the input's id
	}
	for _, c := range checks {
		if got := tmpl(c.server, c.kind, c.key); got != c.want {
			t.Errorf("%s %s.%s = %q, want %q", c.server, c.kind, c.key, got, c.want)
		}
	}
	if h := got["github-copilot"].Headers; len(h) != 1 {
		t.Errorf("Content-Type should be left out: %v", h)
	}
	if g := got["github-claude-code"]; g.Command != "docker" {
		t.Errorf("github-claude-code is the Claude Code project server: %+v", g)
	}
	if w := got["workspace"]; w.Args[0] != filepath.Join(project, "server.js") || w.Args[1] != "say \"hi\"\n" {
		t.Errorf("workspace args %q", w.Args)
	}
	if f := got["fetch"]; len(f.Args) != 2 || !strings.Contains(f.Args[1], "// not a comment /* nor this */") {
		t.Errorf("a string with comment markers was changed: %q", f.Args)
	}
	if lt := got["local-tool"]; lt.Cwd != filepath.Join(project, ".cursor", "tools") {
		t.Errorf("cwd %q", lt.Cwd)
	}
	for _, s := range []string{
		"# from Claude Desktop: ~/.config/Claude/claude_desktop_config.json mcpServers[\"github\"]",
		"# from Claude Desktop: ~/Library/Application Support/Claude/claude_desktop_config.json mcpServers[\"github\"]",
		"projects[\"/work/app\"].mcpServers[\"github\"]",
		"# skipped Cursor mcpServers[\"leaky\"]", "api_key=…", "# skipped Cursor mcpServers[\"userinfo\"]",
		"# skipped Claude Code mcpServers[\"ws\"]",
		"export GITHUB_PERSONAL_ACCESS_TOKEN=…", "export GITHUB_PERSONAL_ACCESS_TOKEN_WINDSURF=…", "export REMOTE_API_AUTHORIZATION=…",
		"export NOTION_TOKEN=…", "export GITHUB_TOKEN=…", // read from the environment, or asked for by VS Code
		"# note: disabled in the client", "# note: envFile ",
		"No server was started",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q", s)
		}
	}
	if _, err := os.Stat("testdata/discover/home/DISCOVER_RAN_A_SERVER"); err == nil {
		t.Error("discover started a server")
	}
	if _, err := os.Stat("DISCOVER_RAN_A_SERVER"); err == nil {
		t.Error("discover started a server")
	}
}

func TestDiscoverJSON(t *testing.T) {
	out, _ := runDiscoverFixture(t, "--json")
	for _, s := range fixtureSecrets {
		if strings.Contains(out, s) {
			t.Errorf("secret %q in the JSON", s)
		}
	}
	var rep Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Servers) != 19 || len(rep.Skipped) != 3 || len(rep.Exports) < 5 {
		t.Errorf("%d servers, %d skipped, %d exports", len(rep.Servers), len(rep.Skipped), len(rep.Exports))
	}
	found := 0
	for _, s := range rep.Sources {
		if s.Found {
			found++
		}
		if s.Error != "" {
			t.Errorf("%s: %s", s.Path, s.Error)
		}
	}
	if found != 9 {
		t.Errorf("%d config files found, want 9", found)
	}
	for _, s := range rep.Servers {
		if s.Name == "github" && len(s.Origins) != 2 {
			t.Errorf("the same github server in two Claude Desktop files is one server: %+v", s.Origins)
		}
	}
}

func TestDiscoverNothingAndBrokenFiles(t *testing.T) {
	home := t.TempDir()
	var out bytes.Buffer
	if err := WriteYAML(&out, Discover(home, home), home); err != nil {
		t.Fatal(err)
	}
	if _, err := configs.Parse(out.Bytes(), filepath.Join(home, "rugwatch.yaml")); err != nil || !strings.Contains(out.String(), "servers: []") {
		t.Fatalf("%v\n%s", err, out.String())
	}
	_ = os.MkdirAll(filepath.Join(home, ".cursor"), 0o700)
	_ = os.WriteFile(filepath.Join(home, ".cursor", "mcp.json"), []byte(`{"mcpServers": {"x": {"command": "a", "env": {"K": "s3cr3tFAKE"`), 0o600)
	_ = os.WriteFile(filepath.Join(home, ".mcp.json"), []byte(`[1,2]`), 0o600)
	out.Reset()
	if err := WriteYAML(&out, Discover(home, home), home); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "mcp.json: skipped, not valid JSON") || !strings.Contains(out.String(), ".mcp.json: skipped, not a JSON object") ||
		strings.Contains(out.String(), "s3cr3tFAKE") {
		t.Errorf("broken files:\n%s", out.String())
	}
}

func TestStripJSONC(t *testing.T) {
	cases := map[string]string{
		`{"a": 1, // c` + "\n" + `}`:              `{"a":1}`,
		`{"a": [1, 2,], }`:                        `{"a":[1,2]}`,
		`/* x */ {"a": "//", "b": "/* */"}`:       `{"a":"//","b":"/* */"}`,
		`{"a": "q\"//,}", /* "x" */ "b": [/**/]}`: `{"a":"q\"//,}","b":[]}`,
		"\ufeff{\"a\":{\"b\":1,\n},\n}":           `{"a":{"b":1}}`,
		`{"a": "x,"}`:                             `{"a":"x,"}`,
	}
	for in, want := range cases {
		var v any
		if err := json.Unmarshal(stripJSONC([]byte(in)), &v); err != nil {
			t.Errorf("%q: %v (%q)", in, err, stripJSONC([]byte(in)))
			continue
		}
		got, _ := json.Marshal(v)
		if string(got) != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
	// Line numbers survive.
	if n := bytes.Count(stripJSONC([]byte("/* a\nb */\n// c\n{}")), []byte("\n")); n != 3 {
		t.Errorf("%d newlines", n)
	}
	// Unterminated input does not panic.
	for _, s := range []string{`"abc`, `/* x`, `// x`, `"\`, `,`} {
		_ = stripJSONC([]byte(s))
	}
}

func TestNormalizeServerName(t *testing.T) {
	for in, want := range map[string]string{
		"GitHub Copilot": "github-copilot", "My Files!": "my-files", "a..b": "a..b", "--x--": "x",
		"": "server", "日本": "server", "_hidden": "hidden", "Srv_1.2": "srv_1.2", "!!": "server", "9lives": "9lives",
	} {
		if got := normalizeServerName(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
	if envVarName("9lives", "api-key") != "MCP_9LIVES_API_KEY" {
		t.Error(envVarName("9lives", "api-key"))
	}
}

// A discovered server handed a directory by absolute path (a filesystem
// server's root) gets it as a read-only grant, or under the sandbox it
// would see nothing; "/" , files and relative args are never grants.
func TestDiscoverGrantsTheDirectoriesArgsName(t *testing.T) {
	dir, cwd := t.TempDir(), t.TempDir()
	file := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rep := Report{Servers: []Server{{Name: "files", Transport: configs.TransportStdio, Command: "npx",
		Args: []string{"-y", "@modelcontextprotocol/server-filesystem", dir, dir + "/", "/", file, "rel/dir"}, Cwd: cwd}}}
	var out bytes.Buffer
	if err := WriteYAML(&out, rep, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	cfg, err := configs.Parse(out.Bytes(), filepath.Join(t.TempDir(), "rugwatch.yaml"))
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	got := cfg.Servers[0].Mounts
	if len(got) != 2 || got[0] != (configs.Mount{Path: dir, Mode: configs.MountRO}) || got[1] != (configs.Mount{Path: cwd, Mode: configs.MountRO}) {
		t.Errorf("mounts %+v\n%s", got, out.String())
	}
}
