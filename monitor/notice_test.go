package monitor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/store"
)

// A flagged result changes no approval: the daemon hears of it (its
// dispatcher wakes) without its approvals generation moving, so a proxy's
// next call does not read every approval again. Without AfterNotice the
// same write goes through AfterWrite, which is what the test tells apart.
func TestFlaggedResultDoesNotMoveTheGeneration(t *testing.T) {
	h := newHarness(t)
	var writes, notices int
	l := &Ledger{DB: h.db, Servers: []ServerRef{{Name: "s", Transport: mcpclient.TransportHTTP}}, AfterWrite: func(context.Context) error { writes++; return nil },
		AfterNotice: func(context.Context) error { notices++; return nil }}
	f := []rugwatch.Finding{{Rule: "exfiltration-url", Severity: rugwatch.SeverityWarning, Path: "/content/0/text", Message: "m"}}
	if err := l.FlagResult(context.Background(), "s", "page", f, false); err != nil {
		t.Fatal(err)
	}
	if writes != 0 || notices != 1 {
		t.Fatalf("AfterWrite ran %d times, AfterNotice %d; want 0 and 1", writes, notices)
	}
	l.AfterNotice = nil
	if err := l.FlagResult(context.Background(), "s", "page", f, false); err != nil {
		t.Fatal(err)
	}
	if writes != 1 {
		t.Fatalf("without AfterNotice, AfterWrite ran %d times, want 1", writes)
	}
}

// A warning on a tool's results is one event an hour for the process,
// whatever the number of sessions that see it: each proxy_listen session
// (or stdio proxy reaching the daemon) saw it first and wrote it again.
// Critical findings are recorded every time, and a warning of other rules
// or from another tool is news. Without Notices every flag is an event,
// which is what the test tells apart.
func TestAWarningIsRecordedOnceAnHour(t *testing.T) {
	h := newHarness(t)
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	l := &Ledger{DB: h.db, Servers: []ServerRef{{Name: "s", Transport: mcpclient.TransportHTTP}}, Now: func() time.Time { return now }}
	warn := []rugwatch.Finding{{Rule: "sensitive-path", Severity: rugwatch.SeverityWarning, Path: "/content/0/text", Message: "m"},
		{Rule: "exfiltration-url", Severity: rugwatch.SeverityWarning, Path: "/content/0/text", Message: "m"}}
	crit := []rugwatch.Finding{{Rule: "instruction-marker", Severity: rugwatch.SeverityCritical, Path: "/content/0/text", Message: "m"}}
	events := func() int { t.Helper(); return flaggedEvents(t, l) }
	flag := func(tool string, f []rugwatch.Finding) {
		t.Helper()
		if err := l.FlagResult(context.Background(), "s", tool, f, false); err != nil {
			t.Fatal(err)
		}
	}
	flag("page", warn)
	flag("page", warn)
	if n := events(); n != 2 {
		t.Fatalf("without Notices: %d events for two flags, want 2", n)
	}
	l.Notices = &Notices{}
	reversed := slices.Clone(warn)
	slices.Reverse(reversed)
	flag("page", warn)
	flag("page", reversed) // the same rules in another order
	flag("page", warn[:1]) // fewer rules: news
	flag("other", warn)    // another tool: news
	flag("page", crit)
	flag("page", crit)
	if n := events(); n != 7 {
		t.Fatalf("with Notices: %d events, want 7 (the 2 before; the warning once, its subset, the other tool's, both criticals)", n)
	}
	now = now.Add(time.Hour)
	flag("page", warn)
	if n := events(); n != 8 {
		t.Fatalf("an hour later the warning is not recorded again (%d events, want 8)", n)
	}
}

// A warning whose event could not be written is not held back: the next
// one is the first the store sees. (Held back for the hour, the outage
// would have lost it.) Without Forget the second flag writes nothing.
func TestAWarningNotWrittenIsNotHeldBack(t *testing.T) {
	h := newHarness(t)
	failing := true
	l := &Ledger{DB: h.db, Servers: []ServerRef{{Name: "s", Transport: mcpclient.TransportHTTP}}, Notices: &Notices{},
		InTx: func(*store.Tx, rugwatch.Event) error {
			if failing {
				return errors.New("the outbox is unwritable")
			}
			return nil
		}}
	warn := []rugwatch.Finding{{Rule: "sensitive-path", Severity: rugwatch.SeverityWarning, Path: "/content/0/text", Message: "m"}}
	if err := l.FlagResult(context.Background(), "s", "page", warn, false); err == nil {
		t.Fatal("the write failed, FlagResult did not say so")
	}
	failing = false
	if err := l.FlagResult(context.Background(), "s", "page", warn, false); err != nil {
		t.Fatal(err)
	}
	if n := flaggedEvents(t, l); n != 1 {
		t.Fatalf("after a failed write, the same warning again: %d events, want 1", n)
	}
}

// flaggedEvents counts the result.flagged events of server s.
func flaggedEvents(t *testing.T, l *Ledger) int {
	t.Helper()
	es, err := l.History(context.Background(), "s", 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		if e.Type == rugwatch.EventResultFlagged {
			n++
		}
	}
	return n
}

// TestNoticesFullRecordsEverything: full of unexpired warnings, Notices
// lets every new one through (a memory bound is never a reason to stay
// silent); once they expire, a sweep makes room and repeats are held back
// again.
func TestNoticesFullRecordsEverything(t *testing.T) {
	var n Notices
	warn := []rugwatch.Finding{{Rule: "sensitive-path", Severity: rugwatch.SeverityWarning}}
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	for i := range maxNotices {
		if !n.First("s", fmt.Sprintf("tool_%d", i), warn, t0) {
			t.Fatalf("tool_%d held back on its first warning", i)
		}
	}
	for range 2 {
		if !n.First("s", "late", warn, t0.Add(time.Minute)) {
			t.Fatal("a full Notices held back a warning it had no room to remember")
		}
	}
	later := t0.Add(noticeWindow + time.Minute)
	if !n.First("s", "late", warn, later) {
		t.Fatal("the first warning after the others expired was held back")
	}
	if n.First("s", "late", warn, later) {
		t.Fatal("after the sweep, the same warning again within the hour was recorded")
	}
}
