package main

import (
	"context"
	"fmt"
	"sort"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/visible"
)

// ToolDiff is one tool in `diff --json`.
type ToolDiff struct {
	Server         string            `json:"server"`
	Tool           string            `json:"tool"`
	State          rugwatch.State    `json:"state"`
	Severity       rugwatch.Severity `json:"severity"`
	ApprovedDigest rugwatch.Digest   `json:"approved_digest"`
	ObservedDigest rugwatch.Digest   `json:"observed_digest"`
	Changes        []rugwatch.Change `json:"changes"`
}

// runDiff shows what changed between the approved and the observed
// definition of a server's tools.
func (a *App) runDiff(ctx context.Context, args []string) error {
	fs := a.newFlags("diff")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 {
		return usagef("rugwatch diff SERVER [TOOL]")
	}
	server := pos[0]
	cfg, err := a.config()
	if err != nil {
		return err
	}
	ver, err := a.verifier(cfg)
	if err != nil {
		return err
	}
	db, err := a.openStore(cfg)
	if err != nil {
		return err
	}
	defer db.Close()

	var diffs []ToolDiff
	defs := map[string]store.ToolRecord{}
	err = db.View(func(tx *store.Tx) error {
		rec, ok, err := tx.Server(server)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("server %s has not been checked yet", server)
		}
		var names []string
		if len(pos) == 2 {
			if _, ok := rec.Tools[pos[1]]; !ok {
				return usagef("server %s has no tool %q", server, pos[1])
			}
			names = []string{pos[1]}
		} else {
			for n := range rec.Tools {
				names = append(names, n)
			}
			sort.Strings(names)
		}
		for _, n := range names {
			t := rec.Tools[n]
			d := ToolDiff{Server: server, Tool: n, State: t.State, Severity: t.Severity,
				ApprovedDigest: t.ApprovedDigest, ObservedDigest: t.ObservedDigest, Changes: []rugwatch.Change{}}
			if t.State == rugwatch.StateApproved && len(pos) == 1 {
				continue
			}
			if t.ApprovedDigest != "" && t.ApprovedDigest != t.ObservedDigest {
				if def, ok := approvedDefinition(tx, ver, server, n, t.ApprovedDigest); ok {
					d.Changes = monitor.Diff(def, t.Definition)
				}
			}
			defs[n] = t
			diffs = append(diffs, d)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if *asJSON {
		if err := writeJSON(a.Stdout, map[string]any{"schema_version": 1, "tools": diffs}); err != nil {
			return err
		}
	} else {
		if len(diffs) == 0 {
			fmt.Fprintf(a.Stdout, "%s: every tool is approved as observed\n", server)
		}
		for _, d := range diffs {
			fmt.Fprintf(a.Stdout, "── %s/%s  %s  %s\n", server, visible.Line(d.Tool), d.State, d.Severity)
			switch {
			case len(d.Changes) > 0:
				fmt.Fprintf(a.Stdout, "  approved %s → observed %s\n", d.ApprovedDigest, d.ObservedDigest)
				printChanges(a.Stdout, d.Changes, "  ")
			case d.ApprovedDigest == "":
				fmt.Fprintf(a.Stdout, "  never approved; the whole definition (%s):\n", d.ObservedDigest)
				printDefinition(a.Stdout, defs[d.Tool].Definition, "  ")
			case d.ApprovedDigest == d.ObservedDigest:
				fmt.Fprintf(a.Stdout, "  observed definition equals the approved one (%s)\n", d.ObservedDigest)
			default:
				fmt.Fprintf(a.Stdout, "  approved definition %s is not available or does not verify\n", d.ApprovedDigest)
			}
			fmt.Fprintln(a.Stdout)
		}
	}
	for _, d := range diffs {
		if !d.State.Clean() {
			return errFindings
		}
	}
	return nil
}

// approvedDefinition finds the verified definition approved under digest:
// the current approval or, for a drifted or revoked tool, the one in
// history.
func approvedDefinition(tx *store.Tx, ver monitor.Verifier, server, tool string, digest rugwatch.Digest) ([]byte, bool) {
	if cur, ok, err := tx.Approval(server, store.KindTool, tool); err == nil && ok && cur.Digest == digest {
		if a := verifyApproval(ver, cur); a.Valid {
			return a.Definition, true
		}
	}
	hist, err := tx.ApprovalHistory(server, tool)
	if err != nil {
		return nil, false
	}
	for i := len(hist) - 1; i >= 0; i-- {
		if hist[i].Digest == digest && hist[i].Kind == store.KindTool {
			if a := verifyApproval(ver, hist[i]); a.Valid {
				return a.Definition, true
			}
		}
	}
	return nil, false
}
