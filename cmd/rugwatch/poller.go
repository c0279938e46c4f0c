package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/visible"
)

// poller polls configured servers and records what it saw. check uses it
// once; serve uses it from the scheduler and the watch sessions.
type poller struct {
	app *App
	cfg *configs.Config
	rec *monitor.Recorder
	log *slog.Logger
	// onEvent sees every recorded event, after it is stored.
	onEvent func(rugwatch.Event)
}

// pollOne polls one server within its timeout and records the result,
// unreachable included. Only a failure to record is an error.
func (p *poller) pollOne(ctx context.Context, s configs.Server) error {
	t, err := p.app.target(s)
	if err != nil {
		// A secret that cannot be resolved is this server's failure, not
		// the daemon's: record it so the operator sees it in status.
		return p.record(s, nil, err)
	}
	pctx, cancel := context.WithTimeout(ctx, s.EffectiveTimeout(p.cfg.Defaults))
	l, pollErr := monitor.Poll(pctx, t, p.app.dialOptions(p.cfg))
	cancel()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return p.record(s, l, pollErr)
}

// record stores one listing (or poll error) of s.
func (p *poller) record(s configs.Server, l *monitor.Listing, pollErr error) error {
	if pollErr != nil {
		p.log.Warn("poll failed", "server", s.Name, "error", visible.Line(pollErr.Error()))
	} else {
		for _, w := range l.Warnings {
			p.log.Warn("poll warning", "server", s.Name, "warning", w)
		}
		p.log.Debug("polled", "server", s.Name, "tools", len(l.Tools), "pages", l.Pages, "elapsed", l.Elapsed)
	}
	_, events, err := p.rec.Record(s.Name, s.Transport, l, pollErr)
	if err != nil {
		return err
	}
	for _, e := range events {
		logEvent(p.log, e)
		if p.onEvent != nil {
			p.onEvent(e)
		}
	}
	return nil
}

// pollAll polls servers concurrently, at most cfg.Concurrency at a time.
func (p *poller) pollAll(ctx context.Context, servers []configs.Server) error {
	errs := make([]error, len(servers))
	sem := make(chan struct{}, max(p.cfg.Concurrency, 1))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = p.pollOne(ctx, s)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// logEvent writes one recorded event as a debug line, every server-chosen
// string made visible. People see events through the log alert channel,
// which is always on; this line is for tracing the recording itself.
func logEvent(log *slog.Logger, e rugwatch.Event) {
	lvl := slog.LevelDebug
	attrs := []any{"id", e.ID, "type", string(e.Type), "severity", string(e.Severity), "server", e.Server}
	if e.Tool != "" {
		attrs = append(attrs, "tool", visible.Line(e.Tool))
	}
	if e.ObservedDigest != "" {
		attrs = append(attrs, "observed", string(e.ObservedDigest))
	}
	if len(e.Changes) > 0 {
		attrs = append(attrs, "changes", visible.Line(changeSummary(e.Changes)))
	}
	if e.Message != "" {
		attrs = append(attrs, "message", visible.Line(e.Message))
	}
	log.Log(context.Background(), lvl, "event "+string(e.Type), attrs...)
}
