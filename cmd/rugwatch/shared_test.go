package main

import (
	"testing"

	"github.com/rugwatch/rugwatch/testkit"
)

// sharedDir is a directory a sandboxed stdio server can reach and write,
// for the demo server's state and trigger files (see testkit.OutsideTmp).
func sharedDir(t *testing.T) string { return testkit.OutsideTmp(t, 0o777) }
