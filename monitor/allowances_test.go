package monitor

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
)

// approveReviewed signs what is observed of tool with s, as `rugwatch
// approve` does, with what review adds (returns_secrets, accepted
// findings), bound to seq when it is not 0.
func (tm *team) approveReviewed(s *signatures.Signer, tool string, review signatures.Review) error {
	tm.t.Helper()
	t := tm.server().Tools[tool]
	if review.Seq == 0 {
		review.Seq = t.LastTransitionSeq
	}
	review.ApprovedAt = tm.now
	env, err := s.SignApproval(signatures.ToolStatement("srv", tool, t.ObservedDigest, t.Definition, review))
	if err != nil {
		tm.t.Fatal(err)
	}
	_, err = tm.ledger().Approve(context.Background(), "srv", []SignedApproval{{Tool: tool, Digest: t.ObservedDigest, Envelope: env}}, false)
	return err
}

// allowedTool is tool as the proxy would serve it; ok false when withheld.
func (tm *team) allowedTool(tool string) (AllowedTool, bool) {
	tm.t.Helper()
	return tm.allowed().Tool(tool)
}

// Under a quorum one key must not grant returns_secrets alone: alice
// signs add saying it returns secrets, bob signs the same digest without
// it. The tool is approved (two keys, one with role security), but
// without the allowance, so the proxy keeps redacting its results; the
// event of bob's signature says returns_secrets is not granted. Both
// saying it grants it. Before the fix the first envelope's word was the
// approval's.
func TestQuorumReturnsSecretsNeedsEverySignature(t *testing.T) {
	tm := newTeam(t)
	tm.record(listingOf(t, replayBase), nil)
	if err := tm.approveReviewed(tm.signer, "add", signatures.Review{ReturnsSecrets: true}); err != nil {
		t.Fatal(err)
	}
	if err := tm.approveReviewed(tm.bob, "add", signatures.Review{}); err != nil {
		t.Fatal(err)
	}
	at, ok := tm.allowedTool("add")
	if !ok {
		t.Fatalf("alice and bob did not approve add: %s", tm.shown("add"))
	}
	if at.ReturnsSecrets {
		t.Fatal("alice alone granted returns_secrets: bob's signature does not carry it")
	}
	if e := tm.lastEvent(); e.Type != rugwatch.EventToolApproved || !strings.Contains(e.Message, "returns_secrets "+NotGranted) {
		t.Fatalf("bob's signature: %+v, want it to say returns_secrets is not granted", e)
	}

	// Bob first, without it, alice adding it: still not granted.
	tm2 := newTeam(t)
	tm2.record(listingOf(t, replayBase), nil)
	if err := tm2.approveReviewed(tm2.bob, "add", signatures.Review{}); err != nil {
		t.Fatal(err)
	}
	if err := tm2.approveReviewed(tm2.signer, "add", signatures.Review{ReturnsSecrets: true}); err != nil {
		t.Fatal(err)
	}
	if at, ok := tm2.allowedTool("add"); !ok || at.ReturnsSecrets {
		t.Fatalf("bob then alice: served %v returns_secrets %v, want served without it", ok, at.ReturnsSecrets)
	}
	if e := tm2.lastEvent(); !strings.Contains(e.Message, "returns_secrets "+NotGranted) {
		t.Fatalf("alice's signature: %+v, want it to say returns_secrets is not granted", e)
	}

	// Both carrying it grant it, and say nothing of a withheld allowance.
	tm3 := newTeam(t)
	tm3.record(listingOf(t, replayBase), nil)
	for _, s := range []*signatures.Signer{tm3.signer, tm3.bob} {
		if err := tm3.approveReviewed(s, "add", signatures.Review{ReturnsSecrets: true}); err != nil {
			t.Fatal(err)
		}
	}
	if at, ok := tm3.allowedTool("add"); !ok || !at.ReturnsSecrets {
		t.Fatalf("alice and bob both granting returns_secrets: served %v returns_secrets %v", ok, at.ReturnsSecrets)
	}
	if e := tm3.lastEvent(); strings.Contains(e.Message, NotGranted) {
		t.Fatalf("both signatures carry it, yet: %q", e.Message)
	}
}

// An accepted finding is granted, like returns_secrets, only where every
// signature that counts accepted it.
func TestQuorumAcceptedFindingsNeedEverySignature(t *testing.T) {
	tm := newTeam(t)
	tm.record(listingOf(t, replayBase), nil)
	both, onlyAlice := "tool-poisoning description", "secret-request description"
	if err := tm.approveReviewed(tm.signer, "add", signatures.Review{Accepted: []string{both, onlyAlice}}); err != nil {
		t.Fatal(err)
	}
	if err := tm.approveReviewed(tm.bob, "add", signatures.Review{Accepted: []string{both}}); err != nil {
		t.Fatal(err)
	}
	var ap store.ApprovalRecord
	_ = tm.db.View(func(tx *store.Tx) error { ap, _, _ = tx.Approval("srv", store.KindTool, "add"); return nil })
	g := CheckApproval(tm.rec.Verifier, ap).Grants
	if !slices.Equal(g.AcceptedFindings, []string{both}) || !slices.Equal(g.Withheld, []string{"accepted finding " + onlyAlice}) {
		t.Fatalf("grants: %+v, want only the finding both accepted", g)
	}
	if e := tm.lastEvent(); !strings.Contains(e.Message, "accepted finding "+onlyAlice+" "+NotGranted) {
		t.Fatalf("bob's signature: %q", e.Message)
	}
}
