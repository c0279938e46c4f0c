package main

import (
	"context"
	"fmt"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/store"
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
	cfg, err := a.config()
	if err != nil {
		return err
	}
	db, err := a.openStore(cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	now := time.Now().UTC()
	var done []string
	err = db.Update(func(tx *store.Tx) error {
		if *all {
			cur, err := tx.Approvals(server)
			if err != nil {
				return err
			}
			for _, ap := range cur {
				if ap.Kind == store.KindTool {
					tools = append(tools, ap.Tool)
				}
			}
		}
		rec, _, err := tx.Server(server)
		if err != nil {
			return err
		}
		for _, name := range tools {
			ap, ok, err := tx.RevokeApproval(server, store.KindTool, name, *reason, now)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%s/%s: %w", server, name, errNoApproval)
			}
			if t, ok := rec.Tools[name]; ok {
				t.State = rugwatch.StateRevoked
				t.Severity = rugwatch.SeverityWarning
				t.LastChanged = now
				rec.Tools[name] = t
			}
			if err := tx.AppendEvent(&rugwatch.Event{
				Type: rugwatch.EventToolRevoked, Severity: rugwatch.SeverityWarning, Server: server, Tool: name,
				ApprovedDigest: ap.Digest, OccurredAt: now, Message: *reason,
			}); err != nil {
				return err
			}
			done = append(done, name)
		}
		if rec.Name != "" {
			return tx.PutServer(rec)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, n := range done {
		fmt.Fprintf(a.Stdout, "revoked %s/%s\n", server, visible.Line(n))
	}
	return nil
}
