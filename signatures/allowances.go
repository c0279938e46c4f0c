package signatures

import "slices"

// The rule of what an approval signed by several keys allows beyond
// passing lives here, once: an allowance (returns_secrets, an accepted
// finding) is granted only where every signature that counts carries it.
// Under a quorum no single key may grant what the others did not sign:
// one approver's plain signature approves the tool without it.

// Grants is what the signatures that count towards one approval allow
// together.
type Grants struct {
	// ReturnsSecrets: every signature says the tool returns secrets by
	// design (Statement.ReturnsSecrets).
	ReturnsSecrets bool
	// AcceptedFindings are the findings ("<rule> <path>") every signature
	// accepted, in the first signature's order.
	AcceptedFindings []string
	// Withheld names what some signatures carry and others do not, so is
	// not granted: "returns_secrets", "accepted finding <rule> <path>".
	Withheld []string
}

// GrantsOf is what sts, the statements of the signatures that count
// towards one approval, grant together. None grant nothing.
func GrantsOf(sts []Statement) Grants {
	var g Grants
	if len(sts) == 0 {
		return g
	}
	some, all := false, true
	for _, st := range sts {
		some = some || st.ReturnsSecrets
		all = all && st.ReturnsSecrets
	}
	g.ReturnsSecrets = all
	if some && !all {
		g.Withheld = append(g.Withheld, "returns_secrets")
	}
	var seen []string
	for _, st := range sts {
		for _, f := range st.AcceptedFindings {
			if slices.Contains(seen, f) {
				continue
			}
			seen = append(seen, f)
			if slices.ContainsFunc(sts, func(o Statement) bool { return !slices.Contains(o.AcceptedFindings, f) }) {
				g.Withheld = append(g.Withheld, "accepted finding "+f)
				continue
			}
			g.AcceptedFindings = append(g.AcceptedFindings, f)
		}
	}
	return g
}
