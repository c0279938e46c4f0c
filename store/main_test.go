package store

import (
	"os"
	"sync"
	"testing"

	"github.com/rugwatch/rugwatch/testkit/pgtest"
)

// TestMain lets the tests reach a PostgreSQL that pgtest starts, and
// stops it after.
func TestMain(m *testing.M) { os.Exit(pgtest.RunMain(m)) }

// envBackend picks the backend openTest opens: "postgres" runs the
// store's whole suite against PostgreSQL (CI does both).
const envBackend = "RUGWATCH_TEST_STORE"

// openBackend opens a fresh store on the backend the environment picks.
func openBackend(t testing.TB, opts Options) *DB {
	t.Helper()
	if os.Getenv(envBackend) == "postgres" {
		return openPostgres(t, opts)
	}
	db, err := Open(t.TempDir()+"/rugwatch.db", opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// openPostgres opens a store in a fresh PostgreSQL database.
func openPostgres(t testing.TB, opts Options) *DB {
	t.Helper()
	dsn := pgtest.DSN(t)
	db, err := OpenPostgres(dsn, opts)
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	dsns.Store(db.Path(), dsn)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// dsns remembers the DSN behind each PostgreSQL store a test opened, by
// its Path, so that reopenBackend can open it again.
var dsns sync.Map

// reopenBackend opens the store db was opened from again, after db is
// closed.
func reopenBackend(t testing.TB, db *DB, opts Options) *DB {
	t.Helper()
	var (
		again *DB
		err   error
	)
	if dsn, ok := dsns.Load(db.Path()); ok {
		again, err = OpenPostgres(dsn.(string), opts)
	} else {
		again, err = Open(db.Path(), opts)
	}
	if err != nil {
		t.Fatalf("reopen %s: %v", db.Path(), err)
	}
	t.Cleanup(func() { _ = again.Close() })
	return again
}
