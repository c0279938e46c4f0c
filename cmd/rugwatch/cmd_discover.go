package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/rugwatch/rugwatch/clients"
	"github.com/rugwatch/rugwatch/visible"
)

// runDiscover finds the MCP servers configured in the MCP clients on this
// machine and prints them as rugwatch `servers:` YAML. It reads files only:
// no server is started, no secret is copied.
func (a *App) runDiscover(ctx context.Context, args []string) error {
	flags := a.newFlags("discover")
	asJSON := flags.Bool("json", false, "print JSON")
	home := flags.String("home", "", "home directory to search (default: yours)")
	project := flags.String("project", "", "project directory to search (default: the working directory)")
	install := flags.String("install", "", "route CLIENT's servers through `rugwatch proxy` (claude-desktop, claude-code, cursor, vscode, windsurf)")
	uninstall := flags.Bool("uninstall", false, "with --install CLIENT: restore CLIENT's config files from their backups")
	force := flags.Bool("force", false, "with --install: rewrite entries even where comments inside them are lost")
	pos, err := parse(flags, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("discover takes no arguments: rugwatch discover [--json] [--home DIR] [--project DIR] [--install CLIENT [--uninstall] [--force]]")
	}
	if (*uninstall || *force) && *install == "" {
		return usagef("--uninstall and --force go with --install CLIENT")
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
	if *install != "" {
		return a.installClient(*install, *home, *project, *uninstall, *force, *asJSON)
	}
	rep := clients.Discover(*home, *project)
	if *asJSON {
		return writeJSON(a.Stdout, rep)
	}
	return clients.WriteYAML(a.Stdout, rep, *home)
}

// installClient rewrites one client's config so that each of its servers
// runs through `rugwatch proxy` under this rugwatch and config, adding the
// servers the config lacks; uninstall puts the client's files back.
func (a *App) installClient(client, home, project string, uninstall, force, asJSON bool) error {
	if _, ok := clients.Names[client]; !ok {
		return usagef("--install: unknown client %q (claude-desktop, claude-code, cursor, vscode, windsurf)", client)
	}
	if uninstall {
		restored, err := clients.Uninstall(home, project, client)
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(a.Stdout, map[string]any{"restored": restored})
		}
		for _, p := range restored {
			fmt.Fprintf(a.Stdout, "restored %s from %s%s\n", p, p, clients.BackupSuffix)
		}
		fmt.Fprintln(a.Stdout, "the servers added to rugwatch's config stay there; remove them by hand if you no longer want them watched")
		return nil
	}
	cfg, err := a.config()
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this executable for the client's entries: %w", err)
	}
	if exe, err = filepath.Abs(exe); err != nil {
		return err
	}
	if cfg.Path, err = filepath.Abs(cfg.Path); err != nil {
		return err
	}
	plan, err := clients.PlanInstall(clients.InstallOptions{Home: home, Project: project, Client: client, Rugwatch: exe, Config: cfg, Force: force})
	if err != nil {
		return err
	}
	if err := plan.Apply(cfg.Path); err != nil {
		return err
	}
	if asJSON {
		return writeJSON(a.Stdout, plan)
	}
	for _, f := range plan.Files {
		switch {
		case f.Unchanged:
			fmt.Fprintf(a.Stdout, "%s: nothing to route\n", f.Path)
		default:
			fmt.Fprintf(a.Stdout, "%s (original kept as %s):\n", f.Path, f.Backup)
		}
		for _, r := range f.Routed {
			fmt.Fprintf(a.Stdout, "  routed %s\n", visible.Line(r))
		}
		for _, k := range f.Kept {
			fmt.Fprintf(a.Stdout, "  kept   %s\n", visible.Line(k))
		}
	}
	if len(plan.Added) > 0 {
		fmt.Fprintf(a.Stdout, "added to %s: %s\n", cfg.Path, strings.Join(plan.Added, ", "))
	}
	// The secrets moved into the client's entry reach `rugwatch proxy`
	// from the client; a check or serve from a shell needs them too.
	var unset []string
	for _, m := range envRef.FindAllStringSubmatch(plan.ConfigYAML, -1) {
		if _, ok := a.LookupEnv(m[1]); !ok && !slices.Contains(unset, m[1]) {
			unset = append(unset, m[1])
		}
	}
	if len(unset) > 0 {
		fmt.Fprintf(a.Stdout, "the added servers read %s (their values are in the client's config now): set them for check and serve\n", strings.Join(unset, ", "))
	}
	fmt.Fprintf(a.Stdout, "next: rugwatch --config %s check, then approve what you trust; until then the client sees no tools\n", cfg.Path)
	return nil
}

var envRef = regexp.MustCompile(`\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}`)
