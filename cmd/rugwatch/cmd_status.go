package main

import "context"

// runStatus prints the last known states without polling.
func (a *App) runStatus(ctx context.Context, args []string) error {
	fs := a.newFlags("status")
	asJSON := fs.Bool("json", false, "print JSON (same as --format json)")
	format := fs.String("format", "text", "text, json or sarif")
	names, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := checkFormat(format, *asJSON); err != nil {
		return err
	}
	b, err := a.backend(ctx, false)
	if err != nil {
		return err
	}
	defer b.Close()
	rep, err := b.Status(ctx, names)
	if err != nil {
		return err
	}
	return a.printReport(rep, *format)
}
