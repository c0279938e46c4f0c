package testkit

import (
	"os"
	"testing"
)

// OutsideTmp makes a directory, removed when t ends, that a sandboxed
// stdio server can reach: not under /tmp (every sandbox has a private /tmp
// of its own, which would hide it whatever the hide list says). mode is
// 0o755 for one others may enter, 0o777 for one the sandbox's uid may
// also write (a root daemon's servers run as nobody). It is made under
// $RUGWATCH_TEST_OUTSIDE_TMP, else /var/tmp.
func OutsideTmp(t testing.TB, mode os.FileMode) string {
	t.Helper()
	base := os.Getenv("RUGWATCH_TEST_OUTSIDE_TMP")
	if base == "" {
		base = "/var/tmp"
	}
	d, err := os.MkdirTemp(base, "rugwatch-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, mode); err != nil {
		t.Fatal(err)
	}
	return d
}
