package main

import (
	"context"
	"fmt"
	"github.com/rugwatch/rugwatch/visible"
)

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
	server, tool := pos[0], ""
	if len(pos) == 2 {
		tool = pos[1]
	}
	b, err := a.backend(ctx, false)
	if err != nil {
		return err
	}
	defer b.Close()
	res, err := b.Diff(ctx, server, tool)
	if err != nil {
		return err
	}
	diffs := res.Tools
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
			if d.Signatures != "" {
				fmt.Fprintf(a.Stdout, "  signatures: %s\n", d.Signatures)
			}
			switch {
			case len(d.Changes) > 0:
				fmt.Fprintf(a.Stdout, "  approved %s → observed %s\n", d.ApprovedDigest, d.ObservedDigest)
				printChanges(a.Stdout, d.Changes, "  ")
			case d.ApprovedDigest == "":
				fmt.Fprintf(a.Stdout, "  never approved; the whole definition (%s):\n", d.ObservedDigest)
				printDefinition(a.Stdout, res.Definitions[d.Tool], "  ")
			case d.ApprovedDigest == d.ObservedDigest:
				fmt.Fprintf(a.Stdout, "  observed definition equals the approved one (%s)\n", d.ObservedDigest)
			default:
				fmt.Fprintf(a.Stdout, "  approved definition %s is not available or does not verify\n", d.ApprovedDigest)
			}
			printFindings(a.Stdout, "  ", d.Findings)
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
