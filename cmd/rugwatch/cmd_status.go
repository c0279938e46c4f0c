package main

import "context"

// runStatus prints the last known states without polling.
func (a *App) runStatus(ctx context.Context, args []string) error {
	fs := a.newFlags("status")
	asJSON := fs.Bool("json", false, "print JSON")
	names, err := parse(fs, args)
	if err != nil {
		return err
	}
	cfg, err := a.config()
	if err != nil {
		return err
	}
	servers, err := selectServers(cfg, names)
	if err != nil {
		return err
	}
	db, err := a.openStore(cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	rep, err := storeRecords(db, servers)
	if err != nil {
		return err
	}
	if *asJSON {
		err = writeJSON(a.Stdout, rep)
	} else {
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
