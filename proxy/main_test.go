package proxy

import (
	"os"
	"testing"

	"github.com/rugwatch/rugwatch/testkit/pgtest"
)

// TestMain lets the tests reach a PostgreSQL that pgtest starts (when
// RUGWATCH_TEST_STORE=postgres puts their stores there, see
// testkit/storetest), and stops it after. Re-executed by a benchmark, the
// test binary is one of its parties instead (benchChild).
func TestMain(m *testing.M) {
	if role := os.Getenv(benchRole); role != "" {
		os.Exit(benchChild(role))
	}
	os.Exit(pgtest.RunMain(m))
}
