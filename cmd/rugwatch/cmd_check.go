package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/rugwatch/rugwatch/control"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/report"
)

// runCheck polls the servers now, records what it saw and prints states.
// Through a running daemon the daemon polls.
func (a *App) runCheck(ctx context.Context, args []string) error {
	// $RUGWATCH_CPUPROFILE writes a CPU profile of the whole check: the
	// fleet benchmark (fleet_bench_test.go) profiles rugwatch from
	// outside, as an operator would.
	if p, ok := a.LookupEnv("RUGWATCH_CPUPROFILE"); ok && p != "" {
		f, err := os.Create(p)
		if err != nil {
			return fmt.Errorf("create CPU profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("start CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	return a.reportCommand(ctx, "check", args, true, (*monitor.Ledger).CheckEach, control.Backend.Check)
}

// reportCommand is check and status: flags, backend, one Report printed
// as text, JSON or SARIF, exit 1 when anything needs attention. Over a
// local store the report is printed server by server as each is read
// (each), so memory does not grow with the fleet; the daemon's socket
// answers one Report (get), printed the same way.
func (a *App) reportCommand(ctx context.Context, name string, args []string, polling bool,
	each func(l *monitor.Ledger, ctx context.Context, servers []string, fn func(report.ServerReport) error) error,
	get func(b control.Backend, ctx context.Context, servers []string) (report.Report, error)) error {
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
	p := newReportPrinter(a.Stdout, *format)
	if l, ok := b.Backend.(*monitor.Ledger); ok {
		err = each(l, ctx, names, p.server)
	} else {
		var rep report.Report
		if rep, err = get(b.Backend, ctx, names); err == nil {
			for _, s := range rep.Servers {
				if err = p.server(s); err != nil {
					break
				}
			}
		}
	}
	if err != nil {
		return err
	}
	if err := p.end(); err != nil {
		return err
	}
	if !p.clean {
		return errFindings
	}
	return nil
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
