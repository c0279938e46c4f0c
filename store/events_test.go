package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch"
)

func appendN(t *testing.T, db *DB, n int) []rugwatch.Event {
	t.Helper()
	var out []rugwatch.Event
	if err := db.Update(func(tx *Tx) error {
		for i := range n {
			server := "alpha"
			if i%2 == 1 {
				server = "beta"
			}
			e := rugwatch.Event{
				Type:     rugwatch.EventToolDrifted,
				Severity: rugwatch.SeverityCritical,
				Server:   server,
				Tool:     "echo",
				Message:  fmt.Sprintf("message-%d <&>", i+1),
			}
			if err := tx.AppendEvent(&e); err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

var idPattern = regexp.MustCompile(`^evt_[0-9A-HJKMNP-TV-Z]{26}$`)

func TestAppendEventAssigns(t *testing.T) {
	db := openTest(t)
	evs := appendN(t, db, 3)
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Errorf("event %d: Seq %d", i, e.Seq)
		}
		if !idPattern.MatchString(e.ID) {
			t.Errorf("event %d: ID %q", i, e.ID)
		}
		if i > 0 && e.ID <= evs[i-1].ID {
			t.Errorf("ids not increasing: %s then %s", evs[i-1].ID, e.ID)
		}
		if e.OccurredAt.IsZero() || e.OccurredAt.Location() != time.UTC {
			t.Errorf("event %d: OccurredAt %v", i, e.OccurredAt)
		}
	}
	if evs[0].Prev != "" {
		t.Errorf("first Prev = %q", evs[0].Prev)
	}
	// Prev is the sha256 of the previous record's stored bytes.
	_ = db.View(func(tx *Tx) error {
		b := tx.tx.Bucket(bucketEvents)
		for i := 1; i < len(evs); i++ {
			sum := sha256.Sum256(b.Get(u64(uint64(i))))
			if want := rugwatch.Digest("sha256:" + hex.EncodeToString(sum[:])); evs[i].Prev != want || !want.Valid() {
				t.Errorf("event %d Prev %s, want %s", i+1, evs[i].Prev, want)
			}
		}
		sum := sha256.Sum256(b.Get(u64(3)))
		if head := string(tx.tx.Bucket(bucketMeta).Get(keyHead)); head != "sha256:"+hex.EncodeToString(sum[:]) {
			t.Errorf("head %s", head)
		}
		if !bytes.Contains(b.Get(u64(1)), []byte("<&>")) {
			t.Errorf("stored event was HTML-escaped: %s", b.Get(u64(1)))
		}
		if n, _ := tx.LastSeq(); n != 3 {
			t.Errorf("LastSeq = %d", n)
		}
		return nil
	})

	// Caller-supplied ID and time are kept; Seq and Prev are always ours.
	at := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	e := rugwatch.Event{ID: "evt_custom", Type: rugwatch.EventToolNew, Server: "alpha", OccurredAt: at, Seq: 99, Prev: "sha256:bogus"}
	if err := db.Update(func(tx *Tx) error { return tx.AppendEvent(&e) }); err != nil {
		t.Fatal(err)
	}
	if e.ID != "evt_custom" || !e.OccurredAt.Equal(at) || e.Seq != 4 || e.Prev == "sha256:bogus" {
		t.Errorf("appended %+v", e)
	}
	if err := db.Update(func(tx *Tx) error { return tx.AppendEvent(&rugwatch.Event{Server: "x"}) }); err == nil {
		t.Error("event without a type was accepted")
	}
	if n, err := db.VerifyChain(); n != 4 || err != nil {
		t.Fatalf("VerifyChain = %d, %v", n, err)
	}
}

func TestEventsQueries(t *testing.T) {
	db := openTest(t)
	appendN(t, db, 5)
	seqs := func(evs []rugwatch.Event) string {
		var s []string
		for _, e := range evs {
			s = append(s, fmt.Sprint(e.Seq))
		}
		return strings.Join(s, ",")
	}
	_ = db.View(func(tx *Tx) error {
		for _, c := range []struct {
			server string
			limit  int
			want   string
		}{
			{"", 0, "5,4,3,2,1"},
			{"", 2, "5,4"},
			{"alpha", 0, "5,3,1"},
			{"beta", 1, "4"},
			{"nobody", 0, ""},
		} {
			evs, err := tx.Events(c.server, c.limit)
			if err != nil {
				t.Fatal(err)
			}
			if got := seqs(evs); got != c.want {
				t.Errorf("Events(%q, %d) = %s, want %s", c.server, c.limit, got, c.want)
			}
		}
		for _, c := range []struct {
			after uint64
			limit int
			want  string
		}{
			{0, 0, "1,2,3,4,5"},
			{2, 0, "3,4,5"},
			{2, 2, "3,4"},
			{5, 0, ""},
			{^uint64(0), 0, ""},
		} {
			evs, err := tx.EventsAfter(c.after, c.limit)
			if err != nil {
				t.Fatal(err)
			}
			if got := seqs(evs); got != c.want {
				t.Errorf("EventsAfter(%d, %d) = %s, want %s", c.after, c.limit, got, c.want)
			}
		}
		evs, _ := tx.Events("", 1)
		if evs[0].Message != "message-5 <&>" || evs[0].Type != rugwatch.EventToolDrifted {
			t.Errorf("decoded %+v", evs[0])
		}
		return nil
	})
}

func TestVerifyChainOK(t *testing.T) {
	db := openTest(t)
	if n, err := db.VerifyChain(); n != 0 || err != nil {
		t.Fatalf("empty log: %d, %v", n, err)
	}
	appendN(t, db, 10)
	appendN(t, db, 5) // a second transaction continues the chain
	if n, err := db.VerifyChain(); n != 15 || err != nil {
		t.Fatalf("VerifyChain = %d, %v", n, err)
	}
	// Survives close and reopen.
	db.Close()
	db = reopenBackend(t, db, Options{ReadOnly: true})
	if n, err := db.VerifyChain(); n != 15 || err != nil {
		t.Fatalf("after reopen: %d, %v", n, err)
	}
}

// tamper edits the raw file behind the store's back.
func tamper(t *testing.T, db *DB, fn func(events, meta kvBucket) error) {
	t.Helper()
	if err := db.kv.update(func(tx kvTx) error {
		return fn(tx.Bucket(bucketEvents), tx.Bucket(bucketMeta))
	}); err != nil {
		t.Fatal(err)
	}
}

func chainErr(t *testing.T, db *DB, wantSeq uint64, wantChecked int) *ChainError {
	t.Helper()
	n, err := db.VerifyChain()
	var ce *ChainError
	if !errors.As(err, &ce) || !errors.Is(err, ErrChainBroken) {
		t.Fatalf("VerifyChain = %d, %v; want a ChainError", n, err)
	}
	if ce.Seq != wantSeq {
		t.Errorf("ChainError names seq %d, want %d: %v", ce.Seq, wantSeq, err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("seq %d", wantSeq)) {
		t.Errorf("error %q does not name seq %d", err, wantSeq)
	}
	if n != wantChecked {
		t.Errorf("checked %d, want %d", n, wantChecked)
	}
	t.Logf("%v", err)
	return ce
}

func flipByte(t *testing.T, b kvBucket, seq uint64, find string) {
	t.Helper()
	v := bytes.Clone(b.Get(u64(seq)))
	i := bytes.Index(v, []byte(find))
	if i < 0 {
		t.Fatalf("%q not in event %d: %s", find, seq, v)
	}
	v[i+len(find)-1]++ // message-3 → message-4: still valid JSON
	if err := b.Put(u64(seq), v); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyChainDetectsEditedByte(t *testing.T) {
	for _, seq := range []uint64{1, 3, 5} {
		t.Run(fmt.Sprint(seq), func(t *testing.T) {
			db := openTest(t)
			appendN(t, db, 5)
			tamper(t, db, func(ev, _ kvBucket) error {
				flipByte(t, ev, seq, fmt.Sprintf("message-%d", seq))
				return nil
			})
			// Records before the edited one still check out; the edited one
			// is caught by the next record's prev, or by the head if last.
			chainErr(t, db, seq, int(seq))
		})
	}
}

func TestVerifyChainDetectsEditedSeq(t *testing.T) {
	db := openTest(t)
	appendN(t, db, 3)
	tamper(t, db, func(ev, _ kvBucket) error {
		v := bytes.Replace(ev.Get(u64(2)), []byte(`"seq":2`), []byte(`"seq":7`), 1)
		return ev.Put(u64(2), v)
	})
	chainErr(t, db, 2, 1)
}

func TestVerifyChainDetectsDeletedLast(t *testing.T) {
	db := openTest(t)
	appendN(t, db, 5)
	tamper(t, db, func(ev, _ kvBucket) error { return ev.Delete(u64(5)) })
	ce := chainErr(t, db, 5, 4)
	if !strings.Contains(ce.Reason, "missing") {
		t.Errorf("reason %q", ce.Reason)
	}

	// Hiding the gap in the bucket sequence still leaves the head pointing
	// at the dropped record.
	tamper(t, db, func(ev, _ kvBucket) error { return ev.SetSequence(4) })
	ce = chainErr(t, db, 4, 4)
	if !strings.Contains(ce.Reason, "head") {
		t.Errorf("reason %q", ce.Reason)
	}

	// Appending after the deletion does not paper over it: the new record
	// links to the head, the digest of the record that is gone.
	appendN(t, db, 1)
	chainErr(t, db, 4, 4)
}

func TestVerifyChainDetectsDeletedMiddle(t *testing.T) {
	db := openTest(t)
	appendN(t, db, 5)
	tamper(t, db, func(ev, _ kvBucket) error { return ev.Delete(u64(3)) })
	chainErr(t, db, 3, 2)
}

func TestVerifyChainDetectsEditedHead(t *testing.T) {
	db := openTest(t)
	appendN(t, db, 2)
	tamper(t, db, func(_, meta kvBucket) error { return meta.Put(keyHead, []byte(digestOf("forged"))) })
	chainErr(t, db, 2, 2)

	db2 := openTest(t)
	tamper(t, db2, func(_, meta kvBucket) error { return meta.Put(keyHead, []byte(digestOf("forged"))) })
	chainErr(t, db2, 1, 0)
}

func TestVerifyChainDetectsGarbage(t *testing.T) {
	db := openTest(t)
	appendN(t, db, 3)
	tamper(t, db, func(ev, _ kvBucket) error { return ev.Put(u64(2), []byte("{not json")) })
	chainErr(t, db, 2, 1)
}

func TestIDsSortAndStayMonotonic(t *testing.T) {
	var s idSource
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	prev := s.next(at)
	if len(prev) != 26 {
		t.Fatalf("id %q has %d chars", prev, len(prev))
	}
	// Same millisecond, then a clock that steps back, then forward.
	for _, ts := range []time.Time{at, at, at.Add(-time.Hour), at.Add(time.Millisecond), at.Add(time.Hour)} {
		id := s.next(ts)
		if id <= prev {
			t.Fatalf("id %s not after %s (time %v)", id, prev, ts)
		}
		prev = id
	}
	// The time prefix alone orders ids made in different milliseconds.
	var a, b idSource
	if x, y := a.next(at), b.next(at.Add(time.Millisecond)); x[:10] >= y[:10] {
		t.Errorf("time prefixes %s, %s do not sort", x[:10], y[:10])
	}
	// Known encoding: all-zero and all-one 128 bits.
	if got := encodeID([16]byte{}); got != strings.Repeat("0", 26) {
		t.Errorf("zero id %s", got)
	}
	var ones [16]byte
	for i := range ones {
		ones[i] = 0xff
	}
	if got := encodeID(ones); got != "7"+strings.Repeat("Z", 25) {
		t.Errorf("max id %s", got)
	}
	// Overflow of the random part moves to the next millisecond.
	var o idSource
	o.next(at)
	o.rnd = [10]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	before := o.ms
	o.next(at)
	if o.ms != before+1 {
		t.Errorf("overflow kept ms %d", o.ms)
	}
}

func benchEvent() rugwatch.Event {
	return rugwatch.Event{
		Type:           rugwatch.EventToolDrifted,
		Severity:       rugwatch.SeverityCritical,
		Server:         "everything",
		Tool:           "echo",
		ApprovedDigest: digestOf("a"),
		ObservedDigest: digestOf("b"),
		Changes:        []rugwatch.Change{{Path: "/inputSchema/properties/sidenote", Op: "add"}},
	}
}

// BenchmarkAppendEvent measures one event per committed (fsynced) write
// transaction, the daemon's usual shape, and 100 events per transaction.
func BenchmarkAppendEvent(b *testing.B) {
	b.Run("tx-per-event", func(b *testing.B) {
		db := openTest(b)
		b.ReportAllocs()
		for b.Loop() {
			e := benchEvent()
			if err := db.Update(func(tx *Tx) error { return tx.AppendEvent(&e) }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("100-per-tx", func(b *testing.B) {
		db := openTest(b)
		b.ReportAllocs()
		for b.Loop() {
			if err := db.Update(func(tx *Tx) error {
				for range 100 {
					e := benchEvent()
					if err := tx.AppendEvent(&e); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkVerifyChain(b *testing.B) {
	db := openTest(b)
	if err := db.Update(func(tx *Tx) error {
		for range 10000 {
			e := benchEvent()
			if err := tx.AppendEvent(&e); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if n, err := db.VerifyChain(); n != 10000 || err != nil {
			b.Fatal(n, err)
		}
	}
}
