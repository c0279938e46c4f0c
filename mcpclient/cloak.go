package mcpclient

import (
	"context"
	"slices"
	"sort"
	"strings"

	"github.com/rugwatch/rugwatch"
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
func CloakedKey(revs []RevisionListing, name string) (string, bool) {
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
		if _, differs := CloakedKey(revs, n); differs {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
