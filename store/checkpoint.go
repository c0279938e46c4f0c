package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rugwatch/rugwatch"
)

// Retention. The oldest events are cut from the log behind a checkpoint:
// meta "checkpoint" names the seq and chain head of the last record cut
// and holds, verbatim, the envelope a key signed over them (the monitor
// signs and verifies it; the store never looks inside). The chain walk
// starts from the checkpoint instead of from seq 1: the first record kept
// must carry its head as prev, so a kept record edited or dropped, or a
// checkpoint whose head was changed, still breaks the chain. Cutting is
// two steps: Cut writes the checkpoint, then PruneBatch deletes the
// records up to it a bounded batch per write transaction, so the write
// lock is never held for long; records up to the checkpoint that are
// still there are no part of the chain any more.

// keyCheckpoint is meta's key of the newest CheckpointRecord.
var keyCheckpoint = []byte("checkpoint")

// CheckpointRecord is a checkpoint as stored: where the kept chain
// starts, and the signed envelope that says so, exactly as signed.
type CheckpointRecord struct {
	Seq      uint64          `json:"seq"`
	Head     rugwatch.Digest `json:"chain_head"`
	Envelope []byte          `json:"envelope"`
}

// ChainHead is the point of the chain the checkpoint names.
func (c CheckpointRecord) ChainHead() Head { return Head{Seq: c.Seq, Digest: c.Head} }

// readCheckpoint decodes meta's checkpoint; false when there is none.
func readCheckpoint(meta kvBucket) (CheckpointRecord, bool, error) {
	v := meta.Get(keyCheckpoint)
	if v == nil {
		return CheckpointRecord{}, false, nil
	}
	var cp CheckpointRecord
	if err := json.Unmarshal(v, &cp); err != nil {
		return CheckpointRecord{}, false, fmt.Errorf("decode checkpoint: %w", err)
	}
	if cp.Seq == 0 || !cp.Head.Valid() {
		return CheckpointRecord{}, false, fmt.Errorf("checkpoint names seq %d and head %q", cp.Seq, cp.Head)
	}
	return cp, true, nil
}

// Checkpoint returns the newest checkpoint; false when the log was never
// cut.
func (t *Tx) Checkpoint() (CheckpointRecord, bool, error) {
	meta, err := t.bucket(bucketMeta)
	if err != nil {
		return CheckpointRecord{}, false, err
	}
	return readCheckpoint(meta)
}

// CutBefore is the newest event that occurred before horizon and may be
// cut: never the last record (the head stays a record), never one at or
// before the current checkpoint, and none from the oldest event with an
// alert still pending on (the dispatcher reads the event to send it).
// false when there is none.
func (t *Tx) CutBefore(horizon time.Time) (Head, bool, error) {
	b, err := t.bucket(bucketEvents)
	if err != nil {
		return Head{}, false, err
	}
	meta, err := t.bucket(bucketMeta)
	if err != nil {
		return Head{}, false, err
	}
	cp, _, err := readCheckpoint(meta)
	if err != nil {
		return Head{}, false, err
	}
	pending, err := t.oldestPendingSeq()
	if err != nil {
		return Head{}, false, err
	}
	c := b.Cursor()
	last, _ := c.Last()
	var cut Head
	for k, v := c.Seek(u64(cp.Seq + 1)); k != nil && !equalKey(k, last); k, v = c.Next() {
		if pending > 0 && binary.BigEndian.Uint64(k) >= pending {
			break
		}
		var at struct {
			OccurredAt time.Time `json:"occurred_at"`
		}
		if err := json.Unmarshal(v, &at); err != nil {
			return Head{}, false, fmt.Errorf("decode event %d: %w", binary.BigEndian.Uint64(k), err)
		}
		if !at.OccurredAt.Before(horizon) {
			break
		}
		cut = Head{Seq: binary.BigEndian.Uint64(k), Digest: recordDigest(v)}
	}
	return cut, cut.Seq > 0, nil
}

func equalKey(a, b []byte) bool { return string(a) == string(b) }

// oldestPendingSeq is the smallest event seq a pending delivery is for, 0
// when none is pending.
func (t *Tx) oldestPendingSeq() (uint64, error) {
	deliveries, due, _, err := t.outbox(false)
	if err != nil || due == nil {
		return 0, err
	}
	var oldest uint64
	c := due.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		d, err := indexedDelivery(deliveries, "due", k)
		if err != nil {
			return 0, err
		}
		if oldest == 0 || d.EventSeq < oldest {
			oldest = d.EventSeq
		}
	}
	return oldest, nil
}

// Cut installs cp as the checkpoint the chain continues from. The record
// cp.Seq must still hash to cp.Head, must not be the last record, and
// must be past the current checkpoint, which must be prev (the zero
// record for none): a checkpoint signed over what the caller verified is
// installed only if nothing moved since. The records up to it are
// deleted by PruneBatch.
func (t *Tx) Cut(prev, cp CheckpointRecord) error {
	b, err := t.bucket(bucketEvents)
	if err != nil {
		return err
	}
	meta, err := t.bucket(bucketMeta)
	if err != nil {
		return err
	}
	cur, _, err := readCheckpoint(meta)
	if err != nil {
		return err
	}
	if cur.Seq != prev.Seq || cur.Head != prev.Head {
		return fmt.Errorf("cut event log at seq %d: the checkpoint moved to seq %d meanwhile", cp.Seq, cur.Seq)
	}
	if cp.Seq <= cur.Seq {
		return fmt.Errorf("cut event log at seq %d: already cut at seq %d", cp.Seq, cur.Seq)
	}
	v := b.Get(u64(cp.Seq))
	if v == nil || recordDigest(v) != cp.Head {
		return fmt.Errorf("cut event log at seq %d: the record is gone or no longer hashes to %s", cp.Seq, cp.Head)
	}
	if last, _ := b.Cursor().Last(); equalKey(last, u64(cp.Seq)) {
		return fmt.Errorf("cut event log at seq %d: that is the last record, which is kept", cp.Seq)
	}
	enc, err := encode(cp)
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	return meta.Put(keyCheckpoint, enc)
}

// PruneBatch deletes up to limit event records at or before the
// checkpoint, oldest first, in one write transaction, and reports how
// many it deleted: 0 when nothing is left to delete.
func (db *DB) PruneBatch(limit int) (int, error) {
	var n int
	err := db.Update(func(t *Tx) error {
		b, err := t.bucket(bucketEvents)
		if err != nil {
			return err
		}
		meta, err := t.bucket(bucketMeta)
		if err != nil {
			return err
		}
		cp, ok, err := readCheckpoint(meta)
		if err != nil || !ok {
			return err
		}
		var keys [][]byte
		c := b.Cursor()
		for k, _ := c.First(); k != nil && len(keys) < limit; k, _ = c.Next() {
			if len(k) != 8 {
				continue // not a record: left for the chain walk to report
			}
			if binary.BigEndian.Uint64(k) > cp.Seq {
				break
			}
			keys = append(keys, append([]byte(nil), k...))
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return fmt.Errorf("delete event %x: %w", k, err)
			}
		}
		n = len(keys)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune event log: %w", err)
	}
	return n, nil
}

// ErrHeadPruned is wrapped by every *HeadPrunedError.
var ErrHeadPruned = errors.New("that head was pruned by retention")

// HeadPrunedError says a head someone saw is older than the checkpoint:
// its record was cut by retention, so it can no longer be compared, only
// placed before a checkpoint whose signature the caller checks.
type HeadPrunedError struct {
	Want       Head
	Checkpoint Head
}

func (e *HeadPrunedError) Error() string {
	return fmt.Sprintf("head %s was pruned by retention: the log starts after the checkpoint at seq %d (head %s)",
		e.Want, e.Checkpoint.Seq, e.Checkpoint.Digest)
}

func (e *HeadPrunedError) Unwrap() error { return ErrHeadPruned }
