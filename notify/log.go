package notify

import (
	"context"
	"log/slog"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/visible"
)

// LogChannel is the name of the log channel.
const LogChannel = "log"

// Log writes one line per event to a logger. It is always on and gets
// every event whatever its severity.
type Log struct {
	Logger *slog.Logger
}

// Name is "log".
func (l *Log) Name() string { return LogChannel }

// Notify logs e: critical at error level, warning at warn, the rest at
// info. Names come from servers and pass through visible.Line, since a
// text handler would print them raw.
func (l *Log) Notify(ctx context.Context, e rugwatch.Event) (bool, error) {
	level := slog.LevelInfo
	switch e.Severity {
	case rugwatch.SeverityCritical:
		level = slog.LevelError
	case rugwatch.SeverityWarning:
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("event_id", visible.Line(e.ID)),
		slog.String("type", visible.Line(string(e.Type))),
		slog.String("severity", visible.Line(string(e.Severity))),
		slog.String("server", visible.Line(e.Server)),
	}
	if e.Tool != "" {
		attrs = append(attrs, slog.String("tool", visible.Line(e.Tool)))
	}
	if e.ApprovedDigest != "" {
		attrs = append(attrs, slog.String("approved_digest", visible.Line(string(e.ApprovedDigest))))
	}
	if e.ObservedDigest != "" {
		attrs = append(attrs, slog.String("observed_digest", visible.Line(string(e.ObservedDigest))))
	}
	if len(e.Changes) > 0 {
		attrs = append(attrs, slog.Int("changes", len(e.Changes)))
	}
	if len(e.Findings) > 0 {
		attrs = append(attrs, slog.Int("findings", len(e.Findings)))
	}
	if e.Message != "" {
		attrs = append(attrs, slog.String("message", visible.Line(e.Message)))
	}
	l.Logger.LogAttrs(ctx, level, "alert", attrs...)
	return false, nil
}
