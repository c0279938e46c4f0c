package monitor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
)

// Approved is a tool's approval after its signature was checked.
type Approved struct {
	Digest     rugwatch.Digest
	Definition json.RawMessage // canonical, as signed
	Valid      bool            // signature verifies with a trusted key and names this tool
	Problem    string          // why not, when !Valid
	// KeyID is the approver's key, named by the tool.approved event of a
	// transition into approved.
	KeyID string
	// Signers are the distinct keys whose signatures of this record
	// verify, the first signer first: what a quorum counts.
	Signers []string
	// Resolves is the seq the signed statement is bound to; nil for an
	// envelope signed before approvals were bound.
	Resolves *uint64
	// Grants is what the signatures that count allow together: an
	// allowance (returns_secrets, an accepted finding) only every one of
	// them carries (signatures.GrantsOf).
	Grants signatures.Grants
}

// Input is everything one evaluation of one server looks at.
type Input struct {
	Server    string
	Transport string
	Prev      *store.ServerRecord // nil the first time
	// Approvals holds the current approval per tool name; Revoked holds,
	// for drifted tools, the approval drift revoked, for diffs.
	Approvals map[string]Approved
	Revoked   map[string]Approved
	Listing   *mcpclient.Listing // nil when the poll failed
	PollErr   error
	Now       time.Time
	// UnreachableAfter is how many failed polls in a row raise
	// server.unreachable.
	UnreachableAfter int
	// FirstSight approves tools never seen before (approve_first_seen).
	FirstSight bool
	// Others are the tools of the other registered servers, for the
	// cross-server shadowing finding.
	Others []detect.ToolRef
	// Index, when set, is Others indexed (a Recorder keeps one current).
	Index *detect.ToolIndex
	// Instructions is the current approval of the server's instructions,
	// nil when there is none.
	Instructions *Approved
	// Findings, when set, holds findings computed beforehand (outside the
	// store's write transaction, where they would hold up every other
	// poll) per tool name, for the digest they were computed for; a tool
	// whose digest differs gets its findings computed here.
	Findings map[string]Precomputed
	// Egress is the server's egress approval as gather verified it
	// (behaviour pinning, egress.go).
	Egress EgressPin
	// MaxNewToolsPerHour is limits.max_new_tools_per_hour (0: the
	// default): a listing with more new names than the server's budget
	// is summarised, not recorded tool by tool (churn.go).
	MaxNewToolsPerHour int
	// ConfigFindings are what the server's configuration alone raises
	// (a package spec that is unpinned or one edit from a well-known
	// server): known before any poll, and held whether it succeeds.
	ConfigFindings []rugwatch.Finding
}

// Precomputed is the findings of one definition, by its digest.
type Precomputed struct {
	Digest   rugwatch.Digest
	Findings []rugwatch.Finding
}

// Outcome is what an evaluation decided; the caller writes all of it in
// one transaction.
type Outcome struct {
	Server  store.ServerRecord
	Events  []rugwatch.Event
	Revoke  []string         // tools whose approval drift withdrew
	Approve []mcpclient.Tool // tools to approve on first sight
	// RevokeInstructions: the instructions drifted; ApproveInstructions:
	// approve them on first sight.
	RevokeInstructions, ApproveInstructions bool
	// ApproveEgress: sign the destinations first seen (approve_first_seen).
	ApproveEgress bool
	// Summarised says the listing's new names were left out of the record
	// (a churning server, churn.go).
	Summarised bool
}

// Evaluate compares a listing with the approvals and the previous record.
// It is a pure function: every rule of the state machine lives here and
// is tested without a store or a server.
func Evaluate(in Input) Outcome {
	var out Outcome
	prev := store.ServerRecord{Name: in.Server, Tools: map[string]store.ToolRecord{}}
	firstPoll := in.Prev == nil
	if in.Prev != nil {
		prev = *in.Prev
	}
	next := prev
	next.Name = in.Server
	next.Transport = in.Transport
	next.LastPolledAt = in.Now
	next.Tools = make(map[string]store.ToolRecord, len(prev.Tools))
	for k, v := range prev.Tools {
		next.Tools[k] = v
	}
	ev := func(e rugwatch.Event) {
		e.Server = in.Server
		e.OccurredAt = in.Now
		out.Events = append(out.Events, e)
	}

	evaluateRefused(in, ev)
	if in.Listing == nil {
		// An unreachable server keeps its tools' last states: a network
		// outage must never read as every tool removed.
		next.Reachable = false
		next.Error = errorText(in.PollErr)
		next.ConsecutiveFailures++
		after := max(in.UnreachableAfter, 1)
		if next.ConsecutiveFailures >= after && !next.Unreachable {
			next.Unreachable = true
			ev(rugwatch.Event{Type: rugwatch.EventServerUnreachable, Severity: rugwatch.SeverityWarning,
				Message: fmt.Sprintf("%d polls in a row failed: %s", next.ConsecutiveFailures, next.Error)})
		}
		// A lookalike package whose launch fails (offline, or refused)
		// is flagged all the same: its name is in the config.
		evaluateServerFindings(in, prev, &next, ev)
		out.Server = next
		return out
	}

	next.Reachable = true
	next.Error = ""
	next.ConsecutiveFailures = 0
	if next.Unreachable {
		next.Unreachable = false
		ev(rugwatch.Event{Type: rugwatch.EventServerRecovered, Severity: rugwatch.SeverityInfo, Message: "server answers again"})
	}
	evaluateInstructions(in, prev, &next, &out, ev)
	evaluateLaunch(in, &next, ev)
	evaluateServerFindings(in, prev, &next, ev)
	churn := decideChurn(prev.Churn, prev.Tools, in.Listing, in.Now, in.MaxNewToolsPerHour)
	next.Churn, out.Summarised = churn.state, churn.flood
	if churn.event != nil {
		ev(*churn.event)
	}

	fc := detect.FindingContext{Server: in.Server, OtherTools: in.Others, Index: in.Index}
	seen := make(map[string]bool, len(in.Listing.Tools))
	for _, t := range in.Listing.Tools {
		if churn.skips(prev.Tools, t.Name) {
			continue
		}
		seen[t.Name] = true
		old, known := prev.Tools[t.Name]
		v := evaluateTool(in, fc, t, old, known, firstPoll)
		for _, e := range v.events {
			ev(e)
		}
		if v.revoke {
			out.Revoke = append(out.Revoke, t.Name)
		}
		if v.approve {
			out.Approve = append(out.Approve, t)
		}
		next.Tools[t.Name] = v.rec
	}
	for name, old := range prev.Tools {
		if seen[name] || in.Listing.Partial {
			// A listing under fewer capabilities than a poll's may
			// lack tools the server shows the monitor: what it lacks is
			// not removed, or every proxy session of a client that
			// cannot sample would flip the record against each poll.
			continue
		}
		_, approved := in.Approvals[name]
		rec, keep, e := evaluateRemoved(old, approved, in.Now)
		if !keep {
			delete(next.Tools, name)
			continue
		}
		next.Tools[name] = rec
		if e != nil {
			e.Tool = name
			ev(*e)
		}
	}
	out.Server = next
	return out
}

// toolVerdict is what one listed tool comes to: its next record, the
// events it raises (without server and time, which Evaluate adds), and
// whether its approval is withdrawn (a drift) or given on first sight.
type toolVerdict struct {
	rec     store.ToolRecord
	events  []rugwatch.Event
	revoke  bool
	approve bool
}

// evaluateTool is the state machine for one listed tool t, given its
// previous record (known false: never seen), the approvals and the
// findings context: a pure function, tested as a table.
func evaluateTool(in Input, fc detect.FindingContext, t mcpclient.Tool, old store.ToolRecord, known, firstPoll bool) toolVerdict {
	var v toolVerdict
	ev := func(e rugwatch.Event) { v.events = append(v.events, e) }
	rec := old
	rec.Name = t.Name
	rec.ObservedDigest = t.Digest
	rec.Definition = t.Canonical
	if !known || old.ObservedDigest != t.Digest {
		// Findings depend on the definition (and, for shadowing, on
		// the other servers' tools at the time): computed when it is
		// first seen or changes, not on every poll of a fleet.
		if pre, ok := in.Findings[t.Name]; ok && pre.Digest == t.Digest {
			// Computed before this write, against the tool names known
			// then: a server first polled in the same cycle as a twin
			// was not among them. Same-name shadowing is read again from
			// the index as it stands inside the write.
			rec.Findings = reshadowed(pre.Findings, in.Server, t.Name, fc)
		} else {
			rec.Findings = detect.Findings(t.Canonical, fc)
		}
	}
	if !known {
		rec.FirstSeen = in.Now
		rec.LastChanged = in.Now
	} else if old.ObservedDigest != t.Digest {
		rec.LastChanged = in.Now
	}
	a, hasApproval := in.Approvals[t.Name]
	// A tool that vanished and came back resumes the state it had:
	// removing and re-adding a drifted or revoked tool must not
	// launder it into pending, or into an approval on first sight.
	was := old.State
	if was == rugwatch.StateRemoved && (old.PrevState == rugwatch.StateDrifted || old.PrevState == rugwatch.StateRevoked) {
		was = old.PrevState
	}
	rec.PrevState = ""
	switch {
	case hasApproval && a.Valid && a.Digest == t.Digest:
		// Every way into approved leaves an event naming the key. The
		// Ledger records its own approvals (the record already says
		// approved by the next poll); an approval that turns up in
		// the store by any other road is recorded here.
		before := old.State
		if before == rugwatch.StateRemoved {
			before = old.PrevState
		}
		if !known || before != rugwatch.StateApproved {
			ev(rugwatch.Event{Type: rugwatch.EventToolApproved, Severity: rugwatch.SeverityWarning, Tool: t.Name,
				ApprovedDigest: a.Digest, ObservedDigest: t.Digest, KeyID: a.KeyID,
				Message: "a signed approval found in the store made this tool approved; it was not recorded by rugwatch approve"})
		}
		rec.State = rugwatch.StateApproved
		rec.ApprovedDigest = a.Digest
		rec.Severity = rugwatch.SeverityInfo
		rec.Changes = nil
	case hasApproval && a.Valid:
		// The rug pull: withdraw the approval at once, so nothing
		// downstream can treat the new definition as trusted.
		changes := detect.CapChanges(detect.Diff(a.Definition, t.Canonical))
		sev := DriftSeverity(changes, detect.Findings(a.Definition, fc), rec.Findings)
		rec.State = rugwatch.StateDrifted
		rec.ApprovedDigest = a.Digest
		rec.Severity = sev
		rec.Changes = changes
		v.revoke = true
		ev(rugwatch.Event{Type: rugwatch.EventToolDrifted, Severity: sev, Tool: t.Name,
			ApprovedDigest: a.Digest, ObservedDigest: t.Digest, Changes: changes, Findings: rec.Findings,
			Message: summarize(changes)})
	case known && was == rugwatch.StateDrifted:
		// A drifted tool stays drifted until a human approves it, even
		// if the server changes back.
		rec.State = rugwatch.StateDrifted
		if old.ObservedDigest != t.Digest {
			var changes []rugwatch.Change
			var approvedFindings []rugwatch.Finding
			if r, ok := in.Revoked[t.Name]; ok {
				changes = detect.CapChanges(detect.Diff(r.Definition, t.Canonical))
				approvedFindings = detect.Findings(r.Definition, fc)
			}
			sev := DriftSeverity(changes, approvedFindings, rec.Findings)
			msg := summarize(changes)
			if rec.ApprovedDigest == t.Digest {
				sev = rugwatch.SeverityWarning
				msg = "changed back to the approved definition; stays drifted until approved again"
			}
			rec.Severity = sev
			rec.Changes = changes
			ev(rugwatch.Event{Type: rugwatch.EventToolDrifted, Severity: sev, Tool: t.Name,
				ApprovedDigest: rec.ApprovedDigest, ObservedDigest: t.Digest, Changes: changes, Findings: rec.Findings, Message: msg})
		}
	case known && was == rugwatch.StateRevoked:
		rec.State = rugwatch.StateRevoked
	default:
		if hasApproval && !a.Valid && (!known || old.State == rugwatch.StateApproved) {
			ev(rugwatch.Event{Type: rugwatch.EventApprovalInvalid, Severity: rugwatch.SeverityCritical, Tool: t.Name,
				ApprovedDigest: a.Digest, ObservedDigest: t.Digest,
				Message: "approval does not verify and counts as none: " + a.Problem})
		}
		rec.State = rugwatch.StatePending
		rec.ApprovedDigest = ""
		rec.Severity = rugwatch.SeverityInfo
		if !known || old.State == rugwatch.StateRemoved || old.State == rugwatch.StateApproved {
			// First sight trusts what it sees, but not what the rules
			// flag: no signature accepts a critical finding unless a
			// human signs it (Unaccepted), the daemon's own neither.
			if in.FirstSight && !known && !hasApproval && len(Unaccepted(rec.Findings, nil)) == 0 {
				v.approve = true
			}
			if !known || old.State == rugwatch.StateRemoved {
				// A tool first seen with a critical finding is as loud
				// as a drift into one.
				ev(rugwatch.Event{Type: rugwatch.EventToolNew, Severity: rugwatch.SeverityInfo.Max(detect.MaxSeverity(rec.Findings)), Tool: t.Name,
					ObservedDigest: t.Digest, Findings: rec.Findings, Message: newMessage(firstPoll)})
			}
		}
	}
	v.rec = rec
	return v
}

// evaluateRemoved is what becomes of a tool the listing no longer has:
// nothing to keep (keep false) when it was never approved; unchanged and
// silent when already removed; else removed, remembering the state it
// had, with a tool.removed event (its Tool left for the caller to fill).
func evaluateRemoved(old store.ToolRecord, approved bool, now time.Time) (rec store.ToolRecord, keep bool, e *rugwatch.Event) {
	if old.State == rugwatch.StatePending && !approved && old.ApprovedDigest == "" {
		return store.ToolRecord{}, false, nil
	}
	if old.State == rugwatch.StateRemoved {
		return old, true, nil
	}
	rec = old
	rec.PrevState = old.State
	rec.State = rugwatch.StateRemoved
	rec.Severity = rugwatch.SeverityInfo
	rec.LastChanged = now
	return rec, true, &rugwatch.Event{Type: rugwatch.EventToolRemoved, Severity: rugwatch.SeverityInfo,
		ApprovedDigest: old.ApprovedDigest, Message: "no longer listed by the server"}
}

func newMessage(firstPoll bool) string {
	if firstPoll {
		return "first seen"
	}
	return "new tool listed by the server"
}

// DriftSeverity grades a drift. Critical: the model is handed new power
// or new hidden words: a parameter added, a safety hint flipped
// (readOnlyHint true→false, destructiveHint false→true), or a critical
// finding that the approved definition did not have, in text the model
// reads (name, title, description, input schema). Warning: any other
// change (output schema, title, icons, _meta, fields no client shows).
// Info: nothing changed (a server that changed back).
func DriftSeverity(changes []rugwatch.Change, approved, observed []rugwatch.Finding) rugwatch.Severity {
	if len(changes) == 0 {
		return rugwatch.SeverityInfo
	}
	for _, c := range changes {
		p := c.Path
		switch {
		case strings.HasPrefix(p, "/inputSchema/") && c.Op == "add" && isPropertyPath(p):
			return rugwatch.SeverityCritical
		case strings.HasPrefix(p, "/inputSchema") && strings.HasSuffix(p, "/properties") && c.Op != "remove" && hasMembers(c.New):
			// The first parameters arrive as a whole properties object.
			return rugwatch.SeverityCritical
		case p == "/annotations/readOnlyHint" && c.Op != "add" && isTrue(c.Old) && !isTrue(c.New):
			return rugwatch.SeverityCritical
		case p == "/annotations/destructiveHint" && !isTrue(c.Old) && isTrue(c.New):
			return rugwatch.SeverityCritical
		case p == "/annotations" && c.Op == "remove" && strings.Contains(string(c.Old), `"readOnlyHint":true`):
			return rugwatch.SeverityCritical
		}
	}
	if hintTurnedSafer(changes) {
		return rugwatch.SeverityCritical
	}
	had := map[string]bool{}
	for _, f := range approved {
		had[f.Rule+" "+f.Path] = true
	}
	for _, f := range observed {
		if f.Severity == rugwatch.SeverityCritical && !had[f.Rule+" "+f.Path] && modelReads(f.Path) {
			return rugwatch.SeverityCritical
		}
	}
	return rugwatch.SeverityWarning
}

// safeHints are the behaviour hints and the value that makes a tool look
// harmless, with the MCP default when the hint is absent. Clients
// auto-approve on these (a read-only tool called without asking), so a
// drift towards them relabels a tool as safe: critical, whatever else
// changed.
var safeHints = []struct {
	name       string
	safe, dflt bool
}{
	{"readOnlyHint", true, false},
	{"destructiveHint", false, true},
	{"idempotentHint", true, false},
	{"openWorldHint", false, true},
}

// hintTurnedSafer reports a hint that moved towards its safe value: from
// the other value or from absent with an unsafe default.
func hintTurnedSafer(changes []rugwatch.Change) bool {
	for _, h := range safeHints {
		for _, c := range changes {
			old, nw, ok := hintChange(c, h.name)
			if !ok {
				continue
			}
			was, is := hintValue(old, h.dflt), hintValue(nw, h.dflt)
			if was != h.safe && is == h.safe {
				return true
			}
		}
	}
	return false
}

// hintChange extracts the old and new value of one hint from a change of
// the hint itself, of the annotations object or of the whole tool.
func hintChange(c rugwatch.Change, hint string) (old, nw json.RawMessage, ok bool) {
	member := func(raw json.RawMessage, path ...string) json.RawMessage {
		for _, k := range path {
			var m map[string]json.RawMessage
			if json.Unmarshal(raw, &m) != nil {
				return nil
			}
			raw = m[k]
		}
		return raw
	}
	switch c.Path {
	case "/annotations/" + hint:
		return c.Old, c.New, true
	case "/annotations":
		return member(c.Old, hint), member(c.New, hint), true
	case "":
		return member(c.Old, "annotations", hint), member(c.New, "annotations", hint), true
	}
	return nil, nil, false
}

// hintValue reads a hint, dflt when absent or not a boolean.
func hintValue(raw json.RawMessage, dflt bool) bool {
	switch string(raw) {
	case "true":
		return true
	case "false":
		return false
	}
	return dflt
}

// modelReads reports whether a JSON pointer into a tool definition names
// text an MCP client hands to the model.
func modelReads(p string) bool {
	for _, prefix := range []string{"/name", "/title", "/description", "/inputSchema", "/annotations/title"} {
		if p == prefix || strings.HasPrefix(p, prefix+"/") {
			return true
		}
	}
	return false
}

// isPropertyPath reports whether p names a schema property itself
// (…/properties/<name>), the shape of a newly added parameter.
func isPropertyPath(p string) bool {
	i := strings.LastIndex(p, "/properties/")
	return i >= 0 && !strings.Contains(p[i+len("/properties/"):], "/")
}

func isTrue(raw json.RawMessage) bool { return string(raw) == "true" }

// hasMembers reports whether raw is a JSON object with at least one member.
func hasMembers(raw json.RawMessage) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(raw, &m) == nil && len(m) > 0
}

// summarize names the changed paths for a one-line message.
func summarize(changes []rugwatch.Change) string {
	if len(changes) == 0 {
		return "definition changed"
	}
	parts := make([]string, 0, 4)
	for i, c := range changes {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(changes)-3))
			break
		}
		path := c.Path
		if path == "" {
			path = "/"
		}
		parts = append(parts, c.Op+" "+path)
	}
	return strings.Join(parts, ", ")
}

// errorText is the stored form of a poll error: one line, bounded, since a
// hostile server chooses much of its text.
func errorText(err error) string {
	if err == nil {
		return "unknown error"
	}
	s := strings.ToValidUTF8(err.Error(), "\uFFFD")
	if len(s) > 2048 {
		s = s[:2048] + "…"
	}
	return s
}

// evaluateInstructions applies the tool state machine to the server's
// instructions, which the model reads as well.
func evaluateInstructions(in Input, prev store.ServerRecord, next *store.ServerRecord, out *Outcome, ev func(rugwatch.Event)) {
	l := in.Listing
	text, digest := "", l.InstructionsDigest
	if l.Instructions != nil {
		text = *l.Instructions
	}
	next.Instructions = text
	next.InstructionsDigest = digest
	next.InstructionsFindings = nil
	if l.Instructions != nil {
		next.InstructionsFindings = detect.FindingsText(text, "/instructions")
	}
	raw, _ := json.Marshal(text)
	a := in.Instructions
	switch {
	case a != nil && a.Valid && a.Digest == digest:
		if prev.InstructionsState != rugwatch.StateApproved {
			ev(rugwatch.Event{Type: rugwatch.EventToolApproved, Severity: rugwatch.SeverityWarning,
				ApprovedDigest: a.Digest, ObservedDigest: digest, KeyID: a.KeyID,
				Message: "a signed approval found in the store made the server instructions approved; it was not recorded by rugwatch approve"})
		}
		next.InstructionsState = rugwatch.StateApproved
		next.InstructionsApproved = digest
	case a != nil && a.Valid:
		out.RevokeInstructions = true
		next.InstructionsState = rugwatch.StateDrifted
		next.InstructionsApproved = a.Digest
		changes := detect.CapChanges(detect.Diff(a.Definition, raw))
		var before []rugwatch.Finding
		var was string
		if json.Unmarshal(a.Definition, &was) == nil {
			before = detect.FindingsText(was, "/instructions")
		}
		sev := rugwatch.SeverityWarning
		if newCritical(before, next.InstructionsFindings) {
			sev = rugwatch.SeverityCritical
		}
		msg := "server instructions changed"
		if l.Instructions == nil {
			msg = "server instructions removed"
		}
		ev(rugwatch.Event{Type: rugwatch.EventInstructionsDrifted, Severity: sev, ApprovedDigest: a.Digest,
			ObservedDigest: digest, Changes: changes, Findings: next.InstructionsFindings, Message: msg})
	case prev.InstructionsState == rugwatch.StateDrifted:
		if prev.InstructionsDigest != digest {
			ev(rugwatch.Event{Type: rugwatch.EventInstructionsDrifted, Severity: rugwatch.SeverityWarning,
				ApprovedDigest: prev.InstructionsApproved, ObservedDigest: digest, Findings: next.InstructionsFindings,
				Message: "server instructions changed again; they stay drifted until approved"})
		}
	case prev.InstructionsState == rugwatch.StateRevoked:
	case l.Instructions == nil:
		next.InstructionsState = ""
		next.InstructionsApproved = ""
	default:
		if a != nil && !a.Valid && prev.InstructionsState == rugwatch.StateApproved {
			ev(rugwatch.Event{Type: rugwatch.EventApprovalInvalid, Severity: rugwatch.SeverityCritical,
				ApprovedDigest: a.Digest, ObservedDigest: digest,
				Message: "approval of the server instructions does not verify and counts as none: " + a.Problem})
		}
		next.InstructionsState = rugwatch.StatePending
		next.InstructionsApproved = ""
		if in.FirstSight && a == nil && (in.Prev == nil || prev.InstructionsState == "") && len(Unaccepted(next.InstructionsFindings, nil)) == 0 {
			out.ApproveInstructions = true
		}
	}
}

// newCritical reports whether after has a critical finding before lacked.
func newCritical(before, after []rugwatch.Finding) bool {
	had := map[string]bool{}
	for _, f := range before {
		had[f.Rule+" "+f.Path] = true
	}
	for _, f := range after {
		if f.Severity == rugwatch.SeverityCritical && !had[f.Rule+" "+f.Path] {
			return true
		}
	}
	return false
}

// evaluateLaunch compares what ran with the launch identity pinned at
// first sight or at the last approval.
func evaluateLaunch(in Input, next *store.ServerRecord, ev func(rugwatch.Event)) {
	if in.Listing.Launch == nil {
		return
	}
	launch := *in.Listing.Launch
	if in.Listing.RevisionChosen {
		// The revision of a session whose era rugwatch chose (the proxy's)
		// says nothing of the server: the recorded one stands, or every
		// proxy session would flip it against the polls.
		var rec struct {
			ProtocolVersion string `json:"protocol_version"`
		}
		if json.Unmarshal(next.Launch, &rec) == nil {
			launch.ProtocolVersion = rec.ProtocolVersion
		}
	}
	cur, err := json.Marshal(&launch)
	if err != nil {
		return
	}
	last := next.Launch
	next.Launch = cur
	switch {
	case len(next.LaunchPinned) == 0:
		next.LaunchPinned = cur
	case bytes.Equal(next.LaunchPinned, cur):
		// Unchanged, or changed back: a launch drift, like a tool's, is
		// cleared only by an approval that pins again.
	case !next.LaunchDrifted && onlyAdds(detect.Diff(next.LaunchPinned, cur)):
		// Fields the pin never had (a newer rugwatch records more of what
		// runs: package version, integrity, findings): nothing that was
		// pinned changed, so the pin grows quietly instead of raising a
		// drift on every such server at upgrade.
		next.LaunchPinned = cur
	case !next.LaunchDrifted || !bytes.Equal(last, cur):
		next.LaunchDrifted = true
		changes := detect.Diff(next.LaunchPinned, cur)
		ev(rugwatch.Event{Type: rugwatch.EventLaunchDrifted, Severity: rugwatch.SeverityWarning, Changes: changes,
			Message: "what runs for this server changed: " + summarize(changes)})
	}
}

// evaluateRefused raises one network.refused event per destination the
// sandbox refused the server during the poll, whether or not the poll
// succeeded: a refusal is often why it failed.
func evaluateRefused(in Input, ev func(rugwatch.Event)) {
	refused := []mcpclient.Refusal(nil)
	var re *mcpclient.EgressRefusedError
	switch {
	case in.Listing != nil:
		refused = in.Listing.Refused
	case errors.As(in.PollErr, &re):
		refused = re.Refused
	}
	for _, r := range refused {
		msg := "the sandbox refused the server a connection to " + r.Dest
		if r.Allow != "" {
			msg += "; to allow it, add " + strconv.Quote(r.Dest) + " to " + r.Allow
		}
		ev(rugwatch.Event{Type: rugwatch.EventNetworkRefused, Severity: rugwatch.SeverityWarning, Message: msg})
	}
}

// onlyAdds reports whether every change adds a field, none alters or
// removes one.
func onlyAdds(changes []rugwatch.Change) bool {
	for _, c := range changes {
		if c.Op != "add" {
			return false
		}
	}
	return len(changes) > 0
}

// reshadowed is findings with their same-name shadowing finding taken
// from fc's index as it stands now.
func reshadowed(findings []rugwatch.Finding, server, tool string, fc detect.FindingContext) []rugwatch.Finding {
	if fc.Index == nil {
		return findings
	}
	out := make([]rugwatch.Finding, 0, len(findings)+1)
	for _, f := range findings {
		if f.Rule == detect.RuleShadowing && f.Path == "/name" {
			continue
		}
		out = append(out, f)
	}
	if f, ok := detect.SameNameShadowing(server, tool, fc.Index); ok {
		out = detect.SortFindings(append(out, f))
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
