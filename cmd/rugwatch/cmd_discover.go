package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rugwatch/rugwatch/configs"
)

// runDiscover finds the MCP servers configured in the MCP clients on this
// machine and prints them as rugwatch `servers:` YAML. It reads files only:
// no server is started, no secret is copied.
func (a *App) runDiscover(ctx context.Context, args []string) error {
	flags := a.newFlags("discover")
	asJSON := flags.Bool("json", false, "print JSON")
	home := flags.String("home", "", "home directory to search (default: yours)")
	project := flags.String("project", "", "project directory to search (default: the working directory)")
	pos, err := parse(flags, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("discover takes no arguments: rugwatch discover [--json] [--home DIR] [--project DIR]")
	}
	if *home == "" {
		if *home, err = os.UserHomeDir(); err != nil {
			return usagef("cannot tell the home directory (%v); pass --home DIR", err)
		}
	}
	if *project == "" {
		if *project, err = os.Getwd(); err != nil {
			return fmt.Errorf("finding the working directory: %w", err)
		}
	}
	for _, d := range []*string{home, project} {
		if abs, err := filepath.Abs(*d); err == nil {
			*d = abs
		}
	}
	rep := configs.Discover(*home, *project)
	if *asJSON {
		return writeJSON(a.Stdout, rep)
	}
	return configs.WriteDiscoverYAML(a.Stdout, rep, *home)
}
