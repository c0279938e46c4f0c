package monitor

import (
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/store"
)

// Remote identity (issue 12 item 3): who answered for an HTTP or SSE
// server. A launch identity pins what ran for a stdio server; a remote
// server has none, so a DNS hijack, a swapped certificate authority or a
// different server behind the same URL would pass unnoticed while the
// tools stay the same.

// noteIdentity records l's remote identity on next and returns an
// identity.drifted event when it differs from the pinned one (first
// sight pins). Like a launch drift it is raised once per new identity and
// stands until PinIdentity pins again. Grading: a changed origin or
// issuing CA key (a certificate from another authority, or TLS gone) is
// critical, that is what an impersonation looks like; changed leaf names,
// serverInfo name or revision alone is a warning.
func noteIdentity(l *mcpclient.Listing, next *store.ServerRecord, now time.Time) []rugwatch.Event {
	if l == nil || l.Identity == nil {
		return nil
	}
	id := *l.Identity
	if l.RevisionChosen {
		// The revision of a session whose era rugwatch chose says nothing
		// of the server: the recorded one stands.
		var rec mcpclient.RemoteIdentity
		if json.Unmarshal(next.Identity, &rec) == nil {
			id.ProtocolVersion = rec.ProtocolVersion
		}
		l.Identity = &id
	}
	cur, err := json.Marshal(l.Identity)
	if err != nil {
		return nil
	}
	last := next.Identity
	next.Identity = cur
	var pinned mcpclient.RemoteIdentity
	if len(next.IdentityPinned) == 0 || json.Unmarshal(next.IdentityPinned, &pinned) != nil {
		next.IdentityPinned = cur
		return nil
	}
	changed, critical := identityChanges(pinned, *l.Identity)
	if len(changed) == 0 {
		return nil
	}
	var lastID mcpclient.RemoteIdentity
	if next.IdentityDrifted && json.Unmarshal(last, &lastID) == nil {
		if c, _ := identityChanges(lastID, *l.Identity); len(c) == 0 {
			return nil // the same drift, raised already
		}
	}
	next.IdentityDrifted = true
	sev := rugwatch.SeverityWarning
	if critical {
		sev = rugwatch.SeverityCritical
	}
	var changes []rugwatch.Change
	for _, c := range changed {
		changes = append(changes, rugwatch.Change{Path: "/identity/" + c, Op: "replace"})
	}
	return []rugwatch.Event{{Type: rugwatch.EventIdentityDrifted, Severity: sev, Server: next.Name, OccurredAt: now, Changes: changes,
		Message: "who answers for this server changed: " + strings.Join(changed, ", ")}}
}

// identityChanges names the compared fields that differ, and whether one
// of them is the origin or the CA.
func identityChanges(a, b mcpclient.RemoteIdentity) (changed []string, critical bool) {
	if a.Origin != b.Origin {
		changed, critical = append(changed, "origin"), true
	}
	if a.CAKeySHA256 != b.CAKeySHA256 {
		changed, critical = append(changed, "ca_key_sha256"), true
	}
	if !slices.Equal(a.LeafSANs, b.LeafSANs) {
		changed = append(changed, "leaf_sans")
	}
	if a.ServerName != b.ServerName {
		changed = append(changed, "server_name")
	}
	if a.ProtocolVersion != b.ProtocolVersion {
		changed = append(changed, "protocol_version")
	}
	return changed, critical
}

// PinIdentity accepts a server's current remote identity (a human's
// approval of the drift): the Ledger's approve --launch path should call it.
func PinIdentity(rec *store.ServerRecord) {
	if len(rec.Identity) > 0 {
		rec.IdentityPinned = rec.Identity
		rec.IdentityDrifted = false
	}
}
