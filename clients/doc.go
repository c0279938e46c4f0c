// Package clients owns reading and editing other MCP clients' config files
// (Claude Desktop, Claude Code, Cursor, VS Code, Windsurf): Discover finds
// the servers they configure and WriteYAML prints them as rugwatch
// `servers:`; PlanInstall and Apply route a client's servers through
// `rugwatch proxy`, and Uninstall puts the client's files back from their
// backups.
//
// Client files are hostile input: they are read with a size bound, as JSON
// with comments, and nothing in them is run. Discover never starts a server
// and never copies a secret: literal credentials become ${env:…}
// references (configs.Secret templates) the user exports. An install edits
// only the bytes of the entries it rewrites, keeps the first original as
// <file>.rugwatch-backup, and writes rugwatch's config before the client's.
//
// The package imports configs (the Config types, the reserved-header list,
// secret references, name validation) and visible; configs must not import
// it. It must not talk to MCP servers or touch the store.
package clients
