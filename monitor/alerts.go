package monitor

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/visible"
)

// folds reports whether e is a per-tool event a summary stands in for.
// Everything else (approval.invalid, tool.cloaked, instructions, launch,
// reachability) stays an alert of its own: each is rare and says
// something a summary line would bury.
func folds(e rugwatch.Event) bool {
	if e.Tool == "" {
		return false
	}
	switch e.Type {
	case rugwatch.EventToolNew, rugwatch.EventToolDrifted, rugwatch.EventToolRemoved, rugwatch.EventToolApproved:
		return true
	}
	return false
}

// queueAlerts hands the poll's events to InTx, in the poll's transaction.
// When they move more than one tool, the per-tool events stay in the log
// (each tool's transition seq, which an approval is bound to, and the
// history a human reads) but are not alerted: one summary event, appended
// after them, is queued instead, with its own id, seq and chain head, so
// it is delivered at least once and deduplicated like any other alert.
func (r *Recorder) queueAlerts(tx *store.Tx, out *Outcome, first bool, now time.Time) error {
	if r.InTx == nil {
		return nil
	}
	tools := map[string]bool{}
	for _, e := range out.Events {
		if folds(e) {
			tools[e.Tool] = true
		}
	}
	if len(tools) <= 1 {
		for _, e := range out.Events {
			if err := r.InTx(tx, e); err != nil {
				return err
			}
		}
		return nil
	}
	var folded []rugwatch.Event
	for _, e := range out.Events {
		if folds(e) {
			folded = append(folded, e)
			continue
		}
		if err := r.InTx(tx, e); err != nil {
			return err
		}
	}
	sum := summaryEvent(out.Server.Name, first, len(tools), folded, now)
	if err := tx.AppendEvent(&sum); err != nil {
		return err
	}
	out.Events = append(out.Events, sum)
	return r.InTx(tx, sum)
}

// summaryEvent folds the per-tool events of one poll into one.
func summaryEvent(server string, first bool, tools int, folded []rugwatch.Event, now time.Time) rugwatch.Event {
	e := rugwatch.Event{Type: rugwatch.EventServerChanged, Severity: rugwatch.SeverityInfo, Server: server, OccurredAt: now}
	if first {
		e.Type = rugwatch.EventServerNew
	}
	counts := map[rugwatch.EventType]int{}
	digest := func(d rugwatch.Digest) json.RawMessage {
		if d == "" {
			return nil
		}
		b, _ := json.Marshal(d)
		return b
	}
	for _, f := range folded {
		counts[f.Type]++
		if f.Severity.Rank() > e.Severity.Rank() {
			e.Severity = f.Severity
		}
		p := "/tools/" + detect.PointerToken(f.Tool)
		switch f.Type {
		case rugwatch.EventToolNew:
			e.Changes = append(e.Changes, rugwatch.Change{Path: p, Op: "add", New: digest(f.ObservedDigest)})
		case rugwatch.EventToolRemoved:
			e.Changes = append(e.Changes, rugwatch.Change{Path: p, Op: "remove", Old: digest(f.ApprovedDigest)})
		case rugwatch.EventToolDrifted:
			e.Changes = append(e.Changes, rugwatch.Change{Path: p, Op: "replace", Old: digest(f.ApprovedDigest), New: digest(f.ObservedDigest)})
			for _, c := range f.Changes {
				c.Path = p + c.Path
				e.Changes = append(e.Changes, c)
			}
		}
		for _, fd := range f.Findings {
			fd.Path = p + fd.Path
			e.Findings = append(e.Findings, fd)
		}
	}
	var parts []string
	for _, c := range []struct {
		t    rugwatch.EventType
		what string
	}{{rugwatch.EventToolDrifted, "drifted"}, {rugwatch.EventToolNew, "new"}, {rugwatch.EventToolRemoved, "removed"}, {rugwatch.EventToolApproved, "approved"}} {
		if n := counts[c.t]; n > 0 {
			part := fmt.Sprintf("%d %s", n, c.what)
			if c.t == rugwatch.EventToolDrifted || c.t == rugwatch.EventToolRemoved {
				// The ones a person must look at are named (server text,
				// made visible; a few, then a count).
				part += " (" + namesOf(folded, c.t, 5) + ")"
			}
			parts = append(parts, part)
		}
	}
	if first {
		e.Message = fmt.Sprintf("first seen with %d tools (%s)", tools, strings.Join(parts, ", "))
	} else {
		e.Message = fmt.Sprintf("%d tools moved in one poll: %s", tools, strings.Join(parts, ", "))
	}
	if len(e.Findings) > 0 {
		e.Message += fmt.Sprintf("; %d findings", len(e.Findings))
	}
	return e
}

// namesOf lists up to max tool names of the events of type t, visible.
func namesOf(events []rugwatch.Event, t rugwatch.EventType, max int) string {
	var names []string
	more := 0
	for _, e := range events {
		if e.Type != t {
			continue
		}
		if len(names) == max {
			more++
			continue
		}
		names = append(names, visible.Line(visible.Clip(e.Tool, 0, 64)))
	}
	out := strings.Join(names, ", ")
	if more > 0 {
		out += fmt.Sprintf(", +%d more", more)
	}
	return out
}
