package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// ErrLocked is returned, wrapped with the path, when another handle (this
// process or another one) holds the store file.
var ErrLocked = errors.New("store is locked (is `rugwatch serve` running?)")

// ErrTxClosed is returned by a Tx method called after its View or Update has
// returned.
var ErrTxClosed = errors.New("store transaction used after it ended")

// DefaultTimeout bounds how long Open waits for the file lock.
const DefaultTimeout = time.Second

// Options tune Open. The zero value is a read-write open that waits
// DefaultTimeout for the lock and reads the wall clock.
type Options struct {
	// Timeout bounds the wait for the file lock; zero or negative means
	// DefaultTimeout. bbolt's own zero (wait forever) is never used.
	Timeout time.Duration
	// ReadOnly takes a shared lock and never writes; the file must exist
	// and already be at this binary's schema version.
	ReadOnly bool
	// Now stamps events and revocations that come without a time; nil means
	// time.Now.
	Now func() time.Time
}

// DB is an open store file.
type DB struct {
	kv kvDB
	// bolt is the embedded file, nil for PostgreSQL: backups and page
	// release are the file's own business.
	bolt *bolt.DB
	// pg is the PostgreSQL backend, nil for bbolt: leases, claims and
	// notifications are the cluster's business.
	pg   *pgDB
	path string
	now  func() time.Time
	ids  idSource

	closeOnce sync.Once
	closeErr  error
}

// Open opens or creates the store at path and brings its schema up to date.
func Open(path string, opts Options) (*DB, error) {
	if strings.HasPrefix(path, "postgres://") || strings.HasPrefix(path, "postgresql://") {
		// A file of that name would be made in a directory "postgres:".
		return nil, fmt.Errorf("open store %s: a PostgreSQL URL, not a file (OpenPostgres opens it)", path)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if !opts.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("create store directory: %w", err)
		}
	}
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout, ReadOnly: opts.ReadOnly})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db := &DB{kv: boltDB{bdb}, bolt: bdb, path: path, now: opts.Now}
	if opts.ReadOnly {
		err = db.kv.view(func(tx kvTx) error { return checkSchema(tx, migrations) })
	} else {
		// A write transaction commits and fsyncs even when it changes
		// nothing; most opens (every CLI command, a proxy's twice-a-second
		// read) find the schema current, so look first.
		err = db.bringUpToDate()
	}
	if err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return db, nil
}

// bringUpToDate applies the migrations this store still needs. A write
// transaction commits and fsyncs even when it changes nothing; most opens
// (every CLI command, a proxy's twice-a-second read) find the schema
// current, so look first.
func (db *DB) bringUpToDate() error {
	var pending bool
	err := db.kv.view(func(tx kvTx) error {
		cur, err := schemaVersion(tx)
		pending = err != nil || cur < latestVersion(migrations)
		return nil
	})
	if err != nil {
		return err
	}
	if pending {
		return db.kv.update(func(tx kvTx) error { return migrate(tx, migrations) })
	}
	return db.kv.view(func(tx kvTx) error { return checkSchema(tx, migrations) })
}

// Close releases the store (the file and its lock, or the database's
// connections). Calling it again returns the first call's result.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		if err := db.kv.close(); err != nil {
			db.closeErr = fmt.Errorf("close store %s: %w", db.path, err)
		}
	})
	return db.closeErr
}

// Path is the file the store was opened from, or the PostgreSQL
// database it is in (host and name, never a password).
func (db *DB) Path() string { return db.path }

// View runs fn in a read-only transaction.
func (db *DB) View(fn func(*Tx) error) error {
	return db.kv.view(func(ktx kvTx) error { return fn(&Tx{tx: ktx, db: db}) })
}

// ViewContext is View for a caller that cannot wait past ctx: on a
// shared (PostgreSQL) store, the read fails when ctx ends.
func (db *DB) ViewContext(ctx context.Context, fn func(*Tx) error) error {
	return db.kv.viewContext(ctx, func(ktx kvTx) error { return fn(&Tx{tx: ktx, db: db}) })
}

// Update runs fn in a read-write transaction, committed if fn returns nil
// and rolled back otherwise. Writers are serialised.
func (db *DB) Update(fn func(*Tx) error) error {
	return db.kv.update(func(ktx kvTx) error { return fn(&Tx{tx: ktx, db: db}) })
}

// Tx is one transaction. Everything it returns is copied out of the file, so
// it stays valid after the transaction ends; the Tx itself does not.
type Tx struct {
	tx kvTx
	db *DB
}

// bucket returns a top-level bucket, failing if the Tx has ended or the
// schema lacks it.
func (t *Tx) bucket(name []byte) (kvBucket, error) {
	if t.tx.ended() {
		return nil, ErrTxClosed
	}
	b := t.tx.Bucket(name)
	if b == nil {
		return nil, fmt.Errorf("bucket %q missing (store not migrated?)", name)
	}
	return b, nil
}

// encode marshals v without HTML escaping, so json.RawMessage fields (the
// canonical definitions whose digests are pinned) keep their exact bytes.
func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// UpdateContext is Update for a caller that cannot wait past ctx: on a
// shared (PostgreSQL) store the transaction rolls back and fails when ctx
// ends; fn has returned by then, as with Update.
func (db *DB) UpdateContext(ctx context.Context, fn func(*Tx) error) error {
	return db.kv.updateContext(ctx, func(ktx kvTx) error { return fn(&Tx{tx: ktx, db: db}) })
}

// Batch is Update for a caller among many concurrent ones: bbolt groups
// the functions of concurrent callers into one write transaction (and one
// fsync), so a fleet's polls do not each wait for the disk. Each fn
// commits with the others or not at all, exactly as in Update; fn may
// run more than once (when another fn of its batch fails, the rest run
// again without it), so it must not leave anything outside the
// transaction changed by a run that did not commit.
func (db *DB) Batch(fn func(*Tx) error) error {
	return db.kv.batch(func(ktx kvTx) error { return fn(&Tx{tx: ktx, db: db}) })
}

// OnCommit runs fn after the transaction committed, for caches outside
// the store that must only learn what the file holds.
func (t *Tx) OnCommit(fn func()) { t.tx.OnCommit(fn) }
