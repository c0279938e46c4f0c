package main

import (
	"context"
	"fmt"
	"runtime/debug"
)

// buildInfo is what `rugwatch version`, /healthz and the start-up log
// say about the binary: enough to tell which code runs at 3 a.m.
type buildInfo struct {
	Version  string `json:"version"`            // module version, "(devel)" for a local build
	Revision string `json:"revision,omitempty"` // VCS revision the binary was built from
	Modified bool   `json:"modified,omitempty"` // built from a tree with uncommitted changes
	Go       string `json:"go"`
}

func readBuildInfo() buildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return buildInfo{Version: "unknown"}
	}
	out := buildInfo{Version: bi.Main.Version, Go: bi.GoVersion}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			out.Revision = s.Value
		case "vcs.modified":
			out.Modified = s.Value == "true"
		}
	}
	return out
}

func (b buildInfo) String() string {
	s := "rugwatch " + b.Version
	if b.Revision != "" {
		s += " (" + b.Revision
		if b.Modified {
			s += ", modified"
		}
		s += ")"
	}
	return s + " " + b.Go
}

// runVersion prints the build information.
func (a *App) runVersion(ctx context.Context, args []string) error {
	fs := a.newFlags("version")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	bi := readBuildInfo()
	if *asJSON {
		return writeJSON(a.Stdout, bi)
	}
	_, err := fmt.Fprintln(a.Stdout, bi)
	return err
}
