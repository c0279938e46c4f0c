package monitor

import (
	"fmt"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/store"
)

// configRule reports the rules of ConfigFindings: the configuration
// raises them, not a listing.
func configRule(rule string) bool {
	return rule == detect.RuleUnpinnedPackage || rule == detect.RulePackageLookalike
}

// evaluateServerFindings records the listing's findings about the server
// rather than its tools (mcpclient.Listing.ServerFindings: stdout noise),
// and raises server.flagged for those the last good poll did not have.
//
// They are kept on the server's record, shown by status, check and the
// reports, rather than raised on every poll as network.refused is: a
// server that prints a banner prints it at every start, and an alert per
// poll for a line no model ever sees would teach people to ignore
// warnings. Nor do they join the launch identity: noise comes and goes
// with load and logging, and launch.drifted must mean that what runs
// changed. A finding that goes (a poll without noise) is dropped
// silently; one that comes back is raised again.
func evaluateServerFindings(in Input, prev store.ServerRecord, next *store.ServerRecord, ev func(rugwatch.Event)) {
	var found []rugwatch.Finding
	if in.Listing != nil {
		found = in.Listing.ServerFindings()
	} else {
		// A failed poll says nothing new of the server's output: what
		// the last good one found stands.
		for _, f := range prev.Findings {
			if !configRule(f.Rule) {
				found = append(found, f)
			}
		}
	}
	found = detect.SortFindings(append(found, in.ConfigFindings...))
	if len(found) == 0 {
		found = nil
	}
	next.Findings = found
	had := map[string]bool{}
	for _, f := range prev.Findings {
		had[f.Rule+" "+f.Path] = true
	}
	var fresh []rugwatch.Finding
	for _, f := range found {
		if !had[f.Rule+" "+f.Path] {
			fresh = append(fresh, f)
		}
	}
	if len(fresh) == 0 {
		return
	}
	msg := fresh[0].Message
	if len(fresh) > 1 {
		msg = fmt.Sprintf("%s (and %d more findings)", msg, len(fresh)-1)
	}
	ev(rugwatch.Event{Type: rugwatch.EventServerFlagged, Severity: detect.MaxSeverity(fresh), Findings: fresh, Message: msg})
}
