package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch/configs"
)

// TestDiscoverCommand runs the command on the clients package's client
// fixtures; what discover finds is tested there.
func TestDiscoverCommand(t *testing.T) {
	home, _ := filepath.Abs("../../clients/testdata/discover/home")
	project, _ := filepath.Abs("../../clients/testdata/discover/project")
	var out bytes.Buffer
	a := &App{Stdout: &out, Stderr: &out}
	if err := a.runDiscover(context.Background(), []string{"--json", "--home", home, "--project", project}); err != nil {
		t.Fatalf("discover: %v\n%s", err, out.String())
	}
	var rep struct {
		Servers []json.RawMessage `json:"servers"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || len(rep.Servers) < 10 {
		t.Fatalf("discover --json: %d servers, %v\n%s", len(rep.Servers), err, out.String())
	}
	if err := a.runDiscover(context.Background(), []string{"extra"}); err == nil {
		t.Error("want a usage error for an argument")
	}
}

// TestDiscoverInstallWithoutConfig: on a machine with no rugwatch config,
// --install writes one (./rugwatch.yaml, or where --config says, directory
// and all) and says where, lists every variable to export (Cursor's own
// ${env:INTERNAL_MCP_TOKEN} too, marked when set), warns about what it
// left alone, and --uninstall says what it put back.
func TestDiscoverInstallWithoutConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../../clients/testdata/install")); err != nil {
		t.Fatal(err)
	}
	home, project := filepath.Join(dir, "home"), filepath.Join(dir, "project")
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Chdir(work)
	run := func(args ...string) (string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		a := &App{Stdout: &out, Stderr: &errb, LookupEnv: func(k string) (string, bool) {
			return "set", k == "INTERNAL_MCP_TOKEN"
		}}
		if code := a.Run(context.Background(), append(args, "--home", home, "--project", project)); code != exitClean {
			t.Fatalf("rugwatch %v: exit %d\n%s%s", args, code, out.String(), errb.String())
		}
		return out.String(), errb.String()
	}

	out, _ := run("discover", "--install", "cursor")
	cfg := filepath.Join(work, "rugwatch.yaml")
	for _, want := range []string{
		"wrote a new config " + cfg + " with the servers brave-search, internal",
		"export INTERNAL_MCP_TOKEN=…   # env INTERNAL_MCP_TOKEN of server internal: Cursor reads it from your environment",
		"(set in this shell)",
		"export BRAVE_API_KEY=…", "export INTERNAL_REGION=…",
		"next: rugwatch --config " + cfg + " init",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("install output lacks %q:\n%s", want, out)
		}
	}
	if _, err := configs.Load(cfg); err != nil {
		t.Fatalf("the config written does not load: %v", err)
	}

	other := filepath.Join(dir, "etc", "rugwatch", "rugwatch.yaml")
	out, errs := run("--config", other, "discover", "--install", "vscode", "--gateway")
	if !strings.Contains(out, "wrote a new config "+other) || !strings.Contains(out, `added  servers["rugwatch"]: rugwatch proxy --all`) {
		t.Errorf("gateway install:\n%s", out)
	}
	if !strings.Contains(errs, "warning: "+filepath.Join(home, ".config/Code/User/mcp.json")+`: servers["github"] left as it is`) {
		t.Errorf("no warning about the OAuth remote:\n%s", errs)
	}

	out, _ = run("discover", "--install", "cursor", "--uninstall")
	if !strings.Contains(out, `put back mcpServers["internal"]`) || !strings.Contains(out, `put back mcpServers["brave-search"]`) {
		t.Errorf("uninstall output:\n%s", out)
	}
}
