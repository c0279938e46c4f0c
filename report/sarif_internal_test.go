package report

import (
	"testing"

	"github.com/rugwatch/rugwatch"
)

func TestSARIFLevels(t *testing.T) {
	for sev, want := range map[rugwatch.Severity]string{"critical": "error", "warning": "warning", "info": "note"} {
		if got := sarifLevel(sev); got != want {
			t.Errorf("%s: %s, want %s", sev, got, want)
		}
	}
	if ruleName("cross-server-shadowing") != "CrossServerShadowing" || driftRuleID(rugwatch.EventInstructionsDrifted) != "rugwatch/drift/instructions-drifted" {
		t.Error("names")
	}
	if fingerprint("a", "bc") == fingerprint("ab", "c") {
		t.Error("fingerprint fields collide")
	}
}
