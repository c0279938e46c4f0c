package configs

import (
	"net/url"
	"strings"
	"time"
)

// Cluster configures replicas sharing one PostgreSQL store.
type Cluster struct {
	// Lease is how long a replica's claim on a server, and on an alert
	// delivery, lasts without renewal: a replica that stops renewing
	// loses them to a live one after this. Default 15s.
	Lease Duration `yaml:"lease"`
	// Replica names this replica in status, metrics and leases; default
	// the host name and process id, which a restart changes (a restarted
	// replica takes its servers back as a new one).
	Replica string `yaml:"replica"`
}

const defaultLease = Duration(15 * time.Second)

// defaultMaxStaleness is how long a proxy on a shared store serves the
// approved set it last confirmed.
const defaultMaxStaleness = Duration(5 * time.Second)

// Shared reports whether the config names a PostgreSQL store (store:),
// shared by every replica that names the same one.
func (c *Config) Shared() bool { return !c.Store.IsZero() }

func (c *Config) applyClusterDefaults() {
	if c.Cluster.Lease == 0 && !c.has("cluster.lease") {
		c.Cluster.Lease = defaultLease
	}
	if c.Proxy.MaxStaleness == 0 && !c.has("proxy.max_staleness") {
		c.Proxy.MaxStaleness = defaultMaxStaleness
	}
}

// validateStore checks store, cluster and proxy.max_staleness.
func (v *validator) validateStore(c *Config) {
	if !c.Store.IsZero() {
		refs := c.Store.references()
		switch {
		case !strings.HasPrefix(c.Store.tmpl, "${") && !strings.HasPrefix(c.Store.tmpl, "postgres://") && !strings.HasPrefix(c.Store.tmpl, "postgresql://"):
			v.fail("store", "must be a postgres:// URL or a reference to one (${env:NAME} or ${file:PATH}); absent means the embedded bbolt store in data_dir")
		case len(refs) == 0 && literalPassword(c.Store.tmpl):
			v.fail("store", "carries a password in the config; put the URL in a secret and write a reference (${file:/run/secrets/rugwatch_dsn} or ${env:NAME})")
		}
		if c.Ephemeral {
			v.fail("store", "not allowed with ephemeral: true, whose data dir is fresh for each run")
		}
	}
	if c.Store.IsZero() {
		for _, k := range []string{"cluster", "cluster.lease", "cluster.replica"} {
			if c.has(k) {
				v.fail(k, "needs store: (a PostgreSQL database the replicas share); a bbolt store has one replica")
				break
			}
		}
	}
	if c.Cluster.Lease < Duration(time.Second) {
		v.fail("cluster.lease", "must be at least 1s")
	}
	if c.Proxy.MaxStaleness <= 0 {
		v.fail("proxy.max_staleness", "must be greater than 0")
	}
}

// literalPassword reports whether a postgres:// URL written in the file
// carries a password.
func literalPassword(dsn string) bool {
	u, err := url.Parse(dsn)
	if err != nil {
		return strings.Contains(dsn, "password")
	}
	if _, ok := u.User.Password(); ok {
		return true
	}
	return u.Query().Has("password")
}
