package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/visible"
)

// Report is the JSON of `status --json` and `check --json`. Fields may be
// added, never renamed.
type Report struct {
	SchemaVersion int            `json:"schema_version"`
	Servers       []ServerReport `json:"servers"`
}

// ServerReport is one server in a Report.
type ServerReport struct {
	Name               string          `json:"name"`
	Transport          string          `json:"transport"`
	Reachable          bool            `json:"reachable"`
	LastPolledAt       *time.Time      `json:"last_polled_at"`
	Error              string          `json:"error"`
	InstructionsDigest rugwatch.Digest `json:"instructions_digest"`
	// InstructionsState is approved, pending, drifted or revoked; empty
	// when the server sends no instructions.
	InstructionsState    rugwatch.State     `json:"instructions_state,omitempty"`
	InstructionsFindings []rugwatch.Finding `json:"instructions_findings,omitempty"`
	// Launch is what ran for a stdio server; LaunchDrifted says it differs
	// from the pinned one.
	Launch        json.RawMessage `json:"launch,omitempty"`
	LaunchDrifted bool            `json:"launch_drifted,omitempty"`
	Tools         []ToolReport    `json:"tools"`
}

// ToolReport is one tool in a Report.
type ToolReport struct {
	Name           string             `json:"name"`
	State          rugwatch.State     `json:"state"`
	Severity       rugwatch.Severity  `json:"severity"`
	ObservedDigest rugwatch.Digest    `json:"observed_digest"`
	ApprovedDigest rugwatch.Digest    `json:"approved_digest"`
	Changes        []rugwatch.Change  `json:"changes,omitempty"`
	Findings       []rugwatch.Finding `json:"findings,omitempty"`
}

func serverReport(r store.ServerRecord, transport string) ServerReport {
	sr := ServerReport{
		Name: r.Name, Transport: r.Transport, Reachable: r.Reachable, Error: r.Error,
		InstructionsDigest: r.InstructionsDigest, Tools: []ToolReport{},
		InstructionsState: r.InstructionsState, InstructionsFindings: r.InstructionsFindings,
		Launch: r.Launch, LaunchDrifted: r.LaunchDrifted,
	}
	if sr.Transport == "" {
		sr.Transport = transport
	}
	if !r.LastPolledAt.IsZero() {
		t := r.LastPolledAt.UTC()
		sr.LastPolledAt = &t
	}
	names := make([]string, 0, len(r.Tools))
	for n := range r.Tools {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t := r.Tools[n]
		sr.Tools = append(sr.Tools, ToolReport{
			Name: t.Name, State: t.State, Severity: t.Severity, ObservedDigest: t.ObservedDigest,
			ApprovedDigest: t.ApprovedDigest, Changes: t.Changes, Findings: t.Findings,
		})
	}
	return sr
}

// clean reports whether a report needs no one's attention: every server
// reached and every tool approved.
func (r Report) clean() bool {
	for _, s := range r.Servers {
		if !s.Reachable || s.LaunchDrifted || (s.InstructionsState != "" && !s.InstructionsState.Clean()) {
			return false
		}
		for _, t := range s.Tools {
			if !t.State.Clean() {
				return false
			}
		}
	}
	return true
}

// printReport writes the human table. Every server-chosen string goes
// through visible.Line.
func printReport(w io.Writer, r Report) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for i, s := range r.Servers {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		when := "never"
		if s.LastPolledAt != nil {
			when = s.LastPolledAt.Local().Format(time.DateTime)
		}
		reach := "reachable"
		if !s.Reachable {
			reach = "UNREACHABLE"
		}
		fmt.Fprintf(tw, "%s (%s)\t%s\tpolled %s\n", s.Name, s.Transport, reach, when)
		if s.Error != "" {
			fmt.Fprintf(tw, "  error: %s\n", visible.Line(s.Error))
		}
		if s.InstructionsState != "" {
			fmt.Fprintf(tw, "  (instructions)\t%s\t\t%s\n", strings.ToUpper(string(s.InstructionsState)), s.InstructionsDigest.Short())
			printFindings(tw, "    ", s.InstructionsFindings)
		}
		if s.LaunchDrifted {
			fmt.Fprintf(tw, "  (launch)\tDRIFTED\t\twhat runs changed; see history, then approve %s --launch\n", s.Name)
		}
		if len(s.Tools) == 0 {
			fmt.Fprintf(tw, "  no tools\n")
		}
		for _, t := range s.Tools {
			extra := ""
			if len(t.Changes) > 0 {
				extra = "  " + visible.Line(changeSummary(t.Changes))
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s%s\n", visible.Line(t.Name), strings.ToUpper(string(t.State)), t.Severity, t.ObservedDigest.Short(), extra)
			printFindings(tw, "    ", t.Findings)
		}
	}
	tw.Flush()
}

func changeSummary(cs []rugwatch.Change) string {
	var parts []string
	for i, c := range cs {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("+%d more", len(cs)-3))
			break
		}
		parts = append(parts, c.Op+" "+c.Path)
	}
	return strings.Join(parts, ", ")
}

// sarifInputs turns a report into SARIF results: every finding, and every
// drift as a result of its own.
func sarifInputs(r Report) []SARIFInput {
	var out []SARIFInput
	for _, s := range r.Servers {
		for _, t := range s.Tools {
			in := SARIFInput{Server: s.Name, Tool: t.Name, Findings: t.Findings, Digest: t.ObservedDigest}
			if t.State == rugwatch.StateDrifted {
				in.Drift = &rugwatch.Event{Type: rugwatch.EventToolDrifted, Severity: t.Severity, Server: s.Name, Tool: t.Name,
					ApprovedDigest: t.ApprovedDigest, ObservedDigest: t.ObservedDigest, Changes: t.Changes,
					Message: changeSummary(t.Changes)}
			}
			if len(in.Findings) > 0 || in.Drift != nil {
				out = append(out, in)
			}
		}
	}
	return out
}
