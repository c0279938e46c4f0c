package monitor

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
)

// team is a harness whose trusted keys are the harness's own (alice,
// role platform), bob (role security) and carol (role platform); mallory
// has a key pair but is not trusted. Approvals need 2 signatures, one
// with role security.
type team struct {
	*harness
	bob, carol, mallory *signatures.Signer
	policy              *signatures.Policy
	quorumOff           bool
}

func newTeam(t *testing.T) *team {
	h := newHarness(t)
	tm := &team{harness: h, bob: newSigner(t), carol: newSigner(t), mallory: newSigner(t)}
	tm.policy = &signatures.Policy{
		Keys: map[string]signatures.KeyInfo{
			h.signer.KeyID(): {Name: "alice", Roles: []string{"platform"}},
			tm.bob.KeyID():   {Name: "bob", Roles: []string{"security"}},
			tm.carol.KeyID(): {Name: "carol", Roles: []string{"platform"}},
		},
		Default: signatures.Quorum{N: 2, Roles: []string{"security"}},
	}
	h.rec.Verifier = signatures.NewVerifier([]signatures.PublicKey{h.signer.PublicKey(), tm.bob.PublicKey(), tm.carol.PublicKey()})
	h.rec.Policy = tm.policy
	return tm
}

func newSigner(t *testing.T) *signatures.Signer {
	t.Helper()
	dir := t.TempDir()
	if _, err := signatures.GenerateKeyPair(dir, nil); err != nil {
		t.Fatal(err)
	}
	s, err := signatures.LoadPrivateKey(filepath.Join(dir, signatures.PrivateKeyFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (tm *team) ledger() *Ledger {
	l := tm.harness.ledger()
	l.Policy, l.quorumCheckOff = tm.policy, tm.quorumOff
	return l
}

// approveAs signs what is observed as `rugwatch approve` does, with s.
func (tm *team) approveAs(s *signatures.Signer, tool string) error {
	tm.t.Helper()
	t := tm.server().Tools[tool]
	env, err := s.SignApproval(signatures.ToolStatement("srv", tool, t.ObservedDigest, t.Definition,
		signatures.Review{Seq: t.LastTransitionSeq, ApprovedAt: tm.now}))
	if err != nil {
		tm.t.Fatal(err)
	}
	_, err = tm.ledger().Approve(context.Background(), "srv", []SignedApproval{{Tool: tool, Digest: t.ObservedDigest, Envelope: env}}, false)
	return err
}

// served reports whether the proxy would show the model tool.
func (tm *team) served(tool string) bool {
	tm.t.Helper()
	a, err := tm.ledger().Allowed(context.Background(), "srv")
	if err != nil {
		tm.t.Fatal(err)
	}
	_, ok := a.Tool(tool)
	return ok
}

func (tm *team) shown(tool string) string {
	tm.t.Helper()
	rep, err := tm.ledger().Status(context.Background(), []string{"srv"})
	if err != nil {
		tm.t.Fatal(err)
	}
	for _, tr := range rep.Servers[0].Tools {
		if tr.Name == tool {
			return string(tr.State) + " signatures: " + tr.Signatures
		}
	}
	tm.t.Fatalf("no tool %s in status", tool)
	return ""
}

func (tm *team) lastEvent() rugwatch.Event {
	tm.t.Helper()
	ev, err := tm.ledger().History(context.Background(), "srv", 1)
	if err != nil || len(ev) == 0 {
		tm.t.Fatalf("history: %v %v", ev, err)
	}
	return ev[0]
}

// Quorum 2 with role security: one signature leaves the tool pending and
// withheld; the same key again changes nothing; a key outside
// trusted_keys is refused; two keys without the role are not enough; the
// key with the role completes it, and tool.approved names every signer.
// With the check off, alice alone approves and the proxy serves the tool.
func TestQuorumWithRoleNeedsTwoKeysOneASecurityKey(t *testing.T) {
	for _, protected := range []bool{true, false} {
		t.Run(fmt.Sprintf("protected=%v", protected), func(t *testing.T) {
			tm := newTeam(t)
			tm.quorumOff = !protected
			tm.record(listingOf(t, replayBase), nil)

			if err := tm.approveAs(tm.signer, "add"); err != nil {
				t.Fatal(err)
			}
			if !protected {
				if got := tm.server().Tools["add"].State; got != rugwatch.StateApproved || !tm.served("add") {
					t.Fatalf("without the quorum check one signature should approve and serve; state %s served %v", got, tm.served("add"))
				}
				return
			}
			if got, want := tm.shown("add"), "pending signatures: 1 of 2 (needs role security)"; got != want {
				t.Fatalf("after alice: %q, want %q", got, want)
			}
			if tm.served("add") {
				t.Fatal("the proxy serves a tool one signature of two approved")
			}
			if e := tm.lastEvent(); e.Type != rugwatch.EventToolCosigned || e.Severity != rugwatch.SeverityInfo ||
				!slices.Equal(e.Signers, []string{tm.signer.KeyID()}) || !strings.Contains(e.Message, "1 of 2 (needs role security)") {
				t.Fatalf("event after alice: %+v", e)
			}
			// A poll does not approve it either.
			if r, _ := tm.record(listingOf(t, replayBase), nil); r.Tools["add"].State != rugwatch.StatePending {
				t.Fatalf("a poll made a half-signed tool %s", r.Tools["add"].State)
			}

			before := tm.lastEvent().Seq
			if err := tm.approveAs(tm.signer, "add"); err != nil {
				t.Fatal(err)
			}
			if got := tm.shown("add"); got != "pending signatures: 1 of 2 (needs role security)" || tm.lastEvent().Seq != before {
				t.Fatalf("alice twice: %q, last event seq %d (was %d)", got, tm.lastEvent().Seq, before)
			}

			err := tm.approveAs(tm.mallory, "add")
			if !errors.Is(err, signatures.ErrUntrustedKey) || !strings.Contains(err.Error(), "not in trusted_keys") {
				t.Fatalf("mallory's signature: %v, want refused as not in trusted_keys", err)
			}
			if got := tm.shown("add"); got != "pending signatures: 1 of 2 (needs role security)" {
				t.Fatalf("after mallory: %q", got)
			}

			if err := tm.approveAs(tm.carol, "add"); err != nil {
				t.Fatal(err)
			}
			if got := tm.shown("add"); got != "pending signatures: 2 of 2 (needs role security)" || tm.served("add") {
				t.Fatalf("alice and carol, no security role: %q served %v", got, tm.served("add"))
			}

			if err := tm.approveAs(tm.bob, "add"); err != nil {
				t.Fatal(err)
			}
			if got := tm.shown("add"); got != "approved signatures: 3 of 2" || !tm.served("add") {
				t.Fatalf("after bob: %q served %v", got, tm.served("add"))
			}
			e := tm.lastEvent()
			if e.Type != rugwatch.EventToolApproved || e.KeyID != tm.bob.KeyID() ||
				!slices.Equal(e.Signers, []string{tm.signer.KeyID(), tm.carol.KeyID(), tm.bob.KeyID()}) ||
				!strings.Contains(e.Message, "alice, carol, bob") {
				t.Fatalf("tool.approved: %+v", e)
			}
			if r, ev := tm.record(listingOf(t, replayBase), nil); r.Tools["add"].State != rugwatch.StateApproved || len(ev) != 0 {
				t.Fatalf("the next poll: %s %v", r.Tools["add"].State, eventTypes(ev))
			}
			// A drift withdraws every signature at once.
			if r, _ := tm.record(listingOf(t, replayEvil), nil); r.Tools["add"].State != rugwatch.StateDrifted {
				t.Fatalf("drift: %s", r.Tools["add"].State)
			}
			if got := tm.shown("add"); got != "drifted signatures: 0 of 2 (needs role security)" || tm.served("add") {
				t.Fatalf("after the drift: %q served %v", got, tm.served("add"))
			}
			if tm.hasCurrentApproval("add") {
				t.Fatal("the drift left a current approval")
			}
		})
	}
}

// A drift while the tool waits for its second signature withdraws the
// first: a signature of the old definition never counts for the new one.
func TestDriftWithdrawsAHalfSignedApproval(t *testing.T) {
	tm := newTeam(t)
	tm.record(listingOf(t, replayBase), nil)
	if err := tm.approveAs(tm.bob, "add"); err != nil {
		t.Fatal(err)
	}
	tm.record(listingOf(t, replayEvil), nil)
	if tm.hasCurrentApproval("add") {
		t.Fatal("the changed definition kept bob's signature of the old one")
	}
	// The new definition is poisoned: alice accepts its findings, as
	// approve --accept-findings does.
	accepted := signatures.AcceptedFindings(tm.server().Tools["add"].Findings)
	if err := tm.approveReviewed(tm.signer, "add", signatures.Review{Accepted: accepted}); err != nil {
		t.Fatal(err)
	}
	if got := tm.shown("add"); !strings.HasSuffix(got, "signatures: 1 of 2 (needs role security)") || tm.served("add") {
		t.Fatalf("alice after the drift: %q served %v; bob's old signature must not count", got, tm.served("add"))
	}
}

// A quorum raised after a tool was approved by one key withholds it from
// the proxy until a second key signs the same digest.
func TestRaisedQuorumWithholdsUntilCosigned(t *testing.T) {
	tm := newTeam(t)
	raised := tm.policy
	tm.policy = nil
	tm.record(listingOf(t, replayBase), nil)
	if err := tm.approveAs(tm.signer, "add"); err != nil {
		t.Fatal(err)
	}
	if !tm.served("add") {
		t.Fatal("quorum 1: alice alone should approve")
	}
	tm.policy = raised
	if tm.served("add") {
		t.Fatal("after quorum 2 with role security, one signature still serves the tool")
	}
	if err := tm.approveAs(tm.bob, "add"); err != nil {
		t.Fatal(err)
	}
	if !tm.served("add") {
		t.Fatalf("bob's signature did not complete the raised quorum: %s", tm.shown("add"))
	}
	var ap store.ApprovalRecord
	_ = tm.db.View(func(tx *store.Tx) error { ap, _, _ = tx.Approval("srv", store.KindTool, "add"); return nil })
	if len(ap.Cosignatures) != 1 || ap.Cosignatures[0].KeyID != tm.bob.KeyID() {
		t.Fatalf("record: %+v", ap.Cosignatures)
	}
}

// A revocation withdraws every signature: after it, one new signature is
// 1 of 2 again, not the third of three.
func TestRevokeWithdrawsEverySignature(t *testing.T) {
	tm := newTeam(t)
	tm.record(listingOf(t, replayBase), nil)
	for _, s := range []*signatures.Signer{tm.signer, tm.bob} {
		if err := tm.approveAs(s, "add"); err != nil {
			t.Fatal(err)
		}
	}
	if !tm.served("add") {
		t.Fatal("alice and bob did not approve")
	}
	if _, err := tm.ledger().Revoke(context.Background(), "srv", []string{"add"}, false, "test"); err != nil {
		t.Fatal(err)
	}
	if got := tm.shown("add"); got != "revoked signatures: 0 of 2 (needs role security)" || tm.served("add") {
		t.Fatalf("after revoke: %q served %v", got, tm.served("add"))
	}
	if err := tm.approveAs(tm.bob, "add"); err != nil {
		t.Fatal(err)
	}
	if got := tm.shown("add"); got != "revoked signatures: 1 of 2" || tm.served("add") {
		t.Fatalf("bob alone after the revocation: %q served %v", got, tm.served("add"))
	}
}
