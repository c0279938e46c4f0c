package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	bolterrors "go.etcd.io/bbolt/errors"
)

// The PostgreSQL backend keeps bbolt's bucket tree in two tables, so the
// records, the chain and the migrations above it are the embedded
// backend's own code (see kv.go):
//
//	rugwatch_buckets (id, parent, name, seq)  one row per bucket; parent 0
//	                                          is the root; seq is the
//	                                          bucket's sequence
//	rugwatch_kv (bucket, key, value)          one row per key; a nested
//	                                          bucket is a row whose value
//	                                          is NULL (a nil value, as in
//	                                          bbolt)
//
// bytea sorts byte by byte, as bbolt's keys do, so cursors walk the same
// order. Buckets are never deleted, so a bucket's id, once committed, is
// cached for the life of the process.
//
// Writers are serialised across every replica by one transaction-scoped
// advisory lock taken first in each write transaction: the event chain
// is one chain (each append reads the head the last one left), and every
// read-modify-write of a record sees the last committed write, as bbolt's
// single writer does. Readers take a repeatable-read snapshot and never
// wait.

// pgWriterLock is the advisory lock key every write transaction holds.
const pgWriterLock = 0x7275_6777_6174_6368 // "rugwatch"

// pgTxTimeout bounds one transaction, so a database that stops
// answering fails the operation instead of hanging the daemon.
const pgTxTimeout = 2 * time.Minute

// pgMaxBatch bounds how many concurrent Batch calls share a transaction.
const pgMaxBatch = 500

// pgCursorPage is how many rows a cursor reads per round trip.
const pgCursorPage = 256

// pgSchema is the backend's own DDL, ordered like the store's migrations:
// version i+1 is pgSchema[i]. The store's migrations then run on top, as
// they do in a new bbolt file.
var pgSchema = []string{
	`CREATE TABLE rugwatch_buckets (
		id     bigserial PRIMARY KEY,
		parent bigint NOT NULL,
		name   bytea  NOT NULL,
		seq    bigint NOT NULL DEFAULT 0,
		UNIQUE (parent, name)
	);
	CREATE TABLE rugwatch_kv (
		bucket bigint NOT NULL,
		key    bytea  NOT NULL,
		value  bytea,
		PRIMARY KEY (bucket, key)
	)`,
	// v2: the cluster (cluster.go). Times are the database's own clock,
	// so replicas' clocks never have to agree.
	`CREATE TABLE rugwatch_replicas (
		name      text PRIMARY KEY,
		started   timestamptz NOT NULL,
		heartbeat timestamptz NOT NULL
	);
	CREATE TABLE rugwatch_leases (
		server  text PRIMARY KEY,
		owner   text NOT NULL,
		expires timestamptz NOT NULL
	)`,
	// v3: which process holds a replica name, so that two processes
	// given the same cluster.replica cannot both hold its leases.
	`ALTER TABLE rugwatch_replicas ADD COLUMN instance text NOT NULL DEFAULT ''`,
}

// OpenPostgres opens the store in the PostgreSQL database dsn (a
// postgres:// URL or key=value string), creating its tables and applying
// migrations as Open does for a file. Every replica of a cluster opens
// the same database.
func OpenPostgres(dsn string, opts Options) (*DB, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message can quote the DSN, password and all.
		return nil, errors.New("open store: the PostgreSQL DSN does not parse (want postgres://user@host/db or key=value pairs)")
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	if cfg.MaxConns < 8 {
		cfg.MaxConns = 8
	}
	where := fmt.Sprintf("postgres://%s/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Database)
	ctx, cancel := context.WithTimeout(context.Background(), pgTxTimeout)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	p := &pgDB{pool: pool, instance: rand.Text()}
	if err := p.createSchema(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	db := &DB{kv: p, pg: p, path: where, now: opts.Now}
	if opts.ReadOnly {
		err = db.kv.view(func(tx kvTx) error { return checkSchema(tx, migrations) })
	} else {
		err = db.bringUpToDate()
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	return db, nil
}

// pgDB is an open PostgreSQL store.
type pgDB struct {
	pool *pgxpool.Pool
	// instance tells this process's heartbeats from another's that
	// uses the same replica name.
	instance string
	// ids caches committed bucket ids by parent and name.
	ids sync.Map // pgBucketName → int64

	bmu     sync.Mutex
	pending []pgCall
	running bool
}

type pgBucketName struct {
	parent int64
	name   string
}

type pgCall struct {
	fn  func(kvTx) error
	err chan error
}

// createSchema applies the backend's DDL under the writer lock, so
// replicas starting together do not race to create the tables.
func (p *pgDB) createSchema(ctx context.Context) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(pgWriterLock)); err != nil {
		return fmt.Errorf("take the writer lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS rugwatch_schema (version int NOT NULL)`); err != nil {
		return fmt.Errorf("create schema table: %w", err)
	}
	var cur int
	err = tx.QueryRow(ctx, `SELECT version FROM rugwatch_schema`).Scan(&cur)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := tx.Exec(ctx, `INSERT INTO rugwatch_schema VALUES (0)`); err != nil {
			return fmt.Errorf("record schema version: %w", err)
		}
	case err != nil:
		return fmt.Errorf("read schema version: %w", err)
	}
	if cur > len(pgSchema) {
		return fmt.Errorf("database schema is v%d but this rugwatch knows only up to v%d; upgrade rugwatch", cur, len(pgSchema))
	}
	for v := cur + 1; v <= len(pgSchema); v++ {
		if _, err := tx.Exec(ctx, pgSchema[v-1]); err != nil {
			return fmt.Errorf("create tables (v%d): %w", v, err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE rugwatch_schema SET version = $1`, len(pgSchema)); err != nil {
		return fmt.Errorf("record schema version: %w", err)
	}
	return tx.Commit(ctx)
}

func (p *pgDB) close() error {
	p.pool.Close()
	return nil
}

func (p *pgDB) view(fn func(kvTx) error) error { return p.viewContext(context.Background(), fn) }

func (p *pgDB) viewContext(ctx context.Context, fn func(kvTx) error) error {
	ctx, cancel := context.WithTimeout(ctx, pgTxTimeout)
	defer cancel()
	tx, err := p.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("read from PostgreSQL: %w", err)
	}
	t := &pgTx{db: p, tx: tx, ctx: ctx}
	defer rollbackOnPanic(ctx, t, tx)
	err = fn(t)
	t.done = true
	if err == nil && t.err != nil {
		err = fmt.Errorf("read from PostgreSQL: %w", t.err)
	}
	_ = tx.Rollback(context.WithoutCancel(ctx))
	return err
}

func (p *pgDB) update(fn func(kvTx) error) error { return p.updateContext(context.Background(), fn) }

func (p *pgDB) updateContext(ctx context.Context, fn func(kvTx) error) error {
	ctx, cancel := context.WithTimeout(ctx, pgTxTimeout)
	defer cancel()
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("write to PostgreSQL: %w", err)
	}
	rollback := func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(pgWriterLock)); err != nil {
		rollback()
		return fmt.Errorf("write to PostgreSQL: take the writer lock: %w", err)
	}
	t := &pgTx{db: p, tx: tx, ctx: ctx, writable: true}
	defer rollbackOnPanic(ctx, t, tx)
	err = fn(t)
	if err == nil && t.err != nil {
		err = fmt.Errorf("write to PostgreSQL: %w", t.err)
	}
	if err == nil {
		if ferr := t.flush(); ferr != nil {
			err = fmt.Errorf("write to PostgreSQL: %w", ferr)
		}
	}
	if err == nil {
		err = t.sendNotices()
	}
	if err != nil {
		t.done = true
		rollback()
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		t.done = true
		return fmt.Errorf("write to PostgreSQL: commit: %w", err)
	}
	t.done = true
	for k, id := range t.created {
		p.ids.Store(k, id)
	}
	for _, f := range t.onCommit {
		f()
	}
	return nil
}

// rollbackOnPanic ends tx when fn panics, as bbolt does, and panics on:
// a transaction left open would hold its connection, and a writer's the
// writer lock of every replica, until its context ran out.
func rollbackOnPanic(ctx context.Context, t *pgTx, tx pgx.Tx) {
	if r := recover(); r != nil {
		t.done = true
		_ = tx.Rollback(context.WithoutCancel(ctx))
		panic(r)
	}
}

// errTrySolo tells a Batch caller its function failed inside a shared
// transaction and must run again alone, so that its error is its own.
var errTrySolo = errors.New("batch function returned an error and should be re-run solo")

// batch groups the functions of concurrent callers into one write
// transaction: while one batch commits, the next gathers. Each caller's
// function commits with the others or not at all, as DB.Batch promises.
func (p *pgDB) batch(fn func(kvTx) error) error {
	c := pgCall{fn: fn, err: make(chan error, 1)}
	p.bmu.Lock()
	p.pending = append(p.pending, c)
	if !p.running {
		p.running = true
		go p.runBatches()
	}
	p.bmu.Unlock()
	err := <-c.err
	if errors.Is(err, errTrySolo) {
		err = p.update(fn)
	}
	return err
}

func (p *pgDB) runBatches() {
	for {
		p.bmu.Lock()
		calls := p.pending
		if len(calls) > pgMaxBatch {
			calls, p.pending = calls[:pgMaxBatch], calls[pgMaxBatch:]
		} else {
			p.pending = nil
		}
		if len(calls) == 0 {
			p.running = false
			p.bmu.Unlock()
			return
		}
		p.bmu.Unlock()
		p.runBatch(calls)
	}
}

// runBatch commits calls together; a call that fails is sent back to run
// alone and the rest are tried again without it.
func (p *pgDB) runBatch(calls []pgCall) {
	for len(calls) > 0 {
		failed := -1
		err := p.update(func(tx kvTx) error {
			for i, c := range calls {
				if err := safely(c.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed >= 0 {
			calls[failed].err <- errTrySolo
			calls = append(calls[:failed:failed], calls[failed+1:]...)
			continue
		}
		for _, c := range calls {
			c.err <- err
		}
		return
	}
}

// safely runs fn, turning a panic into an error so one caller's bug does
// not take the batch's goroutine (and every other caller) down with it.
func safely(fn func(kvTx) error, tx kvTx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in store transaction: %v", r)
		}
	}()
	return fn(tx)
}

// pgTx is one PostgreSQL transaction seen as a bucket tree.
type pgTx struct {
	db       *pgDB
	tx       pgx.Tx
	ctx      context.Context
	writable bool
	done     bool
	// err is the first error a read met; the transaction fails with it.
	err error
	// gen moves on every write, so open cursors re-read past their page.
	gen      uint64
	created  map[pgBucketName]int64
	onCommit []func()
	notices  map[string]map[string]bool // channel → payloads

	// absent caches bucket lookups that found nothing: nobody else
	// creates one while this transaction holds the writer lock (or, for
	// a reader, within its snapshot).
	absent map[pgBucketName]bool
	// values caches what this transaction read or wrote, key by key
	// (ok false: no such key), for the same reason; writes wait in
	// pending, in order, and go to the database in one pipelined batch
	// before anything that reads a range of rows, and at commit. A
	// first sight of a server reads and writes some sixty keys: one
	// round trip each was most of the time a fleet's first cycle took.
	values  map[pgKey]pgValue
	pending []pgWrite
	// seqs holds bucket sequences read or moved here; dirty ones are
	// written with the pending writes.
	seqs     map[int64]int64
	seqDirty map[int64]bool
}

type pgKey struct {
	bucket int64
	key    string
}

type pgValue struct {
	v  []byte
	ok bool
}

type pgWrite struct {
	bucket int64
	key    []byte
	value  []byte // nil: delete
}

// flush sends the writes waiting in pending, and the moved sequences,
// in one round trip.
func (t *pgTx) flush() error {
	if len(t.pending) == 0 && len(t.seqDirty) == 0 {
		return nil
	}
	var batch pgx.Batch
	for _, w := range t.pending {
		if w.value == nil {
			batch.Queue(`DELETE FROM rugwatch_kv WHERE bucket = $1 AND key = $2 AND value IS NOT NULL`, w.bucket, w.key)
			continue
		}
		batch.Queue(`INSERT INTO rugwatch_kv (bucket, key, value) VALUES ($1, $2, $3)
			ON CONFLICT (bucket, key) DO UPDATE SET value = EXCLUDED.value WHERE rugwatch_kv.value IS NOT NULL`, w.bucket, w.key, w.value)
	}
	for id := range t.seqDirty {
		batch.Queue(`UPDATE rugwatch_buckets SET seq = $2 WHERE id = $1`, id, t.seqs[id])
	}
	writes := t.pending
	t.pending, t.seqDirty = nil, nil
	br := t.tx.SendBatch(t.ctx, &batch)
	for _, w := range writes {
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close()
			return fmt.Errorf("write %q: %w", w.key, err)
		}
		// An upsert that touched no row met a nested bucket's row
		// (bbolt refuses that Put at once; here it is known now).
		if w.value != nil && tag.RowsAffected() == 0 {
			_ = br.Close()
			return fmt.Errorf("put %q: %w", w.key, bolterrors.ErrIncompatibleValue)
		}
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

func (t *pgTx) fail(err error) {
	if t.err == nil {
		t.err = err
	}
}

func (t *pgTx) ended() bool       { return t.done }
func (t *pgTx) OnCommit(f func()) { t.onCommit = append(t.onCommit, f) }

// notice queues a NOTIFY on channel, sent with the commit (PostgreSQL
// delivers notifications only when, and if, the transaction commits).
func (t *pgTx) notice(channel, payload string) {
	if t.notices == nil {
		t.notices = map[string]map[string]bool{}
	}
	if t.notices[channel] == nil {
		t.notices[channel] = map[string]bool{}
	}
	t.notices[channel][payload] = true
}

func (t *pgTx) sendNotices() error {
	if len(t.notices) == 0 {
		return nil
	}
	var batch pgx.Batch
	for ch, payloads := range t.notices {
		for pl := range payloads {
			batch.Queue(`SELECT pg_notify($1, $2)`, ch, pl)
		}
	}
	if err := t.tx.SendBatch(t.ctx, &batch).Close(); err != nil {
		return fmt.Errorf("write to PostgreSQL: notify: %w", err)
	}
	return nil
}

// lookup is the id of the bucket name under parent, false if none.
func (t *pgTx) lookup(parent int64, name []byte) (int64, bool) {
	k := pgBucketName{parent, string(name)}
	if id, ok := t.created[k]; ok {
		return id, true
	}
	if id, ok := t.db.ids.Load(k); ok {
		return id.(int64), true
	}
	if t.done {
		t.fail(ErrTxClosed)
		return 0, false
	}
	if t.absent[k] {
		return 0, false
	}
	var id int64
	err := t.tx.QueryRow(t.ctx, `SELECT id FROM rugwatch_buckets WHERE parent = $1 AND name = $2`, parent, name).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		if t.absent == nil {
			t.absent = map[pgBucketName]bool{}
		}
		t.absent[k] = true
		return 0, false
	}
	if err != nil {
		t.fail(fmt.Errorf("look up bucket %q: %w", name, err))
		return 0, false
	}
	// Found outside t.created, so committed: ids never change.
	t.db.ids.Store(k, id)
	return id, true
}

func (t *pgTx) bucketAt(parent int64, name []byte) kvBucket {
	id, ok := t.lookup(parent, name)
	if !ok {
		return nil
	}
	return &pgBucket{tx: t, id: id}
}

func (t *pgTx) create(parent int64, name []byte, exist bool) (kvBucket, error) {
	if t.done {
		return nil, ErrTxClosed
	}
	if !t.writable {
		return nil, bolterrors.ErrTxNotWritable
	}
	if len(name) == 0 {
		return nil, bolterrors.ErrBucketNameRequired
	}
	if id, ok := t.lookup(parent, name); ok {
		if !exist {
			return nil, bolterrors.ErrBucketExists
		}
		return &pgBucket{tx: t, id: id}, nil
	}
	if t.err != nil {
		return nil, t.err
	}
	// A value under the name refuses the bucket, as in bbolt; what
	// waits in pending (a Put or a Delete of it) is in the table first.
	if err := t.flush(); err != nil {
		t.fail(err)
		return nil, err
	}
	var taken bool
	err := t.tx.QueryRow(t.ctx, `SELECT EXISTS (SELECT 1 FROM rugwatch_kv WHERE bucket = $1 AND key = $2)`, parent, name).Scan(&taken)
	if err != nil {
		t.fail(fmt.Errorf("create bucket %q: %w", name, err))
		return nil, t.err
	}
	if taken {
		return nil, bolterrors.ErrIncompatibleValue
	}
	var id int64
	if err := t.tx.QueryRow(t.ctx, `INSERT INTO rugwatch_buckets (parent, name) VALUES ($1, $2) RETURNING id`, parent, name).Scan(&id); err != nil {
		// The SQL transaction is aborted: nothing after may commit.
		t.fail(fmt.Errorf("create bucket %q: %w", name, err))
		return nil, t.err
	}
	if _, err := t.tx.Exec(t.ctx, `INSERT INTO rugwatch_kv (bucket, key, value) VALUES ($1, $2, NULL)`, parent, name); err != nil {
		t.fail(fmt.Errorf("create bucket %q: %w", name, err))
		return nil, t.err
	}
	t.gen++
	if t.created == nil {
		t.created = map[pgBucketName]int64{}
	}
	t.created[pgBucketName{parent, string(name)}] = id
	delete(t.absent, pgBucketName{parent, string(name)})
	// The parent's row for it is written: a cached read of that key
	// must say so.
	t.remember(parent, name, pgValue{})
	return &pgBucket{tx: t, id: id}, nil
}

func (t *pgTx) Bucket(name []byte) kvBucket { return t.bucketAt(0, name) }

func (t *pgTx) CreateBucket(name []byte) (kvBucket, error) { return t.create(0, name, false) }

func (t *pgTx) CreateBucketIfNotExists(name []byte) (kvBucket, error) {
	return t.create(0, name, true)
}

func (t *pgTx) ForEach(fn func(name []byte, b kvBucket) error) error {
	root := &pgBucket{tx: t, id: 0}
	return root.ForEachBucket(func(name []byte) error { return fn(name, t.Bucket(name)) })
}

// pgBucket is one bucket of a pgTx.
type pgBucket struct {
	tx *pgTx
	id int64
}

func (b *pgBucket) usable(write bool) error {
	switch {
	case b.tx.done:
		return ErrTxClosed
	case write && !b.tx.writable:
		return bolterrors.ErrTxNotWritable
	}
	return b.tx.err
}

func (b *pgBucket) Get(key []byte) []byte {
	if b.usable(false) != nil {
		return nil
	}
	if v, ok := b.tx.values[pgKey{b.id, string(key)}]; ok {
		return v.v
	}
	var v []byte
	err := b.tx.tx.QueryRow(b.tx.ctx, `SELECT value FROM rugwatch_kv WHERE bucket = $1 AND key = $2`, b.id, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		b.tx.remember(b.id, key, pgValue{})
		return nil
	}
	if err != nil {
		b.tx.fail(fmt.Errorf("get %q: %w", key, err))
		return nil
	}
	b.tx.remember(b.id, key, pgValue{v: v, ok: v != nil})
	return v
}

// remember caches what key of bucket holds in this transaction.
func (t *pgTx) remember(bucket int64, key []byte, v pgValue) {
	if t.values == nil {
		t.values = map[pgKey]pgValue{}
	}
	t.values[pgKey{bucket, string(key)}] = v
}

func (b *pgBucket) Put(key, value []byte) error {
	if err := b.usable(true); err != nil {
		return err
	}
	if len(key) == 0 {
		return bolterrors.ErrKeyRequired
	}
	if _, ok := b.tx.created[pgBucketName{b.id, string(key)}]; ok {
		return bolterrors.ErrIncompatibleValue
	}
	// Copied: the caller may reuse its slices once Put returns, as
	// bbolt allows.
	v := append([]byte{}, value...) // never nil: NULL is a nested bucket's mark
	b.tx.pending = append(b.tx.pending, pgWrite{bucket: b.id, key: bytes.Clone(key), value: v})
	b.tx.remember(b.id, key, pgValue{v: v, ok: true})
	b.tx.gen++
	return nil
}

func (b *pgBucket) Delete(key []byte) error {
	if err := b.usable(true); err != nil {
		return err
	}
	b.tx.pending = append(b.tx.pending, pgWrite{bucket: b.id, key: bytes.Clone(key)})
	b.tx.remember(b.id, key, pgValue{})
	b.tx.gen++
	return nil
}

func (b *pgBucket) Cursor() kvCursor { return &pgCursor{b: b} }

func (b *pgBucket) ForEach(fn func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return b.tx.err
}

func (b *pgBucket) ForEachBucket(fn func(k []byte) error) error {
	return b.ForEach(func(k, v []byte) error {
		if v != nil {
			return nil
		}
		return fn(k)
	})
}

func (b *pgBucket) Bucket(name []byte) kvBucket { return b.tx.bucketAt(b.id, name) }

func (b *pgBucket) CreateBucket(name []byte) (kvBucket, error) {
	return b.tx.create(b.id, name, false)
}

func (b *pgBucket) CreateBucketIfNotExists(name []byte) (kvBucket, error) {
	return b.tx.create(b.id, name, true)
}

func (b *pgBucket) Sequence() uint64 {
	if b.usable(false) != nil {
		return 0
	}
	seq, err := b.tx.sequence(b.id)
	if err != nil {
		b.tx.fail(err)
		return 0
	}
	return uint64(seq)
}

// sequence is bucket id's sequence as this transaction sees it.
func (t *pgTx) sequence(id int64) (int64, error) {
	if seq, ok := t.seqs[id]; ok {
		return seq, nil
	}
	var seq int64
	if err := t.tx.QueryRow(t.ctx, `SELECT seq FROM rugwatch_buckets WHERE id = $1`, id).Scan(&seq); err != nil {
		return 0, fmt.Errorf("read bucket sequence: %w", err)
	}
	if t.seqs == nil {
		t.seqs = map[int64]int64{}
	}
	t.seqs[id] = seq
	return seq, nil
}

func (t *pgTx) setSequence(id, seq int64) {
	if t.seqs == nil {
		t.seqs = map[int64]int64{}
	}
	if t.seqDirty == nil {
		t.seqDirty = map[int64]bool{}
	}
	t.seqs[id], t.seqDirty[id] = seq, true
}

func (b *pgBucket) SetSequence(v uint64) error {
	if err := b.usable(true); err != nil {
		return err
	}
	b.tx.setSequence(b.id, int64(v))
	return nil
}

func (b *pgBucket) NextSequence() (uint64, error) {
	if err := b.usable(true); err != nil {
		return 0, err
	}
	seq, err := b.tx.sequence(b.id)
	if err != nil {
		return 0, err
	}
	b.tx.setSequence(b.id, seq+1)
	return uint64(seq + 1), nil
}

func (b *pgBucket) fillPercent(float64) {}

// pgCursor walks a bucket a page of rows at a time. A write through the
// same transaction makes it read again from where it stands, so it never
// hands out a value older than the transaction's own writes.
type pgCursor struct {
	b    *pgBucket
	rows []pgRow
	i    int
	// asc says which way the page was read; more says the page was full,
	// so rows may lie beyond it.
	asc  bool
	more bool
	gen  uint64
}

type pgRow struct{ k, v []byte }

func (c *pgCursor) load(cond string, arg []byte, asc bool) (key, value []byte) {
	c.rows, c.i, c.asc, c.more = nil, 0, asc, false
	if c.b.usable(false) != nil {
		return nil, nil
	}
	// Rows are read from the table: what waits in pending goes first.
	if err := c.b.tx.flush(); err != nil {
		c.b.tx.fail(err)
		return nil, nil
	}
	order := "ASC"
	if !asc {
		order = "DESC"
	}
	q := `SELECT key, value FROM rugwatch_kv WHERE bucket = $1` + cond + ` ORDER BY key ` + order + ` LIMIT ` + fmt.Sprint(pgCursorPage)
	args := []any{c.b.id}
	if cond != "" {
		args = append(args, arg)
	}
	rows, err := c.b.tx.tx.Query(c.b.tx.ctx, q, args...)
	if err != nil {
		c.b.tx.fail(fmt.Errorf("walk bucket: %w", err))
		return nil, nil
	}
	for rows.Next() {
		var r pgRow
		if err := rows.Scan(&r.k, &r.v); err != nil {
			rows.Close()
			c.b.tx.fail(fmt.Errorf("walk bucket: %w", err))
			c.rows = nil
			return nil, nil
		}
		c.rows = append(c.rows, r)
	}
	if err := rows.Err(); err != nil {
		c.b.tx.fail(fmt.Errorf("walk bucket: %w", err))
		c.rows = nil
		return nil, nil
	}
	c.more = len(c.rows) == pgCursorPage
	c.gen = c.b.tx.gen
	return c.at()
}

func (c *pgCursor) at() (key, value []byte) {
	if c.i < 0 || c.i >= len(c.rows) {
		return nil, nil
	}
	r := c.rows[c.i]
	return r.k, r.v
}

func (c *pgCursor) current() []byte {
	if c.i < 0 || c.i >= len(c.rows) {
		return nil
	}
	return c.rows[c.i].k
}

func (c *pgCursor) First() (key, value []byte) { return c.load("", nil, true) }
func (c *pgCursor) Last() (key, value []byte)  { return c.load("", nil, false) }

func (c *pgCursor) Seek(seek []byte) (key, value []byte) {
	return c.load(" AND key >= $2", seek, true)
}

func (c *pgCursor) Next() (key, value []byte) { return c.step(true) }
func (c *pgCursor) Prev() (key, value []byte) { return c.step(false) }

func (c *pgCursor) step(asc bool) (key, value []byte) {
	cur := c.current()
	if cur == nil {
		return nil, nil
	}
	if asc == c.asc && c.gen == c.b.tx.gen {
		c.i++
		if c.i < len(c.rows) || !c.more {
			return c.at()
		}
	}
	cur = bytes.Clone(cur)
	if asc {
		return c.load(" AND key > $2", cur, true)
	}
	return c.load(" AND key < $2", cur, false)
}

func (c *pgCursor) Delete() error {
	k := c.current()
	if k == nil {
		return nil
	}
	if c.rows[c.i].v == nil {
		return bolterrors.ErrIncompatibleValue // a nested bucket
	}
	gen := c.b.tx.gen
	if err := c.b.Delete(k); err != nil {
		return err
	}
	// The rows read are still the walk's: the deleted key is behind it.
	if c.gen == gen {
		c.gen = c.b.tx.gen
	}
	return nil
}
