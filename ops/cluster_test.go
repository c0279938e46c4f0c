package ops

import (
	"testing"

	"github.com/rugwatch/rugwatch/store"
)

// The per-replica series: what a lease round and the dispatcher's claims
// report reaches /metrics under the replica's name.
func TestClusterSeriesPerReplica(t *testing.T) {
	db, err := store.Open(t.TempDir()+"/rugwatch.db", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	m := NewMetrics(StoreSource{DB: db}, BuildInfo{})
	m.LeaseRound("host-a", 12, 12, 0, true)
	m.LeaseRound("host-a", 7, 0, 5, true) // host-b joined: five handed over
	m.LeaseRound("host-a", 7, 0, 0, false)
	m.Claimed("host-a", 3)
	fams := scrape(t, m)
	for _, c := range []struct {
		fam    string
		labels map[string]string
		want   float64
	}{
		{"rugwatch_cluster_servers_held", map[string]string{"replica": "host-a"}, 7},
		{"rugwatch_cluster_lease_rounds_total", map[string]string{"replica": "host-a", "result": "ok"}, 2},
		{"rugwatch_cluster_lease_rounds_total", map[string]string{"replica": "host-a", "result": "error"}, 1},
		{"rugwatch_cluster_servers_moved_total", map[string]string{"replica": "host-a", "direction": "took"}, 12},
		{"rugwatch_cluster_servers_moved_total", map[string]string{"replica": "host-a", "direction": "gave"}, 5},
		{"rugwatch_outbox_claims_total", map[string]string{"replica": "host-a"}, 3},
	} {
		if got, ok := value(fams, c.fam, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.fam, c.labels, got, ok, c.want)
		}
	}
}
