package detect

import (
	"encoding/json"
	"testing"

	"github.com/rugwatch/rugwatch"
)

func TestArgumentRules(t *testing.T) {
	files := TraitsOf(json.RawMessage(`{"name":"read_text_file","description":"Read a file.","inputSchema":{"type":"object","properties":{"path":{"type":"string"},"head":{"type":"number"}}}}`))
	fetch := TraitsOf(json.RawMessage(`{"name":"fetch","description":"Fetches a URL.","inputSchema":{"type":"object","properties":{"url":{"type":"string","format":"uri"}}}}`))
	notes := TraitsOf(json.RawMessage(`{"name":"add_note","description":"Keeps a note.","inputSchema":{"type":"object","properties":{"text":{"type":"string"}}}}`))
	for _, tc := range []struct {
		name string
		tr   ToolTraits
		args map[string]any
		rule string
		want rugwatch.Severity
	}{
		{"traversal", files, map[string]any{"path": "../../../../etc/shadow"}, RulePathTraversal, rugwatch.SeverityWarning},
		{"traversal to shadow is sensitive", files, map[string]any{"path": "../../../../etc/shadow"}, RuleSensitivePath, rugwatch.SeverityCritical},
		{"windows separators", files, map[string]any{"path": `..\..\secrets.txt`}, RulePathTraversal, rugwatch.SeverityWarning},
		{"percent-encoded", files, map[string]any{"path": "%2e%2e/%2e%2e/etc/hosts"}, RulePathTraversal, rugwatch.SeverityWarning},
		{"absolute climb", files, map[string]any{"path": "/srv/data/../../etc/hosts"}, RulePathTraversal, rugwatch.SeverityWarning},
		{"stays inside", files, map[string]any{"path": "src/../README.md"}, RulePathTraversal, ""},
		{"ssh key", files, map[string]any{"path": "~/.ssh/id_rsa"}, RuleSensitivePath, rugwatch.SeverityCritical},
		{"dotenv", files, map[string]any{"path": "app/.env"}, RuleSensitivePath, rugwatch.SeverityCritical},
		{"environ", files, map[string]any{"path": "/proc/1/environ"}, RuleSensitivePath, rugwatch.SeverityCritical},
		{"honest file", files, map[string]any{"path": "src/main.go"}, RuleSensitivePath, ""},
		{"metadata", fetch, map[string]any{"url": "http://169.254.169.254/latest/meta-data/"}, RuleInternalDestination, rugwatch.SeverityCritical},
		{"metadata decimal", fetch, map[string]any{"url": "http://2852039166/"}, RuleInternalDestination, rugwatch.SeverityCritical},
		{"metadata hex", fetch, map[string]any{"url": "http://0xA9FEA9FE/"}, RuleInternalDestination, rugwatch.SeverityCritical},
		{"metadata v6-mapped", fetch, map[string]any{"url": "http://[::ffff:169.254.169.254]/"}, RuleInternalDestination, rugwatch.SeverityCritical},
		{"gcp name", fetch, map[string]any{"url": "http://metadata.google.internal/computeMetadata/v1/"}, RuleInternalDestination, rugwatch.SeverityCritical},
		{"private", fetch, map[string]any{"url": "http://10.0.0.5:8080/admin"}, RuleInternalDestination, rugwatch.SeverityWarning},
		{"localhost", fetch, map[string]any{"url": "http://localhost:3000/"}, RuleInternalDestination, rugwatch.SeverityWarning},
		{"public", fetch, map[string]any{"url": "https://example.com/"}, RuleInternalDestination, ""},
		// The protection's premise: the same strings to a tool that
		// neither reads paths nor reaches hosts are only text.
		{"notes: traversal is text", notes, map[string]any{"text": "../../../../etc/shadow"}, RulePathTraversal, ""},
		{"notes: metadata is text", notes, map[string]any{"text": "http://169.254.169.254/"}, RuleInternalDestination, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := findingOf(ArgumentFindings(tc.tr, tc.args, nil), tc.rule); got != tc.want {
				t.Fatalf("%s = %q, want %q", tc.rule, got, tc.want)
			}
		})
	}
}
