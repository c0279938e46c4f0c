// Package control is the protocol between rugwatch's commands and a
// running daemon: the Backend every command talks to, one HTTP handler
// that serves any Backend on the daemon's Unix socket, and the Client that
// speaks to it. The CLI, the daemon and the proxy all reach the tool state
// machine through a Backend, so each transition has one owner
// (monitor.Ledger) whichever process asks for it.
//
// It is a package of its own because none of DESIGN.md's rooms fits: the
// monitor must not know about sockets, and cmd/rugwatch is wiring that the
// proxy cannot import.
//
// The socket is the daemon's most powerful interface (it approves and
// revokes), so Listen creates it 0600 in a 0700 directory and checks every
// peer's credentials (SO_PEERCRED): the daemon's own uid, root, and the
// configured extra uids and gids, and never a process in another user or
// PID namespace than the daemon's — which is where every sandboxed stdio
// server runs. Each refusal is logged with the peer's pid and uid.
//
// Wire format: every method is a POST of a JSON request to /v1/<method>;
// an error comes back as {"error": …, "kind": "usage"|"error"}.
package control
