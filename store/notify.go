package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ChannelChanged is the PostgreSQL notification channel a write that may
// change what a proxy lets pass (an approval, a revocation, a server's
// record with its tool states) notifies on commit, its payload the
// server's name. Replicas listen on it to learn at once what another
// host wrote; what changed is then read from the tables, never from the
// notification.
const ChannelChanged = "rugwatch_changed"

// changed marks server as changed by this transaction. Only PostgreSQL
// has other processes to tell; in bbolt the writer is the only process.
func (t *Tx) changed(server string) {
	if pt, ok := t.tx.(*pgTx); ok {
		pt.notice(ChannelChanged, server)
	}
}

// Shared reports whether the store is a database other hosts share
// (PostgreSQL), where other processes write while this one runs.
func (db *DB) Shared() bool { return db.pg != nil }

// Listen calls fn with each server another process (or this one) marked
// changed, until ctx ends. It holds one connection for the listening and
// opens another when that one fails, calling fn with "" after a
// reconnect (what happened meanwhile is unknown: read everything again)
// and lost, if set, with each error that cut it. On bbolt it returns at
// once: nothing else writes the file while this process holds it.
func (db *DB) Listen(ctx context.Context, fn func(server string), lost func(error)) {
	if db.pg == nil {
		return
	}
	first := true
	// Tried again after a second, doubling to five while the database
	// stays away: one line a second for a whole outage would bury what
	// else the log says, and much longer would leave the proxies on
	// their half-second re-read alone for that long after it returns.
	const least, most = time.Second, 5 * time.Second
	wait := least
	for ctx.Err() == nil {
		err := db.pg.listen(ctx, ChannelChanged, func() {
			if !first {
				fn("")
			}
			first = false
			wait = least
		}, fn)
		if ctx.Err() != nil {
			return
		}
		if lost != nil && err != nil {
			lost(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, most)
	}
}

// listen LISTENs on channel on a connection of its own until ctx ends
// or the connection fails; ready runs once the LISTEN is in place.
func (p *pgDB) listen(ctx context.Context, channel string, ready func(), fn func(string)) error {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("listen for changes: %w", err)
	}
	// A connection that sat in LISTEN is not handed back to the pool.
	defer destroy(conn)
	if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
		return fmt.Errorf("listen for changes: %w", err)
	}
	ready()
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return fmt.Errorf("listen for changes: %w", err)
		}
		fn(n.Payload)
	}
}

func destroy(c *pgxpool.Conn) {
	_ = c.Hijack().Close(context.Background())
}
