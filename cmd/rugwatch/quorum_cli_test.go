package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch/signatures"
)

// The two-person flow with the real binary and two key pairs: alice
// (platform) signs and the tool stays pending, 1 of 2, needing a security
// key; alice again changes nothing; a key outside trusted_keys is
// refused; bob (security) signs and the tool is approved.
func TestCLITwoPersonApproval(t *testing.T) {
	dir := t.TempDir()
	keys := approverKeys(t, dir, "alice", "bob", "mallory")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := teamConfig(t, dir, exe, 2, "defaults: {timeout: 20s}\n", "alice", "bob")
	env := append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	run := cliRunner(t, env, path)
	const waiting = "signatures: 1 of 2 (needs role security)"

	run(1, "check")
	out := run(0, "approve", "demo", "add", "--yes", "--key", keys["alice"]).stdout
	if !strings.Contains(out, "demo/add  PENDING  "+waiting) || !strings.Contains(out, "signed 1 tool(s) of demo") {
		t.Fatalf("alice's approve output:\n%s", out)
	}
	rep := decodeReport(t, run(1, "status", "--json").stdout)
	for _, tr := range rep.Servers[0].Tools {
		if tr.Name == "add" && (tr.State != "pending" || tr.Signatures != "1 of 2 (needs role security)") {
			t.Fatalf("status --json after alice: %+v", tr)
		}
	}
	if s := run(1, "status").stdout; !strings.Contains(s, waiting) {
		t.Fatalf("status text lacks %q:\n%s", waiting, s)
	}
	if d := run(1, "diff", "demo", "add").stdout; !strings.Contains(d, waiting) {
		t.Fatalf("diff lacks %q:\n%s", waiting, d)
	}
	if out := run(0, "approve", "demo", "add", "--yes", "--key", keys["alice"]).stdout; !strings.Contains(out, waiting) {
		t.Fatalf("alice twice should still be 1 of 2:\n%s", out)
	}
	if r := run(2, "approve", "demo", "add", "--yes", "--key", keys["mallory"]); !strings.Contains(r.stderr, "is not among trusted_keys") {
		t.Fatalf("mallory's approve: %s", r.stderr)
	}

	out = run(0, "approve", "demo", "add", "--yes", "--key", keys["bob"]).stdout
	if !strings.Contains(out, "demo/add  APPROVED  signatures: 2 of 2") || !strings.Contains(out, "approved 1 tool(s) of demo") {
		t.Fatalf("bob's approve output:\n%s", out)
	}
	if st := states(decodeReport(t, run(1, "status", "--json").stdout)); st["add"] != "approved" {
		t.Fatalf("after bob: %v", st)
	}
	hist := run(0, "history", "demo", "--json").stdout
	if !strings.Contains(hist, `"tool.cosigned"`) || !strings.Contains(hist, "signed by alice, bob") {
		t.Fatalf("history lacks tool.cosigned or the signers of tool.approved:\n%s", hist)
	}
}

// TestQuorumRefusesOneKeyTwice: one public key listed under two paths
// would pass quorum: 2's count of trusted_keys and never meet it; the
// CLI says so, naming both entries, instead of withholding every tool.
func TestQuorumRefusesOneKeyTwice(t *testing.T) {
	dir := t.TempDir()
	for _, who := range []string{"alice", "alice-again"} {
		if err := os.Mkdir(filepath.Join(dir, who), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := signatures.GenerateKeyPair(filepath.Join(dir, "alice"), nil); err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(filepath.Join(dir, "alice", "approver.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alice-again", "approver.pub"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`data_dir: %s/data
trusted_keys:
  - {path: alice/approver.pub, name: alice}
  - {path: alice-again/approver.pub, name: also-alice}
approvals: {quorum: 2}
servers:
  - name: demo
    url: http://127.0.0.1:1/mcp
`, dir)
	path := filepath.Join(dir, "rugwatch.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	r := runBin(t, env, "", "--config", path, "status")
	if r.code == 0 || !strings.Contains(r.stderr, "trusted_keys[0]") || !strings.Contains(r.stderr, "trusted_keys[1]") || !strings.Contains(r.stderr, "same key") {
		t.Fatalf("status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
