package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/visible"
)

// printDefinition shows a tool definition as the model will read it: the
// description as text, then every field, with each string from the server
// rendered by visible so nothing in it can hide or move.
func printDefinition(w io.Writer, def json.RawMessage, indent string) {
	var v map[string]any
	d := json.NewDecoder(bytes.NewReader(def))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		fmt.Fprintf(w, "%s(unreadable definition: %v)\n", indent, err)
		return
	}
	if desc, ok := v["description"].(string); ok {
		fmt.Fprintf(w, "%sdescription:\n", indent)
		for _, line := range strings.Split(visible.Text(desc), "\n") {
			fmt.Fprintf(w, "%s  │ %s\n", indent, line)
		}
	}
	keys := make([]string, 0, len(v))
	for k := range v {
		if k != "description" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%s%s: ", indent, visible.Line(k))
		printValue(w, v[k], indent+"  ")
		fmt.Fprintln(w)
	}
}

// printValue writes a decoded JSON value as indented JSON-like text with
// every string made visible.
func printValue(w io.Writer, v any, indent string) {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			fmt.Fprint(w, "{}")
			return
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprint(w, "{")
		for i, k := range keys {
			if i > 0 {
				fmt.Fprint(w, ",")
			}
			fmt.Fprintf(w, "\n%s%s: ", indent, quote(k))
			printValue(w, x[k], indent+"  ")
		}
		fmt.Fprintf(w, "\n%s}", indent[:max(len(indent)-2, 0)])
	case []any:
		if len(x) == 0 {
			fmt.Fprint(w, "[]")
			return
		}
		fmt.Fprint(w, "[")
		for i, e := range x {
			if i > 0 {
				fmt.Fprint(w, ",")
			}
			fmt.Fprintf(w, "\n%s", indent)
			printValue(w, e, indent+"  ")
		}
		fmt.Fprintf(w, "\n%s]", indent[:max(len(indent)-2, 0)])
	case string:
		fmt.Fprint(w, quote(x))
	default:
		b, _ := json.Marshal(x)
		fmt.Fprint(w, string(b))
	}
}

// printChanges lists field-level changes, old and new values made visible.
func printChanges(w io.Writer, changes []rugwatch.Change, indent string) {
	for _, c := range changes {
		path := c.Path
		if path == "" {
			path = "/"
		}
		fmt.Fprintf(w, "%s%s %s\n", indent, opMark(c.Op), visible.Line(path))
		if len(c.Old) > 0 {
			printChangeValue(w, "-", c.Old, indent+"    ")
		}
		if len(c.New) > 0 {
			printChangeValue(w, "+", c.New, indent+"    ")
		}
		var old, nw string
		if c.Op == "replace" && json.Unmarshal(c.Old, &old) == nil && json.Unmarshal(c.New, &nw) == nil {
			if wd, ok := visible.WordDiff(old, nw); ok {
				fmt.Fprintf(w, "%s    word diff ([-removed-] {+inserted+}): %s\n", indent, wd)
			}
		}
	}
}

func opMark(op string) string {
	switch op {
	case "add":
		return "+ add    "
	case "remove":
		return "- remove "
	}
	return "~ replace"
}

func printChangeValue(w io.Writer, mark string, raw json.RawMessage, indent string) {
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if d.Decode(&v) != nil {
		fmt.Fprintf(w, "%s%s %s\n", indent, mark, visible.Line(string(raw)))
		return
	}
	if s, ok := v.(string); ok {
		for _, line := range strings.Split(visible.Text(s), "\n") {
			fmt.Fprintf(w, "%s%s │ %s\n", indent, mark, line)
		}
		return
	}
	var b strings.Builder
	printValue(&b, v, indent+"  ")
	fmt.Fprintf(w, "%s%s %s\n", indent, mark, b.String())
}

// quote renders a server string between double quotes, visible and with
// its own quotes escaped, so where it ends is never in doubt.
func quote(s string) string {
	return `"` + strings.ReplaceAll(visible.Line(s), `"`, `\"`) + `"`
}

// printFindings lists poisoning findings, one a line, under a definition.
func printFindings(w io.Writer, indent string, fs []rugwatch.Finding) {
	for _, f := range fs {
		fmt.Fprintf(w, "%s! %s %s at %s: %s\n", indent, f.Severity, f.Rule, visible.Line(f.Path), visible.Message(f.Message))
	}
}

// reportPrinter prints a report as its servers arrive, so check and
// status of a fleet hold one server's report at a time, not the fleet's:
// text and JSON are written server by server (the JSON is byte for byte
// what encoding the whole Report gives); SARIF needs every result in one
// document, so only the findings and drifts are kept until end.
type reportPrinter struct {
	w      io.Writer
	format string
	n      int
	clean  bool // every server so far needs no one's attention
	sarif  []report.SARIFInput
	buf    bytes.Buffer
	enc    *json.Encoder
}

func newReportPrinter(w io.Writer, format string) *reportPrinter {
	p := &reportPrinter{w: w, format: format, clean: true}
	// The indent a server has inside {"servers":[…]} with writeJSON's
	// two spaces per level.
	p.enc = json.NewEncoder(&p.buf)
	p.enc.SetIndent("    ", "  ")
	p.enc.SetEscapeHTML(false)
	return p
}

func (p *reportPrinter) server(s report.ServerReport) error {
	one := report.Report{SchemaVersion: 1, Servers: []report.ServerReport{s}}
	p.clean = p.clean && one.Clean()
	first := p.n == 0
	p.n++
	switch p.format {
	case "json":
		p.buf.Reset()
		if first {
			p.buf.WriteString("{\n  \"schema_version\": 1,\n  \"servers\": [\n    ")
		} else {
			p.buf.WriteString(",\n    ")
		}
		if err := p.enc.Encode(s); err != nil {
			return fmt.Errorf("encoding the report of %s: %w", s.Name, err)
		}
		p.buf.Truncate(p.buf.Len() - 1) // the encoder's newline
		_, err := p.w.Write(p.buf.Bytes())
		return err
	case "sarif":
		p.sarif = append(p.sarif, report.SARIFInputs(one)...)
		return nil
	default:
		printServer(p.w, s, first)
		return nil
	}
}

// end finishes the report.
func (p *reportPrinter) end() error {
	switch p.format {
	case "json":
		if p.n == 0 {
			_, err := io.WriteString(p.w, "{\n  \"schema_version\": 1,\n  \"servers\": []\n}\n")
			return err
		}
		_, err := io.WriteString(p.w, "\n  ]\n}\n")
		return err
	case "sarif":
		return report.WriteSARIF(p.w, p.sarif)
	}
	return nil
}

// printServer writes one server's part of the human table, its columns
// sized from what they hold (a tabwriter would restart its columns at
// every findings line, and a long tool name would push its row out of
// line). Every server-chosen string goes through visible.Line.
func printServer(w io.Writer, s report.ServerReport, first bool) {
	if !first {
		fmt.Fprintln(w)
	}
	when := "never"
	if s.LastPolledAt != nil {
		when = s.LastPolledAt.Local().Format(time.DateTime)
	}
	reach := "reachable"
	if !s.Reachable {
		reach = "UNREACHABLE"
	}
	owner := ""
	if s.Owner != "" {
		owner = "  by " + visible.Line(s.Owner)
	}
	fmt.Fprintf(w, "%s (%s)  %s  polled %s%s\n", s.Name, s.Transport, reach, when, owner)
	if mark := s.NotSandboxed(); mark != "" {
		fmt.Fprintf(w, "  %s\n", visible.Line(mark))
	}
	if s.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", visible.Line(s.Error))
	}
	printFindings(w, "  ", s.Findings)
	type row struct{ name, state, severity, digest, extra string }
	var rows []row
	if s.InstructionsState != "" {
		extra := ""
		if s.InstructionsSignatures != "" {
			extra = "signatures: " + s.InstructionsSignatures
		}
		rows = append(rows, row{"(instructions)", strings.ToUpper(string(s.InstructionsState)), "", s.InstructionsDigest.Short(), extra})
	}
	launchSigs := ""
	if s.LaunchSignatures != "" {
		launchSigs = "signatures: " + s.LaunchSignatures + "  "
	}
	if s.LaunchDrifted {
		rows = append(rows, row{"(launch)", "DRIFTED", "", "", launchSigs + "what runs changed; see history, then approve " + s.Name + " --launch"})
	}
	if s.IdentityDrifted {
		rows = append(rows, row{"(identity)", "DRIFTED", "", "", launchSigs + "who answers changed; see history, then approve " + s.Name + " --launch"})
	}
	if s.Egress != nil {
		state, extra := egressRow(s.Name, s.Egress)
		if s.Egress.Signatures != "" {
			extra = strings.TrimSpace("signatures: " + s.Egress.Signatures + "  " + extra)
		}
		rows = append(rows, row{"(egress)", state, "", s.Egress.ApprovedDigest.Short(), extra})
	}
	for _, t := range s.Tools {
		extra := ""
		if len(t.Changes) > 0 {
			extra = visible.Line(report.ChangeSummary(t.Changes))
		}
		if t.Signatures != "" && t.State != rugwatch.StateRemoved {
			extra = strings.TrimSpace("signatures: " + t.Signatures + "  " + extra)
		}
		rows = append(rows, row{visible.Line(t.Name), strings.ToUpper(string(t.State)), string(t.Severity), t.ObservedDigest.Short(), extra})
	}
	var wName, wState, wSev int
	for _, r := range rows {
		wName = max(wName, width(r.name))
		wState = max(wState, width(r.state))
		wSev = max(wSev, width(r.severity))
	}
	cell := func(s string, w int) string { return s + strings.Repeat(" ", w-width(s)) }
	printRow := func(r row) {
		line := "  " + cell(r.name, wName) + "  " + cell(r.state, wState) + "  " + cell(r.severity, wSev) + "  " + r.digest
		if r.extra != "" {
			line += "  " + r.extra
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	next := 0
	if s.InstructionsState != "" {
		printRow(rows[next])
		next++
		printFindings(w, "    ", s.InstructionsFindings)
	}
	if s.LaunchDrifted {
		printRow(rows[next])
		next++
	}
	if s.IdentityDrifted {
		printRow(rows[next])
		next++
	}
	if s.Egress != nil {
		printRow(rows[next])
		next++
	}
	if len(s.Tools) == 0 {
		fmt.Fprintf(w, "  no tools\n")
	}
	for _, t := range s.Tools {
		printRow(rows[next])
		next++
		printFindings(w, "    ", t.Findings)
	}
}

// width is the number of terminal columns s takes, counting a rune as one:
// visible.Line has already turned anything that takes none into an escape.
func width(s string) int { return utf8.RuneCountInString(s) }

// egressRow is the state and the text of a server's egress row: the
// approved destinations, and what was used outside them.
func egressRow(server string, e *report.EgressReport) (state, extra string) {
	list := func(ds []string, mark map[string]bool) string {
		if len(ds) == 0 {
			return "none"
		}
		const shown = 16
		parts := make([]string, 0, min(len(ds), shown+1))
		for i, d := range ds {
			if i == shown {
				parts = append(parts, fmt.Sprintf("and %d more", len(ds)-shown))
				break
			}
			if mark[d] {
				d += " (refused)"
			}
			parts = append(parts, visible.Line(d))
		}
		return strings.Join(parts, ", ")
	}
	refused := map[string]bool{}
	for _, d := range e.Refused {
		refused[d] = true
	}
	more := ""
	if e.Dropped > 0 {
		more = fmt.Sprintf("; %d more not listed", e.Dropped)
	}
	switch {
	case e.PinMissing:
		return "INVALID", "the approved destinations are gone or no longer verify; used: " + list(e.Seen, refused) + more + "; approve " + server + " --launch"
	case len(e.Drifted) > 0:
		return "DRIFTED", "approved: " + list(e.Approved, nil) + "; new: " + list(e.Drifted, refused) + more + "; see history, then approve " + server + " --launch"
	case e.Approved != nil:
		return "APPROVED", "approved: " + list(e.Approved, nil) + more
	}
	return "PENDING", "used: " + list(e.Seen, nil) + more + "; approve " + server + " --launch to pin them"
}
