package monitor

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/visible"
)

// Churn. A server that lists thousands of names it never listed before,
// poll after poll, would otherwise leave a tool.new event and a tool
// record per name: the store grows with the flood, and the one drift that
// matters drowns in it. Each server has a budget of new names,
// limits.max_new_tools_per_hour, that drains at that rate (a token bucket,
// full at first sight). A listing whose new names do not fit is summarised
// instead: one server.churning event (how many, a few names, the
// listing's digest), none of its new names recorded, so none is served by
// the proxy either, which serves only recorded approved tools. The tools
// the server listed before are evaluated as always, so a flood cannot hide
// the drift of an approved tool. A flood does not spend the budget: a
// server adding names faster than the limit still has them recorded at
// about the limit's rate, never faster.

// DefaultMaxNewToolsPerHour is limits.max_new_tools_per_hour for a
// Recorder given none: well above the largest real servers' whole
// listing (a few hundred tools), far below what a flood adds.
const DefaultMaxNewToolsPerHour = 500

// churnReportEvery bounds the server.churning events of a server that
// keeps churning: one when it starts, then at most one per period, each
// counting what was summarised since the last, and one when it stops.
const churnReportEvery = time.Hour

// churnExamples is how many of a listing's new names its event names.
const churnExamples = 5

// churnVerdict is what the churn rule decides for one listing.
type churnVerdict struct {
	// flood: the listing's new names are summarised, not recorded.
	flood bool
	// state is the server's next ChurnState (nil: nothing to remember).
	state *store.ChurnState
	// event, when set, is the server.churning event to raise (without
	// server and time, which Evaluate adds).
	event *rugwatch.Event
}

// skips reports whether the listed tool name is left out of the record:
// a name the server never listed before, in a flood.
func (v churnVerdict) skips(known map[string]store.ToolRecord, name string) bool {
	if !v.flood {
		return false
	}
	_, ok := known[name]
	return !ok
}

// decideChurn is the churn rule for a listing l of a server whose record
// holds known and prev (its last ChurnState), at now, with limit new
// names per hour (0: the default). A pure function.
func decideChurn(prev *store.ChurnState, known map[string]store.ToolRecord, l *mcpclient.Listing, now time.Time, limit int) churnVerdict {
	if limit <= 0 {
		limit = DefaultMaxNewToolsPerHour
	}
	var st store.ChurnState
	if prev != nil {
		st = *prev
	}
	var fresh []string
	for _, t := range l.Tools {
		if _, ok := known[t.Name]; !ok {
			fresh = append(fresh, t.Name)
		}
	}
	spent := st.Spent
	if elapsed := now.Sub(st.At); !st.At.IsZero() && elapsed > 0 {
		spent -= elapsed.Hours() * float64(limit)
	}
	spent = max(spent, 0)
	churning := !st.Since.IsZero()
	var v churnVerdict
	if float64(len(fresh)) > float64(limit)-spent {
		v.flood = true
		st.Spent, st.At = spent, now
		st.Summarised += len(fresh)
		switch {
		case !churning:
			st.Since = now
			v.event = churnEvent(l, fresh, limit, fmt.Sprintf(
				"%d new tool names in one listing, more than limits.max_new_tools_per_hour (%d) allows: "+
					"until it stops, the server's listings are summarised, not recorded tool by tool, and its new tools are withheld from clients "+
					"(the tools it listed before are still checked); if it really has this many tools, raise limits.max_new_tools_per_hour",
				len(fresh), limit))
		case now.Sub(st.ReportedAt) >= churnReportEvery:
			v.event = churnEvent(l, fresh, limit, fmt.Sprintf(
				"still churning since %s: %d new tool names summarised since %s, %d in this listing",
				st.Since.Format(time.RFC3339), st.Summarised, st.ReportedAt.Format(time.RFC3339), len(fresh)))
		}
		if v.event != nil {
			st.ReportedAt, st.Summarised = now, 0
		}
	} else {
		st.Spent, st.At = spent+float64(len(fresh)), now
		if churning {
			e := churnEvent(l, nil, limit, fmt.Sprintf(
				"stopped churning (since %s): this listing's %d new tool names fit limits.max_new_tools_per_hour (%d) and are recorded; "+
					"%d more were summarised since %s",
				st.Since.Format(time.RFC3339), len(fresh), limit, st.Summarised, st.ReportedAt.Format(time.RFC3339)))
			e.Severity = rugwatch.SeverityInfo
			v.event = e
			st.Since, st.Summarised, st.ReportedAt = time.Time{}, 0, time.Time{}
		}
	}
	if st.Spent > 0 || churning || v.flood {
		v.state = &st
	}
	return v
}

// churnEvent is a server.churning event (warning) summarising a listing:
// its digest, and the first of its new names (clipped) as changes.
func churnEvent(l *mcpclient.Listing, fresh []string, limit int, msg string) *rugwatch.Event {
	e := rugwatch.Event{Type: rugwatch.EventServerChurning, Severity: rugwatch.SeverityWarning, ObservedDigest: listingDigest(l)}
	var names []string
	for i, name := range fresh {
		if i == churnExamples {
			break
		}
		clipped := visible.Clip(name, 0, 64)
		names = append(names, visible.Line(clipped))
		c := rugwatch.Change{Path: "/tools/" + detect.PointerToken(clipped), Op: "add"}
		if t, ok := l.Tool(name); ok {
			c.New, _ = json.Marshal(t.Digest)
		}
		e.Changes = append(e.Changes, c)
	}
	if len(names) > 0 {
		msg += "; e.g. " + strings.Join(names, ", ")
	}
	e.Message = msg
	return &e
}

// listingDigest identifies a whole listing by its tools' names and
// digests, in the listing's order (sorted by name).
func listingDigest(l *mcpclient.Listing) rugwatch.Digest {
	h := sha256.New()
	for _, t := range l.Tools {
		fmt.Fprintf(h, "%s\x00%s\n", t.Name, t.Digest)
	}
	return rugwatch.Digest("sha256:" + hex.EncodeToString(h.Sum(nil)))
}

// maxNewTools is the Recorder's limits.max_new_tools_per_hour.
func (r *Recorder) maxNewTools() int {
	if r.MaxNewToolsPerHour > 0 {
		return r.MaxNewToolsPerHour
	}
	return DefaultMaxNewToolsPerHour
}

// dropUnrecorded keeps only the tool.cloaked findings of tools the record
// holds: a churning server lists other names in every session, and each
// would otherwise be a cloaked tool of its own.
func dropUnrecorded(events []rugwatch.Event, next *store.ServerRecord) []rugwatch.Event {
	var cloaked map[string]string // a new map: the old one may be prev's
	for name, key := range next.Cloaked {
		if _, ok := next.Tools[name]; ok {
			if cloaked == nil {
				cloaked = map[string]string{}
			}
			cloaked[name] = key
		}
	}
	next.Cloaked = cloaked
	kept := events[:0]
	for _, e := range events {
		if _, ok := next.Tools[e.Tool]; ok {
			kept = append(kept, e)
		}
	}
	return kept
}
