package monitor

import (
	"fmt"
	"slices"
	"strings"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/signatures"
)

// The rule of which findings stop an approval lives here, once: a
// definition with critical poisoning findings is approved only by a
// signature that accepts each of them (Statement.AcceptedFindings, "<rule>
// <path>", which `rugwatch approve --accept-findings` signs). The Ledger
// refuses any other, whichever way it came (the CLI, the control socket,
// a lock file); the CLI asks the same before it signs.

// Unaccepted returns the critical findings of fs that accepted, a
// statement's accepted findings, does not cover.
func Unaccepted(fs []rugwatch.Finding, accepted []string) []rugwatch.Finding {
	var out []rugwatch.Finding
	for _, f := range fs {
		if f.Severity != rugwatch.SeverityCritical {
			continue
		}
		if key := signatures.AcceptedFindings([]rugwatch.Finding{f}); !slices.Contains(accepted, key[0]) {
			out = append(out, f)
		}
	}
	return out
}

// checkAccepted refuses the signed approval st of what (its critical
// findings fs) unless it accepts every critical finding of fs.
func checkAccepted(what string, fs []rugwatch.Finding, st signatures.Statement) error {
	un := Unaccepted(fs, st.AcceptedFindings)
	if len(un) == 0 {
		return nil
	}
	var rules []string
	for _, f := range un {
		if !slices.Contains(rules, f.Rule) {
			rules = append(rules, f.Rule)
		}
	}
	return fmt.Errorf("%s carries critical poisoning findings (%s) its signed approval does not accept; not approved. "+
		"Review them (rugwatch diff) and approve with --accept-findings if you still trust it", what, strings.Join(rules, ", "))
}
