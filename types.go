package rugwatch

import (
	"encoding/json"
	"strings"
	"time"
)

// Digest is "sha256:<64 lowercase hex>" of the RFC 8785 canonical form of a
// JSON value.
type Digest string

// Valid reports whether d has the sha256:<64 hex> form.
func (d Digest) Valid() bool {
	s, ok := strings.CutPrefix(string(d), "sha256:")
	if !ok || len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Short is the first 12 hex digits, for humans.
func (d Digest) Short() string {
	s := strings.TrimPrefix(string(d), "sha256:")
	if len(s) > 12 {
		s = s[:12]
	}
	return s
}

// State is where one tool of one server stands.
type State string

// The tool states of DESIGN.md.
const (
	StateApproved State = "approved" // observed digest equals a valid approval's digest
	StatePending  State = "pending"  // seen, never approved
	StateDrifted  State = "drifted"  // had an approval, observed digest differs; approval revoked
	StateRevoked  State = "revoked"  // approval withdrawn by a human
	StateRemoved  State = "removed"  // approved before, absent from the latest listing
)

// Clean reports whether the state needs no human attention.
func (s State) Clean() bool { return s == StateApproved }

// Severity grades events and findings.
type Severity string

// Severities, lowest first.
const (
	SeverityInfo     Severity = "info"
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
)

// Rank orders severities: info 1, warning 2, critical 3, unknown 0.
func (s Severity) Rank() int {
	switch s {
	case SeverityInfo:
		return 1
	case SeverityWarning:
		return 2
	case SeverityCritical:
		return 3
	}
	return 0
}

// Max returns the higher of two severities.
func (s Severity) Max(o Severity) Severity {
	if o.Rank() > s.Rank() {
		return o
	}
	return s
}

// EventType names what happened.
type EventType string

// Event types of DESIGN.md.
const (
	EventToolNew      EventType = "tool.new"
	EventToolDrifted  EventType = "tool.drifted"
	EventToolRemoved  EventType = "tool.removed"
	EventToolApproved EventType = "tool.approved"
	EventToolRevoked  EventType = "tool.revoked"
	// EventToolCosigned: a signature added to a tool's approval that
	// does not complete its quorum; the tool stays as it was.
	EventToolCosigned EventType = "tool.cosigned"
	// EventInstructionsCosigned, EventEgressCosigned and
	// EventLaunchCosigned are tool.cosigned for a server's instructions,
	// its egress destinations and its launch identity: a signature that
	// does not complete the quorum; what it signs stays unapproved.
	EventInstructionsCosigned EventType = "instructions.cosigned"
	EventEgressCosigned       EventType = "egress.cosigned"
	EventLaunchCosigned       EventType = "launch.cosigned"
	EventInstructionsDrifted  EventType = "instructions.drifted"
	EventServerUnreachable    EventType = "server.unreachable"
	EventServerRecovered      EventType = "server.recovered"
	EventApprovalInvalid      EventType = "approval.invalid"
	// EventLaunchDrifted: a stdio server's executable or package changed
	// under the same command line, even if no tool text changed.
	EventLaunchDrifted EventType = "launch.drifted"
	// EventToolCloaked: a server lists a tool differently (or not at all)
	// to clients of different protocol revisions (revision_check).
	EventToolCloaked EventType = "tool.cloaked"
	// EventNetworkRefused: the sandbox refused a server's connection to a
	// destination its egress allow-list does not name.
	EventNetworkRefused EventType = "network.refused"
	// EventIdentityDrifted: a remote server's identity (certificate,
	// address, server info) differs from the one pinned at first sight.
	EventIdentityDrifted EventType = "identity.drifted"
	// EventResultFlagged: a tool result the proxy found poisoning in.
	EventResultFlagged EventType = "result.flagged"
	// EventServerFlagged: a poll found something about a server rather
	// than any of its tools (a stdio server writing lines on stdout that
	// are not JSON-RPC); raised when a finding first appears, with it.
	EventServerFlagged EventType = "server.flagged"
	// EventServerChurning: a server listed more new tool names than
	// limits.max_new_tools_per_hour allows; its listings are summarised
	// (a count, a few names, the listing's digest) instead of recorded
	// tool by tool until it stops. Also raised, at info, when it stops.
	EventServerChurning EventType = "server.churning"
	// EventEgressDrifted: a sandboxed server reached (or, with
	// egress_mode: pinned, tried to reach) a destination outside the set
	// approved for it, though every tool may be byte-identical.
	EventEgressDrifted EventType = "egress.drifted"
	// EventEgressApproved: a signed approval pinned the destinations a
	// server may use. The log keeps it so a pin deleted from the store is
	// noticed.
	EventEgressApproved EventType = "egress.approved"
	// EventToolShadowed: two servers behind one gateway serve a tool of
	// the same name; the gateway serves neither until one is removed or
	// renamed (or gateway.names: prefixed).
	EventToolShadowed EventType = "tool.shadowed"

	// Summary events: one alert for a poll that moved several tools of
	// one server, in place of one alert per tool. A first cycle of 10,000
	// servers of 50 tools is 10,000 alerts, not 500,000, and a receiver of
	// a server that drifted 40 tools at once gets one message naming them
	// all.

	// EventServerNew is the first sight of a server with more than one
	// tool: its changes list every tool ("/tools/<name>", op "add", the
	// observed digest as new).
	EventServerNew EventType = "server.new"
	// EventServerChanged is a later poll that moved more than one tool:
	// a drifted tool is "replace" (old the approved digest, new the
	// observed one) followed by its field changes under its path, a new
	// tool "add", a removed one "remove".
	EventServerChanged EventType = "server.changed"

	// Events of the alerting machinery itself.

	// EventAlertTest is the event `rugwatch alerts test` sends.
	EventAlertTest EventType = "alert.test"
	// EventAlertDead reports a delivery given up on (permanent error or
	// out of time); it goes to every other channel.
	EventAlertDead EventType = "alert.dead"
	// EventAlertDisabled reports a webhook endpoint that answered 410 Gone
	// and receives nothing more, across reloads and restarts, until
	// `rugwatch alerts enable CHANNEL`.
	EventAlertDisabled EventType = "alert.disabled"
)

// Change is one field-level difference between two JSON documents, addressed
// by an RFC 6901 JSON pointer.
type Change struct {
	Path string          `json:"path"`
	Op   string          `json:"op"` // add | remove | replace
	Old  json.RawMessage `json:"old,omitempty"`
	New  json.RawMessage `json:"new,omitempty"`
}

// Finding is one suspicious property of a tool definition.
type Finding struct {
	Rule     string   `json:"rule"`
	Severity Severity `json:"severity"`
	Path     string   `json:"path"`
	Message  string   `json:"message"`
}

// Event is one record of the append-only, hash-chained event log.
type Event struct {
	ID             string    `json:"id"`
	Seq            uint64    `json:"seq"`
	Type           EventType `json:"type"`
	Severity       Severity  `json:"severity"`
	Server         string    `json:"server"`
	Tool           string    `json:"tool,omitempty"`
	ApprovedDigest Digest    `json:"approved_digest,omitempty"`
	ObservedDigest Digest    `json:"observed_digest,omitempty"`
	Changes        []Change  `json:"changes,omitempty"`
	Findings       []Finding `json:"findings,omitempty"`
	Message        string    `json:"message,omitempty"`
	KeyID          string    `json:"key_id,omitempty"`
	// Signers names every key whose signature an approval counted
	// (tool.approved, egress.approved and the *.cosigned events), first
	// signer first.
	Signers    []string  `json:"signers,omitempty"`
	OccurredAt time.Time `json:"occurred_at"`
	// Prev is the digest of the previous event record as stored; the first
	// event's Prev is empty. Editing any stored record breaks the chain.
	Prev Digest `json:"prev,omitempty"`
	// ChainHead is the chain digest after this event: the digest of its
	// record as stored, which the next record carries as Prev. It is never
	// part of the stored bytes (it cannot hash itself); the store derives it
	// from them on every read. An alert carries Seq and ChainHead so its
	// receiver can later prove the log was cut or rolled back
	// (rugwatch verify --head SEQ:HEAD).
	ChainHead Digest `json:"chain_head,omitempty"`
}
