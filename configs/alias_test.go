package configs

import (
	"strings"
	"testing"
)

func TestAliasExpansionBounded(t *testing.T) {
	// 1000 aliases of a server with 200 args: 200k values from a 5 KB file.
	yml := "defaults: {}\nx: &srv {name: a, command: x, args: [" + strings.Repeat("x,", 199) + "x]}\n" +
		"servers: [" + strings.Repeat("*srv,", 999) + "*srv]\n"
	_, err := parse(t, yml)
	if err == nil || !strings.Contains(err.Error(), "more than 100000 values (aliases expanded too far)") {
		t.Fatalf("got %.500v", err)
	}
}

func TestRecursiveAlias(t *testing.T) {
	_, err := parse(t, "servers: &s\n  - name: a\n    args: *s\n")
	if err == nil || !containsLine(err.Error(), `rugwatch.yaml:2: servers[0] "a": args[0]: must be a string`) {
		t.Errorf("got %v", err)
	}
}
