package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch/report"
)

// TestRealServersPolledSandboxed: the real server-filesystem, with its
// allowed directory reachable, and server-everything are polled through
// the sandbox by default, and status says so.
func TestRealServersPolledSandboxed(t *testing.T) {
	ev := everythingBin(t)
	fs, err := filepath.Abs("../../node_modules/.bin/mcp-server-filesystem")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fs); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("server-filesystem not installed (%v); .ci/run must run npm ci", err)
		}
		t.Skip("server-filesystem not installed; run `npm ci`")
	}
	allowed := sharedDir(t) // outside /tmp, open to the sandbox's uid
	if err := os.WriteFile(filepath.Join(allowed, "note.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCLI(t, 100)
	cfg := "data_dir: " + filepath.Join(filepath.Dir(c.config), "data") + `
defaults: { timeout: 30s }
servers:
  - name: files
    command: ` + fs + `
    args: ["` + allowed + `"]
    mounts: [{path: "` + allowed + `", mode: rw}]
  - name: everything
    command: ` + ev + `
    args: ["stdio"]
`
	if err := os.WriteFile(c.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.want(0, "", "init")
	out := c.want(1, "", "check", "--json").stdout // every tool pending: exit 1
	var rep report.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	for _, s := range rep.Servers {
		if !s.Reachable || !s.Sandboxed || len(s.Tools) < 5 {
			t.Errorf("%s: reachable %v, sandboxed %v (%s), %d tools, error %q", s.Name, s.Reachable, s.Sandboxed, s.SandboxNote, len(s.Tools), s.Error)
		}
	}
}

// TestCheckScanServeProxySandboxed: check, scan, serve and proxy all run a
// real server sandboxed (strict: no fallback), whoever runs rugwatch —
// .ci/run runs this again as an ordinary user. serve is non-dumpable,
// which used to make every sandbox of an ordinary user's daemon fail and
// fall back to running unconfined. Through the proxy, server-filesystem
// reads and writes the one directory its mounts grant, and nothing beside it.
func TestCheckScanServeProxySandboxed(t *testing.T) {
	ev := everythingBin(t)
	fs, err := filepath.Abs("../../node_modules/.bin/mcp-server-filesystem")
	if err != nil {
		t.Fatal(err)
	}
	nodeBin(t)
	dir := t.TempDir()
	granted, beside := sharedDir(t), sharedDir(t)
	if err := os.WriteFile(filepath.Join(beside, "secret.txt"), []byte("NOT-GRANTED"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, dir, fmt.Sprintf(`data_dir: %[1]s/data
defaults: { schedule: "@every 1h", timeout: 60s, sandbox: strict }
servers:
  - name: everything
    command: %[2]s
    args: ["stdio"]
  - name: files
    command: %[3]s
    args: ["%[4]s"]
    mounts: [{path: "%[4]s", mode: rw}]
`, dir, ev, fs, granted))
	env := append(baseEnv(dir), "RUGWATCH_CONFIG="+cfg)
	run := func(code int, stdin string, args ...string) string {
		t.Helper()
		r := runBin(t, env, stdin, args...)
		if r.code != code {
			t.Fatalf("rugwatch %v: exit %d, want %d\n%s\n%s", args, r.code, code, r.stdout, r.stderr)
		}
		return r.stdout
	}
	sandboxed := func(what, out string) {
		t.Helper()
		var rep report.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, out)
		}
		for _, s := range rep.Servers {
			if !s.Reachable || !s.Sandboxed || s.NotSandboxed() != "" {
				t.Errorf("%s: %s reachable %v, sandboxed %v (%s), error %q", what, s.Name, s.Reachable, s.Sandboxed, s.SandboxNote, s.Error)
			}
		}
	}
	run(0, "", "init")
	sandboxed("check", run(1, "", "check", "--json"))

	var scan ScanReport
	if err := json.Unmarshal([]byte(run(0, "", "scan", "--json", "--", ev, "stdio")), &scan); err != nil {
		t.Fatal(err)
	}
	if !scan.Sandboxed || len(scan.Tools) < 10 {
		t.Errorf("scan: sandboxed %v (%s), %d tools", scan.Sandboxed, scan.SandboxNote, len(scan.Tools))
	}

	d := startDaemon(t, env, "serve")
	d.wait(0, 30*time.Second, func(l logLine) bool { return l.str("msg") == "serving" })
	sandboxed("check through serve", run(1, "", "check", "--json"))
	run(0, "", "approve", "everything", "--all", "--yes")
	run(0, "", "approve", "files", "--all", "--yes", "--accept-findings")
	sandboxed("status", run(0, "", "status", "--json"))

	c := startTS(t, env, "stdio", rugwatchBin(t), "--config", cfg, "proxy", "files")
	note := filepath.Join(granted, "note.txt")
	mustCall(t, c, "write_file", map[string]any{"path": note, "content": "written through the proxy"})
	if b, err := os.ReadFile(note); err != nil || string(b) != "written through the proxy" {
		t.Errorf("the granted directory on the host holds %q, %v", b, err)
	}
	if got := resultText(t, mustCall(t, c, "read_text_file", map[string]any{"path": note})); !strings.Contains(got, "written through the proxy") {
		t.Errorf("read back: %q", got)
	}
	// The server's own check would refuse a path outside its root; the
	// sandbox must hold where the server does not: list the neighbour
	// with a symlink planted inside the grant.
	if err := os.Symlink(beside, filepath.Join(granted, "link")); err != nil {
		t.Fatal(err)
	}
	if res, _, _ := c.call("read_text_file", map[string]any{"path": filepath.Join(granted, "link", "secret.txt")}); strings.Contains(string(res), "NOT-GRANTED") {
		t.Errorf("a directory beside the grant was read through a symlink: %s", res)
	}
	c.close()
	d.stop()
}

// TestNpxServerKeepsItsHome: a server run by npx fetches its package
// through the egress path once, into its own persistent HOME; a second
// poll runs it from there without installing it again, and server-memory
// keeps its graph across proxy sessions.
func TestNpxServerKeepsItsHome(t *testing.T) {
	if testing.Short() {
		t.Skip("fetches a package from the npm registry")
	}
	nodeBin(t)
	dir := t.TempDir()
	const pkg = "@modelcontextprotocol/server-memory@2026.8.31"
	cfg := writeConfig(t, dir, fmt.Sprintf(`data_dir: %s/data
defaults: { schedule: "@every 1h", timeout: 120s, sandbox: strict }
servers:
  - name: memory
    command: npx
    args: ["-y", "%s"]
`, dir, pkg))
	env := append(baseEnv(dir), "RUGWATCH_CONFIG="+cfg)
	if r := runBin(t, env, "", "init"); r.code != 0 {
		t.Fatalf("init: %s", r.stderr)
	}
	first := runBin(t, env, "", "check", "--json")
	if first.code != 1 || !strings.Contains(first.stdout, `"reachable": true`) {
		if os.Getenv("CI") == "" {
			t.Skipf("npx could not fetch %s (no registry here?): %s", pkg, first.stdout)
		}
		t.Fatalf("first check: exit %d\n%s\n%s", first.code, first.stdout, first.stderr)
	}
	home := filepath.Join(dir, "data", "servers", "memory", "home")
	if _, err := os.Stat(filepath.Join(home, ".npm", "_npx")); err != nil {
		t.Fatalf("npx did not install into the server's HOME: %v", err)
	}
	if r := runBin(t, env, "", "approve", "memory", "--all", "--yes", "--accept-findings"); r.code != 0 {
		t.Fatalf("approve: %s%s", r.stdout, r.stderr)
	}
	c := startTS(t, env, "stdio", rugwatchBin(t), "--config", cfg, "proxy", "memory")
	mustCall(t, c, "create_entities", map[string]any{"entities": []map[string]any{{"name": "rugwatch-e2e", "entityType": "test", "observations": []string{"kept"}}}})
	c.close()
	c = startTS(t, env, "stdio", rugwatchBin(t), "--config", cfg, "proxy", "memory")
	if got := string(mustCall(t, c, "read_graph", map[string]any{})); !strings.Contains(got, "rugwatch-e2e") {
		t.Errorf("the graph did not survive the session: %s", got)
	}
	c.close()
	// The second poll runs what the first installed: npx finds it in the
	// HOME's cache and installs nothing again.
	installed, err := filepath.Glob(filepath.Join(home, ".npm", "_npx", "*", "node_modules", "@modelcontextprotocol", "server-memory", "package.json"))
	if err != nil || len(installed) != 1 {
		t.Fatalf("npx install: %v %v", installed, err)
	}
	before, err := os.Stat(installed[0])
	if err != nil {
		t.Fatal(err)
	}
	second := runBin(t, env, "", "check", "--json")
	if second.code != 0 || !strings.Contains(second.stdout, `"reachable": true`) {
		t.Fatalf("second check: exit %d\n%s\n%s", second.code, second.stdout, second.stderr)
	}
	if after, err := os.Stat(installed[0]); err != nil || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("npx installed the package again on the second poll (%v)", err)
	}
	t.Logf("first poll (fetching) %v, second (cached) %v", first.elapsed, second.elapsed)
}
