package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestParseKeepsWhatFollowsDashDash: everything after "--" is the server's
// command line, flags included; before it, flags go anywhere.
func TestParseKeepsWhatFollowsDashDash(t *testing.T) {
	for _, tc := range []struct {
		args, want []string
		json       bool
	}{
		{[]string{"--", "npx", "-y", "@modelcontextprotocol/server-everything"}, []string{"npx", "-y", "@modelcontextprotocol/server-everything"}, false},
		{[]string{"--json", "--", "node", "--no-warnings", "x.js", "stdio"}, []string{"node", "--no-warnings", "x.js", "stdio"}, true},
		{[]string{"srv", "--json", "tool", "--", "--json"}, []string{"srv", "tool", "--json"}, true},
		{[]string{"srv", "tool", "--json"}, []string{"srv", "tool"}, true},
		{[]string{"--", "--"}, []string{"--"}, false},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		asJSON := fs.Bool("json", false, "")
		got, err := parse(fs, tc.args)
		if err != nil || !slices.Equal(got, tc.want) || *asJSON != tc.json {
			t.Errorf("parse(%q) = %q, json %v, %v; want %q, json %v", tc.args, got, *asJSON, err, tc.want, tc.json)
		}
	}
}

// TestScanDashDash runs the README's scan examples against the real
// server-everything: a node flag and an npx flag after "--" reach them.
func TestScanDashDash(t *testing.T) {
	bin := everythingBin(t)
	script, err := filepath.EvalSymlinks(bin)
	if err != nil {
		t.Fatal(err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for name, argv := range map[string][]string{
		"node":   {node, "--no-warnings", script, "stdio"},
		"npx -y": {"npx", "-y", "@modelcontextprotocol/server-everything"},
	} {
		t.Run(name, func(t *testing.T) {
			if argv[0] == "npx" {
				if _, err := exec.LookPath("npx"); err != nil {
					t.Skip("npx not installed")
				}
				// npx finds the package in the repo's node_modules, as
				// it does for a user who ran `npm ci` there.
				t.Chdir(repo)
			}
			out, errOut, code := runApp(t, append([]string{"scan", "--json", "--"}, argv...)...)
			if code != 0 {
				t.Fatalf("scan -- %q exited %d:\n%s", argv, code, errOut)
			}
			var rep struct {
				Tools []json.RawMessage `json:"tools"`
			}
			if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Tools) < 10 {
				t.Fatalf("scan -- %q: %d tools, %v:\n%s", argv, len(rep.Tools), err, out)
			}
		})
	}
}

// runApp runs one command line in-process with the test's environment.
func runApp(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	app := &App{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, LookupEnv: os.LookupEnv}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code = app.Run(ctx, args)
	return out.String(), errb.String(), code
}
