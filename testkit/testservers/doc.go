// Package testservers is the MCP servers rugwatch's tests run: the test
// binary re-executed with RUGWATCH_TEST_SERVER set serves one of them
// over stdio (Child, from TestMain), so stdio tests run a real child
// process with real pipes and process groups; the same servers run in
// process for HTTP tests. It imports no rugwatch package, so any
// package's tests may use it.
package testservers
