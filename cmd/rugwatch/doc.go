// Command rugwatch watches the tool definitions MCP servers hand to language
// models and catches the rug pull: a tool whose description or schema
// changes after a human approved it.
//
// This package only wires: flags, config, store, keys and output. The work
// lives in monitor, store, signatures, configs and visible. Each subcommand
// has a file of its own; main.go holds nothing but signals and the exit
// code, so tests run the whole CLI in-process through App.
package main
