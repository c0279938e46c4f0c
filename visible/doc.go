// Package visible renders text that came from an MCP server for human eyes:
// the terminal, email bodies and log lines. Every control, format (bidi,
// zero-width, tag) and escape character becomes a visible escape, so that
// untrusted text can never move a cursor, clear a screen, hide words or
// forge a line of rugwatch's own output.
//
// It is a package of its own because the CLI, the notifiers and the
// monitor's messages all need the same renderer, and none of the job
// packages of DESIGN.md owns the others' output. It imports only the
// standard library and must never drop a character silently.
package visible
