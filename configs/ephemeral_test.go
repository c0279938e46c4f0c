package configs

import (
	"path/filepath"
	"testing"
)

// An ephemeral config's data dir is a fixed place beside the file, so
// that every command given the same --config finds the run's data.
func TestEphemeralDataDirBesideTheConfig(t *testing.T) {
	dir := t.TempDir()
	c, err := Parse([]byte("ephemeral: true\napprove_first_seen: true\n"), filepath.Join(dir, "demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, ".demo-data")
	if c.DataDir != want || len(c.TrustedKeys) != 1 || c.TrustedKeys[0] != filepath.Join(want, "approver.pub") {
		t.Errorf("data dir %s, trusted keys %q; want %s and its approver.pub", c.DataDir, c.TrustedKeys, want)
	}
	if got := EphemeralDataDir(""); filepath.Base(got) != ".rugwatch-data" || !filepath.IsAbs(got) {
		t.Errorf("EphemeralDataDir(\"\") = %s", got)
	}
	// Not ephemeral: the default data dir is unchanged.
	c, err = Parse([]byte("servers: []\n"), filepath.Join(dir, "demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != filepath.Join(dir, "data") {
		t.Errorf("data dir %s", c.DataDir)
	}
}
