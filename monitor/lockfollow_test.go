package monitor

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
)

// launchLine is a lock file line: s's signature of the launch identity
// of srv as it is now, bound to its newest launch transition.
func (tm *team) launchLine(s *signatures.Signer) signatures.LockSignature {
	tm.t.Helper()
	rec := tm.server()
	st, err := signatures.LaunchStatement("srv", rec.Launch, rec.Identity, signatures.Review{Seq: rec.LaunchTransitionSeq, ApprovedAt: tm.now})
	if err != nil {
		tm.t.Fatal(err)
	}
	env, err := s.SignApproval(st)
	if err != nil {
		tm.t.Fatal(err)
	}
	return signatures.LockSignature{Server: "srv", Kind: store.KindLaunch, Digest: st.Digest, KeyID: s.KeyID(), Envelope: env}
}

// writeLock writes lines as the lock file at path.
func writeLock(t *testing.T, path string, lines ...signatures.LockSignature) {
	t.Helper()
	b, err := signatures.Lock{Signatures: lines}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// approvals_from after a launch drifted away and back: alice and bob's
// signatures of bb in the file pinned it; what runs changed to cc and
// back to bb, which leaves the launch drifted with none of those
// signatures counting (they were bound to the state before). Fresh
// signatures of bb by the same keys must reach the Ledger and pin it
// again. Before the fix the follower took them for held (the approval
// record still holds bb signed by both keys), skipped them without a
// word, and the server stayed drifted, served nothing, at 0 of 2.
func TestLockFollowerOffersFreshSignaturesOfALaunchDriftedBack(t *testing.T) {
	tm := launchDrifted(t)
	path := filepath.Join(t.TempDir(), "rugwatch.lock.json")
	f := &LockFollower{Path: path}
	writeLock(t, path, tm.launchLine(tm.signer), tm.launchLine(tm.bob))
	if p, err := f.Pass(context.Background(), tm.ledger(), false); err != nil || len(p.Applied) != 2 || tm.server().LaunchDrifted {
		t.Fatalf("the first file: %+v %v, drifted %v", p, err, tm.server().LaunchDrifted)
	}
	if p, err := f.Pass(context.Background(), tm.ledger(), true); err != nil || p.Held != 2 || len(p.Applied)+len(p.Refused) != 0 {
		t.Fatalf("the same file again: %+v %v, want both held", p, err)
	}
	if _, ev := tm.record(launchListing(t, "cc"), nil); !slices.Contains(eventTypes(ev), rugwatch.EventLaunchDrifted) {
		t.Fatalf("cc: %v", eventTypes(ev))
	}
	tm.record(launchListing(t, "bb"), nil)
	if s := tm.report(); !s.LaunchDrifted || s.LaunchSignatures != "0 of 2 (needs role security)" || tm.served("add") {
		t.Fatalf("back at bb: drifted %v %q served %v", s.LaunchDrifted, s.LaunchSignatures, tm.served("add"))
	}

	writeLock(t, path, tm.launchLine(tm.signer), tm.launchLine(tm.bob))
	p, err := f.Pass(context.Background(), tm.ledger(), true)
	if err != nil || len(p.Applied) != 2 || p.Held != 0 {
		t.Fatalf("fresh signatures of bb: %+v %v, want both applied", p, err)
	}
	if s := tm.report(); s.LaunchDrifted || !tm.served("add") {
		t.Fatalf("after the fresh signatures: drifted %v %q served %v", s.LaunchDrifted, s.LaunchSignatures, tm.served("add"))
	}
	// The file's lines are sorted by key id, which is random here: the
	// signers are who signed, in whichever order the file offered them.
	if e := tm.lastEvent(); e.Type != rugwatch.EventToolApproved || !slices.Equal(slices.Sorted(slices.Values(e.Signers)), slices.Sorted(slices.Values([]string{tm.signer.KeyID(), tm.bob.KeyID()}))) {
		t.Fatalf("the pin: %+v", e)
	}
	if p, err := f.Pass(context.Background(), tm.ledger(), true); err != nil || p.Held != 2 {
		t.Fatalf("the file once more: %+v %v, want both held", p, err)
	}
}

// approvals_from takes no approval of a poisoned definition the file's
// signature does not accept: the Ledger refuses it, and the follower
// reports why, naming the tool and the rules.
func TestLockFollowerRefusesUnacceptedCriticalFindings(t *testing.T) {
	h := newHarness(t)
	h.record(listingOf(t, replayEvil), nil)
	tr := h.server().Tools["add"]
	env, err := h.signer.SignApproval(signatures.ToolStatement("srv", "add", tr.ObservedDigest, tr.Definition,
		signatures.Review{Seq: tr.LastTransitionSeq, ApprovedAt: h.now}))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rugwatch.lock.json")
	writeLock(t, path, signatures.LockSignature{Server: "srv", Kind: store.KindTool, Tool: "add", Digest: tr.ObservedDigest,
		KeyID: h.signer.KeyID(), Envelope: env})
	p, err := (&LockFollower{Path: path}).Pass(context.Background(), h.ledger(), false)
	if err != nil || len(p.Applied) != 0 || len(p.Refused) != 1 || !strings.Contains(p.Refused[0], "srv/add") ||
		!strings.Contains(p.Refused[0], "instruction-marker") {
		t.Fatalf("a file approving a poisoned definition without accepting it: %+v %v", p, err)
	}
	if s := h.server().Tools["add"].State; s == rugwatch.StateApproved {
		t.Fatal("approvals_from approved a poisoned definition")
	}
}
