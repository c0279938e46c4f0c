// Package detect is rugwatch's rules: pure functions from what a server
// said to findings. It owns the poisoning findings of a tool definition,
// by rule family (findings.go), the findings of a tool result as the
// proxy scans it (results.go), field-level diffs and their bounds
// (diff.go), the findings of a package runner's command line (a pinned
// version, a name one edit from a well-known server: packages.go), and
// the index of every server's tool names that shadowing reads.
//
// Nothing here does I/O or keeps state beyond the caller's memo: the same
// input gives the same findings, so the rules are tested as tables and
// run anywhere (a poll, a proxy call, `rugwatch scan`). It imports
// neither the store, nor the MCP client, nor the monitor.
package detect
