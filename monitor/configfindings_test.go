package monitor

import (
	"errors"
	"testing"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
)

// TestLookalikeFlaggedWithoutAPoll: a package one edit from a well-known
// server is flagged from the config alone, on a first poll that fails
// (the lookalike cannot be installed offline), once; an unpinned spec
// is a warning beside it, and both stay on the record while polls fail.
func TestLookalikeFlaggedWithoutAPoll(t *testing.T) {
	h := newHarness(t)
	fs := detect.PackageFindings("npx", []string{"-y", "@modelcontextprotocol/server-filesysten"})
	if detect.MaxSeverity(fs) != rugwatch.SeverityCritical {
		t.Fatalf("the spec raises %v, want a critical lookalike", fs)
	}
	h.rec.ConfigFindings = func(server string) []rugwatch.Finding { return fs }
	offline := errors.New("npm ERR! network request failed")
	rec, events := h.record(nil, offline)
	var flagged []rugwatch.Event
	for _, e := range events {
		if e.Type == rugwatch.EventServerFlagged {
			flagged = append(flagged, e)
		}
	}
	if len(flagged) != 1 || flagged[0].Severity != rugwatch.SeverityCritical {
		t.Fatalf("server.flagged events %v, want one critical", flagged)
	}
	rules := map[string]bool{}
	for _, f := range rec.Findings {
		rules[f.Rule] = true
	}
	if !rules[detect.RulePackageLookalike] || !rules[detect.RuleUnpinnedPackage] {
		t.Fatalf("record findings %v", rec.Findings)
	}
	rec, events = h.record(nil, offline)
	for _, e := range events {
		if e.Type == rugwatch.EventServerFlagged {
			t.Fatalf("raised again on the next failed poll: %v", e)
		}
	}
	if len(rec.Findings) != len(fs) {
		t.Fatalf("findings after a second failed poll: %v", rec.Findings)
	}
	// Without the config's findings (the protection off) a failed
	// launch leaves nothing to see.
	h2 := newHarness(t)
	if rec, _ := h2.record(nil, offline); len(rec.Findings) != 0 {
		t.Fatalf("findings with no config findings: %v", rec.Findings)
	}
}
