package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// buildAt makes a raw bbolt file migrated with only the first n migrations,
// after running seed (if any) in the same kind of transaction.
func buildAt(t *testing.T, n int, seed func(kvTx) error) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rugwatch.db")
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	if err := (boltDB{bdb}).update(func(tx kvTx) error {
		if err := migrate(tx, migrations[:n]); err != nil {
			return err
		}
		if seed != nil {
			return seed(tx)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return path
}

func fileVersion(t *testing.T, db *DB) uint64 {
	t.Helper()
	var v uint64
	if err := db.kv.view(func(tx kvTx) error {
		var err error
		v, err = schemaVersion(tx)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

func hasBuckets(t *testing.T, db *DB, names ...[]byte) {
	t.Helper()
	_ = db.kv.view(func(tx kvTx) error {
		for _, n := range names {
			if tx.Bucket(n) == nil {
				t.Errorf("bucket %q missing", n)
			}
		}
		return nil
	})
}

func TestMigrationsAreContiguous(t *testing.T) {
	for i, m := range migrations {
		if m.version != uint64(i+1) {
			t.Errorf("migrations[%d] is v%d (%s), want v%d", i, m.version, m.name, i+1)
		}
		if m.name == "" || m.apply == nil {
			t.Errorf("migration v%d incomplete", m.version)
		}
	}
	if SchemaVersion() != uint64(len(migrations)) {
		t.Errorf("SchemaVersion() = %d", SchemaVersion())
	}
}

// v1 from an empty file: the core buckets and the version.
func TestMigration1CreateBuckets(t *testing.T) {
	path := buildAt(t, 0, nil)
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := (boltDB{bdb}).update(func(tx kvTx) error { return migrate(tx, migrations[:1]) }); err != nil {
		t.Fatal(err)
	}
	db := &DB{kv: boltDB{bdb}, bolt: bdb, path: path}
	defer db.Close()
	if v := fileVersion(t, db); v != 1 {
		t.Fatalf("version %d, want 1", v)
	}
	hasBuckets(t, db, bucketMeta, bucketServers, bucketApprovals, bucketApprovalHistory, bucketEvents)
	_ = (boltDB{bdb}).view(func(tx kvTx) error {
		if tx.Bucket(bucketOutbox) != nil {
			t.Error("v1 created the v2 outbox")
		}
		return nil
	})
}

// v1 → v2 through Open: the outbox appears, v1 data survives.
func TestMigration2Outbox(t *testing.T) {
	path := buildAt(t, 1, func(tx kvTx) error {
		return tx.Bucket(bucketServers).Put([]byte("s"), []byte(`{"Name":"s","Transport":"stdio"}`))
	})
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v := fileVersion(t, db); v != SchemaVersion() {
		t.Fatalf("version %d, want %d", v, SchemaVersion())
	}
	hasBuckets(t, db, bucketOutbox)
	if err := db.View(func(tx *Tx) error {
		r, ok, err := tx.Server("s")
		if !ok || r.Transport != "stdio" {
			t.Errorf("v1 server lost: %+v ok=%v", r, ok)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// v2 → v3: the outbox indexes appear; a delivery queued at v2 (which made
// its sub-buckets on first use) survives.
func TestMigration3OutboxIndexes(t *testing.T) {
	path := buildAt(t, 2, func(tx kvTx) error {
		d, err := tx.Bucket(bucketOutbox).CreateBucket(bucketDeliveries)
		if err != nil {
			return err
		}
		return d.Put([]byte("dlv_x_log"), []byte(`{"id":"dlv_x_log","state":"pending"}`))
	})
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v := fileVersion(t, db); v != SchemaVersion() {
		t.Fatalf("version %d, want %d", v, SchemaVersion())
	}
	err = db.View(func(tx *Tx) error {
		root := tx.tx.Bucket(bucketOutbox)
		for _, n := range [][]byte{bucketDeliveries, bucketDue, bucketOrder} {
			if root.Bucket(n) == nil {
				t.Errorf("outbox/%s missing after migration 3", n)
			}
		}
		if root.Bucket(bucketDeliveries).Get([]byte("dlv_x_log")) == nil {
			t.Error("delivery queued at v2 lost")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenMigratesFreshFileToLatest(t *testing.T) {
	db := openTest(t)
	if v := fileVersion(t, db); v != SchemaVersion() {
		t.Fatalf("version %d, want %d", v, SchemaVersion())
	}
	// Reopening is a no-op.
	db.Close()
	db = reopenBackend(t, db, Options{})
	if v := fileVersion(t, db); v != SchemaVersion() {
		t.Fatalf("version after reopen %d", v)
	}
}

// A failing migration leaves the file exactly at its old version.
func TestFailedMigrationRollsBack(t *testing.T) {
	path := buildAt(t, 1, nil)
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	boom := errors.New("boom")
	next := SchemaVersion() + 1
	ms := append(append([]migration(nil), migrations...), migration{version: next, name: "explode", apply: func(kvTx) error { return boom }})
	err = (boltDB{bdb}).update(func(tx kvTx) error { return migrate(tx, ms) })
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), fmt.Sprintf("v%d (explode)", next)) {
		t.Fatalf("migrate = %v", err)
	}
	_ = (boltDB{bdb}).view(func(tx kvTx) error {
		if v, _ := schemaVersion(tx); v != 1 {
			t.Errorf("version %d after failed migration, want 1", v)
		}
		if tx.Bucket(bucketOutbox) != nil {
			t.Error("v2 applied despite the failure later in the same transaction")
		}
		return nil
	})
}

func TestNewerSchemaRefused(t *testing.T) {
	path := buildAt(t, len(migrations), func(tx kvTx) error {
		return putSchemaVersion(tx, SchemaVersion()+1)
	})
	for _, ro := range []bool{false, true} {
		_, err := Open(path, Options{ReadOnly: ro})
		if err == nil || !strings.Contains(err.Error(), "upgrade rugwatch") {
			t.Errorf("ReadOnly=%v: Open of a newer file: %v", ro, err)
		}
	}
}

func TestReadOnlyRefusesOlderSchema(t *testing.T) {
	path := buildAt(t, 1, nil)
	_, err := Open(path, Options{ReadOnly: true})
	if err == nil || !strings.Contains(err.Error(), "schema is v1") || !strings.Contains(err.Error(), fmt.Sprintf("needs v%d", SchemaVersion())) {
		t.Fatalf("read-only Open of a v1 file: %v", err)
	}
	// And it did not migrate behind our back.
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	_ = (boltDB{bdb}).view(func(tx kvTx) error {
		if v, _ := schemaVersion(tx); v != 1 {
			t.Errorf("version %d", v)
		}
		return nil
	})
}

func TestReadOnlyRefusesUninitialised(t *testing.T) {
	path := buildAt(t, 0, nil)
	_, err := Open(path, Options{ReadOnly: true})
	if err == nil || !strings.Contains(err.Error(), "not initialised") {
		t.Fatalf("read-only Open of an empty file: %v", err)
	}
}
