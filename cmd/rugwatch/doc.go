// Command rugwatch watches the tool definitions MCP servers hand to language
// models and catches the rug pull: a tool whose description or schema
// changes after a human approved it.
//
// This package only wires and prints: flags, config, store, keys, and the
// output of each command. Every state transition lives in monitor (the
// Recorder for polls, the Ledger for what humans ask), the socket protocol
// in control, client-config discovery and install in clients, alert
// channels in notify. Each subcommand has a file of its own; main.go holds
// nothing but signals and the exit code, so tests run the whole CLI
// in-process through App. The daemon (cmd_serve.go) is a small type whose
// Start brings the store, the fleet, the dispatcher, the control socket and
// the health endpoint up in that order and whose Stop takes them down in
// reverse, within a bound.
package main
