package monitor

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/report"
)

// TestStdoutNoiseFlaggedWhenItAppears: a server that prints a banner at
// every start is flagged once, with the stdout-noise warning, not on every
// poll; the finding stays on its record (and so in status and check)
// while the noise lasts, goes with it, and is raised again if it returns.
// A failed poll says nothing about stdout and keeps it.
func TestStdoutNoiseFlaggedWhenItAppears(t *testing.T) {
	h := newHarness(t)
	tool := json.RawMessage(`{"name":"add","description":"Adds two numbers.","inputSchema":{"type":"object"}}`)
	poll := func(noise *mcpclient.StdoutNoise) (int, []rugwatch.Finding) {
		t.Helper()
		l := listingOf(t, tool)
		l.StdoutNoise = noise
		rec, events := h.record(l, nil)
		flagged := 0
		for _, e := range events {
			if e.Type == rugwatch.EventServerFlagged {
				flagged++
				if e.Severity != rugwatch.SeverityWarning || len(e.Findings) != 1 || e.Findings[0].Rule != detect.RuleStdoutNoise {
					t.Errorf("server.flagged %+v, want one stdout-noise warning", e)
				}
			}
		}
		if got := report.ServerReportOf(rec, "").Findings; !slices.Equal(got, rec.Findings) {
			t.Errorf("report findings %+v, record %+v", got, rec.Findings)
		}
		return flagged, rec.Findings
	}
	banner := &mcpclient.StdoutNoise{Lines: 1, Bytes: 40, First: "Code Runner MCP Server running on stdio"}
	if n, fs := poll(banner); n != 1 || len(fs) != 1 {
		t.Fatalf("first noisy poll: %d server.flagged, findings %+v", n, fs)
	}
	if n, fs := poll(&mcpclient.StdoutNoise{Lines: 3, Bytes: 90, First: banner.First}); n != 0 || len(fs) != 1 || fs[0].Severity != rugwatch.SeverityWarning {
		t.Fatalf("the same noise again: %d server.flagged, findings %+v", n, fs)
	}
	if rec, _, err := h.rec.Record("srv", mcpclient.TransportStdio, nil, errors.New("timeout")); err != nil || len(rec.Findings) != 1 {
		t.Fatalf("failed poll: %v, findings %+v, want the last good poll's kept", err, rec.Findings)
	}
	if n, fs := poll(nil); n != 0 || fs != nil {
		t.Fatalf("quiet poll: %d server.flagged, findings %+v", n, fs)
	}
	if n, _ := poll(banner); n != 1 {
		t.Fatalf("noise back: %d server.flagged, want 1", n)
	}
}
