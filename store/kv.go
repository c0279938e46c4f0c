package store

import (
	"context"

	bolt "go.etcd.io/bbolt"
)

// The store's records, indexes and event chain are written against a
// tree of ordered key/value buckets: what bbolt is, and what the
// PostgreSQL backend (postgres.go) reproduces in two tables. Everything
// above these interfaces (records, approvals, the chain, the outbox,
// migrations) is one piece of code for both backends, so a command,
// an event or a digest cannot differ between them.
//
// The interfaces have bbolt's shape, errors included: reads return no
// error. The PostgreSQL backend keeps the first error a read met in its
// transaction and fails the View or Update with it (rolling back), so a
// lost connection can make a function see nothing, but never lets what
// it wrote from that commit.

// kvDB is an open backend.
type kvDB interface {
	view(fn func(kvTx) error) error
	// viewContext is view ended early when ctx is (a read of a shared
	// store a caller cannot wait long for); bbolt's reads do not wait.
	viewContext(ctx context.Context, fn func(kvTx) error) error
	update(fn func(kvTx) error) error
	// updateContext is update ended, rolled back, when ctx is.
	updateContext(ctx context.Context, fn func(kvTx) error) error
	// batch is update for one of many concurrent callers; fn may run
	// more than once (see DB.Batch).
	batch(fn func(kvTx) error) error
	close() error
}

// kvTx is one transaction over the bucket tree.
type kvTx interface {
	// Bucket is the top-level bucket name, nil if there is none.
	Bucket(name []byte) kvBucket
	CreateBucket(name []byte) (kvBucket, error)
	CreateBucketIfNotExists(name []byte) (kvBucket, error)
	// ForEach visits the top-level buckets in name order.
	ForEach(fn func(name []byte, b kvBucket) error) error
	// OnCommit runs fn once the transaction has committed.
	OnCommit(fn func())
	// ended reports whether the View or Update that made the Tx returned.
	ended() bool
}

// kvBucket is one bucket: keys in byte order, each holding a value or a
// nested bucket (which reads as a nil value).
type kvBucket interface {
	Get(key []byte) []byte
	Put(key, value []byte) error
	Delete(key []byte) error
	Cursor() kvCursor
	ForEach(fn func(k, v []byte) error) error
	ForEachBucket(fn func(k []byte) error) error
	Bucket(name []byte) kvBucket
	CreateBucket(name []byte) (kvBucket, error)
	CreateBucketIfNotExists(name []byte) (kvBucket, error)
	Sequence() uint64
	SetSequence(v uint64) error
	NextSequence() (uint64, error)
	// fillPercent tells bbolt how full to pack pages that are appended
	// to (1.0) or rewritten in place; PostgreSQL has nothing to tune.
	fillPercent(f float64)
}

// kvCursor walks a bucket in key order. A nil key means it ran off an end.
type kvCursor interface {
	First() (key, value []byte)
	Last() (key, value []byte)
	Next() (key, value []byte)
	Prev() (key, value []byte)
	Seek(seek []byte) (key, value []byte)
	Delete() error
}

// boltDB is the embedded backend: bbolt itself, the interfaces above a
// pointer wide so that none of them allocates.
type boltDB struct{ db *bolt.DB }

func (b boltDB) view(fn func(kvTx) error) error {
	return b.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b boltDB) viewContext(_ context.Context, fn func(kvTx) error) error { return b.view(fn) }

func (b boltDB) update(fn func(kvTx) error) error {
	return b.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b boltDB) updateContext(_ context.Context, fn func(kvTx) error) error { return b.update(fn) }

func (b boltDB) batch(fn func(kvTx) error) error {
	return b.db.Batch(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b boltDB) close() error { return b.db.Close() }

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) Bucket(name []byte) kvBucket { return wrapBucket(t.tx.Bucket(name)) }

func (t boltTx) CreateBucket(name []byte) (kvBucket, error) {
	b, err := t.tx.CreateBucket(name)
	return wrapBucket(b), err
}

func (t boltTx) CreateBucketIfNotExists(name []byte) (kvBucket, error) {
	b, err := t.tx.CreateBucketIfNotExists(name)
	return wrapBucket(b), err
}

func (t boltTx) ForEach(fn func(name []byte, b kvBucket) error) error {
	return t.tx.ForEach(func(name []byte, b *bolt.Bucket) error { return fn(name, wrapBucket(b)) })
}

func (t boltTx) OnCommit(fn func()) { t.tx.OnCommit(fn) }

func (t boltTx) ended() bool { return t.tx.DB() == nil }

type boltBucket struct{ b *bolt.Bucket }

// wrapBucket keeps bbolt's "no such bucket" a nil interface, not a
// non-nil one holding a nil pointer.
func wrapBucket(b *bolt.Bucket) kvBucket {
	if b == nil {
		return nil
	}
	return boltBucket{b}
}

func (b boltBucket) Get(key []byte) []byte                       { return b.b.Get(key) }
func (b boltBucket) Put(key, value []byte) error                 { return b.b.Put(key, value) }
func (b boltBucket) Delete(key []byte) error                     { return b.b.Delete(key) }
func (b boltBucket) Cursor() kvCursor                            { return b.b.Cursor() }
func (b boltBucket) ForEach(fn func(k, v []byte) error) error    { return b.b.ForEach(fn) }
func (b boltBucket) ForEachBucket(fn func(k []byte) error) error { return b.b.ForEachBucket(fn) }
func (b boltBucket) Bucket(name []byte) kvBucket                 { return wrapBucket(b.b.Bucket(name)) }
func (b boltBucket) Sequence() uint64                            { return b.b.Sequence() }
func (b boltBucket) SetSequence(v uint64) error                  { return b.b.SetSequence(v) }
func (b boltBucket) NextSequence() (uint64, error)               { return b.b.NextSequence() }
func (b boltBucket) fillPercent(f float64)                       { b.b.FillPercent = f }

func (b boltBucket) CreateBucket(name []byte) (kvBucket, error) {
	nb, err := b.b.CreateBucket(name)
	return wrapBucket(nb), err
}

func (b boltBucket) CreateBucketIfNotExists(name []byte) (kvBucket, error) {
	nb, err := b.b.CreateBucketIfNotExists(name)
	return wrapBucket(nb), err
}
