package configs

import (
	"strings"
	"testing"
)

// revision_check is a per-server key for command and http servers; SSE
// has one protocol era only, so asking there is an error at its line.
func TestRevisionCheckKey(t *testing.T) {
	c := mustParse(t, "servers:\n  - name: a\n    url: http://127.0.0.1:1/mcp\n    revision_check: true\n  - name: b\n    command: x\n")
	if !c.Servers[0].RevisionCheck || c.Servers[1].RevisionCheck {
		t.Fatalf("revision_check: %v %v", c.Servers[0].RevisionCheck, c.Servers[1].RevisionCheck)
	}
	_, err := parse(t, "servers:\n  - name: a\n    url: http://127.0.0.1:1/sse\n    transport: sse\n    revision_check: true\n")
	if err == nil || !strings.Contains(err.Error(), `rugwatch.yaml:5: servers[0] "a": revision_check: not for sse`) {
		t.Fatalf("revision_check on sse: %v", err)
	}
}
