package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/rugwatch/rugwatch/visible"
)

// runHistory prints events, newest first.
func (a *App) runHistory(ctx context.Context, args []string) error {
	fs := a.newFlags("history")
	asJSON := fs.Bool("json", false, "print JSON")
	limit := fs.Int("limit", 50, "at most this many events (0: all)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("rugwatch history [SERVER] [--limit N]")
	}
	server := ""
	if len(pos) == 1 {
		server = pos[0]
	}
	b, err := a.backend(ctx, false)
	if err != nil {
		return err
	}
	defer b.Close()
	events, err := b.History(ctx, server, *limit)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(a.Stdout, map[string]any{"schema_version": 1, "events": events})
	}
	tw := tabwriter.NewWriter(a.Stdout, 2, 8, 2, ' ', 0)
	for _, e := range events {
		subject := e.Server
		if e.Tool != "" {
			subject += "/" + visible.Line(e.Tool)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.OccurredAt.Local().Format(time.DateTime), e.Severity, e.Type, subject, visible.Line(e.Message))
		if len(e.Changes) > 0 {
			tw.Flush()
			printChanges(a.Stdout, e.Changes, "    ")
		}
	}
	return tw.Flush()
}
