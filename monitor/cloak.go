package monitor

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/store"
)

// noteRevision records the revision a poll negotiated and, when the
// listing carries one per revision, which tools differ across them: one
// critical tool.cloaked per tool whose difference is new. It runs inside
// Record's transaction; the events it returns are appended there.
func (r *Recorder) noteRevision(prev store.ServerRecord, l *mcpclient.Listing, next *store.ServerRecord) []rugwatch.Event {
	if l == nil {
		return nil
	}
	if prev.ProtocolVersion != "" && prev.ProtocolVersion != l.ProtocolVersion && r.Log != nil {
		// Over stdio this is also launch drift (Launch.ProtocolVersion);
		// over HTTP and SSE the record and status show it.
		r.Log.Warn("server moved protocol revision", slog.String("server", next.Name),
			slog.String("from", prev.ProtocolVersion), slog.String("to", l.ProtocolVersion))
	}
	next.ProtocolVersion = l.ProtocolVersion
	if len(l.Revisions) < 2 {
		// No cross-check this poll: what the last one found stands.
		return nil
	}
	cur := map[string]string{}
	var events []rugwatch.Event
	for _, name := range mcpclient.CloakedTools(l.Revisions) {
		key, _ := mcpclient.CloakedKey(l.Revisions, name)
		cur[name] = key
		if prev.Cloaked[name] == key {
			continue
		}
		events = append(events, cloakEvent(l.Revisions, name))
	}
	if len(cur) == 0 {
		cur = nil
	}
	next.Cloaked = cur
	return events
}

// cloakEvent describes one tool that differs across revisions, with the
// field-level changes from the first revision's definition to the first
// one that differs.
func cloakEvent(revs []mcpclient.RevisionListing, name string) rugwatch.Event {
	e := rugwatch.Event{Type: rugwatch.EventToolCloaked, Severity: rugwatch.SeverityCritical, Tool: name}
	var parts []string
	var base json.RawMessage
	for i, rev := range revs {
		t, ok := (&mcpclient.Listing{Tools: rev.Tools}).Tool(name)
		if !ok {
			parts = append(parts, rev.ProtocolVersion+": not listed")
			continue
		}
		parts = append(parts, rev.ProtocolVersion+": "+string(t.Digest))
		switch {
		case i == 0:
			e.ObservedDigest = t.Digest
			base = t.Canonical
		case base != nil && e.Changes == nil && t.Digest != e.ObservedDigest:
			e.Changes = detect.Diff(base, t.Canonical)
		}
	}
	e.Message = fmt.Sprintf("the tool is listed differently per protocol revision (%s); a server's tools must not vary per connection",
		strings.Join(parts, "; "))
	return e
}
