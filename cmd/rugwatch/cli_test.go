package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch/demo"
	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/sandbox"
	"github.com/rugwatch/rugwatch/testkit/pgtest"
	"github.com/rugwatch/rugwatch/testkit/testservers"
)

// The test binary doubles as the demo MCP server so CLI tests poll a real
// stdio child: re-executed with RUGWATCH_TEST_DEMO set, it serves.
func TestMain(m *testing.M) {
	sandbox.Init()
	if testservers.Child() {
		os.Exit(0)
	}
	if os.Getenv("RUGWATCH_TEST_DEMO") != "" {
		args := strings.Fields(os.Getenv("RUGWATCH_TEST_DEMO"))
		os.Exit(demo.Run(context.Background(), args, os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(pgtest.RunMain(m))
}

// cli runs the App in-process.
type cli struct {
	t      *testing.T
	config string
	env    map[string]string
}

type result struct {
	code           int
	stdout, stderr string
}

func (c *cli) run(stdin string, args ...string) result {
	c.t.Helper()
	var out, errb bytes.Buffer
	app := &App{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, LookupEnv: func(k string) (string, bool) {
		v, ok := c.env[k]
		return v, ok
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := app.Run(ctx, append([]string{"--config", c.config}, args...))
	return result{code, out.String(), errb.String()}
}

func (c *cli) want(code int, stdin string, args ...string) result {
	c.t.Helper()
	r := c.run(stdin, args...)
	if r.code != code {
		c.t.Fatalf("rugwatch %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	return r
}

// newCLI writes a config with one stdio demo server that turns malicious
// after `after` listings.
func newCLI(t *testing.T, after int) *cli {
	t.Helper()
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`data_dir: %[1]s/data
defaults:
  timeout: 20s
servers:
  - name: demo
    command: %[2]s
    args: ["-test.run=^$"]
    env:
      RUGWATCH_TEST_DEMO: "--after %[3]d --state %[4]s/demo.state"
    mounts: [{path: "%[4]s", mode: rw}]
`, dir, exe, after, sharedDir(t))
	path := filepath.Join(dir, "rugwatch.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// The approver key goes where init puts it, inside the test.
	return &cli{t: t, config: path, env: map[string]string{"XDG_CONFIG_HOME": filepath.Join(dir, "config")}}
}

func decodeReport(t *testing.T, s string) report.Report {
	t.Helper()
	var r report.Report
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		t.Fatalf("decoding report: %v\n%s", err, s)
	}
	return r
}

func states(r report.Report) map[string]string {
	m := map[string]string{}
	for _, s := range r.Servers {
		for _, t := range s.Tools {
			m[t.Name] = string(t.State)
		}
	}
	return m
}

func TestCLIApproveThenDrift(t *testing.T) {
	c := newCLI(t, 2)
	c.want(0, "", "init")
	r := decodeReport(t, c.want(1, "", "check", "--json").stdout)
	if len(r.Servers) != 1 || !r.Servers[0].Reachable || len(r.Servers[0].Tools) == 0 {
		t.Fatalf("first check: %+v", r)
	}
	for name, st := range states(r) {
		if st != "pending" {
			t.Errorf("%s is %s on first sight, want pending", name, st)
		}
	}
	// Refused at the prompt: nothing is approved.
	c.want(1, "n\n", "approve", "demo", "--all")
	out := c.want(0, "y\n", "approve", "demo", "--all").stdout
	if !strings.Contains(out, "description:") || !strings.Contains(out, "approved ") {
		t.Errorf("approve output lacks the definition or the result:\n%s", out)
	}
	r = decodeReport(t, c.want(0, "", "check", "--json").stdout)
	for name, st := range states(r) {
		if st != "approved" {
			t.Errorf("%s is %s after approval", name, st)
		}
	}
	// Third listing: the demo server turns.
	r = decodeReport(t, c.want(1, "", "check", "--json").stdout)
	st := states(r)
	if st["add"] != "drifted" {
		t.Fatalf("add is %s after the rug pull, want drifted (%v)", st["add"], st)
	}
	var add report.ToolReport
	for _, tr := range r.Servers[0].Tools {
		if tr.Name == "add" {
			add = tr
		}
	}
	if add.Severity != "critical" || len(add.Changes) == 0 {
		t.Errorf("add: severity %s, changes %v", add.Severity, add.Changes)
	}
	// The approval is gone: a status without polling still says drifted.
	if got := states(decodeReport(t, c.want(1, "", "status", "--json").stdout))["add"]; got != "drifted" {
		t.Errorf("status says add is %s", got)
	}
	diff := c.want(1, "", "diff", "demo", "add").stdout
	if !strings.Contains(diff, "/inputSchema/properties/sidenote") || !strings.Contains(diff, "<IMPORTANT>") {
		t.Errorf("diff does not show the new parameter and text:\n%s", diff)
	}
	hist := c.want(0, "", "history", "demo", "--json").stdout
	if !strings.Contains(hist, `"tool.drifted"`) || !strings.Contains(hist, `"tool.approved"`) {
		t.Errorf("history lacks events:\n%s", hist)
	}
	c.want(0, "", "verify")
	// Re-approving the new definition after review clears it.
	digest := add.ObservedDigest
	// Its critical findings block the approval until they are accepted.
	if r := c.want(1, "", "approve", "demo", "add", "--digest", string(digest), "--yes"); !strings.Contains(r.stderr, "--accept-findings") {
		t.Errorf("refusal does not say how to accept findings: %s", r.stderr)
	}
	c.want(0, "", "approve", "demo", "add", "--digest", string(digest), "--yes", "--accept-findings")
	st = states(decodeReport(t, c.want(1, "", "status", "--json").stdout))
	if st["add"] != "approved" || st["weather"] != "drifted" {
		t.Errorf("after re-approving add alone: %v", st)
	}
	c.want(0, "", "approve", "demo", "--all", "--yes", "--accept-findings")
	c.want(0, "", "status")
	// A stale --digest refuses.
	c.want(1, "", "approve", "demo", "add", "--digest", "sha256:"+strings.Repeat("0", 64), "--yes")
	// Revoke.
	c.want(0, "", "revoke", "demo", "add", "--reason", "test")
	if got := states(decodeReport(t, c.want(1, "", "status", "--json").stdout))["add"]; got != "revoked" {
		t.Errorf("add is %s after revoke", got)
	}
	if got := states(decodeReport(t, c.want(1, "", "check", "--json").stdout))["add"]; got != "revoked" {
		t.Errorf("add is %s after revoke and a poll", got)
	}
}

func TestCLIUsageErrors(t *testing.T) {
	c := newCLI(t, 100)
	for _, args := range [][]string{
		{"nope"},
		{"approve"},
		{"approve", "demo"},
		{"diff"},
		{"check", "unknown-server"},
		{"check", "--bogus"},
	} {
		if r := c.run("", args...); r.code != 2 || r.stderr == "" {
			t.Errorf("rugwatch %v: exit %d, stderr %q; want 2 with a message", args, r.code, r.stderr)
		}
	}
	c.config = filepath.Join(t.TempDir(), "missing.yaml")
	if r := c.run("", "status"); r.code != 2 {
		t.Errorf("missing config: exit %d", r.code)
	}
}

func TestCLIStoreLockedExits2(t *testing.T) {
	c := newCLI(t, 100)
	c.want(0, "", "init")
	cfg, err := (&App{LookupEnv: func(string) (string, bool) { return "", false }, configPath: c.config}).config()
	if err != nil {
		t.Fatal(err)
	}
	db, err := (&App{}).openStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Returning at all is the point (bbolt's own default waits forever);
	// c.run bounds the whole command with a context.
	r := c.run("", "status")
	if r.code != 2 || !strings.Contains(r.stderr, "store is locked") {
		t.Fatalf("exit %d, stderr %q; want 2 and store is locked", r.code, r.stderr)
	}
}
