package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch/signatures"
)

// approverKeys makes one key pair per name, each in a directory of its
// own under dir (dir/NAME/approver.key and .pub, as each approver keeps
// their own), and returns the private keys' paths by name.
func approverKeys(t *testing.T, dir string, names ...string) map[string]string {
	t.Helper()
	keys := map[string]string{}
	for _, who := range names {
		d := filepath.Join(dir, who)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := signatures.GenerateKeyPair(d, nil); err != nil {
			t.Fatal(err)
		}
		keys[who] = filepath.Join(d, signatures.PrivateKeyFile)
	}
	return keys
}

// cliRunner runs the binary with config cfg and env, failing the test
// when a command exits other than with code.
func cliRunner(t *testing.T, env []string, cfg string) func(code int, args ...string) binRun {
	return func(code int, args ...string) binRun {
		t.Helper()
		r := runBin(t, env, "", append([]string{"--config", cfg}, args...)...)
		if r.code != code {
			t.Fatalf("rugwatch %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
		}
		return r
	}
}

// teamConfig writes dir/rugwatch.yaml for the demo server (command: the
// test binary or a copy of it, honest for 1000 listings) under a quorum
// of n needing role security, trusting the keys approverKeys made for
// approvers: bob holds role security, everyone else platform. head holds
// further top-level lines (listeners, defaults).
func teamConfig(t *testing.T, dir, command string, n int, head string, approvers ...string) string {
	t.Helper()
	var keys strings.Builder
	for _, who := range approvers {
		role := "platform"
		if who == "bob" {
			role = "security"
		}
		fmt.Fprintf(&keys, "  - {path: %[1]s/approver.pub, name: %[1]s, roles: [%[2]s]}\n", who, role)
	}
	return writeConfig(t, dir, fmt.Sprintf(`data_dir: %[1]s/data
%[5]strusted_keys:
%[4]sapprovals: {quorum: %[6]d, require_roles: [security]}
servers:
  - name: demo
    command: %[2]s
    args: ["-test.run=^$"]
    env:
      RUGWATCH_TEST_DEMO: "--after 1000 --state %[3]s/demo.state"
    mounts: [{path: "%[3]s", mode: rw}]
`, dir, command, sharedDir(t), keys.String(), head, n))
}
