package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/visible"
)

// runCheck polls the servers now, records what it saw and prints states.
func (a *App) runCheck(ctx context.Context, args []string) error {
	fs := a.newFlags("check")
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
	ver, err := a.verifier(cfg)
	if err != nil {
		return err
	}
	var signer monitor.Signer
	if cfg.ApproveFirstSeen && cfg.SigningKey != "" {
		s, err := signatures.LoadPrivateKey(cfg.SigningKey, a.keyPassword)
		if err != nil {
			return fmt.Errorf("loading signing_key for approve_first_seen: %w", err)
		}
		signer = s
	}
	db, err := a.openStore(cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	rec := &monitor.Recorder{DB: db, Verifier: ver, Signer: signer, UnreachableAfter: cfg.UnreachableAfter}
	report, err := a.checkServers(ctx, cfg, rec, servers)
	if err != nil {
		return err
	}
	if *asJSON {
		err = writeJSON(a.Stdout, report)
	} else {
		printReport(a.Stdout, report)
	}
	if err != nil {
		return err
	}
	if !report.clean() {
		return errFindings
	}
	return nil
}

// checkServers polls servers concurrently, bounded by cfg.Concurrency, and
// records each result as it arrives.
func (a *App) checkServers(ctx context.Context, cfg *configs.Config, rec *monitor.Recorder, servers []configs.Server) (Report, error) {
	reports := make([]ServerReport, len(servers))
	errs := make([]error, len(servers))
	sem := make(chan struct{}, max(cfg.Concurrency, 1))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			reports[i], errs[i] = a.checkOne(ctx, cfg, rec, s)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return Report{}, err
		}
	}
	return Report{SchemaVersion: 1, Servers: reports}, nil
}

func (a *App) checkOne(ctx context.Context, cfg *configs.Config, rec *monitor.Recorder, s configs.Server) (ServerReport, error) {
	t, err := a.target(s)
	if err != nil {
		return ServerReport{}, err
	}
	pctx, cancel := context.WithTimeout(ctx, s.EffectiveTimeout(cfg.Defaults))
	l, pollErr := monitor.Poll(pctx, t, dialOptions(cfg))
	cancel()
	if ctx.Err() != nil {
		return ServerReport{}, ctx.Err()
	}
	if pollErr != nil {
		a.log.Warn("poll failed", "server", s.Name, "error", visible.Line(pollErr.Error()))
	} else {
		for _, w := range l.Warnings {
			a.log.Warn("poll warning", "server", s.Name, "warning", w)
		}
		a.log.Debug("polled", "server", s.Name, "tools", len(l.Tools), "pages", l.Pages, "elapsed", l.Elapsed)
	}
	r, events, err := rec.Record(s.Name, s.Transport, l, pollErr)
	if err != nil {
		return ServerReport{}, err
	}
	for _, e := range events {
		logEvent(a.log, e)
	}
	return serverReport(r, s.Transport), nil
}

// logEvent writes one event as one log line. Until alert channels exist
// this is how an event reaches a person.
func logEvent(log *slog.Logger, e rugwatch.Event) {
	lvl := slog.LevelInfo
	switch e.Severity {
	case rugwatch.SeverityWarning:
		lvl = slog.LevelWarn
	case rugwatch.SeverityCritical:
		lvl = slog.LevelError
	}
	attrs := []any{"id", e.ID, "type", string(e.Type), "severity", string(e.Severity), "server", e.Server}
	if e.Tool != "" {
		attrs = append(attrs, "tool", visible.Line(e.Tool))
	}
	if e.ObservedDigest != "" {
		attrs = append(attrs, "observed", string(e.ObservedDigest))
	}
	if e.Message != "" {
		attrs = append(attrs, "message", visible.Line(e.Message))
	}
	log.Log(context.Background(), lvl, string(e.Type), attrs...)
}

// storeRecords reads the stored records for the named servers, or all
// configured ones, in config order.
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
