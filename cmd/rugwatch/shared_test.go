package main

import (
	"os"
	"testing"
)

// sharedDir is a directory a sandboxed stdio server can reach and write,
// for the demo server's state and trigger files: not under /tmp (every
// sandbox has a private /tmp of its own) and writable by the sandbox's
// uid (a root daemon's servers run as nobody).
func sharedDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/var/tmp", "rugwatch-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o777); err != nil {
		t.Fatal(err)
	}
	return d
}
