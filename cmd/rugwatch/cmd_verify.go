package main

import (
	"context"
	"fmt"

	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/visible"
)

// runVerify checks every current approval's signature and the event
// chain, and with --head that the log still holds the head an alert
// carried.
func (a *App) runVerify(ctx context.Context, args []string) error {
	fs := a.newFlags("verify")
	asJSON := fs.Bool("json", false, "print JSON")
	headFlag := fs.String("head", "", "SEQ:HEAD, the seq and chain_head of an alert: exit 1 unless the log still holds that head")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	var head *store.Head
	if *headFlag != "" {
		h, err := store.ParseHead(*headFlag)
		if err != nil {
			return usagef("verify --head: %v", err)
		}
		head = &h
	}
	b, err := a.backend(ctx, false)
	if err != nil {
		return err
	}
	defer b.Close()
	rep, err := b.Verify(ctx, head)
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
		if rep.Head != "" {
			fmt.Fprintf(a.Stdout, "log head: %s\n", rep.Head)
		}
		switch {
		case rep.CheckpointError != "":
			fmt.Fprintf(a.Stdout, "checkpoint %s: INVALID: %s\n", rep.Checkpoint, rep.CheckpointError)
		case rep.Checkpoint != "":
			fmt.Fprintf(a.Stdout, "checkpoint %s: signed by %s; older events were pruned by retention\n", rep.Checkpoint, rep.CheckpointKey)
		}
		switch {
		case rep.HeadError != "":
			fmt.Fprintf(a.Stdout, "head %s: NOT HELD: %s\n", rep.HeadChecked, rep.HeadError)
		case rep.HeadPruned != "":
			fmt.Fprintf(a.Stdout, "head %s: held behind the signed checkpoint (%s)\n", rep.HeadChecked, rep.HeadPruned)
		case rep.HeadChecked != "":
			fmt.Fprintf(a.Stdout, "head %s: held\n", rep.HeadChecked)
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
