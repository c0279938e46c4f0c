package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

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
	// Keys only ever grow: pages split full rather than half full (bbolt's
	// default), or the log takes twice the disk it needs.
	b.fillPercent(1.0)
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
	// The chain head after this record is the digest of its bytes, so it
	// cannot be among them; it is derived on every read instead.
	ev.ChainHead = ""
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
	head := recordDigest(v)
	if err := meta.Put(keyHead, []byte(head)); err != nil {
		return fmt.Errorf("put event head: %w", err)
	}
	ev.ChainHead = head
	*e = ev
	return nil
}

// decodeEvent reads a stored record and sets its ChainHead, the digest of
// exactly these bytes. A chain_head written into the record itself (it is
// never stored by AppendEvent) is overwritten, not believed.
func decodeEvent(v []byte) (rugwatch.Event, error) {
	var e rugwatch.Event
	if err := json.Unmarshal(v, &e); err != nil {
		return rugwatch.Event{}, err
	}
	e.ChainHead = recordDigest(v)
	return e, nil
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
		e, err := decodeEvent(v)
		if err != nil {
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
		e, err := decodeEvent(v)
		if err != nil {
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

// Head is one point of the event log: the seq of a record and the chain
// digest after it (the record's ChainHead). The zero Head is the empty log.
type Head struct {
	Seq    uint64          `json:"seq"`
	Digest rugwatch.Digest `json:"chain_head"`
}

// String is the SEQ:HEAD form `rugwatch verify --head` takes.
func (h Head) String() string { return strconv.FormatUint(h.Seq, 10) + ":" + string(h.Digest) }

// ParseHead reads SEQ:HEAD, the seq and chain_head of an alert, as in
// "42:sha256:<64 hex>".
func ParseHead(s string) (Head, error) {
	seqText, digest, ok := strings.Cut(s, ":")
	if !ok {
		return Head{}, fmt.Errorf("head %q is not SEQ:HEAD (e.g. 42:sha256:<64 hex>, the seq and chain_head of an alert)", s)
	}
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil || seq == 0 {
		return Head{}, fmt.Errorf("head %q: seq %q is not a number from 1", s, seqText)
	}
	h := Head{Seq: seq, Digest: rugwatch.Digest(digest)}
	if !h.Digest.Valid() {
		return Head{}, fmt.Errorf("head %q: %q is not sha256:<64 hex>", s, digest)
	}
	return h, nil
}

// ErrHeadNotHeld is wrapped by every *HeadError.
var ErrHeadNotHeld = errors.New("the event log does not hold that head")

// HeadError says how the log differs from a head someone saw in an alert.
type HeadError struct {
	Want Head
	// Got is the chain digest the log has at Want.Seq; empty when it has
	// no record there.
	Got rugwatch.Digest
	// Last is where the log ends now.
	Last Head
}

func (e *HeadError) Error() string {
	if e.Got == "" {
		return fmt.Sprintf("the event log does not hold head %s: it ends at seq %d (head %s), so it was cut or rolled back",
			e.Want, e.Last.Seq, e.Last.Digest)
	}
	return fmt.Sprintf("the event log does not hold head %s: its record %d hashes to %s, so the log was rolled back or rewritten from there (it ends at seq %d)",
		e.Want, e.Want.Seq, e.Got, e.Last.Seq)
}

func (e *HeadError) Unwrap() error { return ErrHeadNotHeld }

// HeadAt is the chain digest after the record with seq, as stored; false
// when the log holds no such record.
func (db *DB) HeadAt(seq uint64) (rugwatch.Digest, bool, error) {
	var (
		d  rugwatch.Digest
		ok bool
	)
	err := db.View(func(t *Tx) error {
		b, err := t.bucket(bucketEvents)
		if err != nil {
			return err
		}
		if v := b.Get(u64(seq)); v != nil {
			d, ok = recordDigest(v), true
		}
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("read event head at seq %d: %w", seq, err)
	}
	return d, ok, nil
}

// HoldsHead reports, as a *HeadError, a log that does not hold h: the
// record h.Seq is gone (the log was cut or an older copy put back) or hashes
// differently (rewritten, or cut and grown again). Because every record
// carries its predecessor's digest, holding h also means holding every
// record before it unchanged, as far as VerifyChain confirms the links; a
// caller checking an alert's head runs both. A head older than the
// checkpoint, whose record retention cut, is a *HeadPrunedError instead.
func (db *DB) HoldsHead(h Head) error {
	var (
		he     *HeadError
		pruned *HeadPrunedError
	)
	err := db.View(func(t *Tx) error {
		b, err := t.bucket(bucketEvents)
		if err != nil {
			return err
		}
		meta, err := t.bucket(bucketMeta)
		if err != nil {
			return err
		}
		var got rugwatch.Digest
		if v := b.Get(u64(h.Seq)); v != nil {
			got = recordDigest(v)
		}
		cp, cut, err := readCheckpoint(meta)
		if err != nil {
			return err
		}
		if got == "" && cut && h.Seq == cp.Seq {
			got = cp.Head // the record is cut; the checkpoint names its head
		}
		if got == h.Digest {
			return nil
		}
		if got == "" && cut && h.Seq < cp.Seq {
			pruned = &HeadPrunedError{Want: h, Checkpoint: cp.ChainHead()}
			return nil
		}
		last := Head{Digest: rugwatch.Digest(meta.Get(keyHead))}
		if k, _ := b.Cursor().Last(); len(k) == 8 {
			last.Seq = binary.BigEndian.Uint64(k)
		}
		he = &HeadError{Want: h, Got: got, Last: last}
		return nil
	})
	if err != nil {
		return fmt.Errorf("check event head %s: %w", h, err)
	}
	if pruned != nil {
		return pruned
	}
	if he != nil {
		return he
	}
	return nil
}

// VerifyChain recomputes the event chain: seqs run 1, 2, 3… (or on from
// the checkpoint, once retention cut the log) with keys to match, each
// record's Prev is the digest of the record before it exactly as stored
// (the first kept one's, the checkpoint's head), and the meta head is the
// digest of the last record. The checkpoint's signature is the caller's
// to check (see Checkpoint). It returns how
// many records checked out and, on the first break, a *ChainError naming the
// seq.
//
// A chain that checks out can still be a cut one (its tail deleted and the
// head reset to match) or an older copy of the file: only a head recorded
// elsewhere (an alert's seq and chain_head, see HoldsHead) or one remembered
// by a running daemon (ChainTracker) tells those apart.
func (db *DB) VerifyChain() (checked int, err error) {
	_, checked, err = db.VerifyChainHead()
	return checked, err
}

// VerifyChainHead is VerifyChain that also returns the last record's seq
// and chain digest.
func (db *DB) VerifyChainHead() (last Head, checked int, err error) {
	return db.verifyFrom(Head{})
}

// verifyFrom checks the chain from a head verified before (the zero Head:
// from the start): the record from.Seq must still hash to from.Digest, and
// every later record must link on from it up to the meta head.
func (db *DB) verifyFrom(from Head) (last Head, checked int, err error) {
	err = db.View(func(t *Tx) error {
		b, err := t.bucket(bucketEvents)
		if err != nil {
			return err
		}
		meta, err := t.bucket(bucketMeta)
		if err != nil {
			return err
		}
		last, checked, err = walkChain(b, meta, from)
		return err
	})
	if err != nil && !errors.Is(err, ErrChainBroken) {
		err = fmt.Errorf("verify event chain: %w", err)
	}
	return last, checked, err
}

func walkChain(b, meta kvBucket, from Head) (Head, int, error) {
	from, anchored, err := fromCheckpoint(b, meta, from)
	if err != nil {
		return Head{}, 0, err
	}
	var (
		want    = from.Seq + 1
		prev    = from.Digest
		prevSeq = from.Seq
		checked int
	)
	c := b.Cursor()
	k, v := c.First()
	if anchored {
		// Records up to the checkpoint are cut, or being cut: no part of
		// the chain any more.
		k, v = c.Seek(u64(want))
	} else if from.Seq > 0 {
		// What was verified before must still be there, byte for byte: a
		// log whose head moved backwards under a running daemon (its tail
		// cut, or an older copy of the file put back) fails here even if
		// it is consistent in itself.
		old := b.Get(u64(from.Seq))
		if old == nil {
			end := b.Sequence()
			if lk, _ := c.Last(); len(lk) == 8 {
				end = binary.BigEndian.Uint64(lk)
			}
			return from, 0, &ChainError{Seq: from.Seq, Reason: fmt.Sprintf(
				"the log no longer holds seq %d, verified before with head %s; it now ends at seq %d: cut or rolled back",
				from.Seq, from.Digest, end)}
		}
		if got := recordDigest(old); got != from.Digest {
			return from, 0, &ChainError{Seq: from.Seq, Reason: fmt.Sprintf(
				"record %d hashes to %s but was verified before with head %s: rewritten or rolled back",
				from.Seq, got, from.Digest)}
		}
		k, v = c.Seek(u64(want))
	}
	for ; k != nil; k, v = c.Next() {
		if len(k) != 8 {
			return Head{}, checked, &ChainError{Seq: want, Reason: fmt.Sprintf("stray key %x in the event log", k)}
		}
		key := binary.BigEndian.Uint64(k)
		if key != want {
			return Head{}, checked, &ChainError{Seq: want, Reason: fmt.Sprintf("record missing (next stored record is %d)", key)}
		}
		var link struct {
			Seq  uint64          `json:"seq"`
			Prev rugwatch.Digest `json:"prev"`
		}
		if err := json.Unmarshal(v, &link); err != nil {
			return Head{}, checked, &ChainError{Seq: key, Reason: fmt.Sprintf("record is not valid JSON: %v", err)}
		}
		if link.Seq != key {
			return Head{}, checked, &ChainError{Seq: key, Reason: fmt.Sprintf("record says seq %d", link.Seq)}
		}
		if link.Prev != prev {
			if key == 1 {
				return Head{}, checked, &ChainError{Seq: 1, Reason: fmt.Sprintf("first record has prev %q, want none", link.Prev)}
			}
			if anchored && prevSeq == from.Seq {
				return Head{}, checked, &ChainError{Seq: prevSeq, Reason: fmt.Sprintf(
					"the checkpoint names head %s at seq %d but event %d recorded prev %s: the checkpoint or the event was altered",
					prev, prevSeq, key, link.Prev)}
			}
			// The link recorded by this event no longer matches the
			// bytes before it: the earlier record was altered (or this
			// record's prev was).
			return Head{}, checked, &ChainError{Seq: prevSeq, Reason: fmt.Sprintf(
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
		return Head{}, checked, &ChainError{Seq: last + 1, Reason: fmt.Sprintf(
			"%s missing from the end (log sequence is %d, head %s)", missing, seq, head)}
	}
	if head != prev {
		if last == 0 {
			return Head{}, checked, &ChainError{Seq: 1, Reason: fmt.Sprintf("log is empty but head is %s", head)}
		}
		return Head{}, checked, &ChainError{Seq: last, Reason: fmt.Sprintf(
			"last stored record hashes to %s but head is %s", prev, head)}
	}
	return Head{Seq: last, Digest: prev}, checked, nil
}

// fromCheckpoint moves a walk's start to the checkpoint when the log
// was cut at or past from: the chain continues from the checkpoint's head
// (anchored). A record verified before that is still there must still
// hash as it did.
func fromCheckpoint(b, meta kvBucket, from Head) (Head, bool, error) {
	cp, ok, err := readCheckpoint(meta)
	if err != nil {
		return Head{}, false, &ChainError{Seq: from.Seq + 1, Reason: err.Error()}
	}
	if !ok || from.Seq > cp.Seq {
		return from, false, nil
	}
	if from.Seq > 0 {
		if old := b.Get(u64(from.Seq)); old != nil && recordDigest(old) != from.Digest {
			return Head{}, false, &ChainError{Seq: from.Seq, Reason: fmt.Sprintf(
				"record %d hashes to %s but was verified before with head %s: rewritten or rolled back", from.Seq, recordDigest(old), from.Digest)}
		}
		if from.Seq == cp.Seq && from.Digest != cp.Head {
			return Head{}, false, &ChainError{Seq: from.Seq, Reason: fmt.Sprintf(
				"the checkpoint names head %s at seq %d, verified before as %s", cp.Head, cp.Seq, from.Digest)}
		}
	}
	return cp.ChainHead(), true, nil
}

// ChainTracker verifies the event log once in full and from then on only
// what was appended since, continuing from the head it verified last; it
// also catches a log whose head moved backwards under it (cut, or an older
// copy of the file put back), which a full VerifyChain of that log alone
// cannot. A running daemon keeps one for its lifetime. Safe for concurrent
// use.
type ChainTracker struct {
	db *DB

	mu       sync.Mutex
	last     Head
	verified bool
	err      error  // of the newest Verify
	reported string // the last error handed to Check's report, "" when none
	// failedOn is the log's end when the newest Verify failed, and
	// failedAt when: a failed walk leaves the head where it was, so the
	// next would walk the whole log again, and Check runs after every
	// poll.
	failedOn logEnd
	failedAt time.Time
	walks    int // Verify's walks, for tests
}

// chainRecheck is how long Check trusts a failed walk of a log whose end
// has not moved: a mend that leaves the end as it was (an edited record
// put back) is seen within it, anything appended at once.
const chainRecheck = time.Minute

// logEnd is where the event log ends: its last seq and stored head.
type logEnd struct {
	seq  uint64
	head string
}

func (db *DB) logEnd() (logEnd, error) {
	var e logEnd
	err := db.View(func(t *Tx) error {
		b, err := t.bucket(bucketEvents)
		if err != nil {
			return err
		}
		meta, err := t.bucket(bucketMeta)
		if err != nil {
			return err
		}
		e = logEnd{seq: b.Sequence(), head: string(meta.Get(keyHead))}
		return nil
	})
	return e, err
}

// NewChainTracker tracks db's chain; nothing is verified until Verify.
func NewChainTracker(db *DB) *ChainTracker { return &ChainTracker{db: db} }

// Verify checks the whole chain the first time and, after a success, only
// from the last verified head on. It returns the new head and how many
// records it checked. After a failure the remembered head stays where it
// was, so the break is reported again on every call until it is mended.
func (c *ChainTracker) Verify() (Head, int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	from := Head{}
	if c.verified {
		from = c.last
	}
	end, endErr := c.db.logEnd()
	c.walks++
	last, n, err := c.db.verifyFrom(from)
	c.err = err
	if err != nil {
		c.failedOn, c.failedAt = end, time.Now()
		if endErr != nil {
			c.failedAt = time.Time{} // unknown end: walk again next time
		}
		return c.last, n, err
	}
	c.last, c.verified = last, true
	return last, n, nil
}

// Err is the break the newest Verify found; nil if it checked out or none
// ran yet. A daemon's readiness answers with it.
func (c *ChainTracker) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Last is the head verified last; false before the first success.
func (c *ChainTracker) Last() (Head, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last, c.verified
}

// Check runs Verify and hands report a break only when it differs from
// the last one reported, so a daemon that checks after every poll logs a
// broken chain once rather than on every poll. A chain that checks out
// again clears the memory.
func (c *ChainTracker) Check(report func(error)) {
	if c.stillBroken() {
		return // reported already; nothing to walk again
	}
	_, _, err := c.Verify()
	c.mu.Lock()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	fresh := msg != "" && msg != c.reported
	c.reported = msg
	c.mu.Unlock()
	if fresh && report != nil {
		report(err)
	}
}

// stillBroken reports whether the newest Verify failed, recently, with
// the break Check reported, on a log whose end has not moved since.
func (c *ChainTracker) stillBroken() bool {
	c.mu.Lock()
	// Only a break Check has reported: one a Verify found since is news.
	failed := c.err != nil && c.err.Error() == c.reported
	on, at := c.failedOn, c.failedAt
	c.mu.Unlock()
	if !failed || at.IsZero() || time.Since(at) >= chainRecheck {
		return false
	}
	end, err := c.db.logEnd()
	return err == nil && end == on
}

// Transition is the part of an event that says which tool (or the
// instructions, Tool "") it moved: what a replay check needs, decoded
// without the rest of the record.
type Transition struct {
	Seq            uint64             `json:"seq"`
	Type           rugwatch.EventType `json:"type"`
	Server         string             `json:"server"`
	Tool           string             `json:"tool"`
	ApprovedDigest rugwatch.Digest    `json:"approved_digest"`
}

// Transitions calls fn for every event with Seq > after, oldest first,
// with only its Transition fields decoded.
func (t *Tx) Transitions(after uint64, fn func(Transition) error) error {
	b, err := t.bucket(bucketEvents)
	if err != nil {
		return err
	}
	if after == math.MaxUint64 {
		return nil
	}
	c := b.Cursor()
	for k, v := c.Seek(u64(after + 1)); k != nil; k, v = c.Next() {
		var tr Transition
		if err := json.Unmarshal(v, &tr); err != nil {
			return fmt.Errorf("decode event %d: %w", binary.BigEndian.Uint64(k), err)
		}
		if err := fn(tr); err != nil {
			return err
		}
	}
	return nil
}

// LastApprovedSeq is the seq of the newest tool.approved event that
// approved digest for server's tool (tool "" for the instructions), 0 if
// none. It reads the log backwards and is meant for the rare approval
// signed before approvals named the seq they resolve.
func (t *Tx) LastApprovedSeq(server, tool string, digest rugwatch.Digest) (uint64, error) {
	b, err := t.bucket(bucketEvents)
	if err != nil {
		return 0, err
	}
	c := b.Cursor()
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		// A cheap byte test first: most records are about something else.
		if !bytes.Contains(v, []byte(rugwatch.EventToolApproved)) {
			continue
		}
		var tr Transition
		if err := json.Unmarshal(v, &tr); err != nil {
			return 0, fmt.Errorf("decode event %d: %w", binary.BigEndian.Uint64(k), err)
		}
		if tr.Type == rugwatch.EventToolApproved && tr.Server == server && tr.Tool == tool && tr.ApprovedDigest == digest {
			return tr.Seq, nil
		}
	}
	return 0, nil
}
