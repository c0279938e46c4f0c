package monitor

import (
	"fmt"
	"sort"
	"strings"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/store"
)

// refreshShadowing re-checks the same-name shadowing finding on the other
// servers' copies of the tool names server gained or lost in this poll,
// so the finding lands on both tools whichever server was recorded first,
// and leaves a tool whose twin went away. idx already holds server's new
// names. It runs inside the poll's write transaction and touches only
// servers sharing a changed name: a fleet's steady cycle does nothing.
func refreshShadowing(tx *store.Tx, server string, before, after []string, idx *detect.ToolIndex) error {
	changed := map[string]bool{}
	had := map[string]bool{}
	for _, n := range before {
		had[n] = true
	}
	has := map[string]bool{}
	for _, n := range after {
		has[n] = true
		if !had[n] {
			changed[n] = true
		}
	}
	for _, n := range before {
		if !has[n] {
			changed[n] = true
		}
	}
	others := map[string][]string{}
	for name := range changed {
		for _, o := range idx.Lookup(strings.ToLower(name)) {
			if o.Server != server && o.Tool == name {
				others[o.Server] = append(others[o.Server], name)
			}
		}
	}
	servers := make([]string, 0, len(others))
	for s := range others {
		servers = append(servers, s)
	}
	sort.Strings(servers)
	for _, other := range servers {
		rec, ok, err := tx.Server(other)
		if err != nil {
			return fmt.Errorf("reading %s to re-check shadowing: %w", other, err)
		}
		if !ok {
			continue
		}
		dirty := false
		for _, name := range others[other] {
			t, ok := rec.Tools[name]
			if !ok {
				continue
			}
			kept := make([]rugwatch.Finding, 0, len(t.Findings)+1)
			var old *rugwatch.Finding
			for i, f := range t.Findings {
				if f.Rule == detect.RuleShadowing && f.Path == "/name" {
					old = &t.Findings[i]
					continue
				}
				kept = append(kept, f)
			}
			f, now := detect.SameNameShadowing(other, name, idx)
			if now {
				kept = append(kept, f)
			}
			if (old == nil) == !now && (old == nil || *old == f) {
				continue
			}
			t.Findings = detect.SortFindings(kept)
			if len(t.Findings) == 0 {
				t.Findings = nil
			}
			rec.Tools[name] = t
			dirty = true
		}
		if dirty {
			if err := tx.PutServer(rec); err != nil {
				return fmt.Errorf("storing %s after re-checking shadowing: %w", other, err)
			}
		}
	}
	return nil
}

// lostTools reports whether a listing lacks a tool prev had live: the
// other servers' twins of its name need their shadowing re-checked.
func lostTools(prev store.ServerRecord, l *mcpclient.Listing) bool {
	if l == nil {
		return false
	}
	listed := make(map[string]bool, len(l.Tools))
	for _, t := range l.Tools {
		listed[t.Name] = true
	}
	for n, t := range prev.Tools {
		if t.State != rugwatch.StateRemoved && !listed[n] {
			return true
		}
	}
	return false
}
