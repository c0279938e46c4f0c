package signatures_test

import (
	"slices"
	"testing"

	"github.com/rugwatch/rugwatch/signatures"
)

// An allowance is granted only where every statement carries it; what
// some carry and others do not is named as withheld.
func TestGrantsOfNeedsEveryStatement(t *testing.T) {
	alice := signatures.Statement{ReturnsSecrets: true, AcceptedFindings: []string{"a p", "b p"}}
	bob := signatures.Statement{AcceptedFindings: []string{"b p"}}
	if g := signatures.GrantsOf([]signatures.Statement{alice}); !g.ReturnsSecrets || !slices.Equal(g.AcceptedFindings, alice.AcceptedFindings) || len(g.Withheld) != 0 {
		t.Fatalf("alice alone: %+v", g)
	}
	for _, sts := range [][]signatures.Statement{{alice, bob}, {bob, alice}} {
		g := signatures.GrantsOf(sts)
		if g.ReturnsSecrets || !slices.Equal(g.AcceptedFindings, []string{"b p"}) {
			t.Fatalf("%d statements: granted %+v", len(sts), g)
		}
		if !slices.Contains(g.Withheld, "returns_secrets") || !slices.Contains(g.Withheld, "accepted finding a p") {
			t.Fatalf("withheld %q", g.Withheld)
		}
	}
	if g := signatures.GrantsOf(nil); g.ReturnsSecrets || len(g.AcceptedFindings)+len(g.Withheld) != 0 {
		t.Fatalf("no statements grant nothing: %+v", g)
	}
}
