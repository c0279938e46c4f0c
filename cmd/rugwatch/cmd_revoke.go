package main

import (
	"context"
	"fmt"

	"github.com/rugwatch/rugwatch/visible"
)

// runRevoke withdraws approvals; the tools count as revoked until approved
// again.
func (a *App) runRevoke(ctx context.Context, args []string) error {
	fs := a.newFlags("revoke")
	reason := fs.String("reason", "", "why, stored with the event")
	all := fs.Bool("all", false, "revoke every approval of the server")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 || (len(pos) == 1 && !*all) {
		return usagef("rugwatch revoke SERVER TOOL… [--reason R] (or --all)")
	}
	server, tools := pos[0], pos[1:]
	b, err := a.backend(ctx, false)
	if err != nil {
		return err
	}
	defer b.Close()
	done, err := b.Revoke(ctx, server, tools, *all, *reason)
	if err != nil {
		return err
	}
	for _, n := range done {
		fmt.Fprintf(a.Stdout, "revoked %s/%s\n", server, visible.Line(n))
	}
	return nil
}
