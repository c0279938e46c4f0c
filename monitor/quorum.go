package monitor

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
)

// An approval is one record of one digest holding every signature given
// for it (store.ApprovalRecord.Cosignatures), whatever it approves: a
// tool, a server's instructions, its egress destinations. It approves
// only once the signatures meet the server's quorum (signatures.Policy);
// until then what it signs stays as it was and each signature is a
// *.cosigned event. A drift or a revocation moves the record, and every
// signature with it, to the history. Signatures count only while bound to
// the subject's newest transition (Statement.Resolves): a *.cosigned
// event is not one, so every signature of one review binds the same seq.
// Once the approval completes, its event is the newest transition; a
// signature added after (a quorum raised since) may be bound to any seq
// from the first signature's to it (verifySigned), never earlier.
// What an approval allows beyond passing (returns_secrets, accepted
// findings) is what every signature that counts carries
// (signatures.GrantsOf).
//
// The bookkeeping of that rule — which signatures count so far, adding
// one or starting afresh, the tally, the event — is here once (sign,
// signedSoFar, signedEvent); each kind only says what its subject is
// (subject) and what approving it changes.

// trivial reports whether q is the rule before quorums: one signature by
// any trusted key approves, and a new one replaces the last.
func trivial(q signatures.Quorum) bool { return q.N <= 1 && len(q.Roles) == 0 }

// meets reports whether signers (verified key ids) approve a subject of
// server under p: what the proxy, the Recorder and approve all ask.
func meets(p *signatures.Policy, server string, signers []string) bool {
	return trivial(p.For(server)) || p.Tally(server, signers).Met()
}

// quorum is l's policy, or none while a test switched the check off.
func (l *Ledger) quorum() *signatures.Policy {
	if l.quorumCheckOff {
		return nil
	}
	return l.Policy
}

// subject is one thing an approval approves, as its server's record says
// it is now.
type subject struct {
	kind, tool string // the approval's store key (tool "" but for tools)
	// what names it in messages: "srv/tool", "srv instructions".
	what string
	// digest is what is observed now: a signature must name it.
	digest rugwatch.Digest
	// seq is its newest transition: a signature binds to it.
	seq uint64
	// approved: it is approved now under digest, so signatures given
	// before its newest transition still count (a quorum raised since).
	approved bool
}

func toolSubject(server, name string, t store.ToolRecord) subject {
	return subject{kind: store.KindTool, tool: name, what: server + "/" + name, digest: t.ObservedDigest,
		seq: t.LastTransitionSeq, approved: t.State == rugwatch.StateApproved && t.ApprovedDigest == t.ObservedDigest}
}

func instructionsSubject(rec store.ServerRecord) subject {
	return subject{kind: store.KindInstructions, what: rec.Name + " instructions", digest: rec.InstructionsDigest,
		seq:      rec.InstructionsTransitionSeq,
		approved: rec.InstructionsState == rugwatch.StateApproved && rec.InstructionsApproved == rec.InstructionsDigest}
}

// egressSubject is the egress set of rec that approving would sign now
// (EgressToApprove), or the pinned one when there is nothing to approve.
// ok is false for a server with no egress recorded.
func egressSubject(rec store.ServerRecord) (subject, bool) {
	eg := rec.Egress
	if eg == nil {
		return subject{}, false
	}
	s := subject{kind: store.KindEgress, what: rec.Name + " egress", seq: eg.TransitionSeq}
	set := EgressToApprove(rec)
	if set == nil {
		s.digest, s.approved = eg.PinnedDigest, true
		return s, true
	}
	def, err := signatures.EgressDefinition(set)
	if err != nil {
		return subject{}, false
	}
	s.digest = signatures.DigestOf(def)
	return s, true
}

// soFar is the current approval of a subject while its signatures still
// count towards it.
type soFar struct {
	signers []string // verified key ids, the first signer first
	// first is the seq the approval's first signature is bound to (0 for
	// one signed before approvals were bound): a signature added to it
	// counts only if bound no earlier (cosigners).
	first uint64
}

// signedSoFar returns the current approval of s if it still counts
// towards s as observed: same digest, and either s is approved under it
// or every signature is bound to its newest transition.
func (l *Ledger) signedSoFar(tx *store.Tx, server string, s subject) (soFar, bool, error) {
	ap, ok, err := tx.Approval(server, s.kind, s.tool)
	if err != nil || !ok || s.digest == "" || ap.Digest != s.digest {
		return soFar{}, false, err
	}
	v := l.Verified.Check(l.Verifier, ap)
	if !v.Valid {
		return soFar{}, false, nil
	}
	seq, bound := (&signatures.Statement{Resolves: v.Resolves}).Bound()
	if !s.approved && (!bound || seq != s.seq) {
		return soFar{}, false, nil
	}
	return soFar{signers: v.Signers, first: seq}, true, nil
}

// signaturesShown is what status and diff say of the signatures of s: ""
// where one signature is all an approval needs.
func (l *Ledger) signaturesShown(tx *store.Tx, server string, s subject) (string, error) {
	if trivial(l.Policy.For(server)) {
		return "", nil
	}
	so, _, err := l.signedSoFar(tx, server, s)
	if err != nil {
		return "", err
	}
	return l.Policy.Tally(server, so.signers).String(), nil
}

// toolSignaturesShown is signaturesShown for a tool: "" for one removed.
func (l *Ledger) toolSignaturesShown(tx *store.Tx, server, name string, t store.ToolRecord) (string, error) {
	if t.State == rugwatch.StateRemoved {
		return "", nil
	}
	return l.signaturesShown(tx, server, toolSubject(server, name, t))
}

// showSignatures fills in sr, the report of r, how far each approval of
// r is towards the server's quorum: every tool's, the instructions', the
// launch identity's while it drifted, the egress set's. Nothing where one signature is all an approval needs.
func (l *Ledger) showSignatures(tx *store.Tx, r store.ServerRecord, sr *report.ServerReport) error {
	if trivial(l.Policy.For(r.Name)) {
		return nil
	}
	var err error
	for i, t := range sr.Tools {
		if sr.Tools[i].Signatures, err = l.toolSignaturesShown(tx, r.Name, t.Name, r.Tools[t.Name]); err != nil {
			return err
		}
	}
	if r.InstructionsDigest != "" && r.InstructionsState != "" {
		if sr.InstructionsSignatures, err = l.signaturesShown(tx, r.Name, instructionsSubject(r)); err != nil {
			return err
		}
	}
	if r.LaunchDrifted || r.IdentityDrifted {
		if sr.LaunchSignatures, err = l.signaturesShown(tx, r.Name, launchSubject(r)); err != nil {
			return err
		}
	}
	if s, ok := egressSubject(r); ok && sr.Egress != nil {
		if sr.Egress.Signatures, err = l.signaturesShown(tx, r.Name, s); err != nil {
			return err
		}
	}
	return nil
}

// verifySigned verifies one signed approval of s: a trusted key, naming
// exactly s as observed, bound to its newest transition. A signature
// added to an approval whose signatures still count (sign) may be bound
// to any seq from that approval's first signature's to the newest: the
// approval completing (a tool.approved event) moves the newest
// transition, and a cosignature given after it, a quorum raised since,
// is one more signature of the same review, not a replay.
func (l *Ledger) verifySigned(tx *store.Tx, server string, s subject, sa SignedApproval) (signatures.Statement, error) {
	st, err := l.Verifier.Verify(sa.Envelope)
	if errors.Is(err, signatures.ErrUntrustedKey) {
		return st, fmt.Errorf("approval of %s is signed by a key not in trusted_keys; its signature counts none: %w", s.what, err)
	}
	if err != nil {
		return st, fmt.Errorf("approval of %s does not verify with a trusted key: %w", s.what, err)
	}
	if !st.Names(s.kind, server, s.tool, sa.Digest) {
		return st, fmt.Errorf("approval of %s signs something else (%s)", s.what, st.Subject())
	}
	so, adding, err := l.signedSoFar(tx, server, s)
	if err != nil {
		return st, err
	}
	if !adding || trivial(l.quorum().For(server)) {
		return st, checkBound(s.what, st, s.seq)
	}
	return st, checkBoundSince(s.what, st, so.first, s.seq)
}

// checkBoundSince refuses a signature added to an approval whose first
// signature is bound to first unless it is bound to a seq from first to
// latest, the subject's newest transition: one bound earlier was signed
// for a state before this approval (a replay, or a review since
// withdrawn), one bound later for a state that never was.
func checkBoundSince(what string, st signatures.Statement, first, latest uint64) error {
	seq, ok := st.Bound()
	switch {
	case !ok:
		return checkBound(what, st, latest)
	case seq < first:
		return fmt.Errorf("approval of %s is bound to seq %d, older than this approval's first signature at seq %d: "+
			"signed for an earlier state, or replayed; run approve again", what, seq, first)
	case seq > latest:
		return fmt.Errorf("approval of %s is bound to seq %d, but its newest transition is seq %d; run approve again", what, seq, latest)
	}
	return nil
}

// signing is what one signature did to an approval.
type signing struct {
	// unchanged: the key had signed already; nothing was stored.
	unchanged bool
	// completes: what it signs becomes approved now (one signature is
	// all its server needs, or this one met the quorum).
	completes bool
	trivial   bool
	tally     signatures.Tally
}

// sign adds the verified signature st (envelope env) of s to its
// approval: to the signatures that still count, or as a fresh approval of
// its own where none do (or one signature approves alone: it replaces the
// last). The same key twice changes nothing.
func (l *Ledger) sign(tx *store.Tx, server string, s subject, st signatures.Statement, env []byte) (signing, error) {
	policy := l.quorum()
	out := signing{trivial: trivial(policy.For(server))}
	so, adding, err := l.signedSoFar(tx, server, s)
	if err != nil {
		return out, err
	}
	signers := so.signers
	if out.trivial {
		adding = false
	}
	if adding && slices.Contains(signers, st.KeyID) {
		out.unchanged = true
		return out, nil
	}
	if adding {
		err = tx.AddCosignature(server, s.kind, s.tool, st.Digest,
			store.Cosignature{KeyID: st.KeyID, ApprovedAt: st.ApprovedAt, Envelope: env, Note: st.Note})
	} else {
		signers = nil
		err = tx.PutApproval(store.ApprovalRecord{Kind: s.kind, Server: server, Tool: s.tool, Digest: st.Digest,
			KeyID: st.KeyID, ApprovedAt: st.ApprovedAt, Envelope: env, Note: st.Note})
	}
	if err != nil {
		return out, err
	}
	out.tally = policy.Tally(server, append(signers, st.KeyID))
	// A signature added to what is approved already changes nothing
	// either: it is a cosignature, not a second approval.
	out.completes = out.trivial || (out.tally.Met() && !s.approved)
	return out, nil
}

// signedEvent dresses e, the approval event of its kind, for a server
// with a quorum: it names every signer, and a signature that does not
// complete the approval becomes the cosigned event of its kind, saying
// what is still needed.
func (l *Ledger) signedEvent(e *rugwatch.Event, g signing, cosigned rugwatch.EventType) {
	if g.trivial {
		return
	}
	e.Signers = g.tally.Signers
	e.Message = strings.TrimSuffix("signed by "+l.names(l.quorum(), g.tally.Signers)+"; "+e.Message, "; ")
	if !g.completes {
		e.Type = cosigned
		e.Message = "signatures: " + g.tally.String() + "; " + e.Message
	}
}

// approveTool adds one signature to a tool's approval and makes the tool
// approved once the approval meets its server's quorum.
func (l *Ledger) approveTool(tx *store.Tx, rec *store.ServerRecord, sa SignedApproval, now time.Time) error {
	server := rec.Name
	cur, ok := rec.Tools[sa.Tool]
	if !ok || cur.ObservedDigest != sa.Digest {
		return fmt.Errorf("%s/%s changed while you were reviewing; run approve again", server, sa.Tool)
	}
	s := toolSubject(server, sa.Tool, cur)
	st, err := l.verifySigned(tx, server, s, sa)
	if err != nil {
		return err
	}
	if err := checkAccepted(s.what, cur.Findings, st); err != nil {
		return err
	}
	g, err := l.sign(tx, server, s, st, sa.Envelope)
	if err != nil || g.unchanged {
		return err
	}
	e := rugwatch.Event{Type: rugwatch.EventToolApproved, Severity: rugwatch.SeverityInfo, Server: server, Tool: sa.Tool,
		ApprovedDigest: sa.Digest, ObservedDigest: sa.Digest, KeyID: st.KeyID, OccurredAt: now, Message: st.Note}
	l.signedEvent(&e, g, rugwatch.EventToolCosigned)
	if !g.trivial {
		if err := l.noteWithheld(tx, &e, server, sa.Tool); err != nil {
			return err
		}
	}
	if g.completes {
		cur.State = rugwatch.StateApproved
		cur.ApprovedDigest = sa.Digest
		cur.Severity = rugwatch.SeverityInfo
		cur.Changes = nil
		cur.LastChanged = now
		rec.Tools[sa.Tool] = cur
	}
	return l.appendNoted(tx, rec, &e)
}

// names lists keys by their configured names: "alice, bob".
func (l *Ledger) names(p *signatures.Policy, ids []string) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = p.Name(id)
	}
	return strings.Join(out, ", ")
}

// noteWithheld tells, in e, the approver of tool of server what its
// approval does not grant now that a signature was added: an allowance
// some signatures carry and others do not (signatures.GrantsOf).
func (l *Ledger) noteWithheld(tx *store.Tx, e *rugwatch.Event, server, tool string) error {
	ap, ok, err := tx.Approval(server, store.KindTool, tool)
	if err != nil || !ok {
		return err
	}
	if w := CheckApproval(l.Verifier, ap).Grants.Withheld; len(w) > 0 {
		e.Message = strings.TrimSuffix(e.Message+"; "+strings.Join(w, ", ")+" "+NotGranted, "; ")
	}
	return nil
}

// NotGranted follows the allowances an approval's event names as not
// granted; approve looks for it to say so.
const NotGranted = "not granted: not every signature carries it"
