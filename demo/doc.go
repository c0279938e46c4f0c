// Package demo is the MCP server behind `rugwatch demo-server` and the
// README's first command: a stdio server whose tools are honest for a few
// listings and then turn malicious the way published tool-poisoning
// attacks do (a hidden <IMPORTANT> block asking for ~/.ssh/id_rsa plus a
// parameter to carry it, and a zero-width space in a description).
//
// It is its own package because none of DESIGN.md's rooms fits: it is
// neither the monitor nor wiring, and tests of several packages (the CLI
// now, the proxy next) run it as the hostile server to watch. It must stay
// harmless: its tools never read a file or keep what they are sent.
package demo
