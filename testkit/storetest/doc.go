// Package storetest opens the store a test runs its behaviour over, on
// the backend the environment picks: a bbolt file in the test's
// directory normally, a fresh PostgreSQL database of its own (from
// pgtest) when RUGWATCH_TEST_STORE=postgres. CI runs the suites of the
// packages that use it both ways, so what they test of the store holds
// on both backends.
//
// A package whose tests call Open must have pgtest's TestMain,
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.RunMain(m)) }
//
// because Open may start and must then stop a private PostgreSQL
// cluster. A test that is about the bbolt file itself (its size, its
// bytes, its lock) opens it with store.Open, not here.
//
// It is for tests only.
package storetest
