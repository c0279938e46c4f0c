package monitor

import (
	"context"
	"testing"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/mcpclient"
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
