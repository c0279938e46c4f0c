// Package monitor talks to MCP servers and decides what their answers
// mean. It owns:
//
//   - the client: a JSON-RPC session driven by rugwatch itself over the
//     official go-sdk's stdio, Streamable HTTP and SSE transports, so that
//     every tool is kept exactly as the server sent it (session.go,
//     listing.go); stdio children in their own process group with an
//     explicit environment (process.go); bounded HTTP (httpclient.go);
//   - the launch identity of stdio servers (launch.go);
//   - the scheduler and the watch sessions of serve (scheduler.go,
//     watch.go);
//   - evaluation: the tool state machine, field-level diffs, drift
//     severity and poisoning findings (evaluate.go, diff.go, findings.go),
//     and the Recorder that writes one poll's outcome in one store
//     transaction (record.go).
//
// Everything a server sends is hostile input: every read is bounded in
// bytes, depth, count and time, and a response that breaks a bound fails
// the poll with an error naming the limit. The package must never send a
// configured secret anywhere but to that server, never act on a server's
// requests (sampling, elicitation, roots), and never hold a private key
// beyond the optional first-sight Signer it is handed.
package monitor
