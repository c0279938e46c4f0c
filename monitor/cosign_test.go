package monitor

import (
	"context"
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
)

// firstBound is the seq the first signature of tool's current approval is
// bound to.
func (tm *team) firstBound(tool string) uint64 {
	tm.t.Helper()
	var ap store.ApprovalRecord
	_ = tm.db.View(func(tx *store.Tx) error { ap, _, _ = tx.Approval("srv", store.KindTool, tool); return nil })
	st, err := signatures.StatementOf(ap.Envelope)
	if err != nil {
		tm.t.Fatal(err)
	}
	seq, ok := st.Bound()
	if !ok {
		tm.t.Fatal("the first signature is not bound")
	}
	return seq
}

// A quorum raised from 2 to 3 after alice and bob approved add: carol's
// signature, bound as `lock sign` binds it (the seq the file's statement
// resolves, before the tool.approved that completed the approval), is a
// cosignature of the same review and completes the raised quorum. Before
// the fix it was refused as a replay: the completing event had moved the
// tool's newest transition.
func TestRaisedQuorumTakesACosignatureBoundToTheFirstSignature(t *testing.T) {
	tm := newTeam(t)
	tm.record(listingOf(t, replayBase), nil)
	for _, s := range []*signatures.Signer{tm.signer, tm.bob} {
		if err := tm.approveAs(s, "add"); err != nil {
			t.Fatal(err)
		}
	}
	first := tm.firstBound("add")
	if newest := tm.server().Tools["add"].LastTransitionSeq; newest <= first || !tm.served("add") {
		t.Fatalf("alice and bob: served %v, first bound %d, newest transition %d", tm.served("add"), first, newest)
	}
	tm.policy.Default.N = 3 // a SIGHUP raising the quorum
	if tm.served("add") {
		t.Fatal("two signatures of three still serve add")
	}
	if err := tm.approveReviewed(tm.carol, "add", signatures.Review{Seq: first}); err != nil {
		t.Fatalf("carol's cosignature bound to the first signature's seq: %v", err)
	}
	if got := tm.shown("add"); got != "approved signatures: 3 of 3" || !tm.served("add") {
		t.Fatalf("after carol: %q served %v", got, tm.served("add"))
	}
	if e := tm.lastEvent(); e.Type != rugwatch.EventToolCosigned || len(e.Signers) != 3 {
		t.Fatalf("carol's signature: %+v", e)
	}
	// What the Recorder counts agrees: the next poll keeps it approved.
	if r, ev := tm.record(listingOf(t, replayBase), nil); r.Tools["add"].State != rugwatch.StateApproved || len(ev) != 0 {
		t.Fatalf("the next poll: %s %v", r.Tools["add"].State, eventTypes(ev))
	}
}

// Adding to an approval takes a signature bound from its first
// signature's seq to the newest transition, nothing outside; and after a
// drift nothing signed before it counts: the approval is gone, so a new
// one must be bound to the newest transition exactly.
func TestCosignatureBoundOutsideTheApprovalIsRefused(t *testing.T) {
	tm := newTeam(t)
	tm.record(listingOf(t, replayBase), nil)
	// A revocation first, so that an earlier state exists to bind to.
	for _, s := range []*signatures.Signer{tm.signer, tm.bob} {
		if err := tm.approveAs(s, "add"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tm.ledger().Revoke(context.Background(), "srv", []string{"add"}, false, "test"); err != nil {
		t.Fatal(err)
	}
	if err := tm.approveAs(tm.signer, "add"); err != nil {
		t.Fatal(err)
	}
	first := tm.firstBound("add")
	err := tm.approveReviewed(tm.bob, "add", signatures.Review{Seq: first - 1})
	if err == nil || !strings.Contains(err.Error(), "older than this approval's first signature") {
		t.Fatalf("bob bound before alice's review: %v, want refused", err)
	}
	err = tm.approveReviewed(tm.bob, "add", signatures.Review{Seq: tm.server().Tools["add"].LastTransitionSeq + 5})
	if err == nil || !strings.Contains(err.Error(), "newest transition") {
		t.Fatalf("bob bound past the newest transition: %v, want refused", err)
	}
	if got := tm.shown("add"); got != "revoked signatures: 1 of 2 (needs role security)" {
		t.Fatalf("after the refusals: %q", got)
	}
	if err := tm.approveAs(tm.bob, "add"); err != nil {
		t.Fatal(err)
	}
	tm.policy.Default.N = 3

	// Drift and back: the approval is withdrawn with every signature, and
	// carol's signature of the old review is a replay.
	tm.record(listingOf(t, replayEvil), nil)
	tm.record(listingOf(t, replayBase), nil)
	if tm.served("add") {
		t.Fatal("add is served after its drift")
	}
	err = tm.approveReviewed(tm.carol, "add", signatures.Review{Seq: first})
	if err == nil || !strings.Contains(err.Error(), "replayed") {
		t.Fatalf("carol's signature of the review before the drift: %v, want refused as a replay", err)
	}
	if got := tm.shown("add"); !strings.HasSuffix(got, "signatures: 0 of 3 (needs role security)") {
		t.Fatalf("after the replay: %q", got)
	}
}

// The same for instructions: the raised quorum takes carol's cosignature
// bound to the first signature's seq.
func TestRaisedQuorumTakesAnInstructionsCosignatureBoundToTheFirstSignature(t *testing.T) {
	const text = "Use add."
	tm := newTeam(t)
	tm.record(instructionsListing(t, text), nil)
	first := tm.server().InstructionsTransitionSeq
	for _, s := range []*signatures.Signer{tm.signer, tm.bob} {
		if err := tm.signInstructions(s); err != nil {
			t.Fatal(err)
		}
	}
	if tm.allowed().Instructions == nil {
		t.Fatal("alice and bob did not approve the instructions")
	}
	tm.policy.Default.N = 3
	rec := tm.server()
	st, err := signatures.InstructionsStatement("srv", rec.Instructions, rec.InstructionsDigest, signatures.Review{Seq: first, ApprovedAt: tm.now})
	if err != nil {
		t.Fatal(err)
	}
	env, err := tm.carol.SignApproval(st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tm.ledger().Approve(context.Background(), "srv",
		[]SignedApproval{{Kind: store.KindInstructions, Digest: st.Digest, Envelope: env}}, false); err != nil {
		t.Fatalf("carol's cosignature of the instructions: %v", err)
	}
	if tm.allowed().Instructions == nil {
		t.Fatalf("carol's signature did not complete the raised quorum: %s", tm.instructionsShown())
	}
}
