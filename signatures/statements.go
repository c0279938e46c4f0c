package signatures

import (
	"encoding/json"
	"fmt"
	"time"

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

// Names reports whether the statement approves exactly this subject:
// kind, server, tool ("" for instructions) and digest.
func (st *Statement) Names(kind, server, tool string, digest rugwatch.Digest) bool {
	return st.Kind == kind && st.Server == server && st.Tool == tool && st.Digest == digest
}

// Subject describes what the statement names, for messages.
func (st *Statement) Subject() string {
	if st.Kind == KindInstructions {
		return fmt.Sprintf("%s %s %s", st.Kind, st.Server, st.Digest)
	}
	return fmt.Sprintf("%s %s/%s %s", st.Kind, st.Server, st.Tool, st.Digest)
}
