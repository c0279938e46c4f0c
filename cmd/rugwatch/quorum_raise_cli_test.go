package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// quorumConfig is the demo server's config with alice (platform), bob
// (security) and carol (platform) trusted and a quorum of n with role
// security.
func quorumConfig(t *testing.T, dir string, n int) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return teamConfig(t, dir, exe, n, "defaults: {timeout: 20s}\n", "alice", "bob", "carol")
}

// quorumKeys makes the key pairs of alice, bob and carol under dir.
func quorumKeys(t *testing.T, dir string) map[string]string {
	t.Helper()
	return approverKeys(t, dir, "alice", "bob", "carol")
}

// After the quorum is raised from 2 to 3, the instructions alice and bob
// approved are withheld (2 of 3); `approve demo --instructions` by carol
// signs them and completes the raised quorum. Before the fix approve
// signed instructions only when they were not approved, and said
// "nothing to approve".
func TestCLIRaisedQuorumCosignsApprovedInstructions(t *testing.T) {
	dir := t.TempDir()
	keys := quorumKeys(t, dir)
	cfg := quorumConfig(t, dir, 2)
	env := append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	run := cliRunner(t, env, cfg)
	run(1, "check")
	run(0, "approve", "demo", "--instructions", "--yes", "--key", keys["alice"])
	if out := run(0, "approve", "demo", "--instructions", "--yes", "--key", keys["bob"]).stdout; !strings.Contains(out, "demo instructions  APPROVED  signatures: 2 of 2") {
		t.Fatalf("bob's approve of the instructions:\n%s", out)
	}
	quorumConfig(t, dir, 3)
	if s := decodeReport(t, run(1, "status", "--json").stdout).Servers[0]; s.InstructionsSignatures != "2 of 3" {
		t.Fatalf("after the raise: instructions %s, %q", s.InstructionsState, s.InstructionsSignatures)
	}
	out := run(0, "approve", "demo", "--instructions", "--yes", "--key", keys["carol"]).stdout
	if !strings.Contains(out, "demo instructions  APPROVED  signatures: 3 of 3") || !strings.Contains(out, "the instructions of demo") {
		t.Fatalf("carol's approve of the approved instructions:\n%s", out)
	}
	if hist := run(0, "history", "demo", "--json").stdout; !strings.Contains(hist, "signed by alice, bob, carol") {
		t.Fatalf("history lacks carol's cosignature:\n%s", hist)
	}
}

// Under a quorum one approver's --returns-secrets is not the approval's:
// bob approving add without it completes the approval, and approve tells
// him returns_secrets is not granted.
func TestCLIReturnsSecretsNotGrantedByOneKey(t *testing.T) {
	dir := t.TempDir()
	keys := quorumKeys(t, dir)
	cfg := quorumConfig(t, dir, 2)
	env := append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	run := cliRunner(t, env, cfg)
	run(1, "check")
	if out := run(0, "approve", "demo", "add", "--returns-secrets", "--yes", "--key", keys["alice"]).stdout; strings.Contains(out, "not granted") {
		t.Fatalf("alice alone:\n%s", out)
	}
	out := run(0, "approve", "demo", "add", "--yes", "--key", keys["bob"]).stdout
	if !strings.Contains(out, "demo/add  APPROVED  signatures: 2 of 2") ||
		!strings.Contains(out, "demo/add: returns_secrets not granted: not every signature carries it") {
		t.Fatalf("bob's approve without --returns-secrets:\n%s", out)
	}
}
