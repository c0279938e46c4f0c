package monitor

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/rugwatch/rugwatch/store"
)

// Cluster keeps one replica's share of a shared store's servers: every
// third of a lease it says it is alive, renews its leases and takes or
// gives up servers (store.Shard), and hands the Fleet exactly the servers
// it holds. A replica that cannot renew for a lease less one period
// stops polling everything, since another replica may have taken them by
// then, and takes them back when it can renew again.
type Cluster struct {
	DB      *store.DB
	Replica string
	Lease   time.Duration
	Fleet   *Fleet
	// Servers is every configured server's name, read each round (a
	// reload changes them).
	Servers  func() []string
	Log      *slog.Logger
	Observer ClusterObserver
	// Now is the clock the renewal deadline is kept by; nil: time.Now.
	Now func() time.Time
}

// ClusterObserver is told of each round: how many servers the replica
// holds after it, how many it took and gave up, and whether it reached
// the database. It must not block.
type ClusterObserver interface {
	LeaseRound(replica string, held, took, gave int, ok bool)
}

// Run keeps the replica's share until ctx ends, then gives its leases up
// so the other replicas take its servers at once.
func (c *Cluster) Run(ctx context.Context) {
	now := c.Now
	if now == nil {
		now = time.Now
	}
	period := c.Lease / 3
	var (
		held    []string
		renewed time.Time // the start of the last round that renewed
		dark    bool      // polling nothing: the leases may be gone
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := c.DB.Release(rctx, c.Replica); err != nil {
				c.Log.Warn("leases not released; the other replicas take the servers when they expire", "replica", c.Replica, "error", err)
			}
			cancel()
			return
		case <-timer.C:
		}
		start := now()
		next, err := c.round(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			continue
		case err != nil:
			c.Log.Error("cluster: lease round failed", "replica", c.Replica, "error", err)
			if !dark && !renewed.IsZero() && now().Sub(renewed) >= c.Lease-period {
				c.Log.Error("cluster: leases not renewed for a lease; polling nothing until the database answers", "replica", c.Replica, "servers", len(held))
				if err := c.Fleet.SetOwned(ctx, nil); err != nil {
					c.Log.Error("cluster: stop polling", "error", err)
				}
				dark = true
			}
			n := len(held)
			if dark {
				n = 0
			}
			c.observe(n, 0, 0, false)
		default:
			renewed = start
			took, gave := diff(held, next)
			if len(took)+len(gave) > 0 || dark {
				if err := c.Fleet.SetOwned(ctx, next); err != nil {
					c.Log.Error("cluster: schedule the servers held", "error", err)
				}
				c.Log.Info("cluster: servers held", "replica", c.Replica, "held", len(next), "took", len(took), "gave", len(gave))
			}
			held, dark = next, false
			c.observe(len(held), len(took), len(gave), true)
		}
		timer.Reset(period)
	}
}

func (c *Cluster) round(ctx context.Context) ([]string, error) {
	rctx, cancel := context.WithTimeout(ctx, c.Lease/3)
	defer cancel()
	live, err := c.DB.Heartbeat(rctx, c.Replica, c.Lease)
	if err != nil {
		return nil, err
	}
	return c.DB.Shard(rctx, c.Replica, c.Servers(), live, c.Lease)
}

func (c *Cluster) observe(held, took, gave int, ok bool) {
	if c.Observer != nil {
		c.Observer.LeaseRound(c.Replica, held, took, gave, ok)
	}
}

// diff is what is in next and not in prev (took) and the reverse (gave);
// both lists are sorted.
func diff(prev, next []string) (took, gave []string) {
	for _, s := range next {
		if _, ok := slices.BinarySearch(prev, s); !ok {
			took = append(took, s)
		}
	}
	for _, s := range prev {
		if _, ok := slices.BinarySearch(next, s); !ok {
			gave = append(gave, s)
		}
	}
	return took, gave
}
