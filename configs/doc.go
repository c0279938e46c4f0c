// Package configs owns rugwatch's YAML configuration: its types, loading,
// strict decoding (an unknown key is an error naming its line), defaults,
// validation, and the ${env:NAME} / ${file:PATH} secret references.
//
// Secrets stay references until the moment of use: loading and validating a
// config never resolves one, Secret.Resolve returns the value to the caller
// without keeping it, and every way of printing a Secret (fmt, JSON, YAML,
// slog) prints "<secret>". Errors name the reference, never its value.
//
// Other MCP clients' config files (discover, install, uninstall) are not
// this package's: they belong to package clients, which imports this one;
// this package must never import it.
//
// The package imports the standard library, yaml, robfig/cron (to check
// schedules the way the scheduler will parse them) and sandbox, for the
// sandbox's own types (network modes, resource limits), so that a config
// is checked by the same parser the sandbox applies.
package configs
