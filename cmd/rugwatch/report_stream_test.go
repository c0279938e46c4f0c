package main

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/report"
)

// The streamed report is byte for byte what encoding the whole Report
// gives, for every format, so printing server by server changes nothing
// a script reads.
func TestReportPrinterMatchesWholeReport(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	srv := func(name string, tools ...report.ToolReport) report.ServerReport {
		return report.ServerReport{Name: name, Transport: "http", Reachable: true, LastPolledAt: &at, Tools: append([]report.ToolReport{}, tools...)}
	}
	drifted := report.ToolReport{Name: "send<&>", ToolState: report.ToolState{State: rugwatch.StateDrifted, Severity: rugwatch.SeverityCritical, ObservedDigest: "sha256:ab"},
		Changes:  []rugwatch.Change{{Op: "replace", Path: "/description", Old: json.RawMessage(`"a"`), New: json.RawMessage(`"b <x>"`)}},
		Findings: []rugwatch.Finding{{Rule: "instruction-marker", Severity: rugwatch.SeverityWarning, Path: "/description", Message: "m"}}}
	pending := report.ToolReport{Name: "get", ToolState: report.ToolState{State: rugwatch.StatePending, Severity: rugwatch.SeverityInfo}}
	for _, rep := range []report.Report{
		{SchemaVersion: 1, Servers: []report.ServerReport{}},
		{SchemaVersion: 1, Servers: []report.ServerReport{srv("a")}},
		{SchemaVersion: 1, Servers: []report.ServerReport{srv("a", pending), srv("b", drifted, pending), {Name: "c", Transport: "stdio", Tools: []report.ToolReport{}}}},
	} {
		for _, format := range []string{"json", "text", "sarif"} {
			var want bytes.Buffer
			switch format {
			case "json":
				if err := writeJSON(&want, rep); err != nil {
					t.Fatal(err)
				}
			case "sarif":
				if err := report.WriteSARIF(&want, report.SARIFInputs(rep)); err != nil {
					t.Fatal(err)
				}
			default:
				printReport(&want, rep)
			}
			var got bytes.Buffer
			p := newReportPrinter(&got, format)
			for _, s := range rep.Servers {
				if err := p.server(s); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.end(); err != nil {
				t.Fatal(err)
			}
			if got.String() != want.String() {
				t.Errorf("%s, %d servers: streamed\n%s\nwhole\n%s", format, len(rep.Servers), got.String(), want.String())
			}
			if p.clean != rep.Clean() {
				t.Errorf("%s, %d servers: streamed clean %v, whole %v", format, len(rep.Servers), p.clean, rep.Clean())
			}
		}
	}
}

// printReport writes the human table of a whole report at once: what the
// streaming printer must print server by server.
func printReport(w io.Writer, r report.Report) {
	for i, s := range r.Servers {
		printServer(w, s, i == 0)
	}
}
