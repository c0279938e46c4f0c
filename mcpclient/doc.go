// Package mcpclient is rugwatch's MCP client: the code that reads a
// server's hostile bytes and turns them into facts. It owns:
//
//   - the session: JSON-RPC driven by rugwatch itself over the go-sdk's
//     stdio, Streamable HTTP and SSE transports, so that every tool is
//     kept exactly as the server sent it (session.go, listing.go, page.go),
//     and the server's requests relayed to a Peer (peer.go);
//   - stdio children in the sandbox, each in its own process group with
//     an explicit environment (process.go), and bounded HTTP that sends
//     nothing outside the target's origin (httpclient.go);
//   - what a listing is beside its tools: the launch identity of a stdio
//     server and its package (launch.go, packages.go), the remote identity
//     of an HTTP server (identity.go), the protocol revision negotiated in
//     either era (revision.go), a listing under each revision
//     (revision_check, cloak.go);
//   - watch sessions that hear list_changed (watch.go), and the scrubbing
//     of configured secrets out of everything a server echoes (scrub.go).
//
// Everything a server sends is hostile input: every read is bounded in
// bytes, depth, count and time, and a response that breaks a bound fails
// the poll with an error naming the limit. The package never sends a
// configured secret anywhere but to that server, never acts on a server's
// requests itself, and imports neither the store nor the monitor: what
// the facts mean is detect's and monitor's business.
package mcpclient
