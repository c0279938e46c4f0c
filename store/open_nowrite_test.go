package store

import (
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestOpenOfACurrentStoreWritesNothing: opening a store whose schema is
// current commits no write transaction (each would fsync): the CLI and a
// proxy without a daemon open the store for every operation.
func TestOpenOfACurrentStoreWritesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rugwatch.db")
	txid := func() int {
		db, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var id int
		_ = db.bolt.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
		return id
	}
	first := txid() // creates and migrates: writes
	if again := txid(); again != first {
		t.Fatalf("reopening a current store committed %d write transactions", again-first)
	}
}
