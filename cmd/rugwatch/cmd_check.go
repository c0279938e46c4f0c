package main

import (
	"context"

	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/store"
)

// runCheck polls the servers now, records what it saw and prints states.
// Through a running daemon the daemon polls.
func (a *App) runCheck(ctx context.Context, args []string) error {
	return a.reportCommand(ctx, "check", args, true, backend.Check)
}

// reportCommand is check and status: flags, backend, one Report printed
// as text, JSON or SARIF, exit 1 when anything needs attention.
func (a *App) reportCommand(ctx context.Context, name string, args []string, polling bool,
	get func(b backend, ctx context.Context, servers []string) (Report, error)) error {
	fs := a.newFlags(name)
	asJSON := fs.Bool("json", false, "print JSON (same as --format json)")
	format := fs.String("format", "text", "text, json or sarif")
	names, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := checkFormat(format, *asJSON); err != nil {
		return err
	}
	b, err := a.backend(ctx, polling)
	if err != nil {
		return err
	}
	defer b.Close()
	rep, err := get(b, ctx, names)
	if err != nil {
		return err
	}
	return a.printReport(rep, *format)
}

// checkFormat folds --json into --format and rejects unknown formats.
func checkFormat(format *string, asJSON bool) error {
	if asJSON {
		*format = "json"
	}
	switch *format {
	case "text", "json", "sarif":
		return nil
	}
	return usagef("--format %q: want text, json or sarif", *format)
}

// printReport prints a Report and turns anything unclean into exit 1.
func (a *App) printReport(rep Report, format string) error {
	var err error
	switch format {
	case "json":
		err = writeJSON(a.Stdout, rep)
	case "sarif":
		err = writeSARIF(a.Stdout, sarifInputs(rep))
	default:
		printReport(a.Stdout, rep)
	}
	if err != nil {
		return err
	}
	if !rep.clean() {
		return errFindings
	}
	return nil
}

// storeRecords reads the stored records of servers, in config order.
func storeRecords(db *store.DB, servers []configs.Server) (Report, error) {
	rep := Report{SchemaVersion: 1, Servers: []ServerReport{}}
	err := db.View(func(tx *store.Tx) error {
		for _, s := range servers {
			r, ok, err := tx.Server(s.Name)
			if err != nil {
				return err
			}
			if !ok {
				r = store.ServerRecord{Name: s.Name, Transport: s.Transport}
			}
			rep.Servers = append(rep.Servers, serverReport(r, s.Transport))
		}
		return nil
	})
	return rep, err
}
