package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/visible"
)

// runAlerts lists deliveries, sends a test alert, sends a pending or dead
// one again now, or enables a channel a 410 Gone disabled.
func (a *App) runAlerts(ctx context.Context, args []string) error {
	sub := ""
	if len(args) > 0 && (args[0] == "test" || args[0] == "retry" || args[0] == "enable") {
		sub, args = args[0], args[1:]
	}
	fs := a.newFlags("alerts")
	asJSON := fs.Bool("json", false, "print JSON")
	limit := fs.Int("limit", 20, "recently delivered alerts to list")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	b, err := a.backend(ctx, false)
	if err != nil {
		return err
	}
	defer b.Close()
	switch sub {
	case "test":
		if len(pos) > 1 {
			return usagef("rugwatch alerts test [CHANNEL]")
		}
		channel := ""
		if len(pos) == 1 {
			channel = pos[0]
		}
		ds, err := b.TestAlert(ctx, channel)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(a.Stdout, map[string]any{"schema_version": 1, "deliveries": ds})
		}
		failed := false
		for _, d := range ds {
			fmt.Fprintf(a.Stdout, "%s\t%s", d.Channel, d.State)
			if d.LastError != "" {
				fmt.Fprintf(a.Stdout, "\t%s", visible.Line(d.LastError))
			}
			fmt.Fprintln(a.Stdout)
			failed = failed || d.State != store.DeliveryDelivered
		}
		if failed {
			return errFindings
		}
		return nil
	case "retry":
		if len(pos) != 1 {
			return usagef("rugwatch alerts retry DELIVERY-ID (see `rugwatch alerts` for ids)")
		}
		if err := b.RetryAlert(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(a.Stdout, "%s is due now; the dispatcher sends it at once\n", pos[0])
		return nil
	case "enable":
		if len(pos) != 1 {
			return usagef("rugwatch alerts enable CHANNEL (e.g. webhook:ops; see `rugwatch alerts`)")
		}
		if err := b.EnableAlerts(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(a.Stdout, "%s enabled; deliveries that died while it was disabled stay dead (`rugwatch alerts retry ID` sends one)\n", pos[0])
		return nil
	}
	if len(pos) != 0 {
		return usagef("rugwatch alerts [--json] | alerts test [CHANNEL] | alerts retry ID | alerts enable CHANNEL")
	}
	rep, err := b.Alerts(ctx, *limit)
	if err != nil {
		return err
	}
	disabled, err := b.DisabledAlerts(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	if *asJSON {
		err = writeJSON(a.Stdout, struct {
			report.AlertsReport
			Disabled []store.DisabledChannel `json:"disabled_channels"`
		}{rep, disabled})
	} else {
		tw := tabwriter.NewWriter(a.Stdout, 2, 8, 2, ' ', 0)
		if len(disabled) > 0 {
			fmt.Fprintf(tw, "DISABLED CHANNELS (%d; `rugwatch alerts enable CHANNEL`)\n", len(disabled))
			for _, c := range disabled {
				fmt.Fprintf(tw, "  %s\tsince %s\t%s\n", c.Channel, c.DisabledAt.Local().Format(time.DateTime), visible.Message(c.Reason))
			}
		}
		for _, group := range []struct {
			name string
			ds   []store.Delivery
		}{{"PENDING", rep.Pending}, {"DEAD", rep.Dead}, {"DELIVERED", rep.Delivered}} {
			fmt.Fprintf(tw, "%s (%d)\n", group.name, len(group.ds))
			for _, d := range group.ds {
				when := ""
				switch {
				case d.State == store.DeliveryDelivered && !d.DeliveredAt.IsZero():
					when = "delivered " + d.DeliveredAt.Local().Format(time.DateTime)
				case d.State == store.DeliveryPending:
					when = nextAttempt(d.NextAttempt, now)
				}
				fmt.Fprintf(tw, "  %s\t%s\tattempts %d\t%s\t%s\n", d.ID, d.Channel, d.Attempts, when, visible.Message(d.LastError))
			}
		}
		err = tw.Flush()
	}
	if err != nil {
		return err
	}
	if len(rep.Dead) > 0 {
		return errFindings
	}
	return nil
}

// nextAttempt says when a pending delivery is tried next: its time and
// how far off it is, or that it is due.
func nextAttempt(next, now time.Time) string {
	if !next.After(now) {
		return "next: due now"
	}
	return fmt.Sprintf("next %s (in %s)", next.Local().Format(time.DateTime), next.Sub(now).Round(time.Second))
}
