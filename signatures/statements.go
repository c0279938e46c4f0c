package signatures

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/rugwatch/rugwatch"
)

// The statements rugwatch signs are built here, one constructor per kind,
// and matched against what they claim to approve here too: the daemon's
// first-sight approvals, `rugwatch approve` and every check of a stored
// approval agree on what a statement says because they share these.

// Review is what the approver saw and decided, common to every kind.
type Review struct {
	// Seq is the newest transition of the subject when it was reviewed
	// (Statement.Resolves).
	Seq        uint64
	ApprovedAt time.Time
	Note       string
	// Accepted names the critical findings the approver accepted, each as
	// "<rule> <path>".
	Accepted []string
	// ReturnsSecrets: the tool returns secrets by design
	// (Statement.ReturnsSecrets).
	ReturnsSecrets bool
}

// AcceptedFindings lists the critical findings of fs as a statement
// records them: "<rule> <path>".
func AcceptedFindings(fs []rugwatch.Finding) []string {
	var out []string
	for _, f := range fs {
		if f.Severity == rugwatch.SeverityCritical {
			out = append(out, f.Rule+" "+f.Path)
		}
	}
	return out
}

// ToolStatement approves one tool of server: its canonical definition
// (what the model will read, byte for byte) with its digest.
func ToolStatement(server, tool string, digest rugwatch.Digest, canonical json.RawMessage, r Review) Statement {
	return Statement{Kind: KindTool, Server: server, Tool: tool, Digest: digest, Definition: canonical,
		ApprovedAt: r.ApprovedAt, Note: r.Note, AcceptedFindings: r.Accepted, ReturnsSecrets: r.ReturnsSecrets, Resolves: ResolvesSeq(r.Seq)}
}

// InstructionsCanonical is the canonical form of a server's instructions
// as a statement carries them and a digest is taken over: the JSON
// string, canonicalised.
func InstructionsCanonical(instructions string, lim Limits) (json.RawMessage, error) {
	raw, err := json.Marshal(instructions)
	if err != nil {
		return nil, err
	}
	return Canonical(raw, lim)
}

// InstructionsStatement approves a server's instructions.
func InstructionsStatement(server, instructions string, digest rugwatch.Digest, r Review) (Statement, error) {
	canon, err := InstructionsCanonical(instructions, Limits{})
	if err != nil {
		return Statement{}, fmt.Errorf("canonical form of %s instructions: %w", server, err)
	}
	return Statement{Kind: KindInstructions, Server: server, Digest: digest, Definition: canon,
		ApprovedAt: r.ApprovedAt, Note: r.Note, AcceptedFindings: r.Accepted, Resolves: ResolvesSeq(r.Seq)}, nil
}

// MaxEgressDests bounds the destinations one egress statement approves:
// a server that makes up names under a wildcard of its allow-list must not
// grow an approval without end.
const MaxEgressDests = 256

// EgressDefinition is the canonical form an egress statement carries and
// its digest is taken over: the destinations ("host:port", as the
// sandbox's egress path names them) as a JSON array, sorted, each once.
func EgressDefinition(dests []string) (json.RawMessage, error) {
	sorted := slices.Clone(dests)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	if sorted == nil {
		sorted = []string{}
	}
	if len(sorted) > MaxEgressDests {
		return nil, fmt.Errorf("%d egress destinations, more than the %d one approval holds", len(sorted), MaxEgressDests)
	}
	raw, err := json.Marshal(sorted)
	if err != nil {
		return nil, err
	}
	return Canonical(raw, Limits{})
}

// EgressDests reads an egress definition back, refusing anything
// EgressDefinition would not have written (unsorted, repeated, not
// strings, too many), so one set has exactly one signed form.
func EgressDests(def json.RawMessage) ([]string, error) {
	var dests []string
	if err := json.Unmarshal(def, &dests); err != nil || dests == nil {
		return nil, errors.New("kind egress: the definition must be a JSON array of strings")
	}
	if len(dests) > MaxEgressDests {
		return nil, fmt.Errorf("kind egress: %d destinations, more than %d", len(dests), MaxEgressDests)
	}
	for i, d := range dests {
		if d == "" || !utf8.ValidString(d) {
			return nil, errors.New("kind egress: an empty or invalid destination")
		}
		if i > 0 && dests[i-1] >= d {
			return nil, errors.New("kind egress: destinations must be sorted and distinct")
		}
	}
	return dests, nil
}

// EgressStatement approves the egress destinations of server: after it,
// a destination outside dests is egress.drifted (and refused under
// egress_mode: pinned).
func EgressStatement(server string, dests []string, r Review) (Statement, error) {
	def, err := EgressDefinition(dests)
	if err != nil {
		return Statement{}, fmt.Errorf("egress of %s: %w", server, err)
	}
	return Statement{Kind: KindEgress, Server: server, Digest: DigestOf(def), Definition: def,
		ApprovedAt: r.ApprovedAt, Note: r.Note, Resolves: ResolvesSeq(r.Seq)}, nil
}

// LaunchDefinition is the canonical form a launch statement carries and
// its digest is taken over: what runs for a server (its launch identity,
// null for a remote server) and who answers for it (its remote identity,
// null for a stdio server), as one JSON object.
func LaunchDefinition(launch, identity json.RawMessage) (json.RawMessage, error) {
	orNull := func(r json.RawMessage) json.RawMessage {
		if len(r) == 0 {
			return json.RawMessage("null")
		}
		return r
	}
	raw, err := json.Marshal(map[string]json.RawMessage{"launch": orNull(launch), "identity": orNull(identity)})
	if err != nil {
		return nil, err
	}
	return Canonical(raw, Limits{})
}

// LaunchStatement approves the launch and remote identity of server as
// they are now: `rugwatch approve SERVER --launch` after launch.drifted
// or identity.drifted, where a quorum counts its signatures.
func LaunchStatement(server string, launch, identity json.RawMessage, r Review) (Statement, error) {
	def, err := LaunchDefinition(launch, identity)
	if err != nil {
		return Statement{}, fmt.Errorf("launch identity of %s: %w", server, err)
	}
	return Statement{Kind: KindLaunch, Server: server, Digest: DigestOf(def), Definition: def,
		ApprovedAt: r.ApprovedAt, Note: r.Note, Resolves: ResolvesSeq(r.Seq)}, nil
}

// Names reports whether the statement approves exactly this subject:
// kind, server, tool ("" for instructions) and digest.
func (st *Statement) Names(kind, server, tool string, digest rugwatch.Digest) bool {
	return st.Kind == kind && st.Server == server && st.Tool == tool && st.Digest == digest
}

// Subject describes what the statement names, for messages.
func (st *Statement) Subject() string {
	if st.Kind == KindInstructions || st.Kind == KindEgress || st.Kind == KindLaunch {
		return fmt.Sprintf("%s %s %s", st.Kind, st.Server, st.Digest)
	}
	return fmt.Sprintf("%s %s/%s %s", st.Kind, st.Server, st.Tool, st.Digest)
}
