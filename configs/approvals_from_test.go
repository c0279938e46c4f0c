package configs

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// approvals_from names a lock file relative to the config, made absolute
// like trusted_keys; the sandbox hides it from the servers it watches; a
// misspelt key is an error naming its line, as anywhere else.
func TestLockApprovalsFromKey(t *testing.T) {
	c, err := parse(t, "approvals_from: git/rugwatch.lock.json\n"+okServer)
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(c.ApprovalsFrom) || !strings.HasSuffix(c.ApprovalsFrom, "/git/rugwatch.lock.json") {
		t.Fatalf("approvals_from = %q, want an absolute path beside the config", c.ApprovalsFrom)
	}
	if !slices.Contains(c.ReferencedPaths(), c.ApprovalsFrom) {
		t.Errorf("ReferencedPaths lacks %s: %v", c.ApprovalsFrom, c.ReferencedPaths())
	}
	if _, err := parse(t, "approval_from: rugwatch.lock.json\n"+okServer); err == nil || !strings.Contains(err.Error(), `rugwatch.yaml:1`) || !strings.Contains(err.Error(), `"approval_from"`) {
		t.Errorf("misspelt key: %v", err)
	}
}
