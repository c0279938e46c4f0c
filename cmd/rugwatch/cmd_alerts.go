package main

import (
	"context"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/notify"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/visible"
)

// AlertsReport is `alerts --json`.
type AlertsReport struct {
	SchemaVersion int              `json:"schema_version"`
	Pending       []store.Delivery `json:"pending"`
	Dead          []store.Delivery `json:"dead"`
	Delivered     []store.Delivery `json:"delivered"`
}

// EventAlertTest is the event `alerts test` sends.
const EventAlertTest rugwatch.EventType = "alert.test"

// runAlerts lists deliveries, sends a test alert, or re-queues a dead one.
func (a *App) runAlerts(ctx context.Context, args []string) error {
	sub := ""
	if len(args) > 0 && (args[0] == "test" || args[0] == "retry") {
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
		fmt.Fprintf(a.Stdout, "re-queued %s\n", pos[0])
		return nil
	}
	if len(pos) != 0 {
		return usagef("rugwatch alerts [--json] | alerts test [CHANNEL] | alerts retry ID")
	}
	rep, err := b.Alerts(ctx, *limit)
	if err != nil {
		return err
	}
	if *asJSON {
		err = writeJSON(a.Stdout, rep)
	} else {
		tw := tabwriter.NewWriter(a.Stdout, 2, 8, 2, ' ', 0)
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
				case d.State == store.DeliveryPending && !d.NextAttempt.IsZero():
					when = "next " + d.NextAttempt.Local().Format(time.DateTime)
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

func (l *local) Alerts(ctx context.Context, limit int) (AlertsReport, error) {
	rep := AlertsReport{SchemaVersion: 1}
	err := l.db.View(func(tx *store.Tx) error {
		var err error
		if rep.Pending, err = tx.ListDeliveries(store.DeliveryPending, 0); err != nil {
			return err
		}
		if rep.Dead, err = tx.ListDeliveries(store.DeliveryDead, 0); err != nil {
			return err
		}
		rep.Delivered, err = tx.ListDeliveries(store.DeliveryDelivered, limit)
		return err
	})
	for _, p := range []*[]store.Delivery{&rep.Pending, &rep.Dead, &rep.Delivered} {
		if *p == nil {
			*p = []store.Delivery{}
		}
	}
	return rep, err
}

func (l *local) RetryAlert(ctx context.Context, id string) error {
	err := l.db.Update(func(tx *store.Tx) error {
		d, ok, err := tx.Delivery(id)
		if err != nil {
			return err
		}
		if !ok {
			return usagef("no delivery %q (see `rugwatch alerts`)", id)
		}
		if d.State != store.DeliveryDead {
			return fmt.Errorf("delivery %s is %s, not dead", id, d.State)
		}
		d.State = store.DeliveryPending
		d.Attempts = 0
		d.NextAttempt = time.Now().UTC()
		return tx.UpdateDelivery(d)
	})
	if err != nil {
		return err
	}
	return l.afterWrite(ctx)
}

// TestAlert records an alert.test event, queues it for one channel or all
// of them, and waits until each delivery was attempted: it goes through
// the real outbox and the real channels.
func (l *local) TestAlert(ctx context.Context, channel string) ([]store.Delivery, error) {
	var ids []string
	err := l.db.Update(func(tx *store.Tx) error {
		e := rugwatch.Event{Type: EventAlertTest, Severity: rugwatch.SeverityCritical, Server: "rugwatch",
			Message: "test alert from `rugwatch alerts test`; no tool changed", OccurredAt: time.Now().UTC()}
		if err := tx.AppendEvent(&e); err != nil {
			return err
		}
		var chans []string
		for _, ci := range notify.ChannelInfos(l.cfg) {
			if channel == "" || ci.Name == channel {
				chans = append(chans, ci.Name)
			}
		}
		if len(chans) == 0 {
			return usagef("no alert channel %q (channels: log, webhook:NAME, email:NAME)", channel)
		}
		sort.Strings(chans)
		for _, c := range chans {
			ids = append(ids, store.DeliveryID(e.ID, c))
		}
		return notify.Enqueue(tx, e, chans)
	})
	if err != nil {
		return nil, err
	}
	if err := l.afterWrite(ctx); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var out []store.Delivery
		attempted := true
		err := l.db.View(func(tx *store.Tx) error {
			for _, id := range ids {
				d, _, err := tx.Delivery(id)
				if err != nil {
					return err
				}
				attempted = attempted && (d.State != store.DeliveryPending || d.Attempts > 0)
				out = append(out, d)
			}
			return nil
		})
		if err != nil || attempted || time.Now().After(deadline) {
			return out, err
		}
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
