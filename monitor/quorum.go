package monitor

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
)

// A tool approval is one record of one digest holding every signature
// given for it (store.ApprovalRecord.Cosignatures). It approves only once
// the signatures meet the server's quorum (signatures.Policy); until then
// the tool stays as it was and each signature is a tool.cosigned event. A
// drift or a revocation moves the record, and every signature with it, to
// the history. Signatures count only while bound to the tool's newest
// transition (Statement.Resolves): tool.cosigned is not one, so every
// signature of one review binds the same seq.

// trivial reports whether q is the rule before quorums: one signature by
// any trusted key approves, and a new one replaces the last.
func trivial(q signatures.Quorum) bool { return q.N <= 1 && len(q.Roles) == 0 }

// meets reports whether signers (verified key ids) approve a tool of
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

// signedSoFar returns the verified signers of the current approval of a
// tool if it still counts towards t as observed: same digest, and either
// the tool is approved under it or every signature is bound to the tool's
// newest transition.
func (l *Ledger) signedSoFar(tx *store.Tx, server, name string, t store.ToolRecord) ([]string, bool, error) {
	ap, ok, err := tx.Approval(server, store.KindTool, name)
	if err != nil || !ok || ap.Digest != t.ObservedDigest {
		return nil, false, err
	}
	v := l.Verified.Check(l.Verifier, ap)
	if !v.Valid {
		return nil, false, nil
	}
	approved := t.State == rugwatch.StateApproved && t.ApprovedDigest == ap.Digest
	if seq, bound := (&signatures.Statement{Resolves: v.Resolves}).Bound(); !approved && (!bound || seq != t.LastTransitionSeq) {
		return nil, false, nil
	}
	return v.Signers, true, nil
}

// signaturesShown is what status and diff say of a tool's signatures: ""
// where one signature is all an approval needs.
func (l *Ledger) signaturesShown(tx *store.Tx, server, name string, t store.ToolRecord) (string, error) {
	if trivial(l.Policy.For(server)) || t.State == rugwatch.StateRemoved {
		return "", nil
	}
	signers, _, err := l.signedSoFar(tx, server, name, t)
	if err != nil {
		return "", err
	}
	return l.Policy.Tally(server, signers).String(), nil
}

// approveTool adds one signature to a tool's approval and makes the tool
// approved once the approval meets its server's quorum.
func (l *Ledger) approveTool(tx *store.Tx, rec *store.ServerRecord, sa SignedApproval, now time.Time) error {
	server := rec.Name
	cur, ok := rec.Tools[sa.Tool]
	if !ok || cur.ObservedDigest != sa.Digest {
		return fmt.Errorf("%s/%s changed while you were reviewing; run approve again", server, sa.Tool)
	}
	st, err := l.Verifier.Verify(sa.Envelope)
	if errors.Is(err, signatures.ErrUntrustedKey) {
		return fmt.Errorf("approval of %s/%s is signed by a key not in trusted_keys; its signature counts none: %w", server, sa.Tool, err)
	}
	if err != nil {
		return fmt.Errorf("approval of %s/%s does not verify with a trusted key: %w", server, sa.Tool, err)
	}
	if !st.Names(store.KindTool, server, sa.Tool, sa.Digest) {
		return fmt.Errorf("approval of %s/%s signs something else (%s)", server, sa.Tool, st.Subject())
	}
	if err := checkBound(server+"/"+sa.Tool, st, cur.LastTransitionSeq); err != nil {
		return err
	}
	policy := l.quorum()
	signers, adding, err := l.signedSoFar(tx, server, sa.Tool, cur)
	if err != nil {
		return err
	}
	if trivial(policy.For(server)) {
		adding = false // one signature approves; a new one replaces the last
	}
	if adding && slices.Contains(signers, st.KeyID) {
		return nil // the same key twice counts once: nothing changes
	}
	if adding {
		err = tx.AddCosignature(server, store.KindTool, sa.Tool, sa.Digest,
			store.Cosignature{KeyID: st.KeyID, ApprovedAt: st.ApprovedAt, Envelope: sa.Envelope, Note: st.Note})
	} else {
		signers = nil
		err = tx.PutApproval(store.ApprovalRecord{
			Kind: store.KindTool, Server: server, Tool: sa.Tool, Digest: sa.Digest,
			KeyID: st.KeyID, ApprovedAt: st.ApprovedAt, Envelope: sa.Envelope, Note: st.Note,
		})
	}
	if err != nil {
		return err
	}
	signers = append(signers, st.KeyID)
	tally := policy.Tally(server, signers)
	e := rugwatch.Event{Type: rugwatch.EventToolApproved, Severity: rugwatch.SeverityInfo, Server: server, Tool: sa.Tool,
		ApprovedDigest: sa.Digest, ObservedDigest: sa.Digest, KeyID: st.KeyID, OccurredAt: now, Message: st.Note}
	if !trivial(policy.For(server)) {
		e.Signers = tally.Signers
		e.Message = strings.TrimSpace("signed by " + l.names(policy, tally.Signers) + "; " + st.Note)
		e.Message = strings.TrimSuffix(e.Message, ";")
	}
	if !trivial(policy.For(server)) && (!tally.Met() || (cur.State == rugwatch.StateApproved && cur.ApprovedDigest == sa.Digest)) {
		// A signature towards a quorum not yet met (or added to a tool
		// already approved): the tool stays as it is.
		e.Type = rugwatch.EventToolCosigned
		e.Message = "signatures: " + tally.String() + "; " + e.Message
		return l.appendNoted(tx, rec, &e)
	}
	cur.State = rugwatch.StateApproved
	cur.ApprovedDigest = sa.Digest
	cur.Severity = rugwatch.SeverityInfo
	cur.Changes = nil
	cur.LastChanged = now
	rec.Tools[sa.Tool] = cur
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
