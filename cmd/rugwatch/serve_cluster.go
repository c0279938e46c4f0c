package main

import (
	"fmt"
	"os"
	"time"

	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/monitor"
)

// replicaName is this process's name in a cluster: cluster.replica, else
// the host name and process id (a restart is a new replica; the old one's
// leases run out or were released).
func replicaName(cfg *configs.Config) string {
	if cfg.Cluster.Replica != "" {
		return cfg.Cluster.Replica
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}

// startCluster makes this daemon one replica of the cluster sharing its
// PostgreSQL store: it polls and watches only the servers it holds a
// lease on (monitor.Cluster), and learns at once of approvals,
// revocations and drifts any replica writes (LISTEN), so its proxies
// re-read what passes before their next call. A bbolt store has no
// cluster: nothing starts.
func (d *daemon) startCluster(cfg *configs.Config) {
	if !d.db.Shared() {
		return
	}
	c := &monitor.Cluster{
		DB: d.db, Replica: d.replica, Lease: time.Duration(cfg.Cluster.Lease), Fleet: d.fleet, Log: d.app.log,
		Observer: d.metrics,
		Servers: func() []string {
			cur, _, _ := d.current()
			names := make([]string, len(cur.Servers))
			for i, s := range cur.Servers {
				names[i] = s.Name
			}
			return names
		},
	}
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		c.Run(d.ctx)
	}()
	go func() {
		defer d.wg.Done()
		d.db.Listen(d.ctx, func(string) {
			// Written elsewhere: what passes may have moved, and alerts
			// may be queued for this replica's dispatcher to claim.
			d.gen.Add(1)
			d.wake()
		}, func(err error) {
			d.app.log.Error("cluster: lost the change notifications; listening again (proxies re-read approvals meanwhile)", "error", err)
		})
	}()
	d.app.log.Info("cluster: this replica shares the store", "replica", d.replica, "store", d.db.Path(), "lease", cfg.Cluster.Lease.String())
}
