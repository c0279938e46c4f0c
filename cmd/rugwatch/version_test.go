package main

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	out, errOut, code := runApp(t, "version", "--json")
	var bi buildInfo
	if code != 0 || json.Unmarshal([]byte(out), &bi) != nil || bi.Go != runtime.Version() || bi.Version == "" {
		t.Fatalf("version --json: exit %d, %q, %q", code, out, errOut)
	}
	out, _, code = runApp(t, "--version")
	if code != 0 || !strings.HasPrefix(out, "rugwatch ") || !strings.Contains(out, runtime.Version()) {
		t.Fatalf("--version: exit %d, %q", code, out)
	}
}
