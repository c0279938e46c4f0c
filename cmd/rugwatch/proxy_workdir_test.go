package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/rugwatch/rugwatch/testkit"
	"github.com/rugwatch/rugwatch/testkit/testservers"
)

// whereServer is a stdio MCP server in node that reports where it runs:
// its serverInfo version is its working directory, and it says which copy
// of the package it is, so both join the launch identity.
const whereServer = `#!/usr/bin/env node
const COPY = %q;
const send = (m) => process.stdout.write(JSON.stringify(m) + "\n");
require("readline").createInterface({ input: process.stdin }).on("line", (line) => {
  let m;
  try { m = JSON.parse(line); } catch { return; }
  if (m.id === undefined) return;
  if (m.method === "initialize") {
    send({ jsonrpc: "2.0", id: m.id, result: { protocolVersion: "2025-11-25", capabilities: { tools: {} },
      serverInfo: { name: "where-" + COPY, version: process.cwd() } } });
  } else if (m.method === "tools/list") {
    send({ jsonrpc: "2.0", id: m.id, result: { tools: [{ name: "where", description: "Says where it runs.", inputSchema: { type: "object" } }] } });
  } else {
    send({ jsonrpc: "2.0", id: m.id, error: { code: -32601, message: "Method not found" } });
  }
});
`

// TestProxyRunsUpstreamWhereThePollerDoes: a server configured by a
// relative command (node_modules/.bin/where, as a project-local install
// is run) and no cwd. The poller (`check`, started from one directory) and
// `rugwatch proxy` (started by its client from a project whose own
// node_modules holds another copy of the package) must run the same copy
// in the same working directory, the server's persistent HOME, so the
// proxy's listing records the poller's launch identity and raises no
// launch.drifted. Before, a relative command was resolved against
// rugwatch's own cwd: the poller could not find it, and the proxy ran
// the client's copy.
func TestProxyRunsUpstreamWhereThePollerDoes(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	if _, err := exec.LookPath("node"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node missing")
		}
		t.Skip("node missing")
	}
	dir := t.TempDir()
	cfg := writeConfig(t, dir, fmt.Sprintf(`data_dir: %s/data
defaults: { timeout: 30s }
servers:
  - name: where
    command: node_modules/.bin/where
`, dir))
	env := baseEnv(dir)
	home := filepath.Join(dir, "data", "servers", "where", "home")
	daemonDir, clientDir := filepath.Join(dir, "daemon"), filepath.Join(dir, "client-project")
	testservers.WriteFiles(t, home, map[string]string{"node_modules/.bin/where*": fmt.Sprintf(whereServer, "installed")})
	testservers.WriteFiles(t, clientDir, map[string]string{"node_modules/.bin/where*": fmt.Sprintf(whereServer, "client-local")})
	if err := os.MkdirAll(daemonDir, 0o755); err != nil {
		t.Fatal(err)
	}
	runIn := func(wd string, code int, args ...string) string {
		t.Helper()
		cmd := exec.Command(rugwatchBin(t), append([]string{"--config", cfg}, args...)...)
		cmd.Env, cmd.Dir = env, wd
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if got := cmd.ProcessState.ExitCode(); got != code {
			t.Fatalf("rugwatch %s (in %s): exit %d (%v), want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), wd, got, err, code, out.String(), errb.String())
		}
		return out.String()
	}
	type launch struct {
		Executable    string `json:"executable"`
		ServerName    string `json:"server_name"`
		ServerVersion string `json:"server_version"`
	}
	status := func() (launch, bool, string) {
		t.Helper()
		var rep struct {
			Servers []struct {
				Reachable     bool            `json:"reachable"`
				Error         string          `json:"error"`
				Launch        json.RawMessage `json:"launch"`
				LaunchDrifted bool            `json:"launch_drifted"`
			} `json:"servers"`
		}
		if err := json.Unmarshal([]byte(runIn(daemonDir, 1, "status", "--json")), &rep); err != nil || len(rep.Servers) != 1 {
			t.Fatalf("status --json: %v", err)
		}
		s := rep.Servers[0]
		if !s.Reachable {
			t.Fatalf("unreachable: %s", s.Error)
		}
		var l launch
		if err := json.Unmarshal(s.Launch, &l); err != nil {
			t.Fatalf("launch %s: %v", s.Launch, err)
		}
		return l, s.LaunchDrifted, string(s.Launch)
	}

	runIn(dir, 0, "init")
	runIn(daemonDir, 1, "check")
	polled, _, polledRaw := status()
	wantExe := filepath.Join(home, "node_modules", ".bin", "where")
	if real, err := filepath.EvalSymlinks(wantExe); err == nil {
		wantExe = real
	}
	if polled.Executable != wantExe || polled.ServerName != "where-installed" || polled.ServerVersion != home {
		t.Fatalf("the poller ran %+v, want the installed copy, in the server's HOME %s", polled, home)
	}

	cmd := exec.Command(rugwatchBin(t), "--config", cfg, "--log-level", "warn", "proxy", "where")
	cmd.Env, cmd.Dir = env, clientDir
	cmd.Stderr = &testkit.Output{}
	c := connectGo(t, &mcp.CommandTransport{Command: cmd})
	c.list() // the proxy records the upstream's listing
	c.close()

	proxied, drifted, proxiedRaw := status()
	if drifted || proxiedRaw != polledRaw {
		t.Errorf("after `rugwatch proxy` from %s the launch is %s (drifted %v), the poller's %s", clientDir, proxiedRaw, drifted, polledRaw)
	}
	if proxied.ServerName != "where-installed" || proxied.ServerVersion != home {
		t.Errorf("the proxy ran %+v: the client's cwd chose the copy or the working directory", proxied)
	}
	if h := runIn(daemonDir, 0, "history", "where", "--json", "--limit", "0"); strings.Contains(h, "launch.drifted") {
		t.Errorf("launch.drifted in history:\n%s", h)
	}
}
