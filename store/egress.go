package store

import "github.com/rugwatch/rugwatch"

// EgressRecord is behaviour pinning's part of a server's record: where the
// server went through its sandbox's egress path, and what a signed
// approval (kind egress) allows. The monitor decides it; the store only
// keeps it. Pinned is a copy for display: the approval's signature, not
// this record, is what the monitor trusts.
type EgressRecord struct {
	// Seen is every destination ("host:port") seen since first sight,
	// sorted, at most monitor's bound; Dropped counts the distinct
	// destinations past it, summarised rather than kept.
	Seen    []string `json:"seen,omitempty"`
	Dropped int      `json:"dropped,omitempty"`
	// Pinned is the approved destinations as the last poll verified them,
	// PinnedDigest the approval's digest; both empty while none is
	// approved. PinMissing says the event log holds an egress approval the
	// store no longer does (deleted or broken): every destination then
	// counts as new.
	Pinned       []string        `json:"pinned,omitempty"`
	PinnedDigest rugwatch.Digest `json:"pinned_digest,omitempty"`
	PinMissing   bool            `json:"pin_missing,omitempty"`
	// Drifted are the destinations of Seen outside the approved set: each
	// was raised once in egress.drifted, and all stand until approved.
	// Refused are those of them egress_mode: pinned refused.
	Drifted []string `json:"drifted,omitempty"`
	Refused []string `json:"refused,omitempty"`
	// TransitionSeq is the seq of the newest egress.drifted or
	// egress.approved event: what an egress approval is bound to
	// (Statement.Resolves).
	TransitionSeq uint64 `json:"transition_seq,omitempty"`
}
