package signatures_test

import (
	"testing"

	"github.com/rugwatch/rugwatch/signatures"
)

func TestTally(t *testing.T) {
	p := &signatures.Policy{
		Keys: map[string]signatures.KeyInfo{
			"a": {Name: "alice", Roles: []string{"platform"}},
			"b": {Name: "bob", Roles: []string{"security"}},
		},
		Default:   signatures.Quorum{N: 2, Roles: []string{"security"}},
		PerServer: map[string]signatures.Quorum{"lab": {N: 1}},
	}
	tests := []struct {
		server  string
		signers []string
		want    string
		met     bool
	}{
		{"srv", nil, "0 of 2 (needs role security)", false},
		{"srv", []string{"a"}, "1 of 2 (needs role security)", false},
		{"srv", []string{"a", "a"}, "1 of 2 (needs role security)", false}, // the same key twice counts once
		{"srv", []string{"a", "x"}, "1 of 2 (needs role security)", false}, // a key the policy does not list counts none
		{"srv", []string{"b"}, "1 of 2", false},
		{"srv", []string{"a", "b"}, "2 of 2", true},
		{"lab", []string{"a"}, "1 of 1", true},
	}
	for _, tt := range tests {
		got := p.Tally(tt.server, tt.signers)
		if got.String() != tt.want || got.Met() != tt.met {
			t.Errorf("%s %v: %q met %v, want %q met %v", tt.server, tt.signers, got, got.Met(), tt.want, tt.met)
		}
	}
	var none *signatures.Policy
	if q := none.For("srv"); q.N != 1 || len(q.Roles) != 0 || !none.Tally("srv", []string{"any"}).Met() {
		t.Errorf("a nil policy is not quorum 1 without roles: %+v", q)
	}
}
