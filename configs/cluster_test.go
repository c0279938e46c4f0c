package configs

import (
	"strings"
	"testing"
	"time"
)

func TestStoreAndClusterDefaults(t *testing.T) {
	c := mustParse(t, "servers: []\n")
	if c.Shared() || c.Cluster.Lease != Duration(15*time.Second) || c.Proxy.MaxStaleness != Duration(5*time.Second) {
		t.Fatalf("defaults: shared %v, lease %v, max_staleness %v", c.Shared(), c.Cluster.Lease, c.Proxy.MaxStaleness)
	}
	c = mustParse(t, "store: \"${env:RUGWATCH_DSN}\"\ncluster:\n  lease: 30s\n  replica: a\nproxy:\n  max_staleness: 2s\n")
	if !c.Shared() || c.Cluster.Lease != Duration(30*time.Second) || c.Cluster.Replica != "a" || c.Proxy.MaxStaleness != Duration(2*time.Second) {
		t.Fatalf("set: %+v %+v", c.Cluster, c.Proxy)
	}
	// A URL without a password (peer or trust auth over a socket) is no
	// secret and may be written as it is.
	mustParse(t, "store: postgres:///rugwatch?host=/run/postgresql\n")
}

func TestStoreAndClusterMistakesNameTheirLine(t *testing.T) {
	for _, tc := range []struct{ yml, want string }{
		{"store: postgres://rw:hunter2@db/rugwatch\n", "rugwatch.yaml:1: store: carries a password"},
		{"store: postgres://db/rugwatch?password=x\n", "rugwatch.yaml:1: store: carries a password"},
		{"store: /var/lib/rugwatch.db\n", "rugwatch.yaml:1: store: must be a postgres:// URL"},
		{"servers: []\ncluster:\n  lease: 15s\n", "rugwatch.yaml:2: cluster: needs store:"},
		{"store: \"${env:X}\"\ncluster:\n  lease: 100ms\n", "rugwatch.yaml:3: cluster.lease: must be at least 1s"},
		{"proxy:\n  max_staleness: 0s\n", "rugwatch.yaml:2: proxy.max_staleness: must be greater than 0"},
		{"ephemeral: true\nstore: \"${env:X}\"\n", "rugwatch.yaml:2: store: not allowed with ephemeral"},
	} {
		_, err := parse(t, tc.yml)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yml, err, tc.want)
		}
	}
}
