package report

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/visible"
)

// SARIFInput is one tool's findings and drift for WriteSARIF.
type SARIFInput struct {
	Server, Tool string
	Findings     []rugwatch.Finding
	Drift        *rugwatch.Event // nil if none
	Digest       rugwatch.Digest // observed
}

// SARIF 2.1.0, the subset rugwatch writes. Locations are tools, not files:
//
//   - physicalLocation.artifactLocation.uri is "mcp://<server>/<tool>",
//     because GitHub code scanning rejects a result without a non-empty
//     artifact URI. It matches no file in a repository, so GitHub lists the
//     alert without a code view; region.startLine 1 is there because GitHub
//     also wants a region. The JSON pointer goes into the location message
//     and properties.jsonPath.
//   - logicalLocations name the tool ("server/tool", kind "function") and
//     the string inside it ("server/tool#/pointer", kind "member").
//   - partialFingerprints["rugwatch/v1"] is a hash of server, tool, rule and
//     pointer (and, for drift, the observed digest), so the same finding on
//     the next run is the same alert and a new drift is a new one.
type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool    sarifTool     `json:"tool"`
	Results []sarifResult `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	InformationURI string      `json:"informationUri"`
	Rules          []sarifRule `json:"rules"`
}

type sarifRule struct {
	ID                   string         `json:"id"`
	Name                 string         `json:"name"`
	ShortDescription     sarifText      `json:"shortDescription"`
	DefaultConfiguration sarifConfig    `json:"defaultConfiguration"`
	Properties           map[string]any `json:"properties"`
}

type sarifConfig struct {
	Level string `json:"level"`
}

type sarifText struct {
	Text string `json:"text"`
}

type sarifResult struct {
	RuleID              string            `json:"ruleId"`
	RuleIndex           int               `json:"ruleIndex"`
	Level               string            `json:"level"`
	Message             sarifText         `json:"message"`
	Locations           []sarifLocation   `json:"locations"`
	PartialFingerprints map[string]string `json:"partialFingerprints"`
	Properties          map[string]any    `json:"properties,omitempty"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical     `json:"physicalLocation"`
	LogicalLocations []sarifLogical    `json:"logicalLocations"`
	Message          *sarifText        `json:"message,omitempty"`
	Properties       map[string]string `json:"properties,omitempty"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
	Region           sarifRegion   `json:"region"`
}

type sarifArtifact struct {
	URI string `json:"uri"`
}

type sarifRegion struct {
	StartLine int `json:"startLine"`
}

type sarifLogical struct {
	Name               string `json:"name"`
	FullyQualifiedName string `json:"fullyQualifiedName"`
	Kind               string `json:"kind"`
}

// driftRuleID is the SARIF rule of a drift event type: "tool.drifted"
// becomes "rugwatch/drift/tool-drifted".
func driftRuleID(t rugwatch.EventType) string {
	return "rugwatch/drift/" + strings.ReplaceAll(string(t), ".", "-")
}

// sarifLevel maps rugwatch severities onto SARIF levels.
func sarifLevel(s rugwatch.Severity) string {
	switch s {
	case rugwatch.SeverityCritical:
		return "error"
	case rugwatch.SeverityWarning:
		return "warning"
	}
	return "note"
}

// securitySeverity is GitHub's "security-severity" (a CVSS-like score as a
// string), which sorts alerts as critical, medium or low.
func securitySeverity(s rugwatch.Severity) string {
	switch s {
	case rugwatch.SeverityCritical:
		return "9.0"
	case rugwatch.SeverityWarning:
		return "5.0"
	}
	return "2.0"
}

// WriteSARIF writes one SARIF 2.1.0 log with one run: a result per finding
// and per drift, in the order given.
func WriteSARIF(w io.Writer, results []SARIFInput) error {
	var rules []sarifRule
	index := map[string]int{}
	addRule := func(id, summary string, sev rugwatch.Severity, tags ...string) {
		if _, ok := index[id]; ok {
			return
		}
		index[id] = len(rules)
		rules = append(rules, sarifRule{
			ID: id, Name: ruleName(id), ShortDescription: sarifText{summary},
			DefaultConfiguration: sarifConfig{sarifLevel(sev)},
			Properties:           map[string]any{"tags": append([]string{"security", "mcp"}, tags...), "security-severity": securitySeverity(sev)},
		})
	}
	// Every finding rule is listed, used or not, so rule indexes stay put.
	for _, r := range detect.Rules() {
		addRule(r.ID, r.Summary, r.Severity, "tool-poisoning")
	}
	var drifts []rugwatch.EventType
	for _, in := range results {
		for _, f := range in.Findings {
			addRule(f.Rule, "rugwatch finding "+f.Rule, f.Severity, "tool-poisoning")
		}
		if in.Drift != nil && !containsType(drifts, in.Drift.Type) {
			drifts = append(drifts, in.Drift.Type)
		}
	}
	sort.Slice(drifts, func(i, j int) bool { return drifts[i] < drifts[j] })
	for _, t := range drifts {
		addRule(driftRuleID(t), fmt.Sprintf("%s: a tool definition changed after it was approved, or its approval state changed", t),
			rugwatch.SeverityCritical, "drift")
	}

	out := []sarifResult{}
	for _, in := range results {
		for _, f := range in.Findings {
			id := f.Rule
			props := map[string]any{"severity": string(f.Severity), "jsonPath": f.Path}
			if in.Digest != "" {
				props["digest"] = string(in.Digest)
			}
			out = append(out, sarifResult{
				RuleID: id, RuleIndex: index[id], Level: sarifLevel(f.Severity),
				Message:             sarifText{fmt.Sprintf("%s/%s %s: %s", visible.Line(in.Server), visible.Line(in.Tool), pathText(f.Path), visible.Message(f.Message))},
				Locations:           toolLocation(in.Server, in.Tool, f.Path),
				PartialFingerprints: map[string]string{"rugwatch/v1": fingerprint(in.Server, in.Tool, id, f.Path)},
				Properties:          props,
			})
		}
		if e := in.Drift; e != nil {
			id := driftRuleID(e.Type)
			path := ""
			var changes []string
			for _, c := range e.Changes {
				changes = append(changes, c.Op+" "+c.Path)
			}
			if len(e.Changes) > 0 {
				path = e.Changes[0].Path
			}
			msg := e.Message
			if msg == "" {
				msg = string(e.Type)
			}
			text := fmt.Sprintf("%s/%s: %s", visible.Line(in.Server), visible.Line(in.Tool), visible.Line(msg))
			if e.ApprovedDigest != "" || e.ObservedDigest != "" {
				text += fmt.Sprintf(" (approved %s, observed %s)", orNone(e.ApprovedDigest), orNone(e.ObservedDigest))
			}
			if len(changes) > 0 {
				text += "; changed: " + visible.Line(strings.Join(changes, ", "))
			}
			props := map[string]any{"severity": string(e.Severity), "eventId": e.ID, "eventType": string(e.Type)}
			if len(changes) > 0 {
				props["changes"] = changes
			}
			observed := e.ObservedDigest
			if observed == "" {
				observed = in.Digest
			}
			out = append(out, sarifResult{
				RuleID: id, RuleIndex: index[id], Level: sarifLevel(e.Severity),
				Message:             sarifText{text},
				Locations:           toolLocation(in.Server, in.Tool, path),
				PartialFingerprints: map[string]string{"rugwatch/v1": fingerprint(in.Server, in.Tool, id, string(observed))},
				Properties:          props,
			})
		}
	}
	log := sarifLog{
		Schema:  "https://json.schemastore.org/sarif-2.1.0.json",
		Version: "2.1.0",
		Runs: []sarifRun{{
			Tool:    sarifTool{Driver: sarifDriver{Name: "rugwatch", InformationURI: "https://github.com/rugwatch/rugwatch", Rules: rules}},
			Results: out,
		}},
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(log)
}

func containsType(s []rugwatch.EventType, v rugwatch.EventType) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func orNone(d rugwatch.Digest) string {
	if d == "" {
		return "none"
	}
	return string(d)
}

func pathText(p string) string {
	if p == "" {
		return "(whole tool)"
	}
	return "at " + visible.Line(p)
}

// ruleName is the PascalCase name SARIF viewers show: "hidden-unicode"
// becomes "HiddenUnicode".
func ruleName(id string) string {
	var b strings.Builder
	up := true
	for _, r := range id {
		if r == '-' || r == '/' || r == '.' {
			up = true
			continue
		}
		if up && r >= 'a' && r <= 'z' {
			r -= 'a' - 'A'
		}
		up = false
		b.WriteRune(r)
	}
	return b.String()
}

// toolLocation is where a result points: the tool, and the string inside
// it at pointer.
func toolLocation(server, tool, pointer string) []sarifLocation {
	fq := server + "/" + tool
	logical := []sarifLogical{{Name: tool, FullyQualifiedName: fq, Kind: "function"}}
	loc := sarifLocation{
		PhysicalLocation: sarifPhysical{
			ArtifactLocation: sarifArtifact{URI: "mcp://" + url.PathEscape(server) + "/" + url.PathEscape(tool)},
			Region:           sarifRegion{StartLine: 1},
		},
		Properties: map[string]string{"jsonPath": pointer},
	}
	if pointer != "" {
		logical = append(logical, sarifLogical{Name: pointer, FullyQualifiedName: fq + "#" + pointer, Kind: "member"})
		loc.Message = &sarifText{"JSON pointer " + visible.Line(pointer) + " in the tool definition"}
	}
	loc.LogicalLocations = logical
	return []sarifLocation{loc}
}

// fingerprint is stable across runs for the same server, tool, rule and
// path; the fields are length-prefixed so that no two tuples collide.
func fingerprint(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}
