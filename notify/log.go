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

// logText is visible.Line(s), without its work for the common string it
// leaves as it is: printable ASCII with no backslash and no two spaces in
// a row (a long run of spaces is what it would shorten). Event ids, types,
// severities and digests are always such strings, and most server and tool
// names; the log channel renders every field of every event, and drains
// half as fast through visible's general path.
func logText(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '\\' || (c == ' ' && i > 0 && s[i-1] == ' ') {
			return visible.Line(s)
		}
	}
	return s
}

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
		slog.String("event_id", logText(e.ID)),
		slog.String("type", logText(string(e.Type))),
		slog.String("severity", logText(string(e.Severity))),
		slog.String("server", logText(e.Server)),
	}
	if e.Tool != "" {
		attrs = append(attrs, slog.String("tool", logText(e.Tool)))
	}
	if e.ApprovedDigest != "" {
		attrs = append(attrs, slog.String("approved_digest", logText(string(e.ApprovedDigest))))
	}
	if e.ObservedDigest != "" {
		attrs = append(attrs, slog.String("observed_digest", logText(string(e.ObservedDigest))))
	}
	if len(e.Changes) > 0 {
		attrs = append(attrs, slog.Int("changes", len(e.Changes)))
	}
	if len(e.Findings) > 0 {
		attrs = append(attrs, slog.Int("findings", len(e.Findings)))
	}
	if e.Message != "" {
		attrs = append(attrs, slog.String("message", logText(e.Message)))
	}
	l.Logger.LogAttrs(ctx, level, "alert", attrs...)
	return false, nil
}
