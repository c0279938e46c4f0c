package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runLine runs one command line in-process, exactly as given (no --config
// added), with env as the whole environment.
func runLine(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	app := &App{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, LookupEnv: func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return result{app.Run(ctx, args), out.String(), errb.String()}
}

// Every command answers --help on stdout with exit 0, before reading any
// config: its synopsis, every flag it has, the global flags and an
// example. Today's gaps are named: approve's --accept-findings, discover's
// --install, the --format of check, status and scan.
func TestEveryCommandAnswersHelp(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	mustHave := map[string][]string{
		"approve":  {"--accept-findings", "--digest D", "--launch", "--all", "--yes"},
		"discover": {"--install CLIENT", "--uninstall"},
		"check":    {"--format FORMAT", "--json"},
		"status":   {"--format FORMAT"},
		"scan":     {"--format FORMAT", "--sse"},
		"history":  {"--limit N"},
		"serve":    {"--shutdown-timeout DURATION"},
	}
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			for _, args := range [][]string{{c.name, "--help"}, {c.name, "-h"}, {"help", c.name}, {"--config", missing, c.name, "--help"}} {
				r := runLine(t, nil, args...)
				if r.code != 0 || r.stderr != "" {
					t.Fatalf("rugwatch %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
				}
				for _, want := range append([]string{"Usage: rugwatch " + c.name, "--config FILE", "--log-level L", "--log-format F", "Examples:\n  rugwatch "}, mustHave[c.name]...) {
					if !strings.Contains(r.stdout, want) {
						t.Errorf("rugwatch %s lacks %q:\n%s", strings.Join(args, " "), want, r.stdout)
					}
				}
				if strings.Contains(r.stdout, "help requested") {
					t.Errorf("rugwatch %s prints the flag package's error", strings.Join(args, " "))
				}
			}
		})
	}
	// A subcommand's flags: keys generate has its own.
	if r := runLine(t, nil, "keys", "generate", "--help"); r.code != 0 || !strings.Contains(r.stdout, "--dir DIR") || !strings.Contains(r.stdout, "--password-stdin") {
		t.Errorf("keys generate --help: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// demo-server's stdout is the MCP channel: its help goes to stderr.
	if r := runLine(t, nil, "demo-server", "--help"); r.code != 0 || !strings.Contains(r.stderr, "-stay-turned") || r.stdout != "" {
		t.Errorf("demo-server --help: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	// The overview names every command and points at the per-command help.
	r := runLine(t, nil, "help")
	for _, c := range commands {
		if !strings.Contains(r.stdout, "\n  "+c.name) {
			t.Errorf("rugwatch help does not list %s", c.name)
		}
	}
	for _, want := range []string{"--accept-findings", "--install", "--format", "COMMAND --help", "before or after the command"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("rugwatch help lacks %q:\n%s", want, r.stdout)
		}
	}
}

// Global flags work after the command as they do before it: `check
// --log-level debug` logs at debug, --log-format after the command picks
// the handler, and a bad value is a usage error naming what to type.
func TestGlobalFlagsAfterTheCommand(t *testing.T) {
	c := newCLI(t, 100)
	c.want(0, "", "init")
	env := c.env

	quiet := runLine(t, env, "check", "--config", c.config)
	if quiet.code != 1 || strings.Contains(quiet.stderr, `"level":"DEBUG"`) {
		t.Fatalf("check: exit %d (want 1: pending), stderr:\n%s", quiet.code, quiet.stderr)
	}
	before := runLine(t, env, "--log-level", "debug", "--config", c.config, "status")
	after := runLine(t, env, "status", "--config", c.config, "--log-level", "debug")
	if before.code != 1 || after.code != 1 || before.stdout != after.stdout {
		t.Fatalf("status with the flags before (exit %d) and after (exit %d) the command differ:\n%s\n---\n%s%s", before.code, after.code, before.stdout, after.stdout, after.stderr)
	}
	debug := runLine(t, env, "check", "--config", c.config, "--log-level", "debug")
	if debug.code != 1 || !strings.Contains(debug.stderr, `"level":"DEBUG"`) {
		t.Errorf("check --log-level debug: exit %d, no debug line in stderr:\n%s", debug.code, debug.stderr)
	}
	text := runLine(t, env, "check", "--log-format", "text", "--config", c.config, "--log-level", "debug")
	if text.code != 1 || !strings.Contains(text.stderr, "DBG") || strings.Contains(text.stderr, `{"time"`) {
		t.Errorf("check --log-format text --log-level debug: exit %d, stderr:\n%s", text.code, text.stderr)
	}
	bad := runLine(t, env, "check", "--config", c.config, "--log-level", "loud")
	if bad.code != 2 || !strings.Contains(bad.stderr, "want debug, info, warn or error") {
		t.Errorf("check --log-level loud: exit %d, stderr %q", bad.code, bad.stderr)
	}
}
