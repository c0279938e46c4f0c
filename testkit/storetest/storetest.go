package storetest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/testkit/pgtest"
)

// EnvBackend names the environment variable that picks the backend:
// "postgres" for PostgreSQL, anything else (or unset) for bbolt.
const EnvBackend = "RUGWATCH_TEST_STORE"

// Postgres reports whether the environment picks PostgreSQL.
func Postgres() bool { return os.Getenv(EnvBackend) == "postgres" }

// Open opens a fresh, empty store on the backend the environment picks
// (bbolt at dir/rugwatch.db, or a new PostgreSQL database) and closes it
// when the test ends. Closing it earlier as well is fine: Close is
// idempotent.
func Open(t testing.TB, dir string, opts store.Options) *store.DB {
	t.Helper()
	var (
		db  *store.DB
		err error
	)
	if Postgres() {
		db, err = store.OpenPostgres(pgtest.DSN(t), opts)
	} else {
		db, err = store.Open(filepath.Join(dir, "rugwatch.db"), opts)
	}
	if err != nil {
		t.Fatalf("open the test store: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// OpenPostgres opens a store in a fresh PostgreSQL database whatever the
// environment picks (what several replicas share), closed when the test
// ends.
func OpenPostgres(t testing.TB, opts store.Options) *store.DB {
	t.Helper()
	db, err := store.OpenPostgres(pgtest.DSN(t), opts)
	if err != nil {
		t.Fatalf("open the test store in PostgreSQL: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}
