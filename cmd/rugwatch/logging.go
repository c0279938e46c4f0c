package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/lmittmann/tint"
)

// newLogger picks the log handler once: tint for a person at a terminal,
// JSON for everything else. tint neither detects a terminal nor honours
// NO_COLOR by itself, so both are decided here.
func newLogger(w io.Writer, format, level string, lookupEnv func(string) (string, bool)) (*slog.Logger, error) {
	var lvl slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lvl = slog.LevelDebug
	case "info", "":
		lvl = slog.LevelInfo
	case "warn", "warning":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	default:
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	tty := isTerminal(w)
	switch format {
	case "auto", "":
		if !tty {
			return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl})), nil
		}
	case "json":
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl})), nil
	case "text":
	default:
		return nil, fmt.Errorf("--log-format %q: want auto, text or json", format)
	}
	_, noColor := lookupEnv("NO_COLOR")
	return slog.New(tint.NewTextHandler(w, &tint.Options{Level: lvl, TimeFormat: time.TimeOnly, NoColor: noColor || !tty})), nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
