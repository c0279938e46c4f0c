package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/store"
)

// RevisionListing is what one revision's client was shown.
type RevisionListing struct {
	ProtocolVersion string
	Tools           []Tool // sorted by name
}

// PollEachRevision is Poll for a server with revision_check: the listing
// of the newest revision, plus one more as a handshake-era client when the
// server also offers that era. The revision says a server's tool list must
// not vary per connection; a server that shows stateless clients one set
// and handshake-era clients another is cloaking, and the Recorder raises
// tool.cloaked from l.Revisions. A failure of the second listing is a
// warning: the first one stands.
func PollEachRevision(ctx context.Context, t Target, opts DialOptions) (*Listing, error) {
	l, err := Poll(ctx, t, opts)
	if err != nil {
		return nil, err
	}
	l.Revisions = []RevisionListing{{ProtocolVersion: l.ProtocolVersion, Tools: l.Tools}}
	if l.ProtocolVersion != StatelessVersion || !slices.ContainsFunc(l.Offered, speaksHandshake) {
		return l, nil
	}
	other, err := pollEra(ctx, t, opts, eraHandshake)
	if err != nil {
		l.Warnings = append(l.Warnings, "revision check: listing as a handshake-era client failed: "+err.Error())
		return l, nil
	}
	l.Revisions = append(l.Revisions, RevisionListing{ProtocolVersion: other.ProtocolVersion, Tools: other.Tools})
	l.Elapsed += other.Elapsed
	return l, nil
}

// cloakedKey says how one tool differs across revisions, e.g.
// "2026-07-28=sha256:…|2025-11-25=-": a new difference, not the same one
// seen again, raises an event.
func cloakedKey(revs []RevisionListing, name string) (string, bool) {
	parts := make([]string, len(revs))
	var first rugwatch.Digest
	differs := false
	for i, r := range revs {
		d := rugwatch.Digest("-")
		if t, ok := (&Listing{Tools: r.Tools}).Tool(name); ok {
			d = t.Digest
		}
		if i == 0 {
			first = d
		} else if d != first {
			differs = true
		}
		parts[i] = r.ProtocolVersion + "=" + string(d)
	}
	return strings.Join(parts, "|"), differs
}

// CloakedTools names the tools that differ (in digest, or by being
// listed at all) across the revisions of a PollEachRevision listing.
func CloakedTools(revs []RevisionListing) []string {
	names := map[string]bool{}
	for _, rev := range revs {
		for _, t := range rev.Tools {
			names[t.Name] = true
		}
	}
	var out []string
	for n := range names {
		if _, differs := cloakedKey(revs, n); differs {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// noteRevision records the revision a poll negotiated and, when the
// listing carries one per revision, which tools differ across them: one
// critical tool.cloaked per tool whose difference is new. It runs inside
// Record's transaction; the events it returns are appended there.
func (r *Recorder) noteRevision(prev store.ServerRecord, l *Listing, next *store.ServerRecord) []rugwatch.Event {
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
	for _, name := range CloakedTools(l.Revisions) {
		key, _ := cloakedKey(l.Revisions, name)
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
func cloakEvent(revs []RevisionListing, name string) rugwatch.Event {
	e := rugwatch.Event{Type: rugwatch.EventToolCloaked, Severity: rugwatch.SeverityCritical, Tool: name}
	var parts []string
	var base json.RawMessage
	for i, rev := range revs {
		t, ok := (&Listing{Tools: rev.Tools}).Tool(name)
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
			e.Changes = Diff(base, t.Canonical)
		}
	}
	e.Message = fmt.Sprintf("the tool is listed differently per protocol revision (%s); a server's tools must not vary per connection",
		strings.Join(parts, "; "))
	return e
}
