// Package testkit is for tests only: no code outside _test.go files may
// import it. It holds the few pieces that the test packages of notify,
// monitor and cmd/rugwatch each need and used to copy: starting a real
// mailpit, waiting for a line in a child's output, finding the ports a
// child listens on, and knowing when a Streamable HTTP server's
// standalone event stream is open.
//
// It exists because those copies drifted apart (one launcher reported a
// dead mailpit, the other did not) and because both probed a free port
// by listening and closing it, which races every other process on a
// loaded machine. Here every child binds port 0 itself (or a Unix socket)
// and the test learns the real port from the kernel, so no port is ever
// chosen in advance; and readiness is a line the child prints after it
// listens, not a sleep.
//
// Keep it small and specific: a helper belongs here only when at least
// two test packages need it. It is not a util package for production
// code, and it must not grow mocks of things that run here for real.
package testkit
