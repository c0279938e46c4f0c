package ops

import "github.com/prometheus/client_golang/prometheus"

// cluster is the per-replica series of a replica sharing a PostgreSQL
// store: the servers it holds, its lease rounds and what moved, and the
// alert deliveries it claimed. The replica label is the config's
// cluster.replica (or host:pid), one value per process.
type cluster struct {
	held   *prometheus.GaugeVec
	rounds *prometheus.CounterVec
	moved  *prometheus.CounterVec
	claims *prometheus.CounterVec
}

func newCluster() *cluster {
	return &cluster{
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rugwatch_cluster_servers_held",
			Help: "Servers this replica holds a lease on, and so polls and watches.",
		}, []string{"replica"}),
		rounds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rugwatch_cluster_lease_rounds_total",
			Help: "Lease rounds (heartbeat, renew, take, give up) by result: ok, or error (the database did not answer).",
		}, []string{"replica", "result"}),
		moved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rugwatch_cluster_servers_moved_total",
			Help: "Servers this replica took (a dead or leaving replica's, or its share on joining) or gave up (to a joining replica).",
		}, []string{"replica", "direction"}),
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rugwatch_outbox_claims_total",
			Help: "Alert deliveries this replica claimed from the shared outbox to attempt.",
		}, []string{"replica"}),
	}
}

func (c *cluster) collectors() []prometheus.Collector {
	return []prometheus.Collector{c.held, c.rounds, c.moved, c.claims}
}

// LeaseRound counts one lease round (monitor.ClusterObserver).
func (m *Metrics) LeaseRound(replica string, held, took, gave int, ok bool) {
	result := "ok"
	if !ok {
		result = "error"
	}
	m.cluster.rounds.WithLabelValues(replica, result).Inc()
	m.cluster.held.WithLabelValues(replica).Set(float64(held))
	if took > 0 {
		m.cluster.moved.WithLabelValues(replica, "took").Add(float64(took))
	}
	if gave > 0 {
		m.cluster.moved.WithLabelValues(replica, "gave").Add(float64(gave))
	}
}

// Claimed counts deliveries a replica claimed from the outbox.
func (m *Metrics) Claimed(replica string, n int) {
	m.cluster.claims.WithLabelValues(replica).Add(float64(n))
}
