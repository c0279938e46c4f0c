package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/visible"
)

// runBackup writes a consistent copy of the store to FILE: through the
// daemon's socket while serve runs (one read transaction there, so polls
// go on), from the store itself otherwise. The copy is verified — opened
// read-only, its event chain and every approval signature checked with
// the trusted keys — before it takes FILE's name and is reported done.
func (a *App) runBackup(ctx context.Context, args []string) error {
	fs := a.newFlags("backup")
	asJSON := fs.Bool("json", false, "print JSON")
	force := fs.Bool("force", false, "replace FILE if it exists")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("rugwatch backup FILE [--force]")
	}
	dst := pos[0]
	if _, err := os.Lstat(dst); err == nil && !*force {
		return usagef("%s exists; pass --force to replace it", dst)
	}
	cfg, err := a.config()
	if err != nil {
		return err
	}
	b, err := a.backend(ctx, false)
	if err != nil {
		return err
	}
	defer b.Close()
	// The copy is written by this process, so it belongs to whoever ran
	// backup (never a file the daemon creates where a client says), 0600
	// like the store, and under a temporary name until it verified.
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".partial-*")
	if err != nil {
		return fmt.Errorf("creating the backup file: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	n, err := b.Backup(ctx, tmp, nil)
	if err != nil {
		return fmt.Errorf("copying the store: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("writing the backup: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing the backup: %w", err)
	}
	rep, err := a.verifyCopy(ctx, cfg, tmp.Name())
	if err != nil {
		return fmt.Errorf("verifying the backup: %w", err)
	}
	if !rep.OK {
		done = true // kept for inspection, under its temporary name
		printVerify(a, rep)
		fmt.Fprintf(a.Stderr, "rugwatch backup: the copy does NOT verify; kept as %s, not as %s\n", tmp.Name(), dst)
		return errFindings
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("naming the backup %s: %w", dst, err)
	}
	done = true
	if *asJSON {
		return writeJSON(a.Stdout, map[string]any{"schema_version": 1, "file": dst, "bytes": n, "verify": rep})
	}
	fmt.Fprintf(a.Stdout, "backup %s: %d bytes; event chain ok (%d events, head %s); %d approvals verified\n",
		dst, n, rep.EventsChecked, rep.Head, rep.ApprovalsChecked)
	return nil
}

// verifyCopy runs verify on a store file that no daemon holds.
func (a *App) verifyCopy(ctx context.Context, cfg *configs.Config, path string) (report.VerifyReport, error) {
	ver, err := a.verifier(cfg)
	if err != nil {
		return report.VerifyReport{}, err
	}
	db, err := store.Open(path, store.Options{ReadOnly: true})
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return report.VerifyReport{}, fmt.Errorf("no copy at %s", path)
		}
		return report.VerifyReport{}, err
	}
	defer db.Close()
	l := &monitor.Ledger{DB: db, Verifier: ver, Where: path}
	return l.Verify(ctx, nil)
}

// printVerify is verify's human report, for a copy that failed it.
func printVerify(a *App, rep report.VerifyReport) {
	if rep.ChainError != "" {
		fmt.Fprintf(a.Stdout, "event chain: BROKEN after checking %d events: %s\n", rep.EventsChecked, rep.ChainError)
	}
	for _, b := range rep.InvalidApprovals {
		fmt.Fprintf(a.Stdout, "  INVALID approval %s/%s: %s\n", b.Server, visible.Line(b.Tool), visible.Line(b.Problem))
	}
}
