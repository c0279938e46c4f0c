// Package hostile lays out what a hostile stdio MCP server attacks on a
// user's machine, for the sandbox's tests in more than one package (the
// client's, and the monitor's that check the events it causes). It
// imports no package that imports the MCP client, so the client's own
// tests may use it.
package hostile
