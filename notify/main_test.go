package notify

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/testkit/pgtest"
)

// TestMain lets the tests reach a PostgreSQL that pgtest starts, and
// stops it after.
func TestMain(m *testing.M) { os.Exit(pgtest.RunMain(m)) }

// envBackend picks the store the dispatcher tests run on: "postgres"
// runs them against PostgreSQL, as the store's own suite does.
const envBackend = "RUGWATCH_TEST_STORE"

// openBackend opens a fresh store on the backend the environment picks,
// closed at cleanup.
func openBackend(t *testing.T) *store.DB {
	t.Helper()
	if os.Getenv(envBackend) == "postgres" {
		return openPostgres(t)
	}
	db, err := store.Open(filepath.Join(t.TempDir(), "rugwatch.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// openPostgres opens a store in a fresh PostgreSQL database, whatever
// the environment picks: what several replicas share.
func openPostgres(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.OpenPostgres(pgtest.DSN(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}
