package ops

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/testkit/storetest"
)

// quorumView is a real Ledger and Recorder over a real store, with two
// real approver keys: alice (role platform) and bob (role security), and
// a quorum of 2 with role security. Server demo lists one tool, add, and
// instructions.
type quorumView struct {
	t          *testing.T
	ledger     *monitor.Ledger
	alice, bob *signatures.Signer
}

func newQuorumView(t *testing.T) *quorumView {
	t.Helper()
	dir := t.TempDir()
	db := storetest.Open(t, dir, store.Options{})
	key := func() *signatures.Signer {
		kd := t.TempDir()
		if _, err := signatures.GenerateKeyPair(kd, nil); err != nil {
			t.Fatal(err)
		}
		s, err := signatures.LoadPrivateKey(filepath.Join(kd, signatures.PrivateKeyFile), nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	q := &quorumView{t: t, alice: key(), bob: key()}
	policy := &signatures.Policy{
		Keys: map[string]signatures.KeyInfo{
			q.alice.KeyID(): {Name: "alice", Roles: []string{"platform"}},
			q.bob.KeyID():   {Name: "bob", Roles: []string{"security"}},
		},
		Default: signatures.Quorum{N: 2, Roles: []string{"security"}},
	}
	ver := signatures.NewVerifier([]signatures.PublicKey{q.alice.PublicKey(), q.bob.PublicKey()})
	rec := &monitor.Recorder{DB: db, Verifier: ver, Policy: policy, UnreachableAfter: 3}
	raw := json.RawMessage(`{"name":"add","description":"Adds two numbers","inputSchema":{"type":"object"}}`)
	d, canon, err := signatures.Digest(raw, signatures.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	text := "Use add for sums."
	instr, _ := json.Marshal(text)
	id, _, err := signatures.Digest(instr, signatures.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	l := &mcpclient.Listing{Tools: []mcpclient.Tool{{Name: "add", Raw: raw, Canonical: canon, Digest: d}}, Instructions: &text, InstructionsDigest: id}
	if _, _, err := rec.Record("demo", mcpclient.TransportStdio, l, nil); err != nil {
		t.Fatal(err)
	}
	q.ledger = &monitor.Ledger{DB: db, Verifier: ver, Policy: policy,
		Servers: []monitor.ServerRef{{Name: "demo", Transport: mcpclient.TransportStdio}}, Where: "test"}
	return q
}

// sign signs add and the instructions as observed, as `rugwatch approve
// demo add --instructions` does, with s.
func (q *quorumView) sign(s *signatures.Signer) {
	q.t.Helper()
	ctx := context.Background()
	rec, err := q.ledger.Server(ctx, "demo")
	if err != nil {
		q.t.Fatal(err)
	}
	now := time.Now().UTC()
	t := rec.Tools["add"]
	tool, err := s.SignApproval(signatures.ToolStatement("demo", "add", t.ObservedDigest, t.Definition, signatures.Review{Seq: t.LastTransitionSeq, ApprovedAt: now}))
	if err != nil {
		q.t.Fatal(err)
	}
	st, err := signatures.InstructionsStatement("demo", rec.Instructions, rec.InstructionsDigest, signatures.Review{Seq: rec.InstructionsTransitionSeq, ApprovedAt: now})
	if err != nil {
		q.t.Fatal(err)
	}
	instr, err := s.SignApproval(st)
	if err != nil {
		q.t.Fatal(err)
	}
	if _, err := q.ledger.Approve(ctx, "demo", []monitor.SignedApproval{
		{Tool: "add", Digest: t.ObservedDigest, Envelope: tool},
		{Kind: store.KindInstructions, Digest: rec.InstructionsDigest, Envelope: instr}}, false); err != nil {
		q.t.Fatal(err)
	}
}

// A pending tool under a quorum shows how far its approval is, on the
// server page and on its own page, and so do the server's instructions;
// once the quorum is met the pages say approved. One signature by a key
// without the required role is "1 of 2 (needs role security)".
func TestWebShowsSignaturesTowardsTheQuorum(t *testing.T) {
	q := newQuorumView(t)
	wv := newWeb(q.ledger)
	_, body := get(t, wv.Handler(), "/servers/demo", nil)
	if !strings.Contains(body, `<span class="sig">signatures: 0 of 2 (needs role security)</span>`) {
		t.Fatalf("server page of an unsigned tool lacks its tally:\n%s", body)
	}

	q.sign(q.alice)
	_, body = get(t, wv.Handler(), "/servers/demo", nil)
	row := body[strings.Index(body, `data-tool="add"`):]
	row = row[:strings.Index(row, "</tr>")]
	if !strings.Contains(row, `<span class="s-pending">pending</span> <span class="sig">signatures: 1 of 2 (needs role security)</span>`) {
		t.Errorf("server page's row of add after alice:\n%s", row)
	}
	if !strings.Contains(body, `instructions: <span class="s-pending">pending</span> · <span class="sig">signatures: 1 of 2 (needs role security)</span>`) {
		t.Errorf("server page lacks the instructions' tally:\n%s", body)
	}
	_, body = get(t, wv.Handler(), "/", nil)
	if !strings.Contains(body, "pending · signatures: 1 of 2 (needs role security)") {
		t.Errorf("overview lacks the instructions' tally:\n%s", body)
	}
	_, body = get(t, wv.Handler(), toolHref("demo", "add"), nil)
	if !strings.Contains(body, `<span class="sig" id="signatures">signatures: 1 of 2 (needs role security)</span>`) {
		t.Errorf("tool page lacks the tally:\n%s", body)
	}

	q.sign(q.bob)
	_, body = get(t, wv.Handler(), toolHref("demo", "add"), nil)
	if !strings.Contains(body, `<span class="s-approved">approved</span>`) || !strings.Contains(body, "signatures: 2 of 2</span>") {
		t.Errorf("tool page after bob:\n%s", body)
	}
}

// Under a quorum the server-wide drifts say how far their approval is
// too: the launch (or identity) and the egress set being signed.
func TestDriftsShowSignaturesTowardsTheQuorum(t *testing.T) {
	s := report.ServerReport{Name: "files", LaunchDrifted: true, LaunchSignatures: "1 of 2 (needs role security)",
		Egress: &report.EgressReport{Seen: []string{"a:443", "b:443"}, Drifted: []string{"b:443"}, Signatures: "0 of 2 (needs role security)"}}
	got := driftsOf(s)
	if len(got) != 2 || !strings.HasSuffix(got[0].Detail, "; signatures: 1 of 2 (needs role security)") ||
		got[1].Detail != "new destinations: b:443; signatures: 0 of 2 (needs role security)" {
		t.Fatalf("drifts %+v", got)
	}
	s.LaunchSignatures, s.Egress.Signatures = "", ""
	for _, d := range driftsOf(s) {
		if strings.Contains(d.Detail, "signatures") {
			t.Errorf("without a quorum a drift speaks of signatures: %+v", d)
		}
	}
}
