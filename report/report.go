package report

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/store"
)

// Report is the JSON of `status --json` and `check --json`. Fields may be
// added, never renamed.
type Report struct {
	SchemaVersion int            `json:"schema_version"`
	Servers       []ServerReport `json:"servers"`
}

// ServerReport is one server in a Report.
type ServerReport struct {
	Name            string     `json:"name"`
	Transport       string     `json:"transport"`
	ProtocolVersion string     `json:"protocol_version"` // the revision the last good poll negotiated
	Reachable       bool       `json:"reachable"`
	LastPolledAt    *time.Time `json:"last_polled_at"`
	// Owner is the cluster replica that holds the server's lease and
	// polls it, on a shared (PostgreSQL) store; empty on bbolt, and
	// while no live replica holds it.
	Owner              string          `json:"owner,omitempty"`
	Error              string          `json:"error"`
	InstructionsDigest rugwatch.Digest `json:"instructions_digest"`
	// InstructionsState is approved, pending, drifted or revoked; empty
	// when the server sends no instructions.
	InstructionsState    rugwatch.State     `json:"instructions_state,omitempty"`
	InstructionsFindings []rugwatch.Finding `json:"instructions_findings,omitempty"`
	// InstructionsSignatures is how far the approval of the instructions
	// is towards the server's quorum (as ToolState.Signatures).
	InstructionsSignatures string `json:"instructions_signatures,omitempty"`
	// Findings are about the server rather than any tool: a stdio server
	// writing lines on stdout that are not JSON-RPC (stdout-noise).
	Findings []rugwatch.Finding `json:"findings,omitempty"`
	// Launch is what ran for a stdio server; LaunchDrifted says it differs
	// from the pinned one.
	Launch        json.RawMessage `json:"launch,omitempty"`
	LaunchDrifted bool            `json:"launch_drifted,omitempty"`
	// LaunchSignatures is how far the approval of the launch and remote
	// identity is towards the server's quorum (as ToolState.Signatures),
	// while either drifted.
	LaunchSignatures string `json:"launch_signatures,omitempty"`
	// Identity is who answered an HTTP or SSE server (origin, issuing CA
	// key, certificate names, serverInfo, revision); IdentityDrifted says
	// it differs from the pinned one.
	Identity        json.RawMessage `json:"identity,omitempty"`
	IdentityDrifted bool            `json:"identity_drifted,omitempty"`
	// Egress is behaviour pinning: where a sandboxed stdio server went
	// through its egress path and what is approved for it; absent for a
	// server without an egress path.
	Egress *EgressReport `json:"egress,omitempty"`
	// Sandboxed says the last poll of a stdio server ran it sandboxed;
	// SandboxNote says why not.
	Sandboxed   bool         `json:"sandboxed"`
	SandboxNote string       `json:"sandbox_note,omitempty"`
	Tools       []ToolReport `json:"tools"`
}

// EgressReport is a server's egress in a report.
type EgressReport struct {
	Seen []string `json:"seen"` // every destination used since first sight
	// Approved is the approved set ([]: none may be reached), null while
	// none is approved.
	Approved       []string        `json:"approved"`
	ApprovedDigest rugwatch.Digest `json:"approved_digest,omitempty"`
	// Drifted are the destinations used outside the approved set,
	// Refused those of them egress_mode: pinned refused.
	Drifted []string `json:"drifted,omitempty"`
	Refused []string `json:"refused,omitempty"`
	// Dropped counts destinations past the bound, not listed.
	Dropped int `json:"dropped,omitempty"`
	// PinMissing: an approval the event log holds is gone or no longer
	// verifies; nothing counts as approved.
	PinMissing bool `json:"pin_missing,omitempty"`
	// Signatures is how far the approval of the set to approve (or the
	// approved one) is towards the server's quorum (as
	// ToolState.Signatures).
	Signatures string `json:"signatures,omitempty"`
}

// egressReportOf is the report of a stored egress record.
func egressReportOf(e *store.EgressRecord) *EgressReport {
	if e == nil {
		return nil
	}
	out := &EgressReport{Seen: append([]string{}, e.Seen...), ApprovedDigest: e.PinnedDigest, Drifted: e.Drifted, Refused: e.Refused,
		Dropped: e.Dropped, PinMissing: e.PinMissing}
	if e.PinnedDigest != "" {
		out.Approved = append([]string{}, e.Pinned...)
	}
	return out
}

// NotSandboxed is the mark every view shows of a stdio server whose last
// poll ran it unconfined ("NOT SANDBOXED: " and why), or "" when it ran
// sandboxed, was never polled, or is not a stdio server.
func (s ServerReport) NotSandboxed() string {
	if s.Sandboxed || s.SandboxNote == "" || s.Transport != mcpclient.TransportStdio {
		return ""
	}
	if strings.HasPrefix(s.SandboxNote, "NOT SANDBOXED") {
		return s.SandboxNote
	}
	return "NOT SANDBOXED: " + s.SandboxNote
}

// ToolState is what a report, a diff and a web page all say of a tool.
type ToolState struct {
	State          rugwatch.State    `json:"state"`
	Severity       rugwatch.Severity `json:"severity"`
	ObservedDigest rugwatch.Digest   `json:"observed_digest"`
	ApprovedDigest rugwatch.Digest   `json:"approved_digest"`
	// Signatures is how far the tool's approval is towards its quorum,
	// "1 of 2 (needs role security)"; empty where one signature is all an
	// approval needs.
	Signatures string `json:"signatures,omitempty"`
}

// ToolStateOf is what a stored tool record says of a tool.
func ToolStateOf(t store.ToolRecord) ToolState {
	return ToolState{State: t.State, Severity: t.Severity, ObservedDigest: t.ObservedDigest, ApprovedDigest: t.ApprovedDigest}
}

// ToolReport is one tool in a Report.
type ToolReport struct {
	Name string `json:"name"`
	ToolState
	Changes  []rugwatch.Change  `json:"changes,omitempty"`
	Findings []rugwatch.Finding `json:"findings,omitempty"`
}

// ToolDiff is one tool in `diff --json`: a ToolReport that names its
// server and always carries its (possibly empty) changes and findings.
type ToolDiff struct {
	Server string `json:"server"`
	Tool   string `json:"tool"`
	ToolState
	Changes  []rugwatch.Change  `json:"changes"`
	Findings []rugwatch.Finding `json:"findings"`
}

// DiffResult is what diff shows: the tools and their observed definitions.
type DiffResult struct {
	Tools       []ToolDiff                 `json:"tools"`
	Definitions map[string]json.RawMessage `json:"definitions"`
}

// VerifyReport is `verify --json`.
type VerifyReport struct {
	SchemaVersion    int           `json:"schema_version"`
	EventsChecked    int           `json:"events_checked"`
	ChainError       string        `json:"chain_error,omitempty"`
	ApprovalsChecked int           `json:"approvals_checked"`
	InvalidApprovals []BadApproval `json:"invalid_approvals"`
	// Head is where the log ends, SEQ:CHAIN_HEAD, when its chain checks
	// out; HeadChecked is the head asked about (verify --head) and
	// HeadError why the log does not hold it (cut or rolled back).
	Head        string `json:"head,omitempty"`
	HeadChecked string `json:"head_checked,omitempty"`
	HeadError   string `json:"head_error,omitempty"`
	OK          bool   `json:"ok"`

	// Checkpoint is where the kept chain starts once retention cut the
	// log (SEQ:CHAIN_HEAD of the last event cut), CheckpointKey who
	// signed it and CheckpointError why its signature does not hold.
	// HeadPruned says the head asked about is older than a checkpoint
	// that verifies: its record was cut by retention, and the log is not
	// rolled back behind it.
	Checkpoint      string `json:"checkpoint,omitempty"`
	CheckpointKey   string `json:"checkpoint_key,omitempty"`
	CheckpointError string `json:"checkpoint_error,omitempty"`
	HeadPruned      string `json:"head_pruned,omitempty"`
}

// BadApproval is one approval whose signature does not hold.
type BadApproval struct {
	Server  string `json:"server"`
	Kind    string `json:"kind"`
	Tool    string `json:"tool,omitempty"`
	Problem string `json:"problem"`
}

// AlertsReport is `alerts --json`.
type AlertsReport struct {
	SchemaVersion int              `json:"schema_version"`
	Pending       []store.Delivery `json:"pending"`
	Dead          []store.Delivery `json:"dead"`
	Delivered     []store.Delivery `json:"delivered"`
}

// ServerReportOf is the report of one stored server record; transport
// stands in for a server never polled yet.
func ServerReportOf(r store.ServerRecord, transport string) ServerReport {
	sr := ServerReport{
		Name: r.Name, Transport: r.Transport, ProtocolVersion: r.ProtocolVersion, Reachable: r.Reachable, Error: r.Error,
		InstructionsDigest: r.InstructionsDigest, Tools: []ToolReport{},
		InstructionsState: r.InstructionsState, InstructionsFindings: r.InstructionsFindings, Findings: r.Findings,
		Launch: r.Launch, LaunchDrifted: r.LaunchDrifted, Sandboxed: r.Sandboxed, SandboxNote: r.SandboxNote,
		Identity: r.Identity, IdentityDrifted: r.IdentityDrifted, Egress: egressReportOf(r.Egress),
	}
	if sr.Transport == "" {
		sr.Transport = transport
	}
	if !r.LastPolledAt.IsZero() {
		t := r.LastPolledAt.UTC()
		sr.LastPolledAt = &t
	}
	names := make([]string, 0, len(r.Tools))
	for n := range r.Tools {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t := r.Tools[n]
		sr.Tools = append(sr.Tools, ToolReport{Name: t.Name, ToolState: ToolStateOf(t), Changes: t.Changes, Findings: t.Findings})
	}
	return sr
}

// Clean reports whether a report needs no one's attention: every server
// reached and every tool approved.
func (r Report) Clean() bool {
	for _, s := range r.Servers {
		if !s.Reachable || s.LaunchDrifted || s.IdentityDrifted || (s.InstructionsState != "" && !s.InstructionsState.Clean()) {
			return false
		}
		if s.Egress != nil && (len(s.Egress.Drifted) > 0 || s.Egress.PinMissing) {
			return false
		}
		for _, t := range s.Tools {
			if !t.State.Clean() {
				return false
			}
		}
	}
	return true
}

// ChangeSummary is a one-line list of the first changes, for logs and tables.
func ChangeSummary(cs []rugwatch.Change) string {
	var parts []string
	for i, c := range cs {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("+%d more", len(cs)-3))
			break
		}
		parts = append(parts, c.Op+" "+c.Path)
	}
	return strings.Join(parts, ", ")
}

// SARIFInputs turns a report into SARIF results: every finding, and every
// drift as a result of its own.
func SARIFInputs(r Report) []SARIFInput {
	var out []SARIFInput
	for _, s := range r.Servers {
		for _, t := range s.Tools {
			in := SARIFInput{Server: s.Name, Tool: t.Name, Findings: t.Findings, Digest: t.ObservedDigest}
			if t.State == rugwatch.StateDrifted {
				in.Drift = &rugwatch.Event{Type: rugwatch.EventToolDrifted, Severity: t.Severity, Server: s.Name, Tool: t.Name,
					ApprovedDigest: t.ApprovedDigest, ObservedDigest: t.ObservedDigest, Changes: t.Changes,
					Message: ChangeSummary(t.Changes)}
			}
			if len(in.Findings) > 0 || in.Drift != nil {
				out = append(out, in)
			}
		}
	}
	return out
}
