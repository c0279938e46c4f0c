package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/visible"
)

// ScanReport is `scan --json`.
type ScanReport struct {
	SchemaVersion   int    `json:"schema_version"`
	Target          string `json:"target"`
	Transport       string `json:"transport"`
	ProtocolVersion string `json:"protocol_version"`
	// ProtocolVersionsOffered is what the server's server/discover listed.
	ProtocolVersionsOffered []string `json:"protocol_versions_offered,omitempty"`
	// Cache is the 2026-07-28 caching hint of tools/list (ttl_ms,
	// cache_scope); no digest covers it.
	Cache              *mcpclient.CacheHint `json:"cache,omitempty"`
	InstructionsDigest rugwatch.Digest      `json:"instructions_digest"`
	// Revisions and Cloaked are filled by --revision-check: the tools
	// each revision's clients are shown, and those that differ.
	Revisions []ScanRevision `json:"revisions,omitempty"`
	Cloaked   []string       `json:"cloaked,omitempty"`
	// Findings are about the server rather than a tool (stdout-noise);
	// StdoutNoise is what a stdio server wrote on stdout that is not
	// JSON-RPC, dropped unread.
	Findings    []rugwatch.Finding     `json:"findings,omitempty"`
	StdoutNoise *mcpclient.StdoutNoise `json:"stdout_noise,omitempty"`
	// Sandboxed says a stdio server ran in the sandbox; SandboxNote says
	// why it did not. Refused lists the destinations it was refused.
	Sandboxed   bool                `json:"sandboxed"`
	SandboxNote string              `json:"sandbox_note,omitempty"`
	Refused     []mcpclient.Refusal `json:"network_refused,omitempty"`
	Pages       int                 `json:"pages"`
	ElapsedMS   int64               `json:"elapsed_ms"`
	Warnings    []string            `json:"warnings"`
	Tools       []ScanTool          `json:"tools"`
}

// ScanRevision is what one revision's clients were listed.
type ScanRevision struct {
	ProtocolVersion string                     `json:"protocol_version"`
	Tools           map[string]rugwatch.Digest `json:"tools"`
}

// ScanTool is one tool in a ScanReport.
type ScanTool struct {
	Name     string             `json:"name"`
	Digest   rugwatch.Digest    `json:"digest"`
	Findings []rugwatch.Finding `json:"findings"`
}

// runScan lists one server's tools with their digests, with no config and
// no store: `scan URL` or `scan -- CMD ARGS…`.
func (a *App) runScan(ctx context.Context, args []string) error {
	fs := a.newFlags("scan")
	asJSON := fs.Bool("json", false, "print JSON (same as --format json)")
	format := fs.String("format", "text", "text, json or sarif")
	sse := fs.Bool("sse", false, "the URL speaks legacy HTTP+SSE")
	timeout := fs.Duration("timeout", 60*time.Second, "bound for the whole poll")
	verbose := fs.Bool("v", false, "print every definition")
	revisionCheck := fs.Bool("revision-check", false, "also list as a client of every other revision the server offers; tools that differ are critical")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("rugwatch scan URL | rugwatch scan -- CMD ARGS…")
	}
	if err := checkFormat(format, *asJSON); err != nil {
		return err
	}
	var t mcpclient.Target
	if len(pos) == 1 && (strings.HasPrefix(pos[0], "http://") || strings.HasPrefix(pos[0], "https://")) {
		t = mcpclient.Target{Name: "scan", Transport: mcpclient.TransportHTTP, URL: pos[0]}
		if *sse {
			t.Transport = mcpclient.TransportSSE
		}
	} else {
		t = mcpclient.Target{Name: "scan", Transport: mcpclient.TransportStdio, Command: pos[0], Args: pos[1:],
			// A fresh HOME and no grants; npx and uvx reach their registry.
			Sandbox: mcpclient.Sandbox{Egress: configs.LauncherEgress(pos[0], nil)}}
	}
	pctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	poll := mcpclient.Poll
	if *revisionCheck {
		poll = mcpclient.PollEachRevision
	}
	l, err := poll(pctx, t, mcpclient.DialOptions{})
	if err != nil {
		return fmt.Errorf("scanning %s: %w", strings.Join(pos, " "), err)
	}
	rep := ScanReport{SchemaVersion: 1, Target: strings.Join(pos, " "), Transport: t.Transport,
		ProtocolVersion: l.ProtocolVersion, InstructionsDigest: l.InstructionsDigest, Pages: l.Pages,
		ElapsedMS: l.Elapsed.Milliseconds(), Warnings: append([]string{}, l.Warnings...), Tools: []ScanTool{},
		ProtocolVersionsOffered: l.Offered, Cache: l.Cache,
		Sandboxed: l.Sandboxed, SandboxNote: l.SandboxNote, Refused: l.Refused,
		Findings: l.ServerFindings(), StdoutNoise: l.StdoutNoise}
	for _, rev := range l.Revisions {
		sr := ScanRevision{ProtocolVersion: rev.ProtocolVersion, Tools: map[string]rugwatch.Digest{}}
		for _, tool := range rev.Tools {
			sr.Tools[tool.Name] = tool.Digest
		}
		rep.Revisions = append(rep.Revisions, sr)
	}
	rep.Cloaked = mcpclient.CloakedTools(l.Revisions)
	// A server that lists other tools per revision is cloaking.
	critical := len(rep.Cloaked) > 0
	var sarif []report.SARIFInput
	for _, tool := range l.Tools {
		found := detect.Findings(tool.Canonical, detect.FindingContext{Server: t.Name})
		if found == nil {
			found = []rugwatch.Finding{}
		}
		if detect.MaxSeverity(found) == rugwatch.SeverityCritical {
			critical = true
		}
		rep.Tools = append(rep.Tools, ScanTool{Name: tool.Name, Digest: tool.Digest, Findings: found})
		if len(found) > 0 {
			sarif = append(sarif, report.SARIFInput{Server: t.Name, Tool: tool.Name, Findings: found, Digest: tool.Digest})
		}
	}
	// A critical finding fails a CI pipeline running scan one-shot.
	result := error(nil)
	if critical {
		result = errFindings
	}
	switch *format {
	case "json":
		if err := writeJSON(a.Stdout, rep); err != nil {
			return err
		}
		return result
	case "sarif":
		if err := report.WriteSARIF(a.Stdout, sarif); err != nil {
			return err
		}
		return result
	}
	fmt.Fprintf(a.Stdout, "%s (%s, protocol %s): %d tools in %d page(s), %v\n", visible.Line(rep.Target), t.Transport,
		visible.Line(l.ProtocolVersion), len(l.Tools), l.Pages, l.Elapsed.Round(time.Millisecond))
	if t.Transport == mcpclient.TransportStdio && !l.Sandboxed {
		fmt.Fprintf(a.Stdout, "%s\n", visible.Line(l.SandboxNote))
	}
	for _, r := range l.Refused {
		fmt.Fprintf(a.Stdout, "network refused: %s (the sandbox allows only its registry to a scan)\n", visible.Line(r.Dest))
	}
	if len(l.Offered) > 0 {
		fmt.Fprintf(a.Stdout, "server offers %s\n", visible.Line(strings.Join(l.Offered, ", ")))
	}
	if c := l.Cache; c != nil {
		ttl := "none"
		if c.TTLMs != nil {
			ttl = fmt.Sprintf("%dms", *c.TTLMs)
		}
		fmt.Fprintf(a.Stdout, "list cache hint: ttl %s, scope %s\n", ttl, visible.Line(c.CacheScope))
	}
	for _, name := range rep.Cloaked {
		fmt.Fprintf(a.Stdout, "CRITICAL cloaked: %s is listed differently per protocol revision\n", visible.Line(name))
	}
	if l.Instructions != nil {
		fmt.Fprintf(a.Stdout, "instructions %s\n", l.InstructionsDigest)
	}
	for _, w := range l.Warnings {
		fmt.Fprintf(a.Stdout, "warning: %s\n", visible.Line(w))
	}
	printFindings(a.Stdout, "", rep.Findings)
	tw := tabwriter.NewWriter(a.Stdout, 2, 8, 2, ' ', 0)
	for i, tool := range l.Tools {
		fmt.Fprintf(tw, "  %s\t%s\n", visible.Line(tool.Name), tool.Digest)
		printFindings(tw, "    ", rep.Tools[i].Findings)
		if *verbose {
			tw.Flush()
			printDefinition(a.Stdout, tool.Canonical, "    ")
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return result
}
