package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/notify"
	"github.com/rugwatch/rugwatch/store"
)

// alerting is the alert side of one config: its channels and routing,
// and the in-transaction hook that queues an event's deliveries in the
// outbox together with the event itself.
type alerting struct {
	channels map[string]notify.Notifier
	infos    []notify.ChannelInfo
}

func newAlerting(cfg *configs.Config, r configs.Resolver, log *slog.Logger) (*alerting, error) {
	chs, err := notify.Channels(cfg, r, log)
	if err != nil {
		return nil, err
	}
	return &alerting{channels: notify.ByName(chs), infos: notify.ChannelInfos(cfg)}, nil
}

// inTx queues e for every channel that wants it.
func (al *alerting) inTx(tx *store.Tx, e rugwatch.Event) error {
	return notify.Enqueue(tx, e, notify.Route(al.infos, e))
}

// dispatcher builds a dispatcher over db for these channels.
func (al *alerting) dispatcher(db *store.DB, log *slog.Logger) *notify.Dispatcher {
	return &notify.Dispatcher{DB: db, Channels: al.channels, Log: log}
}

// drain attempts every delivery that is due once, then returns: a one-shot
// `check` alerts as the daemon would, and leaves retries in the outbox for
// the next run of serve or check. Retries are scheduled after start, so
// they end the loop; alert.dead reports queued by a failure are due at
// once and go out in the next pass.
func drain(ctx context.Context, d *notify.Dispatcher, bound time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	start := time.Now()
	for {
		var due []store.Delivery
		err := d.DB.View(func(tx *store.Tx) error {
			var err error
			due, err = tx.DueDeliveries(start, 1)
			return err
		})
		if err != nil || len(due) == 0 {
			return err
		}
		if err := d.DeliverDue(ctx); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("alerts still pending after %v; they stay queued for the next run", bound)
		}
	}
}
