package store

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch"
)

// filledBolt is a bbolt store with something in every part of the tree:
// server records and definitions, current and superseded approvals,
// events cut behind a checkpoint, pending deliveries with their indexes.
func filledBolt(t *testing.T) (*DB, []rugwatch.Event) {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "rugwatch.db"), Options{Now: fixedClock()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	evs := appendN(t, db, 6)
	cutAt(t, db, CheckpointRecord{}, evs[2])
	if _, err := db.PruneBatch(10); err != nil {
		t.Fatal(err)
	}
	evs = append(evs, enqueueFor(t, db, time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC), "webhook:ops", "slack:sec"))
	if err := db.Update(func(tx *Tx) error {
		if err := tx.PutServer(sampleServer()); err != nil {
			return err
		}
		if err := tx.PutServer(ServerRecord{Name: "alpha", Transport: "http", Error: "connection refused", ConsecutiveFailures: 3}); err != nil {
			return err
		}
		for _, a := range []ApprovalRecord{
			approval("everything", KindTool, "echo", "e1"),
			approval("everything", KindTool, "echo", "e2"), // supersedes e1 into history
			approval("everything", KindInstructions, "", "i1"),
			approval("alpha", KindTool, "a", "a1"),
		} {
			if err := tx.PutApproval(a); err != nil {
				return err
			}
		}
		_, _, err := tx.RevokeApproval("alpha", KindTool, "a", "drifted", time.Time{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return db, evs
}

// A bbolt store copied into PostgreSQL reads back byte for byte: the
// same tree, the same chain head, the same records through the store's
// own API; a second copy into it is refused.
func TestCopyToPostgres(t *testing.T) {
	src, evs := filledBolt(t)
	dst := openPostgres(t, Options{})
	rep, err := src.CopyTo(dst)
	if err != nil {
		t.Fatal(err)
	}
	last := evs[len(evs)-1]
	if rep.Head != (Head{Seq: last.Seq, Digest: last.ChainHead}) || rep.Events != 4 {
		t.Errorf("report head %s after %d events, want %d:%s after 4 (7 appended, 3 pruned)", rep.Head, rep.Events, last.Seq, last.ChainHead)
	}
	if rep.Buckets < 10 || rep.Keys < 15 || rep.Bytes < 1000 {
		t.Errorf("report counts look short: %+v", rep)
	}
	t.Logf("copied %+v", rep)

	// Read back through the store's API, not only the tree walk.
	if err := dst.HoldsHead(rep.Head); err != nil {
		t.Errorf("HoldsHead on the copy: %v", err)
	}
	var srcDue, dstDue []Delivery
	var srcHist, dstHist []ApprovalRecord
	read := func(db *DB, due *[]Delivery, hist *[]ApprovalRecord) {
		t.Helper()
		if err := db.View(func(tx *Tx) error {
			var err error
			if *due, err = tx.ListDeliveries(DeliveryPending, 0); err != nil {
				return err
			}
			*hist, err = tx.ApprovalHistory("", "")
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	read(src, &srcDue, &srcHist)
	read(dst, &dstDue, &dstHist)
	if len(dstDue) != 2 || len(dstHist) != 2 || len(srcDue) != len(dstDue) || len(srcHist) != len(dstHist) {
		t.Errorf("copy has %d pending deliveries and %d superseded approvals; source %d and %d", len(dstDue), len(dstHist), len(srcDue), len(srcHist))
	}
	// The sequences came along: the next event continues the chain.
	appendN(t, dst, 1)
	if last, _, err := dst.VerifyChainHead(); err != nil || last.Seq != rep.Head.Seq+1 {
		t.Errorf("append after the copy: head %s, %v", last, err)
	}

	// Into a store that holds something: refused, naming what is there.
	again := openPostgres(t, Options{})
	if _, err := src.CopyTo(again); err != nil {
		t.Fatal(err)
	}
	_, err = src.CopyTo(again)
	if !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("second copy into the same database: %v, want ErrNotEmpty", err)
	}
	for _, what := range []string{"events: ", "servers: ", "approvals: ", "outbox: "} {
		if !strings.Contains(err.Error(), what) {
			t.Errorf("refusal does not name %q: %v", what, err)
		}
	}
	t.Log(err)
	if _, err := src.CopyTo(src); err == nil {
		t.Error("a store copied into itself")
	}
}

// A destination with one event besides the fresh schema is refused, and
// left as it was.
func TestCopyRefusesAUsedDestination(t *testing.T) {
	src, _ := filledBolt(t)
	dst := openPostgres(t, Options{})
	appendN(t, dst, 1)
	before, _, err := dst.VerifyChainHead()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.CopyTo(dst); !errors.Is(err, ErrNotEmpty) || !strings.Contains(err.Error(), "events: 2") {
		t.Fatalf("CopyTo a store with an event: %v, want ErrNotEmpty naming events (a record and the sequence)", err)
	}
	if after, _, err := dst.VerifyChainHead(); err != nil || after != before {
		t.Errorf("the refused destination changed: %s → %s, %v", before, after, err)
	}
}

// The verification reads the copy back: a value edited, a key added or
// an event altered in the destination after the copy is found and named
// by bucket and key.
func TestCopyVerifyCatchesTampering(t *testing.T) {
	src, evs := filledBolt(t)
	for _, c := range []struct {
		name   string
		tamper func(t *testing.T, tx kvTx)
		want   string
		chain  bool
	}{
		{"server record edited", func(t *testing.T, tx kvTx) {
			b := tx.Bucket(bucketServers)
			v := bytes.Clone(b.Get([]byte("alpha")))
			v = bytes.Replace(v, []byte("refused"), []byte("refuses"), 1)
			if err := b.Put([]byte("alpha"), v); err != nil {
				t.Fatal(err)
			}
		}, `servers: the value of key alpha differs`, false},
		{"approval planted", func(t *testing.T, tx kvTx) {
			b := tx.Bucket(bucketApprovals).Bucket([]byte("alpha"))
			if err := b.Put([]byte("tool\x00b"), []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
		}, `approvals/alpha: the copy has key "tool\x00b"`, false},
		{"event altered", func(t *testing.T, tx kvTx) {
			flipByte(t, tx.Bucket(bucketEvents), evs[4].Seq, "message-5")
		}, `events: the value of key "\x00\x00\x00\x00\x00\x00\x00\x05" differs`, true},
		{"sequence moved", func(t *testing.T, tx kvTx) {
			if err := tx.Bucket(bucketEvents).SetSequence(99); err != nil {
				t.Fatal(err)
			}
		}, `events: sequence 99 in the copy, 7 in the source`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dst := openPostgres(t, Options{})
			if _, err := src.CopyTo(dst); err != nil {
				t.Fatal(err)
			}
			if _, err := src.CompareTo(dst); err != nil {
				t.Fatalf("CompareTo before tampering: %v", err)
			}
			if err := dst.kv.update(func(tx kvTx) error { c.tamper(t, tx); return nil }); err != nil {
				t.Fatal(err)
			}
			_, err := src.CompareTo(dst)
			if !errors.Is(err, ErrCopyDiffers) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("CompareTo after tampering: %v, want ErrCopyDiffers naming %q", err, c.want)
			}
			t.Log(err)
			// The chain check stands on its own, too.
			if _, err := dst.VerifyChain(); (err != nil) != c.chain {
				t.Errorf("VerifyChain on the tampered copy: %v, want broken %v", err, c.chain)
			}
		})
	}
}
