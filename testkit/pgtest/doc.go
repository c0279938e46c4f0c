// Package pgtest gives a test a fresh, empty PostgreSQL database of its
// own, on a real server. It is for tests only.
//
// Real PostgreSQL, not SQLite or a fake: the store's PostgreSQL backend
// depends on what only the real server does (its SQL dialect, its types,
// its locking and transaction isolation), and a stand-in that agrees with
// our idea of PostgreSQL would only test that idea.
//
// DSN creates the database (and drops it when the test ends), so tests
// never share state and may run in parallel. The server is, in order:
//
//   - the one RUGWATCH_TEST_PG names, a postgres:// URL whose user may
//     CREATE DATABASE; .ci/run starts one for the whole run and sets it;
//   - else a private cluster this test binary starts once, from the
//     PostgreSQL binaries on PATH or in /usr/lib/postgresql/*/bin
//     (Debian's place, which is not on PATH), listening on a Unix socket
//     only, so it takes no port and nothing outside can reach it;
//   - else none: the test skips, except in CI, where it fails, because a
//     CI run that silently skipped its database tests would pass for the
//     wrong reason.
//
// A package whose tests call DSN must stop that private cluster when its
// test binary ends, so it must have
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.RunMain(m)) }
//
// DSN fails a test in a package without it, whichever server it would
// use, so a missing TestMain shows up in CI too. A cluster left behind by
// a binary that died before RunMain returned (a test timeout, a kill)
// lives in os.TempDir()/rugwatch-pgtest-*, and the next binary that
// starts a cluster stops and removes it.
//
// Private is for a test that must see the database go away: a cluster
// of that test's own (never the shared server RUGWATCH_TEST_PG names),
// which it may Stop and Start, or Freeze and Thaw (every server process
// stopped with SIGSTOP: connections open, nothing answering).
package pgtest
