package store

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch"
)

// cutAt installs a checkpoint at event e (its envelope a stand-in:
// the store never reads it).
func cutAt(t *testing.T, db *DB, prev CheckpointRecord, e rugwatch.Event) CheckpointRecord {
	t.Helper()
	cp := CheckpointRecord{Seq: e.Seq, Head: e.ChainHead, Envelope: []byte(`{"signed":"elsewhere"}`)}
	if err := db.Update(func(tx *Tx) error { return tx.Cut(prev, cp) }); err != nil {
		t.Fatal(err)
	}
	return cp
}

// The log is cut at 6 of 10 in batches of 4: the chain verifies before
// the deletion, between its batches and after it, from the checkpoint; a
// daemon's tracker that verified up to 5 before the cut follows it; heads
// before the checkpoint are reported pruned, the checkpoint's own and the
// kept ones held.
func TestCutContinuesTheChainFromTheCheckpoint(t *testing.T) {
	db := openTest(t)
	evs := appendN(t, db, 5)
	tracker := NewChainTracker(db)
	if _, _, err := tracker.Verify(); err != nil {
		t.Fatal(err)
	}
	evs = append(evs, appendN(t, db, 5)...)
	cutAt(t, db, CheckpointRecord{}, evs[5])
	for _, want := range []int{4, 2, 0} {
		if _, n, err := db.VerifyChainHead(); err != nil || n != 4 {
			t.Fatalf("verify while pruning: %d checked, %v", n, err)
		}
		n, err := db.PruneBatch(4)
		if err != nil || n != want {
			t.Fatalf("PruneBatch(4) = %d, %v; want %d", n, err, want)
		}
	}
	var left []uint64
	_ = db.View(func(tx *Tx) error {
		all, err := tx.EventsAfter(0, 0)
		for _, e := range all {
			left = append(left, e.Seq)
		}
		return err
	})
	if len(left) != 4 || left[0] != 7 {
		t.Fatalf("left %v, want 7..10", left)
	}
	appendN(t, db, 1)
	if last, _, err := tracker.Verify(); err != nil || last.Seq != 11 {
		t.Fatalf("tracker across the cut: %v, %v", last, err)
	}
	for _, c := range []struct {
		head Head
		want error
	}{
		{Head{Seq: 3, Digest: evs[2].ChainHead}, ErrHeadPruned},
		{Head{Seq: 6, Digest: evs[5].ChainHead}, nil},
		{Head{Seq: 6, Digest: evs[4].ChainHead}, ErrHeadNotHeld},
		{Head{Seq: 8, Digest: evs[7].ChainHead}, nil},
		{Head{Seq: 8, Digest: evs[6].ChainHead}, ErrHeadNotHeld},
	} {
		if err := db.HoldsHead(c.head); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("HoldsHead(%s) = %v, want %v", c.head, err, c.want)
		}
	}
}

// Cut refuses what would make the log lie: the last record, a record
// that no longer hashes to the head signed for it, a checkpoint behind
// the current one, and a current one that moved since the caller read it.
func TestCutRefuses(t *testing.T) {
	db := openTest(t)
	evs := appendN(t, db, 5)
	cut := func(prev CheckpointRecord, seq uint64, head rugwatch.Digest) error {
		return db.Update(func(tx *Tx) error {
			return tx.Cut(prev, CheckpointRecord{Seq: seq, Head: head, Envelope: []byte("{}")})
		})
	}
	if err := cut(CheckpointRecord{}, 5, evs[4].ChainHead); err == nil || !strings.Contains(err.Error(), "last record") {
		t.Errorf("cut at the last record: %v", err)
	}
	if err := cut(CheckpointRecord{}, 3, evs[1].ChainHead); err == nil {
		t.Error("cut with the wrong head succeeded")
	}
	cp := cutAt(t, db, CheckpointRecord{}, evs[2])
	if err := cut(cp, 2, evs[1].ChainHead); err == nil {
		t.Error("cut behind the checkpoint succeeded")
	}
	if err := cut(CheckpointRecord{}, 4, evs[3].ChainHead); err == nil || !strings.Contains(err.Error(), "moved") {
		t.Errorf("cut from a stale checkpoint: %v", err)
	}
}

// CutBefore picks the newest event before the horizon, never the last.
func TestCutBefore(t *testing.T) {
	db := openTest(t) // one second per event from 10:00:01
	evs := appendN(t, db, 5)
	for _, c := range []struct {
		horizon time.Time
		want    uint64
	}{
		{evs[0].OccurredAt, 0},
		{evs[2].OccurredAt, 2},
		{evs[4].OccurredAt.Add(time.Hour), 4},
	} {
		var got Head
		_ = db.View(func(tx *Tx) error {
			got, _, _ = tx.CutBefore(c.horizon)
			return nil
		})
		if got.Seq != c.want || (c.want > 0 && got.Digest != evs[c.want-1].ChainHead) {
			t.Errorf("CutBefore(%s) = %s, want seq %d", c.horizon, got, c.want)
		}
	}
}

// An alert still pending on an old event holds the cut before it.
func TestCutBeforeKeepsEventsWithPendingAlerts(t *testing.T) {
	db := openTest(t)
	evs := appendN(t, db, 5)
	if err := db.Update(func(tx *Tx) error {
		return tx.EnqueueDelivery(Delivery{ID: DeliveryID(evs[2].ID, "log"), EventID: evs[2].ID, EventSeq: 3, Channel: "log",
			State: DeliveryPending, CreatedAt: evs[2].OccurredAt})
	}); err != nil {
		t.Fatal(err)
	}
	var got Head
	_ = db.View(func(tx *Tx) error {
		got, _, _ = tx.CutBefore(evs[4].OccurredAt.Add(time.Hour))
		return nil
	})
	if got.Seq != 2 {
		t.Errorf("CutBefore with an alert pending on event 3 = %s, want seq 2", got)
	}
}
