package notify

import (
	"os"
	"testing"

	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/testkit/pgtest"
	"github.com/rugwatch/rugwatch/testkit/storetest"
)

// TestMain lets the tests reach a PostgreSQL that pgtest starts, and
// stops it after.
func TestMain(m *testing.M) { os.Exit(pgtest.RunMain(m)) }

// openBackend opens a fresh store on the backend the environment picks
// (RUGWATCH_TEST_STORE=postgres: PostgreSQL, as the store's own suite).
func openBackend(t *testing.T) *store.DB {
	t.Helper()
	return storetest.Open(t, t.TempDir(), store.Options{})
}

// openPostgres opens a store in a fresh PostgreSQL database, whatever
// the environment picks: what several replicas share.
func openPostgres(t *testing.T) *store.DB {
	t.Helper()
	return storetest.OpenPostgres(t, store.Options{})
}
