package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/rugwatch/rugwatch/monitor"
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
  - name: everything
    command: ` + ev + `
    args: ["stdio"]
`
	if err := os.WriteFile(c.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.want(0, "", "init")
	out := c.want(1, "", "check", "--json").stdout // every tool pending: exit 1
	var rep monitor.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	for _, s := range rep.Servers {
		if !s.Reachable || !s.Sandboxed || len(s.Tools) < 5 {
			t.Errorf("%s: reachable %v, sandboxed %v (%s), %d tools, error %q", s.Name, s.Reachable, s.Sandboxed, s.SandboxNote, len(s.Tools), s.Error)
		}
	}
}
