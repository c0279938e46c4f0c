package store

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch"
)

// Every event handed out carries the chain digest after it: the digest of
// its stored bytes, which is the next record's Prev and, for the last one,
// the meta head. It is never among the stored bytes.
func TestChainHeadOnEveryRead(t *testing.T) {
	db := openTest(t)
	evs := appendN(t, db, 4)
	for i, e := range evs {
		if !e.ChainHead.Valid() {
			t.Fatalf("appended event %d has chain_head %q", i+1, e.ChainHead)
		}
		if i+1 < len(evs) && evs[i+1].Prev != e.ChainHead {
			t.Errorf("event %d chain_head %s, next prev %s", e.Seq, e.ChainHead, evs[i+1].Prev)
		}
	}
	_ = db.View(func(tx *Tx) error {
		b := tx.tx.Bucket(bucketEvents)
		for _, e := range evs {
			raw := b.Get(u64(e.Seq))
			if strings.Contains(string(raw), "chain_head") {
				t.Errorf("record %d stores chain_head: %s", e.Seq, raw)
			}
			if recordDigest(raw) != e.ChainHead {
				t.Errorf("event %d chain_head is not its record's digest", e.Seq)
			}
		}
		if head := rugwatch.Digest(tx.tx.Bucket(bucketMeta).Get(keyHead)); head != evs[3].ChainHead {
			t.Errorf("meta head %s, last chain_head %s", head, evs[3].ChainHead)
		}
		newest, err := tx.Events("", 0)
		if err != nil {
			t.Fatal(err)
		}
		after, err := tx.EventsAfter(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range evs {
			if newest[len(evs)-1-i].ChainHead != e.ChainHead || after[i].ChainHead != e.ChainHead {
				t.Errorf("event %d read back with another chain_head", e.Seq)
			}
			one, ok, err := tx.Event(e.Seq)
			if err != nil || !ok || one.ChainHead != e.ChainHead {
				t.Errorf("Event(%d) = %s, %v, %v", e.Seq, one.ChainHead, ok, err)
			}
		}
		return nil
	})
	last, n, err := db.VerifyChainHead()
	if err != nil || n != 4 || last != (Head{Seq: 4, Digest: evs[3].ChainHead}) {
		t.Errorf("VerifyChainHead = %v, %d, %v", last, n, err)
	}
	for _, e := range evs {
		if d, ok, err := db.HeadAt(e.Seq); err != nil || !ok || d != e.ChainHead {
			t.Errorf("HeadAt(%d) = %s, %v, %v", e.Seq, d, ok, err)
		}
		if err := db.HoldsHead(Head{Seq: e.Seq, Digest: e.ChainHead}); err != nil {
			t.Errorf("HoldsHead(%d) = %v", e.Seq, err)
		}
	}
	if _, ok, err := db.HeadAt(5); ok || err != nil {
		t.Errorf("HeadAt past the end = %v, %v", ok, err)
	}
}

// A chain_head planted in a stored record is not believed: the head handed
// out is always the digest of the bytes (and the planted bytes break the
// chain anyway).
func TestChainHeadIsDerivedNotRead(t *testing.T) {
	db := openTest(t)
	evs := appendN(t, db, 1)
	forged := digestOf("forged")
	tamper(t, db, func(ev, _ kvBucket) error {
		v := ev.Get(u64(1))
		return ev.Put(u64(1), []byte(strings.Replace(string(v), `{"id"`, `{"chain_head":"`+string(forged)+`","id"`, 1)))
	})
	_ = db.View(func(tx *Tx) error {
		e, _, _ := tx.Event(1)
		if e.ChainHead == forged || e.ChainHead == evs[0].ChainHead {
			t.Errorf("chain_head %s read from the record, not derived", e.ChainHead)
		}
		return nil
	})
}

func TestParseHead(t *testing.T) {
	d := digestOf("x")
	h, err := ParseHead("42:" + string(d))
	if err != nil || h != (Head{Seq: 42, Digest: d}) || h.String() != "42:"+string(d) {
		t.Fatalf("ParseHead = %v, %v", h, err)
	}
	for _, bad := range []string{"", "42", "0:" + string(d), "x:" + string(d), "42:sha256:abc", "42:" + strings.ToUpper(string(d)), "-1:" + string(d)} {
		if _, err := ParseHead(bad); err == nil {
			t.Errorf("ParseHead(%q) accepted", bad)
		}
	}
}

// copyFile copies the store file, as an attacker keeping an old copy would.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// Rollback: the file as it was before a drift, put back. Its chain checks
// out on its own; only the head from the drift's alert shows the log was
// rolled back.
func TestHoldsHeadCatchesRollback(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rugwatch.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, db, 3)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	copyFile(t, path, filepath.Join(dir, "before-drift.db"))

	db, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	drift := appendN(t, db, 1)[0] // what the alert carried
	alert := Head{Seq: drift.Seq, Digest: drift.ChainHead}
	if err := db.HoldsHead(alert); err != nil {
		t.Fatalf("the log that raised the alert does not hold its head: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	copyFile(t, filepath.Join(dir, "before-drift.db"), path)
	db, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n, err := db.VerifyChain(); err != nil || n != 3 {
		t.Fatalf("the old copy's chain is consistent in itself: %d, %v", n, err)
	}
	err = db.HoldsHead(alert)
	var he *HeadError
	if !errors.As(err, &he) || !errors.Is(err, ErrHeadNotHeld) || he.Got != "" || he.Last.Seq != 3 {
		t.Fatalf("HoldsHead on the rolled-back file = %v", err)
	}
	if !strings.Contains(err.Error(), "cut or rolled back") {
		t.Errorf("error %q", err)
	}

	// The rolled-back file grows again: seq 4 exists once more, but it is
	// not the record the alert saw.
	appendN(t, db, 2)
	err = db.HoldsHead(alert)
	if !errors.As(err, &he) || he.Got == "" || he.Got == alert.Digest {
		t.Fatalf("HoldsHead after regrowth = %v", err)
	}
	if !strings.Contains(err.Error(), "rolled back or rewritten") {
		t.Errorf("error %q", err)
	}
}

// cut deletes the log's tail from seq on and resets the bucket sequence and
// the head to the record before it: the edit that passes VerifyChain.
func cut(t *testing.T, db *DB, from uint64) {
	t.Helper()
	tamper(t, db, func(ev, meta kvBucket) error {
		for s := from; s <= ev.Sequence(); s++ {
			if err := ev.Delete(u64(s)); err != nil {
				return err
			}
		}
		if err := ev.SetSequence(from - 1); err != nil {
			return err
		}
		if from == 1 {
			return meta.Delete(keyHead)
		}
		return meta.Put(keyHead, []byte(recordDigest(ev.Get(u64(from-1)))))
	})
}

func TestHoldsHeadCatchesCut(t *testing.T) {
	db := openTest(t)
	evs := appendN(t, db, 5)
	alert := Head{Seq: 4, Digest: evs[3].ChainHead}
	cut(t, db, 4)
	if n, err := db.VerifyChain(); err != nil || n != 3 {
		t.Fatalf("a clean cut passes the chain check alone: %d, %v", n, err)
	}
	if err := db.HoldsHead(alert); !errors.Is(err, ErrHeadNotHeld) {
		t.Fatalf("HoldsHead after a cut = %v", err)
	}
	// A head still in the log is held.
	if err := db.HoldsHead(Head{Seq: 3, Digest: evs[2].ChainHead}); err != nil {
		t.Errorf("HoldsHead(3) = %v", err)
	}
}

// A tracker verifies in full once, then continues from the head it
// remembers; a log cut under it, rolled back or rewritten at that head is
// reported, though the log is consistent in itself.
func TestChainTrackerIncremental(t *testing.T) {
	db := openTest(t)
	tr := NewChainTracker(db)
	if _, ok := tr.Last(); ok {
		t.Fatal("verified before Verify")
	}
	evs := appendN(t, db, 5)
	last, n, err := tr.Verify()
	if err != nil || n != 5 || last.Seq != 5 || last.Digest != evs[4].ChainHead {
		t.Fatalf("first Verify = %v, %d, %v", last, n, err)
	}
	more := appendN(t, db, 2)
	last, n, err = tr.Verify()
	if err != nil || n != 2 || last.Seq != 7 || last.Digest != more[1].ChainHead {
		t.Fatalf("incremental Verify = %v, %d, %v (want only the 2 new records)", last, n, err)
	}
	if _, n, err = tr.Verify(); err != nil || n != 0 {
		t.Fatalf("Verify with nothing new = %d, %v", n, err)
	}

	// An edit among the new records is caught by the incremental walk.
	appendN(t, db, 2)
	tamper(t, db, func(ev, _ kvBucket) error {
		flipByte(t, ev, 8, "message-1")
		return nil
	})
	if _, _, err := tr.Verify(); !errors.Is(err, ErrChainBroken) {
		t.Fatalf("edit of a new record: %v", err)
	}

	db2 := openTest(t)
	tr2 := NewChainTracker(db2)
	appendN(t, db2, 5)
	if _, _, err := tr2.Verify(); err != nil {
		t.Fatal(err)
	}
	cut(t, db2, 4)
	if _, err := db2.VerifyChain(); err != nil {
		t.Fatalf("the cut log alone checks out: %v", err)
	}
	var reports []error
	tr2.Check(func(err error) { reports = append(reports, err) })
	tr2.Check(func(err error) { reports = append(reports, err) })
	if len(reports) != 1 {
		t.Fatalf("Check reported %d times, want once: %v", len(reports), reports)
	}
	// A daemon checks after every poll: the broken log, its end where it
	// was, is not walked again on each.
	walked := tr2.walks
	for range 100 {
		tr2.Check(func(err error) { reports = append(reports, err) })
	}
	if tr2.walks != walked {
		t.Errorf("100 checks of an unmoved broken log walked it %d more times", tr2.walks-walked)
	}
	if tr2.Err() == nil || tr.Err() == nil {
		t.Error("Err() forgets the break the last Verify found")
	}
	var ce *ChainError
	if !errors.As(reports[0], &ce) || ce.Seq != 5 || !strings.Contains(ce.Reason, "no longer holds seq 5") {
		t.Fatalf("report = %v", reports[0])
	}
	if h, _ := tr2.Last(); h.Seq != 5 {
		t.Errorf("a failed Verify moved the remembered head to %v", h)
	}

	// Cut and grown back to the same length: seq 5 is there again, with
	// other bytes.
	appendN(t, db2, 2)
	if _, _, err := tr2.Verify(); !errors.As(err, &ce) || !strings.Contains(ce.Reason, "rewritten or rolled back") {
		t.Fatalf("regrown log: %v", err)
	}
	tr2.Check(func(err error) { reports = append(reports, err) })
	if len(reports) != 2 {
		t.Errorf("a different break was not reported: %v", reports)
	}
}
