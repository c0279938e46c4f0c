package notify

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/store"
)

// Alerting is the alert side of one config: its channels and routing. Its
// InTx queues an event's deliveries in the outbox in the transaction that
// records the event, so a crash can never keep a drift and lose its alert.
type Alerting struct {
	channels map[string]Notifier
	infos    []ChannelInfo
	log      *slog.Logger
}

// NewAlerting builds the channels of cfg; secrets are resolved through r
// when a channel sends, never here.
func NewAlerting(cfg *configs.Config, r configs.Resolver, log *slog.Logger) (*Alerting, error) {
	chs, err := Channels(cfg, r, log)
	if err != nil {
		return nil, err
	}
	return &Alerting{channels: ByName(chs), infos: ChannelInfos(cfg), log: log}, nil
}

// InTx queues e for every channel whose min_severity it meets.
func (al *Alerting) InTx(tx *store.Tx, e rugwatch.Event) error {
	return Enqueue(tx, e, Route(al.infos, e))
}

// TestChannels queues a test event for one channel ("" for all) and
// returns the delivery ids, for monitor.Ledger.TestAlert.
func (al *Alerting) TestChannels(tx *store.Tx, e rugwatch.Event, channel string) ([]string, error) {
	var chans []string
	for _, ci := range al.infos {
		if channel == "" || ci.Name == channel {
			chans = append(chans, ci.Name)
		}
	}
	if len(chans) == 0 {
		return nil, unknownChannel(fmt.Sprintf("no alert channel %q (channels: log, webhook:NAME, email:NAME)", channel))
	}
	sort.Strings(chans)
	ids := make([]string, 0, len(chans))
	for _, c := range chans {
		ids = append(ids, store.DeliveryID(e.ID, c))
	}
	return ids, Enqueue(tx, e, chans)
}

// unknownChannel is the caller's mistake: the CLI reports it as a usage
// error (it has the Usage method every such error has).
type unknownChannel string

func (e unknownChannel) Error() string { return string(e) }
func (e unknownChannel) Usage() bool   { return true }

// Dispatcher builds a dispatcher over db for these channels.
func (al *Alerting) Dispatcher(db *store.DB) *Dispatcher {
	return &Dispatcher{DB: db, Channels: al.channels, Log: al.log}
}

// Drain attempts every delivery that is due once, then returns: a one-shot
// `check` alerts as the daemon would, and leaves retries in the outbox for
// the next run of serve or check. Retries are scheduled after start, so
// they end the loop; alert.dead reports queued by a failure are due at
// once and go out in the next pass.
func (d *Dispatcher) Drain(ctx context.Context, bound time.Duration) error {
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
