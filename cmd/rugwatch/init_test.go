package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInitKeepsThePrivateKeyOutOfTheDataDir: the data dir, which the
// daemon and everything near it can reach, gets only the public key; the
// private one goes under $XDG_CONFIG_HOME/rugwatch. A data dir opened up
// later is reported, not chmod'ed.
func TestInitKeepsThePrivateKeyOutOfTheDataDir(t *testing.T) {
	c := newCLI(t, 100)
	out := c.want(0, "", "init").stdout
	dataDir := filepath.Join(filepath.Dir(c.config), "data")
	keyDir := filepath.Join(c.env["XDG_CONFIG_HOME"], "rugwatch")
	if _, err := os.Stat(filepath.Join(dataDir, "approver.key")); err == nil {
		t.Error("approver.key written into the data dir")
	}
	if _, err := os.Stat(filepath.Join(dataDir, "approver.pub")); err != nil {
		t.Errorf("approver.pub not in the data dir: %v", err)
	}
	fi, err := os.Stat(filepath.Join(keyDir, "approver.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("approver.key in %s: %v %v", keyDir, fi, err)
	}
	if !strings.Contains(out, filepath.Join(keyDir, "approver.key")) {
		t.Errorf("init does not say where the key went:\n%s", out)
	}
	// The key signs: check and approve work with it where it is.
	c.want(1, "", "check")
	c.want(0, "y\n", "approve", "demo", "--all", "--yes")
	c.want(0, "", "check")

	if err := os.Chmod(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := c.want(0, "", "init")
	if !strings.Contains(r.stderr, dataDir+" is mode 0755") {
		t.Errorf("loose data dir not reported:\n%s", r.stderr)
	}
	if fi, _ := os.Stat(dataDir); fi.Mode().Perm() != 0o755 {
		t.Error("init chmod'ed the data dir")
	}
}

// TestLegacyKeyInTheDataDirStillSigns: a store initialised before keys
// moved keeps working, with a warning to move the key.
func TestLegacyKeyInTheDataDirStillSigns(t *testing.T) {
	c := newCLI(t, 100)
	c.want(0, "", "init")
	keyDir := filepath.Join(c.env["XDG_CONFIG_HOME"], "rugwatch")
	dataDir := filepath.Join(filepath.Dir(c.config), "data")
	if err := os.Rename(filepath.Join(keyDir, "approver.key"), filepath.Join(dataDir, "approver.key")); err != nil {
		t.Fatal(err)
	}
	c.want(1, "", "check")
	r := c.want(0, "", "approve", "demo", "--all", "--yes")
	if !strings.Contains(r.stderr, "sits in the data dir") {
		t.Errorf("no warning about the key in the data dir:\n%s", r.stderr)
	}
}
