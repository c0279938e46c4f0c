package main

import (
	"context"
	"fmt"

	"github.com/rugwatch/rugwatch/visible"
)

// runVerify checks every current approval's signature and the event chain.
func (a *App) runVerify(ctx context.Context, args []string) error {
	fs := a.newFlags("verify")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	b, err := a.backend(ctx, false)
	if err != nil {
		return err
	}
	defer b.Close()
	rep, err := b.Verify(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		if err := writeJSON(a.Stdout, rep); err != nil {
			return err
		}
	} else {
		if rep.ChainError != "" {
			fmt.Fprintf(a.Stdout, "event chain: BROKEN after checking %d events: %s\n", rep.EventsChecked, rep.ChainError)
		} else {
			fmt.Fprintf(a.Stdout, "event chain: ok (%d events)\n", rep.EventsChecked)
		}
		fmt.Fprintf(a.Stdout, "approvals: %d checked, %d invalid\n", rep.ApprovalsChecked, len(rep.InvalidApprovals))
		for _, b := range rep.InvalidApprovals {
			fmt.Fprintf(a.Stdout, "  INVALID %s/%s: %s\n", b.Server, visible.Line(b.Tool), visible.Line(b.Problem))
		}
	}
	if !rep.OK {
		return errFindings
	}
	return nil
}
