package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/rugwatch/rugwatch"
)

// ErrChainBroken is wrapped by every *ChainError.
var ErrChainBroken = errors.New("event chain broken")

// ChainError says where VerifyChain found the event log inconsistent.
type ChainError struct {
	// Seq is the event whose stored record fails to check out: it was
	// edited, is missing, or is out of place.
	Seq    uint64
	Reason string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("event chain broken at seq %d: %s", e.Seq, e.Reason)
}

func (e *ChainError) Unwrap() error { return ErrChainBroken }

// recordDigest is the chain link: sha256 over the record's stored bytes.
func recordDigest(b []byte) rugwatch.Digest {
	sum := sha256.Sum256(b)
	return rugwatch.Digest("sha256:" + hex.EncodeToString(sum[:]))
}

// AppendEvent appends e to the log. It assigns e.Seq, e.ID if empty,
// e.OccurredAt if zero and e.Prev (the meta head: the digest of the previous
// record as stored), stores the JSON once and makes its digest the new head.
// e is updated in place so the caller sees what was stored.
func (t *Tx) AppendEvent(e *rugwatch.Event) error {
	b, err := t.bucket(bucketEvents)
	if err != nil {
		return err
	}
	meta, err := t.bucket(bucketMeta)
	if err != nil {
		return err
	}
	if e.Type == "" {
		return errors.New("append event: empty type")
	}
	seq, err := b.NextSequence()
	if err != nil {
		return fmt.Errorf("append event: next sequence: %w", err)
	}
	// Prev comes from the head, not from the last record, so a record
	// dropped from the end stays detectable after later appends.
	prev := rugwatch.Digest(meta.Get(keyHead))
	ev := *e
	ev.Seq = seq
	ev.Prev = prev
	if ev.OccurredAt.IsZero() {
		ev.OccurredAt = t.db.now().UTC()
	}
	if ev.ID == "" {
		ev.ID = "evt_" + t.db.ids.next(ev.OccurredAt)
	}
	v, err := encode(ev)
	if err != nil {
		return fmt.Errorf("encode event %d: %w", seq, err)
	}
	if err := b.Put(u64(seq), v); err != nil {
		return fmt.Errorf("put event %d: %w", seq, err)
	}
	if err := meta.Put(keyHead, []byte(recordDigest(v))); err != nil {
		return fmt.Errorf("put event head: %w", err)
	}
	*e = ev
	return nil
}

// Events returns up to limit events (all if limit <= 0) of server (every
// server if ""), newest first.
func (t *Tx) Events(server string, limit int) ([]rugwatch.Event, error) {
	b, err := t.bucket(bucketEvents)
	if err != nil {
		return nil, err
	}
	var out []rugwatch.Event
	c := b.Cursor()
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		if limit > 0 && len(out) >= limit {
			break
		}
		var e rugwatch.Event
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("decode event %d: %w", binary.BigEndian.Uint64(k), err)
		}
		if server == "" || e.Server == server {
			out = append(out, e)
		}
	}
	return out, nil
}

// EventsAfter returns up to limit events (all if limit <= 0) with Seq >
// seq, oldest first: the feed a dispatcher resumes from.
func (t *Tx) EventsAfter(seq uint64, limit int) ([]rugwatch.Event, error) {
	b, err := t.bucket(bucketEvents)
	if err != nil {
		return nil, err
	}
	if seq == math.MaxUint64 {
		return nil, nil
	}
	var out []rugwatch.Event
	c := b.Cursor()
	for k, v := c.Seek(u64(seq + 1)); k != nil; k, v = c.Next() {
		if limit > 0 && len(out) >= limit {
			break
		}
		var e rugwatch.Event
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("decode event %d: %w", binary.BigEndian.Uint64(k), err)
		}
		out = append(out, e)
	}
	return out, nil
}

// LastSeq is the seq of the last appended event, 0 if none.
func (t *Tx) LastSeq() (uint64, error) {
	b, err := t.bucket(bucketEvents)
	if err != nil {
		return 0, err
	}
	return b.Sequence(), nil
}

// VerifyChain recomputes the event chain: seqs run 1, 2, 3… with keys to
// match, each record's Prev is the digest of the record before it exactly as
// stored, and the meta head is the digest of the last record. It returns how
// many records checked out and, on the first break, a *ChainError naming the
// seq.
func (db *DB) VerifyChain() (checked int, err error) {
	err = db.View(func(t *Tx) error {
		b, err := t.bucket(bucketEvents)
		if err != nil {
			return err
		}
		meta, err := t.bucket(bucketMeta)
		if err != nil {
			return err
		}
		var (
			want    uint64 = 1
			prev    rugwatch.Digest
			prevSeq uint64
		)
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) != 8 {
				return &ChainError{Seq: want, Reason: fmt.Sprintf("stray key %x in the event log", k)}
			}
			key := binary.BigEndian.Uint64(k)
			if key != want {
				return &ChainError{Seq: want, Reason: fmt.Sprintf("record missing (next stored record is %d)", key)}
			}
			var link struct {
				Seq  uint64          `json:"seq"`
				Prev rugwatch.Digest `json:"prev"`
			}
			if err := json.Unmarshal(v, &link); err != nil {
				return &ChainError{Seq: key, Reason: fmt.Sprintf("record is not valid JSON: %v", err)}
			}
			if link.Seq != key {
				return &ChainError{Seq: key, Reason: fmt.Sprintf("record says seq %d", link.Seq)}
			}
			if link.Prev != prev {
				if key == 1 {
					return &ChainError{Seq: 1, Reason: fmt.Sprintf("first record has prev %q, want none", link.Prev)}
				}
				// The link recorded by this event no longer matches the
				// bytes before it: the earlier record was altered (or
				// this record's prev was).
				return &ChainError{Seq: prevSeq, Reason: fmt.Sprintf(
					"stored record hashes to %s but event %d recorded prev %s", prev, key, link.Prev)}
			}
			prev = recordDigest(v)
			prevSeq = key
			checked++
			want++
		}
		head := rugwatch.Digest(meta.Get(keyHead))
		last := want - 1
		if seq := b.Sequence(); seq > last {
			missing := fmt.Sprintf("record %d", seq)
			if seq > last+1 {
				missing = fmt.Sprintf("records %d..%d", last+1, seq)
			}
			return &ChainError{Seq: last + 1, Reason: fmt.Sprintf(
				"%s missing from the end (log sequence is %d, head %s)", missing, seq, head)}
		}
		if head != prev {
			if last == 0 {
				return &ChainError{Seq: 1, Reason: fmt.Sprintf("log is empty but head is %s", head)}
			}
			return &ChainError{Seq: last, Reason: fmt.Sprintf(
				"last stored record hashes to %s but head is %s", prev, head)}
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrChainBroken) {
		err = fmt.Errorf("verify event chain: %w", err)
	}
	return checked, err
}
