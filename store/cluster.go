package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNotShared is returned by the cluster's methods on a bbolt store,
// which one process holds alone.
var ErrNotShared = errors.New("the store is not shared (no store: in the config), so there is no cluster")

// ErrReplicaNameTaken says another live process uses this replica's name.
var ErrReplicaNameTaken = errors.New("replica name in use")

// Replicas and leases live in PostgreSQL's own tables, outside the
// bucket tree and outside the writer lock: a heartbeat must not wait
// behind a long write, and a lease is a row another replica takes with a
// single conditional upsert. Every time is the database's clock.
//
//	rugwatch_replicas (name, started, heartbeat)  each live replica
//	rugwatch_leases (server, owner, expires)      who polls each server

// Heartbeat records that replica is alive and returns the replicas alive
// now (a heartbeat within lease), itself included, sorted. Replicas
// silent for ten leases are forgotten.
func (db *DB) Heartbeat(ctx context.Context, replica string, lease time.Duration) ([]string, error) {
	if db.pg == nil {
		return nil, ErrNotShared
	}
	var live []string
	err := pgx.BeginFunc(ctx, db.pg.pool, func(tx pgx.Tx) error {
		// A name another live process heartbeats under is not taken
		// over: two replicas sharing one name (a config copied between
		// hosts) would both hold its leases and poll its servers twice.
		tag, err := tx.Exec(ctx, `INSERT INTO rugwatch_replicas (name, started, heartbeat, instance) VALUES ($1, now(), now(), $2)
			ON CONFLICT (name) DO UPDATE SET heartbeat = now(), instance = EXCLUDED.instance
			WHERE rugwatch_replicas.instance = EXCLUDED.instance OR rugwatch_replicas.heartbeat < now() - $3::interval`,
			replica, db.pg.instance, lease)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: another live process heartbeats as %q; give each replica its own cluster.replica", ErrReplicaNameTaken, replica)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM rugwatch_replicas WHERE heartbeat < now() - $1::interval * 10`, lease); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT name FROM rugwatch_replicas WHERE heartbeat > now() - $1::interval ORDER BY name`, lease)
		if err != nil {
			return err
		}
		live, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("heartbeat of replica %s: %w", replica, err)
	}
	return live, nil
}

// Preferred is the replica of live that should poll server: the highest
// hash of the pair (rendezvous hashing), so every replica computes the
// same answer from the same list, and a replica joining or leaving moves
// only its own share of the servers.
func Preferred(server string, live []string) string {
	var best string
	var top uint64
	for _, r := range live {
		// SHA-256, not FNV: FNV's high bits follow the last byte so
		// closely that replica names differing there split unevenly.
		sum := sha256.Sum256([]byte(server + "\x00" + r))
		if v := binary.BigEndian.Uint64(sum[:8]); best == "" || v > top {
			best, top = r, v
		}
	}
	return best
}

// Shard renews replica's leases and settles which of servers it polls:
// it takes, for lease, those it is preferred for (Preferred over live)
// that nobody holds or whose lease ran out, gives up those it holds but
// another live replica is preferred for (that one takes them at its next
// heartbeat), and drops leases on servers no longer configured. It
// returns the servers it holds now, sorted. A server is held by one
// replica at a time: a take is one conditional upsert on its row.
func (db *DB) Shard(ctx context.Context, replica string, servers, live []string, lease time.Duration) ([]string, error) {
	if db.pg == nil {
		return nil, ErrNotShared
	}
	var mine, others []string
	for _, s := range servers {
		if Preferred(s, live) == replica {
			mine = append(mine, s)
		} else {
			others = append(others, s)
		}
	}
	var held []string
	err := pgx.BeginFunc(ctx, db.pg.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE rugwatch_leases SET expires = now() + $2::interval WHERE owner = $1`, replica, lease); err != nil {
			return fmt.Errorf("renew: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO rugwatch_leases (server, owner, expires)
			SELECT s, $1, now() + $2::interval FROM unnest($3::text[]) AS s
			ON CONFLICT (server) DO UPDATE SET owner = EXCLUDED.owner, expires = EXCLUDED.expires
			WHERE rugwatch_leases.expires < now() OR rugwatch_leases.owner = EXCLUDED.owner`, replica, lease, mine); err != nil {
			return fmt.Errorf("take: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM rugwatch_leases WHERE owner = $1 AND (server = ANY($2::text[]) OR NOT server = ANY($3::text[]))`,
			replica, others, servers); err != nil {
			return fmt.Errorf("give up: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT server FROM rugwatch_leases WHERE owner = $1 AND expires > now() ORDER BY server`, replica)
		if err != nil {
			return err
		}
		held, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("leases of replica %s: %w", replica, err)
	}
	return held, nil
}

// Release gives up every lease replica holds, so a replica stopping
// cleanly hands its servers over at once instead of after its lease.
func (db *DB) Release(ctx context.Context, replica string) error {
	if db.pg == nil {
		return ErrNotShared
	}
	// Only the process that holds the name gives its leases up: one
	// refused for a name another process uses must not release that
	// one's servers on its way out.
	tag, err := db.pg.pool.Exec(ctx, `DELETE FROM rugwatch_replicas WHERE name = $1 AND instance = $2`, replica, db.pg.instance)
	if err != nil {
		return fmt.Errorf("release replica %s: %w", replica, err)
	}
	if tag.RowsAffected() == 0 {
		return nil
	}
	if _, err := db.pg.pool.Exec(ctx, `DELETE FROM rugwatch_leases WHERE owner = $1`, replica); err != nil {
		return fmt.Errorf("release leases of replica %s: %w", replica, err)
	}
	return nil
}

// Owners maps each server with a live lease to the replica holding it.
// A bbolt store has none.
func (db *DB) Owners(ctx context.Context) (map[string]string, error) {
	if db.pg == nil {
		return nil, nil
	}
	rows, err := db.pg.pool.Query(ctx, `SELECT server, owner FROM rugwatch_leases WHERE expires > now()`)
	if err != nil {
		return nil, fmt.Errorf("read server owners: %w", err)
	}
	out := map[string]string{}
	var server, owner string
	_, err = pgx.ForEachRow(rows, []any{&server, &owner}, func() error {
		out[server] = owner
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read server owners: %w", err)
	}
	return out, nil
}
