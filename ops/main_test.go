package ops

import (
	"os"
	"testing"

	"github.com/rugwatch/rugwatch/testkit/pgtest"
)

// TestMain lets the tests reach a PostgreSQL that pgtest starts (when
// RUGWATCH_TEST_STORE=postgres puts their stores there, see
// testkit/storetest), and stops it after.
func TestMain(m *testing.M) { os.Exit(pgtest.RunMain(m)) }
