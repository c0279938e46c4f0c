package main

import (
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
