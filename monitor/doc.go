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
//     watch.go), and the Poller and Fleet that drive them from a config's
//     ServerSpecs (fleet.go);
//   - evaluation: the tool state machine, field-level diffs, drift
//     severity and poisoning findings (evaluate.go, diff.go, findings.go),
//     and the Recorder that writes one poll's outcome in one store
//     transaction (record.go);
//   - the Ledger (ledger.go), the one owner of every transition a human
//     asks for — approve, revoke, pin a launch identity — and of the reads
//     around them, called alike by the CLI offline, by the daemon behind
//     its control socket and by the proxy; the Recorder and the Ledger are
//     the only writers of tool states;
//   - the reports every front end prints: status/check/diff/verify/alerts
//     JSON types (report.go) and SARIF (sarif.go).
//
// Everything a server sends is hostile input: every read is bounded in
// bytes, depth, count and time, and a response that breaks a bound fails
// the poll with an error naming the limit. The package must never send a
// configured secret anywhere but to that server, never act on a server's
// requests (sampling, elicitation, roots), and never hold a private key
// beyond the optional first-sight Signer it is handed.
package monitor
