package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
	install := flags.String("install", "", "route CLIENT's servers through rugwatch proxy (claude-desktop, claude-code, cursor, vscode, windsurf); writes the config when there is none")
	gateway := flags.Bool("gateway", false, "with --install CLIENT: one entry for the client, rugwatch proxy --all (the gateway), instead of one per server")
	uninstall := flags.Bool("uninstall", false, "with --install CLIENT: undo what installs changed in CLIENT's config files, and nothing else")
	force := flags.Bool("force", false, "with --install: rewrite entries even where comments inside them are lost")
	pos, err := parse(flags, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("discover takes no arguments: rugwatch discover [--json] [--home DIR] [--project DIR] [--install CLIENT [--gateway] [--uninstall] [--force]]")
	}
	if (*uninstall || *force || *gateway) && *install == "" {
		return usagef("--uninstall, --gateway and --force go with --install CLIENT")
	}
	if *uninstall && *gateway {
		return usagef("--uninstall undoes either kind of install: rugwatch discover --install CLIENT --uninstall")
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
		if *uninstall {
			return a.uninstallClient(*install, *home, *project, *asJSON)
		}
		return a.installClient(clients.InstallOptions{Home: *home, Project: *project, Client: *install, Gateway: *gateway, Force: *force}, *asJSON)
	}
	rep := clients.Discover(*home, *project)
	if *asJSON {
		return writeJSON(a.Stdout, rep)
	}
	return clients.WriteYAML(a.Stdout, rep, *home)
}

// uninstallClient undoes what installs recorded in one client's files.
func (a *App) uninstallClient(client, home, project string, asJSON bool) error {
	if _, ok := clients.Names[client]; !ok {
		return usagef("--install: unknown client %q (claude-desktop, claude-code, cursor, vscode, windsurf)", client)
	}
	files, err := clients.Uninstall(home, project, client)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(a.Stdout, map[string]any{"files": files})
	}
	for _, f := range files {
		fmt.Fprintf(a.Stdout, "%s:\n", f.Path)
		for _, e := range f.Restored {
			fmt.Fprintf(a.Stdout, "  put back %s\n", visible.Line(e))
		}
		for _, e := range f.Removed {
			fmt.Fprintf(a.Stdout, "  removed  %s\n", visible.Line(e))
		}
		for _, e := range f.Kept {
			fmt.Fprintf(a.Stdout, "  left     %s\n", visible.Line(e))
		}
		if f.Backup != "" {
			fmt.Fprintf(a.Stdout, "  the file as it was before the first install stays at %s\n", f.Backup)
		}
	}
	fmt.Fprintln(a.Stdout, "the servers added to rugwatch's config stay there; remove them by hand if you no longer want them watched")
	return nil
}

// installClient rewrites one client's config so that its servers run
// through rugwatch under this executable and config, adding the servers
// the config lacks (writing the config when there is none).
func (a *App) installClient(o clients.InstallOptions, asJSON bool) error {
	if _, ok := clients.Names[o.Client]; !ok {
		return usagef("--install: unknown client %q (claude-desktop, claude-code, cursor, vscode, windsurf)", o.Client)
	}
	var err error
	if o.ConfigPath, err = filepath.Abs(a.configFile()); err != nil {
		return err
	}
	switch _, err := os.Stat(o.ConfigPath); {
	case err == nil:
		if o.Config, err = a.config(); err != nil {
			return err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("config %s: %w", o.ConfigPath, err)
	}
	if o.Rugwatch, err = os.Executable(); err != nil {
		return fmt.Errorf("finding this executable for the client's entries: %w", err)
	}
	if o.Rugwatch, err = filepath.Abs(o.Rugwatch); err != nil {
		return err
	}
	plan, err := clients.PlanInstall(o)
	if err != nil {
		return err
	}
	if err := plan.Apply(); err != nil {
		return err
	}
	for _, w := range plan.Warnings {
		fmt.Fprintf(a.Stderr, "warning: %s\n", visible.Line(w))
	}
	if asJSON {
		return writeJSON(a.Stdout, plan)
	}
	a.printInstall(plan)
	return nil
}

func (a *App) printInstall(plan *clients.InstallResult) {
	w := a.Stdout
	for _, f := range plan.Files {
		if f.Unchanged {
			fmt.Fprintf(w, "%s: nothing to route\n", f.Path)
		} else {
			fmt.Fprintf(w, "%s (changes recorded in %s for --uninstall; the original is %s):\n", f.Path, f.Record, f.Backup)
		}
		for _, r := range f.Routed {
			fmt.Fprintf(w, "  routed %s\n", visible.Line(r))
		}
		if f.Gateway != "" {
			fmt.Fprintf(w, "  added  %s: rugwatch proxy --all, the gateway to every approved tool\n", visible.Line(f.Gateway))
		}
		for _, k := range f.Kept {
			fmt.Fprintf(w, "  kept   %s\n", visible.Line(k))
		}
	}
	switch {
	case plan.Created:
		fmt.Fprintf(w, "wrote a new config %s with the servers %s\n", plan.Config, strings.Join(plan.Added, ", "))
	case len(plan.Added) > 0:
		fmt.Fprintf(w, "added to %s: %s\n", plan.Config, strings.Join(plan.Added, ", "))
	}
	if len(plan.Exports) > 0 {
		// The client hands these to `rugwatch proxy`; serve and check,
		// started from a shell, read them from theirs.
		fmt.Fprintf(w, "No secret was copied into %s. Export these where `rugwatch serve` and `check` run:\n", plan.Config)
		for _, e := range plan.Exports {
			set := ""
			if _, ok := a.LookupEnv(e.Name); ok {
				set = " (set in this shell)"
			}
			fmt.Fprintf(w, "  export %s=…   # %s%s\n", e.Name, visible.Line(e.For), set)
		}
	}
	if len(plan.Added) == 0 && !slices.ContainsFunc(plan.Files, func(f clients.InstallFileResult) bool { return !f.Unchanged }) {
		return
	}
	if plan.Created {
		fmt.Fprintf(w, "next: rugwatch --config %s init, then check, then approve what you trust; until then the client sees no tools\n", plan.Config)
		return
	}
	fmt.Fprintf(w, "next: rugwatch --config %s check, then approve what you trust; until then the client sees no tools\n", plan.Config)
}
