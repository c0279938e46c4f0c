package signatures

import (
	"fmt"
	"slices"
	"strings"
)

// The rule of how many signatures an approval needs lives here, once:
// the Ledger asks it whether a signature completes an approval, the
// Recorder whether a stored approval counts, the proxy whether a tool may
// pass, and status what is still missing.

// Quorum is what an approval needs: N distinct trusted keys, among them
// at least one holding each of Roles. The zero value is one signature and
// no roles, the rule before quorums existed.
type Quorum struct {
	N     int
	Roles []string
}

// KeyInfo is what the config says of one trusted key.
type KeyInfo struct {
	Name  string
	Roles []string
}

// Policy is the quorum of every server and the names and roles of the
// trusted keys. A nil Policy is quorum 1 with no roles: any key the
// Verifier trusts completes an approval alone.
type Policy struct {
	Keys      map[string]KeyInfo // by key id
	Default   Quorum
	PerServer map[string]Quorum
}

// For returns the quorum of server.
func (p *Policy) For(server string) Quorum {
	if p == nil {
		return Quorum{N: 1}
	}
	q, ok := p.PerServer[server]
	if !ok {
		q = p.Default
	}
	if q.N < 1 {
		q.N = 1
	}
	return q
}

// Name is the configured name of a key, else its id.
func (p *Policy) Name(keyID string) string {
	if p != nil {
		if k, ok := p.Keys[keyID]; ok && k.Name != "" {
			return k.Name
		}
	}
	return keyID
}

// Tally is how far a set of signatures is towards a server's quorum.
type Tally struct {
	Signers      []string // distinct key ids that count, in signing order
	Need         int
	MissingRoles []string // required roles no counted signer holds
}

// Met reports whether the quorum is met.
func (t Tally) Met() bool { return len(t.Signers) >= t.Need && len(t.MissingRoles) == 0 }

// String is "1 of 2 (needs role security)": what status, diff and
// approve print after "signatures: ".
func (t Tally) String() string {
	s := fmt.Sprintf("%d of %d", len(t.Signers), t.Need)
	if len(t.MissingRoles) > 0 {
		s += " (needs role " + strings.Join(t.MissingRoles, ", role ") + ")"
	}
	return s
}

// Tally counts signers (key ids of signatures that verified, with the
// Verifier of the moment) towards server's quorum. A key twice counts
// once. With a Policy, a key it does not list counts none: the Policy and
// the Verifier are built from the same trusted_keys.
func (p *Policy) Tally(server string, signers []string) Tally {
	q := p.For(server)
	t := Tally{Need: q.N}
	held := map[string]bool{}
	for _, id := range signers {
		if id == "" || slices.Contains(t.Signers, id) {
			continue
		}
		if p != nil {
			k, ok := p.Keys[id]
			if !ok {
				continue
			}
			for _, r := range k.Roles {
				held[r] = true
			}
		}
		t.Signers = append(t.Signers, id)
	}
	for _, r := range q.Roles {
		if !held[r] {
			t.MissingRoles = append(t.MissingRoles, r)
		}
	}
	return t
}
