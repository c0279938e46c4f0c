package monitor

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
)

const ninetyDays = 90 * 24 * time.Hour

// retentionFixture is a log of four old events (add new, approved,
// drifted, drifted again) and two recent ones, cut by a 90-day retention
// behind a checkpoint at seq 4. It returns the harness and the heads of
// events 1 (an alert of the cut events) and 5 (the first kept one).
func retentionFixture(t *testing.T) (h *harness, old, kept store.Head) {
	t.Helper()
	return retentionFixtureOn(t, newHarness(t))
}

// boltRetentionFixture is retentionFixture on a bbolt file, for the tests
// that tamper with that file (see tamper).
func boltRetentionFixture(t *testing.T) (h *harness, old, kept store.Head) {
	t.Helper()
	return retentionFixtureOn(t, newBoltHarness(t))
}

func retentionFixtureOn(t *testing.T, h *harness) (_ *harness, old, kept store.Head) {
	t.Helper()
	_, ev := h.record(listingOf(t, replayBase), nil)
	old = store.Head{Seq: ev[0].Seq, Digest: ev[0].ChainHead}
	h.approveBound("add")
	h.record(listingOf(t, replayEvil), nil)
	h.record(listingOf(t, replayBase), nil) // changed back: stays drifted
	h.now = h.now.Add(100 * 24 * time.Hour)
	mul := json.RawMessage(`{"name":"mul","inputSchema":{"type":"object"}}`)
	div := json.RawMessage(`{"name":"div","inputSchema":{"type":"object"}}`)
	_, ev = h.record(listingOf(t, replayBase, mul), nil)
	kept = store.Head{Seq: ev[0].Seq, Digest: ev[0].ChainHead}
	h.record(listingOf(t, replayBase, mul, div), nil)
	if kept.Seq != 5 {
		t.Fatalf("fixture: first recent event is seq %d, want 5", kept.Seq)
	}
	res, err := h.pruner().Prune(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Checkpoint.Seq != 4 || res.Deleted != 4 {
		t.Fatalf("prune: checkpoint %s, %d deleted; want seq 4 and 4", res.Checkpoint, res.Deleted)
	}
	return h, old, kept
}

func (h *harness) pruner() *Pruner {
	return &Pruner{DB: h.db, Retention: ninetyDays, Signer: h.signer, Verifier: h.rec.Verifier.(CheckpointVerifier), Batch: 3,
		Now: func() time.Time { return h.now }}
}

func (h *harness) verify(head *store.Head) reportLine {
	h.t.Helper()
	rep, err := h.ledger().Verify(context.Background(), head)
	if err != nil {
		h.t.Fatal(err)
	}
	return reportLine{ok: rep.OK, text: fmt.Sprintf("%+v", rep), pruned: rep.HeadPruned, checkpoint: rep.Checkpoint,
		cpErr: rep.CheckpointError, chainErr: rep.ChainError, checked: rep.EventsChecked}
}

type reportLine struct {
	ok                                        bool
	text, pruned, checkpoint, cpErr, chainErr string
	checked                                   int
}

// Retention cuts the events older than 90 days behind a signed
// checkpoint; verify, and verify --head of an alert from before the cut,
// from the checkpoint itself and from after it, still hold.
func TestRetentionPrunesBehindASignedCheckpoint(t *testing.T) {
	h, old, kept := retentionFixture(t)
	var seqs []uint64
	_ = h.db.View(func(tx *store.Tx) error {
		evs, err := tx.Events("", 0)
		for _, e := range evs {
			seqs = append(seqs, e.Seq)
			if e.OccurredAt.Before(h.now.Add(-ninetyDays)) {
				t.Errorf("event %d of %s survived a 90-day retention at %s", e.Seq, e.OccurredAt, h.now)
			}
		}
		return err
	})
	if fmt.Sprint(seqs) != "[6 5]" {
		t.Fatalf("events left %v, want [6 5]", seqs)
	}
	r := h.verify(nil)
	if !r.ok || r.checked != 2 || !strings.HasPrefix(r.checkpoint, "4:sha256:") {
		t.Fatalf("verify after the cut: %s", r.text)
	}
	if r := h.verify(&old); !r.ok || r.pruned == "" {
		t.Errorf("verify --head of a pruned event: %s", r.text)
	}
	if r := h.verify(&kept); !r.ok || r.pruned != "" {
		t.Errorf("verify --head of a kept event: %s", r.text)
	}
	cp, _ := store.ParseHead(r.checkpoint)
	if r := h.verify(&cp); !r.ok || r.pruned != "" {
		t.Errorf("verify --head of the checkpoint's own head: %s", r.text)
	}
	forged := store.Head{Seq: kept.Seq, Digest: old.Digest}
	if r := h.verify(&forged); r.ok {
		t.Errorf("verify --head of a head the log never held passed: %s", r.text)
	}
	// Nothing is old enough again: no second checkpoint.
	if res, err := h.pruner().Prune(context.Background()); err != nil || res.Checkpoint.Seq != 0 {
		t.Fatalf("second prune: %+v, %v", res, err)
	}
	// Later, the next cut continues from the first: verify still holds.
	h.now = h.now.Add(100 * 24 * time.Hour)
	h.record(listingOf(t, replayBase), nil) // mul and div go: no event, they were pending
	h.record(listingOf(t, replayEvil), nil)
	if res, err := h.pruner().Prune(context.Background()); err != nil || res.Checkpoint.Seq != 6 || res.Deleted != 2 {
		t.Fatalf("third prune: %+v, %v", res, err)
	}
	if r := h.verify(&old); !r.ok || r.pruned == "" || !strings.HasPrefix(r.checkpoint, "6:") {
		t.Fatalf("verify after the second cut: %s", r.text)
	}
}

// The drift that withdrew an approval was cut; an attacker who can write
// the store puts the old approval back and makes the tool's record say
// approved. A restarted daemon still knows the approval is a replay: the
// signed checkpoint carries the drift's seq.
func TestReplayAfterRetentionIsStillCaught(t *testing.T) {
	for _, protected := range []bool{true, false} {
		t.Run(fmt.Sprintf("protected=%v", protected), func(t *testing.T) { replayAfterRetention(t, protected) })
	}
}

// putBackStaleApproval plays a tampered store after the cut: tool's
// approval from before its drift copied back, its record saying approved
// with no drift or transition seq of its own.
func (h *harness) putBackStaleApproval(tool string) {
	h.t.Helper()
	h.copyBack(tool)
	err := h.db.Update(func(tx *store.Tx) error {
		rec, _, err := tx.Server("srv")
		if err != nil {
			return err
		}
		t := rec.Tools[tool]
		t.State, t.ApprovedDigest, t.WithdrawnSeq, t.LastTransitionSeq = rugwatch.StateApproved, t.ObservedDigest, 0, 0
		rec.Tools[tool] = t
		return tx.PutServer(rec)
	})
	if err != nil {
		h.t.Fatal(err)
	}
}

func replayAfterRetention(t *testing.T, protected bool) {
	h, _, _ := retentionFixture(t)
	h.putBackStaleApproval("add")
	h.rec = &Recorder{DB: h.db, Verifier: h.rec.Verifier, Now: h.rec.Now, checkpointSeedOff: !protected} // a restart
	r, ev := h.record(listingOf(t, replayBase), nil)
	_, flagged := findEvent(ev, rugwatch.EventApprovalInvalid)
	caught := flagged && r.Tools["add"].State != rugwatch.StateApproved
	if caught != protected {
		t.Fatalf("protected=%v: replayed approval after the cut: add %s, events %v", protected, r.Tools["add"].State, eventTypes(ev))
	}
}

// tamper edits the store file as someone with write access to it would,
// and reopens it. It edits the bbolt file itself, so the harness must be
// a newBoltHarness (boltRetentionFixture) whatever the environment picks.
func (h *harness) tamper(edit func(tx *bolt.Tx) error) {
	h.t.Helper()
	path := h.db.Path()
	if err := h.db.Close(); err != nil {
		h.t.Fatal(err)
	}
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := b.Update(edit); err != nil {
		h.t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		h.t.Fatal(err)
	}
	db, err := store.Open(path, store.Options{})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { db.Close() })
	h.db, h.rec.DB = db, db
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// A checkpoint moved forward over kept events (to hide them), or signed
// by a key that is not trusted, and a kept event edited: each fails
// verify. Without the check of the checkpoint's signature, the moved
// checkpoint passes: the chain alone is consistent from it.
func TestTamperedCheckpointOrKeptEventFailsVerify(t *testing.T) {
	moveCheckpoint := func(h *harness, envelope func(store.CheckpointRecord) []byte) func(tx *bolt.Tx) error {
		return func(tx *bolt.Tx) error {
			events, meta := tx.Bucket([]byte("events")), tx.Bucket([]byte("meta"))
			var cp store.CheckpointRecord
			if err := json.Unmarshal(meta.Get([]byte("checkpoint")), &cp); err != nil {
				return err
			}
			v := events.Get(seqKey(5))
			moved := store.CheckpointRecord{Seq: 5, Head: digestOfRecord(v)}
			moved.Envelope = envelope(cp)
			if moved.Envelope == nil {
				moved.Envelope = cp.Envelope
			}
			b, _ := json.Marshal(moved)
			if err := events.Delete(seqKey(5)); err != nil {
				return err
			}
			return meta.Put([]byte("checkpoint"), b)
		}
	}
	for _, protected := range []bool{true, false} {
		t.Run(fmt.Sprintf("moved checkpoint, protected=%v", protected), func(t *testing.T) {
			h, _, _ := boltRetentionFixture(t)
			h.tamper(moveCheckpoint(h, func(store.CheckpointRecord) []byte { return nil }))
			l := h.ledger()
			l.checkpointCheckOff = !protected
			rep, err := l.Verify(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if protected && (rep.OK || !strings.Contains(rep.CheckpointError, "signed for seq 4")) {
				t.Fatalf("a checkpoint moved over a kept event passed verify: %+v", rep)
			}
			if !protected && !rep.OK {
				t.Fatalf("without the signature check the moved checkpoint should pass (the attack): %+v", rep)
			}
		})
	}
	t.Run("checkpoint signed by an untrusted key", func(t *testing.T) {
		h, _, _ := boltRetentionFixture(t)
		dir := t.TempDir()
		if _, err := signatures.GenerateKeyPair(dir, nil); err != nil {
			t.Fatal(err)
		}
		other, err := signatures.LoadPrivateKey(filepath.Join(dir, "approver.key"), nil)
		if err != nil {
			t.Fatal(err)
		}
		// The same statement, moved over event 5, signed by a key the
		// config does not trust.
		head5 := h.headAt(5)
		h.tamper(moveCheckpoint(h, func(cp store.CheckpointRecord) []byte {
			st, err := h.rec.Verifier.(CheckpointVerifier).VerifyCheckpoint(cp.Envelope)
			if err != nil {
				t.Fatal(err)
			}
			st.Seq, st.ChainHead = 5, head5
			env, err := other.SignCheckpoint(st)
			if err != nil {
				t.Fatal(err)
			}
			return env
		}))
		if r := h.verify(nil); r.ok || !strings.Contains(r.cpErr, "not signed by a trusted key") {
			t.Fatalf("a checkpoint signed by an untrusted key passed verify: %s", r.text)
		}
	})
	t.Run("kept event edited", func(t *testing.T) {
		h, _, _ := boltRetentionFixture(t)
		h.tamper(func(tx *bolt.Tx) error {
			events := tx.Bucket([]byte("events"))
			v := append([]byte(nil), events.Get(seqKey(5))...)
			return events.Put(seqKey(5), []byte(strings.Replace(string(v), `"tool.new"`, `"tool.removed"`, 1)))
		})
		if r := h.verify(nil); r.ok || r.chainErr == "" {
			t.Fatalf("an edited kept event passed verify: %s", r.text)
		}
	})
	t.Run("checkpoint head edited", func(t *testing.T) {
		h, _, _ := boltRetentionFixture(t)
		h.tamper(func(tx *bolt.Tx) error {
			meta := tx.Bucket([]byte("meta"))
			var cp store.CheckpointRecord
			if err := json.Unmarshal(meta.Get([]byte("checkpoint")), &cp); err != nil {
				return err
			}
			cp.Head = digestOfRecord([]byte("something else"))
			b, _ := json.Marshal(cp)
			return meta.Put([]byte("checkpoint"), b)
		})
		if r := h.verify(nil); r.ok || r.chainErr == "" || r.cpErr == "" {
			t.Fatalf("an edited checkpoint head passed verify: %s", r.text)
		}
	})
}

func digestOfRecord(b []byte) rugwatch.Digest {
	return signatures.DigestOf(b) // sha256 of the bytes as given: the chain's link
}

func (h *harness) headAt(seq uint64) rugwatch.Digest {
	h.t.Helper()
	d, ok, err := h.db.HeadAt(seq)
	if err != nil || !ok {
		h.t.Fatalf("no event %d: %v", seq, err)
	}
	return d
}

// TestReplayCaughtWhenTheCheckpointIsForged: the same replay with the
// checkpoint's envelope corrupted as well. What the cut took is then
// unknown; the recorder fails closed (the approval bound before the cut
// counts as none) instead of forgetting every drift the cut took, which
// is what ignoring the checkpoint would do (the seed switched off).
func TestReplayCaughtWhenTheCheckpointIsForged(t *testing.T) {
	h, _, _ := boltRetentionFixture(t)
	h.putBackStaleApproval("add")
	h.tamper(func(tx *bolt.Tx) error {
		meta := tx.Bucket([]byte("meta"))
		var cp map[string]any
		if err := json.Unmarshal(meta.Get([]byte("checkpoint")), &cp); err != nil {
			return err
		}
		env, _ := cp["envelope"].(string) // []byte as base64
		raw, err := base64.StdEncoding.DecodeString(env)
		if err != nil {
			return err
		}
		raw = bytes.Replace(raw, []byte(`"payload":"`), []byte(`"payload":"A`), 1)
		cp["envelope"] = base64.StdEncoding.EncodeToString(raw)
		b, err := json.Marshal(cp)
		if err != nil {
			return err
		}
		return meta.Put([]byte("checkpoint"), b)
	})
	h.rec = &Recorder{DB: h.db, Verifier: h.rec.Verifier, Now: h.rec.Now} // a restart
	r, ev := h.record(listingOf(t, replayBase), nil)
	if _, flagged := findEvent(ev, rugwatch.EventApprovalInvalid); !flagged || r.Tools["add"].State == rugwatch.StateApproved {
		t.Fatalf("a replay behind a forged checkpoint: add %s, events %v", r.Tools["add"].State, eventTypes(ev))
	}
}

// TestEgressPinSurvivesRetention: a server's egress approval whose
// egress.approved event retention cut, deleted from the store after a
// restart, still reads as a missing pin (the checkpoint carries the
// event's word): approval.invalid, and the sandbox gets the empty set,
// not no pin at all.
func TestEgressPinSurvivesRetention(t *testing.T) {
	const a = "api.example.com:443"
	h := newHarness(t)
	h.record(egressListing(t, a), nil)
	if err := approveEgressNow(h); err != nil {
		t.Fatal(err)
	}
	h.record(egressListing(t, a), nil)
	h.now = h.now.Add(100 * 24 * time.Hour)
	h.record(listingOf(t, replayBase, json.RawMessage(`{"name":"mul","inputSchema":{"type":"object"}}`)), nil)
	h.record(listingOf(t, replayBase, json.RawMessage(`{"name":"mul","inputSchema":{"type":"object"}}`), json.RawMessage(`{"name":"div","inputSchema":{"type":"object"}}`)), nil)
	if res, err := h.pruner().Prune(context.Background()); err != nil || res.Deleted == 0 {
		t.Fatalf("prune: %+v %v", res, err)
	}
	if err := h.db.Update(func(tx *store.Tx) error {
		if _, _, err := tx.RevokeApproval("srv", store.KindEgress, "", "", time.Time{}); err != nil {
			return err
		}
		rec, _, err := tx.Server("srv")
		if err != nil {
			return err
		}
		rec.Egress = nil
		return tx.PutServer(rec)
	}); err != nil {
		t.Fatal(err)
	}
	h.rec = &Recorder{DB: h.db, Verifier: h.rec.Verifier, Now: h.rec.Now} // a restart
	_, ev := h.record(egressListing(t, a, "exfil.example.net:443"), nil)
	if _, ok := findEvent(ev, rugwatch.EventApprovalInvalid); !ok {
		t.Fatalf("a deleted pin after the cut: events %v", eventTypes(ev))
	}
	if pin := h.rec.egressPinFor("srv"); pin == nil || len(pin.Dests) != 0 {
		t.Fatalf("the sandbox is handed pin %+v, want the empty set", pin)
	}
}
