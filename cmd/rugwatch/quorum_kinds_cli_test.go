package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The quorum over a server's instructions, its launch identity and its
// egress destinations, with the real binary and two key pairs: alice
// (platform) signs each and it stays pending (the instructions, the
// egress) or drifted (the launch), status and approve saying
// "signatures: 1 of 2 (needs role security)"; bob (security) signs and
// each is approved, the history holding the cosigned events.
func TestCLIQuorumOverInstructionsAndLaunch(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	dir := t.TempDir()
	keys := approverKeys(t, dir, "alice", "bob")
	// The server is a copy of this test binary: changing its bytes is a
	// launch drift.
	server := filepath.Join(dir, "bin", "demo-server")
	copyExecutable(t, server)
	cfg := teamConfig(t, dir, server, 2, "defaults: {timeout: 20s}\n", "alice", "bob")
	env := append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	run := cliRunner(t, env, cfg)
	const waiting = "signatures: 1 of 2 (needs role security)"

	run(1, "check")
	out := run(0, "approve", "demo", "--instructions", "--yes", "--key", keys["alice"]).stdout
	if !strings.Contains(out, "demo instructions  PENDING  "+waiting) || !strings.Contains(out, "signed the instructions of demo") {
		t.Fatalf("alice's approve of the instructions:\n%s", out)
	}
	if s := decodeReport(t, run(1, "status", "--json").stdout).Servers[0]; s.InstructionsState != "pending" || s.InstructionsSignatures != "1 of 2 (needs role security)" {
		t.Fatalf("status --json after alice: instructions %s, %q", s.InstructionsState, s.InstructionsSignatures)
	}
	if s := run(1, "status").stdout; !strings.Contains(s, "(instructions)") || !strings.Contains(s, waiting) {
		t.Fatalf("status text lacks the instructions' %q:\n%s", waiting, s)
	}
	out = run(0, "approve", "demo", "--instructions", "--yes", "--key", keys["bob"]).stdout
	if !strings.Contains(out, "demo instructions  APPROVED  signatures: 2 of 2") || !strings.Contains(out, "approved the instructions of demo") {
		t.Fatalf("bob's approve of the instructions:\n%s", out)
	}

	f, err := os.OpenFile(server, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("\nchanged under the same command line\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if s := decodeReport(t, run(1, "check", "--json").stdout).Servers[0]; !s.LaunchDrifted || s.LaunchSignatures != "0 of 2 (needs role security)" {
		t.Fatalf("after the change: launch drifted %v, %q", s.LaunchDrifted, s.LaunchSignatures)
	}
	out = run(0, "approve", "demo", "--launch", "--yes", "--key", keys["alice"]).stdout
	// The sandboxed server's egress (none used) is signed with it, and
	// needs the quorum as well.
	if !strings.Contains(out, "demo launch identity  DRIFTED  "+waiting) || !strings.Contains(out, "signed the launch identity") ||
		!strings.Contains(out, "demo egress destinations  PENDING  "+waiting) {
		t.Fatalf("alice's approve of the launch:\n%s", out)
	}
	if s := run(1, "status").stdout; !strings.Contains(s, "(launch)") || !strings.Contains(s, waiting) {
		t.Fatalf("status text lacks the launch's %q:\n%s", waiting, s)
	}
	out = run(0, "approve", "demo", "--launch", "--yes", "--key", keys["bob"]).stdout
	if !strings.Contains(out, "approved the launch identity") || !strings.Contains(out, "demo egress destinations  APPROVED  signatures: 2 of 2") {
		t.Fatalf("bob's approve of the launch:\n%s", out)
	}
	if s := decodeReport(t, run(1, "status", "--json").stdout).Servers[0]; s.LaunchDrifted {
		t.Fatal("launch still drifted after alice and bob")
	}
	hist := run(0, "history", "demo", "--json").stdout
	for _, want := range []string{`"instructions.cosigned"`, `"launch.cosigned"`, `"egress.cosigned"`, `"egress.approved"`, "launch identity pinned", "signed by alice, bob"} {
		if !strings.Contains(hist, want) {
			t.Errorf("history lacks %s", want)
		}
	}
}
