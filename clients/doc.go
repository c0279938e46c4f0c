// Package clients owns reading and editing other MCP clients' config files
// (Claude Desktop, Claude Code, Cursor, VS Code, Windsurf): Discover finds
// the servers they configure and WriteYAML prints them as rugwatch
// `servers:`; PlanInstall and Apply route a client's servers through
// `rugwatch proxy` (one entry per server, or one gateway entry), writing
// rugwatch's config when there is none, and Uninstall undoes exactly what
// installs recorded.
//
// Client files are hostile input: they are read with a size bound, as JSON
// with comments, and nothing in them is run. Discover never starts a server
// and never copies a secret: literal credentials become ${env:NAME}
// references named as users export them (names.go), and of an envFile only
// the variable names are read. Two different servers (or secrets) never
// share a name. An install edits client files as text by key path
// (edit.go), so everything it does not rewrite stays byte for byte, records
// each change in <file>.rugwatch-install.json (0600: it keeps the entries
// as they were), keeps the first original as <file>.rugwatch-backup, and
// writes rugwatch's config before the client's files.
//
// The package imports configs (the Config types, the reserved-header list,
// secret references, name validation) and visible; configs must not import
// it. It must not talk to MCP servers or touch the store.
package clients
