package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
)

// UsageError is a mistake of the caller's (an unknown server, tool or
// delivery): the CLI prints it as a usage error, the control socket sends
// it back as one.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usage marks the error as the caller's mistake.
func (e *UsageError) Usage() bool { return true }

func usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// ServerRef is one configured server as the Ledger needs it: its name and
// the transport to show before it was ever polled.
type ServerRef struct {
	Name      string
	Transport string
}

// SignedApproval is an approval the CLI signed, for the Ledger to verify
// and store; the daemon never sees a private key.
type SignedApproval struct {
	Kind     string          `json:"kind,omitempty"` // "tool" (or empty), "instructions" or "egress"
	Tool     string          `json:"tool"`
	Digest   rugwatch.Digest `json:"digest"`
	Envelope []byte          `json:"envelope"`
	Note     string          `json:"note,omitempty"`
}

// Ledger owns every transition a human asks for — approve, revoke, pin a
// launch identity — and the reads around them (status, diff, history,
// verify, alerts). The Recorder owns the transitions a poll makes; between
// them they are the only writers of tool states. The CLI runs a Ledger over
// the store when no daemon runs; the daemon serves one on its control
// socket; the proxy calls the same one. Each request gets a Ledger built
// from the config of the moment.
type Ledger struct {
	DB       *store.DB
	Verifier Verifier
	// Policy is how many signatures, of which roles, an approval needs
	// (nil: one by any trusted key, the rule before quorums).
	Policy *signatures.Policy
	// Gen, when set, is the daemon's approvals generation: it moves on
	// every write that may change what a proxy lets pass (see
	// Generation). nil: this Ledger keeps none (the CLI's, offline).
	Gen func() uint64
	// Servers is every configured server in config order; Where names the
	// config for errors about unknown servers.
	Servers []ServerRef
	Where   string
	// Poll polls the named servers now and records them (check); nil when
	// this Ledger cannot poll.
	Poll func(ctx context.Context, servers []string) error
	// Recorder records what the proxy lists upstream (Enforce), through
	// the same state machine as a poll; nil when this Ledger cannot.
	Recorder *Recorder
	// Verified, when set, caches signature checks across Ledgers (one is
	// built per request) for Allowed, which the proxy calls twice a second.
	Verified *VerifiedCache
	// Sightings, when set, is what this process's polls saw, for Enforce's
	// cloaking check.
	Sightings *Sightings
	// Notices, when set, is the warnings on results and arguments this
	// process recorded in the last hour: FlagResult records the same one
	// once an hour.
	Notices *Notices
	// InTx sees every event the Ledger appends, inside its transaction:
	// the alert outbox queues deliveries there.
	InTx func(tx *store.Tx, e rugwatch.Event) error
	// TestChannels picks the alert channels a test alert goes to ("" for
	// all) and queues e for them in tx, returning the delivery ids.
	TestChannels func(tx *store.Tx, e rugwatch.Event, channel string) ([]string, error)
	// AfterWrite runs after anything that may have queued alerts: the CLI
	// attempts them at once, the daemon wakes its dispatcher (and moves
	// its approvals generation: the write may change what passes).
	AfterWrite func(ctx context.Context) error
	// AfterNotice, when set, runs instead of AfterWrite after a write that
	// changes no approval and no tool's state (a flagged result): the
	// daemon wakes its dispatcher without moving the generation, so the
	// proxy's next call does not read every approval again for nothing.
	AfterNotice func(ctx context.Context) error
	Now         func() time.Time

	// checkpointCheckOff is set only by tests, to show a tampered
	// checkpoint passing verify without the check of its signature.
	checkpointCheckOff bool
	// quorumCheckOff is set only by tests, to show one signature
	// approving, and the proxy serving, what needs a quorum.
	quorumCheckOff bool
}

func (l *Ledger) now() time.Time {
	if l.Now != nil {
		return l.Now().UTC()
	}
	return time.Now().UTC()
}

func (l *Ledger) afterWrite(ctx context.Context) error {
	if l.AfterWrite == nil {
		return nil
	}
	return l.AfterWrite(ctx)
}

// ErrNoGeneration says a backend keeps no approvals generation: a proxy
// then relies on its periodic re-read alone.
var ErrNoGeneration = errors.New("no approvals generation kept here")

// Generation is the daemon's approvals generation. A proxy compares it
// before each call with the one its allowed set was read at and reads the
// set again when it moved, so a revocation or a drift is in force for
// calls before the command that caused it returns.
func (l *Ledger) Generation(context.Context) (uint64, error) {
	if l.Gen == nil {
		return 0, ErrNoGeneration
	}
	return l.Gen(), nil
}

// ToolNames is every recorded server's live tool names: what the proxy's
// result rules look for when a result points the model at another
// server's tool.
func (l *Ledger) ToolNames(context.Context) (map[string][]string, error) {
	out := map[string][]string{}
	err := l.DB.View(func(tx *store.Tx) error {
		return tx.ServerTools(func(name string, tools map[string]rugwatch.State) error {
			out[name] = liveTools(tools)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reading tool names: %w", err)
	}
	return out, nil
}

// appendEvent appends e and hands it to InTx in the same transaction.
func (l *Ledger) appendEvent(tx *store.Tx, e *rugwatch.Event) error {
	if err := tx.AppendEvent(e); err != nil {
		return err
	}
	if l.InTx != nil {
		return l.InTx(tx, *e)
	}
	return nil
}

// appendNoted is appendEvent that also moves the transition seqs of the
// tool e is about in rec, which the caller stores after.
func (l *Ledger) appendNoted(tx *store.Tx, rec *store.ServerRecord, e *rugwatch.Event) error {
	if err := l.appendEvent(tx, e); err != nil {
		return err
	}
	rec.NoteEvent(*e)
	return nil
}

// checkBound refuses a signed approval not bound to the state the record
// is in now: signed by a rugwatch that did not bind approvals, signed for
// an older state (the tool drifted, was revoked or approved since), or the
// same envelope sent again after it was used.
func checkBound(what string, st signatures.Statement, latest uint64) error {
	seq, ok := st.Bound()
	if !ok {
		return fmt.Errorf("approval of %s names no state it resolves (signed by an older rugwatch); run approve again", what)
	}
	if seq != latest {
		return fmt.Errorf("approval of %s was signed for its state at seq %d, but its newest transition is seq %d: "+
			"a replayed approval, or it changed while you were reviewing; run approve again", what, seq, latest)
	}
	return nil
}

// ServerNames lists the configured servers for an error message.
func (l *Ledger) serverNames() string {
	var n []string
	for _, s := range l.Servers {
		n = append(n, s.Name)
	}
	sort.Strings(n)
	if len(n) == 0 {
		return "none"
	}
	return strings.Join(n, ", ")
}

// selectServers returns the configured servers named, or all of them.
func (l *Ledger) selectServers(names []string) ([]ServerRef, error) {
	if len(names) == 0 {
		return l.Servers, nil
	}
	lookup := l.server
	if len(names) > 8 {
		// check names every server it polled: a scan per name was 50
		// million comparisons at 10,000.
		byName := make(map[string]ServerRef, len(l.Servers))
		for _, s := range l.Servers {
			if _, dup := byName[s.Name]; !dup {
				byName[s.Name] = s
			}
		}
		lookup = func(n string) (ServerRef, bool) { s, ok := byName[n]; return s, ok }
	}
	out := make([]ServerRef, 0, len(names))
	for _, n := range names {
		s, ok := lookup(n)
		if !ok {
			return nil, usagef("no server %q in %s (configured: %s)", n, l.Where, l.serverNames())
		}
		out = append(out, s)
	}
	return out, nil
}

func (l *Ledger) server(name string) (ServerRef, bool) {
	for _, s := range l.Servers {
		if s.Name == name {
			return s, true
		}
	}
	return ServerRef{}, false
}

// Status reads the stored records of the named servers (all if none), in
// config order, without polling. The report holds every server; a caller
// that prints them one by one uses StatusEach.
func (l *Ledger) Status(ctx context.Context, names []string) (report.Report, error) {
	rep := report.Report{SchemaVersion: 1, Servers: []report.ServerReport{}}
	err := l.StatusEach(ctx, names, func(s report.ServerReport) error {
		rep.Servers = append(rep.Servers, s)
		return nil
	})
	if err != nil {
		return report.Report{}, err
	}
	return rep, nil
}

// Check polls the named servers now, delivers what that queued, and
// reports their states.
func (l *Ledger) Check(ctx context.Context, names []string) (report.Report, error) {
	servers, err := l.selectServers(names)
	if err != nil {
		return report.Report{}, err
	}
	if l.Poll == nil {
		return report.Report{}, fmt.Errorf("this backend cannot poll")
	}
	polled := make([]string, len(servers))
	for i, s := range servers {
		polled[i] = s.Name
	}
	if err := l.Poll(ctx, polled); err != nil {
		return report.Report{}, err
	}
	if err := l.afterWrite(ctx); err != nil {
		return report.Report{}, err
	}
	return l.Status(ctx, polled)
}

// Server returns the stored record of one server.
func (l *Ledger) Server(ctx context.Context, name string) (store.ServerRecord, error) {
	if _, ok := l.server(name); !ok {
		return store.ServerRecord{}, usagef("no server %q in %s (configured: %s)", name, l.Where, l.serverNames())
	}
	var rec store.ServerRecord
	err := l.DB.View(func(tx *store.Tx) error {
		r, ok, err := tx.Server(name)
		if !ok && err == nil {
			err = fmt.Errorf("server %s has not been checked yet; run `rugwatch check %s` first", name, name)
		}
		rec = r
		return err
	})
	return rec, err
}

// Diff compares approved and observed definitions of one tool, or of every
// tool of the server that is not approved as observed.
func (l *Ledger) Diff(ctx context.Context, server, tool string) (report.DiffResult, error) {
	res := report.DiffResult{Tools: []report.ToolDiff{}, Definitions: map[string]json.RawMessage{}}
	err := l.DB.View(func(tx *store.Tx) error {
		rec, ok, err := tx.Server(server)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("server %s has not been checked yet", server)
		}
		var names []string
		if tool != "" {
			if _, ok := rec.Tools[tool]; !ok {
				return usagef("server %s has no tool %q", server, tool)
			}
			names = []string{tool}
		} else {
			for n := range rec.Tools {
				names = append(names, n)
			}
			sort.Strings(names)
		}
		for _, n := range names {
			t := rec.Tools[n]
			if t.State == rugwatch.StateApproved && tool == "" {
				continue
			}
			d := report.ToolDiff{Server: server, Tool: n, ToolState: report.ToolStateOf(t), Changes: []rugwatch.Change{},
				Findings: append([]rugwatch.Finding{}, t.Findings...)}
			if d.Signatures, err = l.toolSignaturesShown(tx, server, n, t); err != nil {
				return err
			}
			if t.ApprovedDigest != "" && t.ApprovedDigest != t.ObservedDigest {
				check := func(a store.ApprovalRecord) Approved { return CheckApproval(l.Verifier, a) }
				a, ok, err := FindApproval(tx, check, server, n, t.ApprovedDigest)
				if err != nil {
					return err
				}
				if ok {
					d.Changes = detect.Diff(a.Definition, t.Definition)
				}
			}
			res.Definitions[n] = t.Definition
			res.Tools = append(res.Tools, d)
		}
		return nil
	})
	return res, err
}

// Approve verifies each signed approval exactly as the Recorder will and
// stores it, only if what it approves is still what was signed; pinLaunch
// also pins the server's current launch and remote identity. Under a
// quorum that pin needs signatures too: a signed approval of kind launch
// (approveLaunch), without which pinLaunch pins nothing.
func (l *Ledger) Approve(ctx context.Context, server string, approvals []SignedApproval, pinLaunch bool) (int, error) {
	now := l.now()
	n := 0
	err := l.DB.Update(func(tx *store.Tx) error {
		rec, ok, err := tx.Server(server)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("server %s has not been checked yet", server)
		}
		signedLaunch := slices.ContainsFunc(approvals, func(sa SignedApproval) bool { return sa.Kind == store.KindLaunch })
		if pinLaunch && !signedLaunch {
			pinned, err := l.pinLaunchUnsigned(tx, &rec, now)
			if err != nil {
				return err
			}
			n += pinned
		}
		for _, sa := range approvals {
			switch sa.Kind {
			case store.KindEgress:
				err = l.approveEgress(tx, &rec, sa, now)
			case store.KindInstructions:
				err = l.approveInstructions(tx, &rec, sa, now)
			case store.KindLaunch:
				err = l.approveLaunch(tx, &rec, sa, now)
			default:
				err = l.approveTool(tx, &rec, sa, now)
			}
			if err != nil {
				return err
			}
			n++
		}
		return tx.PutServer(rec)
	})
	if err == nil {
		err = l.afterWrite(ctx)
	}
	return n, err
}

// pinLaunchUnsigned pins what runs and who answers for rec as they are
// now, on the word of a caller the control socket let in: the rule while
// one signature approves anything. Under a quorum it pins nothing: a
// drifted identity then needs signed approvals of kind launch, and an
// unsigned request for one is refused.
func (l *Ledger) pinLaunchUnsigned(tx *store.Tx, rec *store.ServerRecord, now time.Time) (int, error) {
	if !trivial(l.quorum().For(rec.Name)) {
		if rec.LaunchDrifted || rec.IdentityDrifted {
			return 0, fmt.Errorf("%s needs signatures to approve its launch identity (quorum %s); "+
				"each approver runs `rugwatch approve %s --launch`", rec.Name, l.quorum().Tally(rec.Name, nil), rec.Name)
		}
		return 0, nil
	}
	n := 0
	if len(rec.Launch) > 0 {
		rec.LaunchPinned = rec.Launch
		rec.LaunchDrifted = false
		if err := l.appendNoted(tx, rec, &rugwatch.Event{
			Type: rugwatch.EventToolApproved, Severity: rugwatch.SeverityInfo, Server: rec.Name, OccurredAt: now,
			Message: "launch identity pinned: " + string(rec.Launch),
		}); err != nil {
			return 0, err
		}
		n++
	}
	// A remote server's identity (origin, issuing CA, names, revision)
	// is accepted the same way: approve --launch is "what runs, or
	// who answers, is as it should be".
	if rec.IdentityDrifted {
		PinIdentity(rec)
		if err := l.appendNoted(tx, rec, &rugwatch.Event{
			Type: rugwatch.EventToolApproved, Severity: rugwatch.SeverityInfo, Server: rec.Name, OccurredAt: now,
			Message: "remote identity pinned: " + string(rec.Identity),
		}); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

// launchSubject is what a launch approval of rec signs: its launch and
// remote identity as they are now. It is approved while neither drifted.
func launchSubject(rec store.ServerRecord) subject {
	s := subject{kind: store.KindLaunch, what: rec.Name + " launch identity", seq: rec.LaunchTransitionSeq,
		approved: !rec.LaunchDrifted && !rec.IdentityDrifted}
	if def, err := signatures.LaunchDefinition(rec.Launch, rec.Identity); err == nil {
		s.digest = signatures.DigestOf(def)
	}
	return s
}

// approveLaunch adds a signature to the approval of the server's launch
// and remote identity, if they are still the ones signed, and pins them
// once the signatures meet the server's quorum: until then a drifted
// identity stays drifted and the proxy serves the server nothing.
func (l *Ledger) approveLaunch(tx *store.Tx, rec *store.ServerRecord, sa SignedApproval, now time.Time) error {
	s := launchSubject(*rec)
	if s.digest == "" || s.digest != sa.Digest {
		return fmt.Errorf("%s launch identity changed while you were reviewing; run approve again", rec.Name)
	}
	st, err := l.verifySigned(tx, rec.Name, s, sa)
	if err != nil {
		return err
	}
	g, err := l.sign(tx, rec.Name, s, st, sa.Envelope)
	if err != nil || g.unchanged {
		return err
	}
	verb := " signed: "
	if g.completes {
		verb = " pinned: "
	}
	var what []string
	if len(rec.Launch) > 0 {
		what = append(what, "launch identity"+verb+string(rec.Launch))
	}
	if len(rec.Identity) > 0 && (rec.IdentityDrifted || len(rec.Launch) == 0) {
		what = append(what, "remote identity"+verb+string(rec.Identity))
	}
	msg := strings.Join(what, "; ")
	// No approved digest: this tool.approved is a launch pin, not an
	// approval of the instructions (store.NoteEvent tells them apart).
	e := rugwatch.Event{Type: rugwatch.EventToolApproved, Severity: rugwatch.SeverityInfo, Server: rec.Name,
		ObservedDigest: sa.Digest, KeyID: st.KeyID, OccurredAt: now, Message: msg}
	l.signedEvent(&e, g, rugwatch.EventLaunchCosigned)
	if g.completes {
		if len(rec.Launch) > 0 {
			rec.LaunchPinned = rec.Launch
			rec.LaunchDrifted = false
		}
		PinIdentity(rec)
	}
	return l.appendNoted(tx, rec, &e)
}

// approveInstructions adds a signature to the approval of the server's
// instructions, if they are still the ones signed, and makes them
// approved once the signatures meet the server's quorum.
func (l *Ledger) approveInstructions(tx *store.Tx, rec *store.ServerRecord, sa SignedApproval, now time.Time) error {
	if rec.InstructionsDigest != sa.Digest {
		return fmt.Errorf("%s instructions changed while you were reviewing; run approve again", rec.Name)
	}
	s := instructionsSubject(*rec)
	st, err := l.verifySigned(tx, rec.Name, s, sa)
	if err != nil {
		return err
	}
	if err := checkAccepted(s.what, rec.InstructionsFindings, st); err != nil {
		return err
	}
	g, err := l.sign(tx, rec.Name, s, st, sa.Envelope)
	if err != nil || g.unchanged {
		return err
	}
	e := rugwatch.Event{Type: rugwatch.EventToolApproved, Severity: rugwatch.SeverityInfo, Server: rec.Name,
		ApprovedDigest: sa.Digest, ObservedDigest: sa.Digest, KeyID: st.KeyID, OccurredAt: now,
		Message: "server instructions approved"}
	if !g.completes {
		e.Message = "server instructions"
	}
	l.signedEvent(&e, g, rugwatch.EventInstructionsCosigned)
	if g.completes {
		rec.InstructionsState = rugwatch.StateApproved
		rec.InstructionsApproved = sa.Digest
	}
	return l.appendNoted(tx, rec, &e)
}

// Revoke withdraws the current approvals of the named tools (or all of
// the server's with all); the tools stay revoked until approved again.
func (l *Ledger) Revoke(ctx context.Context, server string, tools []string, all bool, reason string) ([]string, error) {
	now := l.now()
	var done []string
	err := l.DB.Update(func(tx *store.Tx) error {
		if all {
			cur, err := tx.Approvals(server)
			if err != nil {
				return err
			}
			for _, ap := range cur {
				if ap.Kind == store.KindTool {
					tools = append(tools, ap.Tool)
				}
			}
		}
		rec, found, err := tx.Server(server)
		if err != nil {
			return err
		}
		for _, name := range tools {
			ap, ok, err := tx.RevokeApproval(server, store.KindTool, name, reason, now)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%s/%s: no current approval", server, name)
			}
			if t, ok := rec.Tools[name]; ok {
				t.State = rugwatch.StateRevoked
				t.Severity = rugwatch.SeverityWarning
				t.LastChanged = now
				rec.Tools[name] = t
			}
			e := rugwatch.Event{
				Type: rugwatch.EventToolRevoked, Severity: rugwatch.SeverityWarning, Server: server, Tool: name,
				ApprovedDigest: ap.Digest, OccurredAt: now, Message: reason,
			}
			if err := l.appendNoted(tx, &rec, &e); err != nil {
				return err
			}
			done = append(done, name)
		}
		if found {
			return tx.PutServer(rec)
		}
		return nil
	})
	if err == nil {
		err = l.afterWrite(ctx)
	}
	return done, err
}

// History returns events, newest first, of one server or all ("").
func (l *Ledger) History(ctx context.Context, server string, limit int) ([]rugwatch.Event, error) {
	var events []rugwatch.Event
	err := l.DB.View(func(tx *store.Tx) error {
		var err error
		events, err = tx.Events(server, limit)
		return err
	})
	if events == nil {
		events = []rugwatch.Event{}
	}
	return events, err
}

// Verify checks every approval's signature and the event chain and, with
// a head (the seq and chain_head of an alert), that the log still holds
// it: a chain consistent in itself may still be cut, or an older copy put
// back, and only a head kept elsewhere shows that.
func (l *Ledger) Verify(ctx context.Context, head *store.Head) (report.VerifyReport, error) {
	rep := report.VerifyReport{SchemaVersion: 1, InvalidApprovals: []report.BadApproval{}}
	last, n, chainErr := l.DB.VerifyChainHead()
	rep.EventsChecked = n
	if chainErr != nil {
		rep.ChainError = chainErr.Error()
	} else if last.Seq > 0 {
		rep.Head = last.String()
	}
	cpOK, err := l.verifyCheckpoint(&rep)
	if err != nil {
		return rep, err
	}
	if head != nil {
		rep.HeadChecked = head.String()
		if err := l.DB.HoldsHead(*head); err != nil {
			switch {
			case errors.Is(err, store.ErrHeadPruned) && cpOK:
				rep.HeadPruned = err.Error()
			case errors.Is(err, store.ErrHeadPruned), errors.Is(err, store.ErrHeadNotHeld):
				rep.HeadError = err.Error()
			default:
				return rep, err
			}
		}
	}
	err = l.DB.View(func(tx *store.Tx) error {
		all, err := tx.Approvals("")
		if err != nil {
			return err
		}
		for _, ap := range all {
			rep.ApprovalsChecked++
			if v := CheckApproval(l.Verifier, ap); !v.Valid {
				rep.InvalidApprovals = append(rep.InvalidApprovals, report.BadApproval{Server: ap.Server, Kind: ap.Kind, Tool: ap.Tool, Problem: v.Problem})
			}
		}
		// Signatures that hold can still be replays: envelopes older than
		// their tool's last drift or revoke, which the next poll withdraws.
		replays, err := Replays(tx, l.Verifier)
		if err != nil {
			return err
		}
		rep.InvalidApprovals = append(rep.InvalidApprovals, replays...)
		return nil
	})
	rep.OK = chainErr == nil && rep.CheckpointError == "" && rep.HeadError == "" && len(rep.InvalidApprovals) == 0
	return rep, err
}

// Alerts lists pending and dead deliveries and the last delivered ones.
func (l *Ledger) Alerts(ctx context.Context, limit int) (report.AlertsReport, error) {
	rep := report.AlertsReport{SchemaVersion: 1}
	err := l.DB.View(func(tx *store.Tx) error {
		var err error
		if rep.Pending, err = tx.ListDeliveries(store.DeliveryPending, 0); err != nil {
			return err
		}
		if rep.Dead, err = tx.ListDeliveries(store.DeliveryDead, 0); err != nil {
			return err
		}
		rep.Delivered, err = tx.ListDeliveries(store.DeliveryDelivered, limit)
		return err
	})
	for _, p := range []*[]store.Delivery{&rep.Pending, &rep.Dead, &rep.Delivered} {
		if *p == nil {
			*p = []store.Delivery{}
		}
	}
	return rep, err
}

// RetryAlert sends a delivery again now: a dead one goes back in the
// queue, a pending one waiting out its backoff becomes due at once (after
// an outage the operator need not wait for the next step of the backoff).
// AfterWrite then wakes the dispatcher, or drains the outbox offline.
func (l *Ledger) RetryAlert(ctx context.Context, id string) error {
	err := l.DB.Update(func(tx *store.Tx) error {
		d, ok, err := tx.Delivery(id)
		if err != nil {
			return err
		}
		if !ok {
			return usagef("no delivery %q (see `rugwatch alerts`)", id)
		}
		switch d.State {
		case store.DeliveryDead:
			d.State = store.DeliveryPending
			d.Attempts = 0
		case store.DeliveryPending:
			// Attempts stay: they are the backoff's and the give-up's count.
		default:
			return usagef("delivery %s is %s; only pending and dead ones can be sent again", id, d.State)
		}
		d.NextAttempt = l.now()
		return tx.UpdateDelivery(d)
	})
	if err != nil {
		return err
	}
	return l.afterWrite(ctx)
}

// DisabledAlerts lists the alert channels a 410 Gone disabled.
func (l *Ledger) DisabledAlerts(ctx context.Context) ([]store.DisabledChannel, error) {
	var out []store.DisabledChannel
	err := l.DB.View(func(tx *store.Tx) error {
		var err error
		out, err = tx.DisabledChannels()
		return err
	})
	if out == nil {
		out = []store.DisabledChannel{}
	}
	return out, err
}

// EnableAlerts sends to a channel a 410 Gone disabled again, from its next
// delivery on; deliveries that died while it was disabled stay dead
// (`alerts retry ID` sends one).
func (l *Ledger) EnableAlerts(ctx context.Context, channel string) error {
	err := l.DB.Update(func(tx *store.Tx) error {
		ok, err := tx.EnableChannel(channel)
		if err != nil {
			return err
		}
		if !ok {
			all, err := tx.DisabledChannels()
			if err != nil {
				return err
			}
			names := make([]string, len(all))
			for i, c := range all {
				names[i] = c.Channel
			}
			if len(names) == 0 {
				names = []string{"none"}
			}
			return usagef("alert channel %q is not disabled (disabled: %s)", channel, strings.Join(names, ", "))
		}
		return nil
	})
	if err != nil {
		return err
	}
	return l.afterWrite(ctx)
}

// Backup writes a consistent copy of the store to w (see store.DB.Backup).
func (l *Ledger) Backup(ctx context.Context, w io.Writer, size func(int64)) (int64, error) {
	return l.DB.Backup(w, size)
}

// TestAlert records an alert.test event, queues it for one channel or all
// of them, and waits until each delivery was attempted: it goes through
// the real outbox and the real channels.
func (l *Ledger) TestAlert(ctx context.Context, channel string) ([]store.Delivery, error) {
	if l.TestChannels == nil {
		return nil, fmt.Errorf("this backend has no alert channels")
	}
	var ids []string
	err := l.DB.Update(func(tx *store.Tx) error {
		e := rugwatch.Event{Type: rugwatch.EventAlertTest, Severity: rugwatch.SeverityCritical, Server: "rugwatch",
			Message: "test alert from `rugwatch alerts test`; no tool changed", OccurredAt: l.now()}
		if err := tx.AppendEvent(&e); err != nil {
			return err
		}
		var err error
		ids, err = l.TestChannels(tx, e, channel)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := l.afterWrite(ctx); err != nil {
		return nil, err
	}
	// The dispatcher runs elsewhere (the daemon's) or already ran
	// (AfterWrite of the CLI); poll the store for its verdict, for a
	// minute at most, then say what each delivery is now.
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var out []store.Delivery
		attempted := true
		err := l.DB.View(func(tx *store.Tx) error {
			for _, id := range ids {
				d, _, err := tx.Delivery(id)
				if err != nil {
					return err
				}
				attempted = attempted && (d.State != store.DeliveryPending || d.Attempts > 0)
				out = append(out, d)
			}
			return nil
		})
		if err != nil || attempted {
			return out, err
		}
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-deadline.C:
			return out, nil
		case <-tick.C:
		}
	}
}
