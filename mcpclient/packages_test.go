package mcpclient

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
)

func TestPackageFindings(t *testing.T) {
	cases := []struct {
		command string
		args    []string
		want    []string
	}{
		{"npx", []string{"-y", "@modelcontextprotocol/server-everything"}, []string{detect.RuleUnpinnedPackage}},
		{"npx", []string{"-y", "@modelcontextprotocol/server-everything@latest"}, []string{detect.RuleUnpinnedPackage}},
		{"npx", []string{"-y", "@modelcontextprotocol/server-everything@^2.0.0"}, []string{detect.RuleUnpinnedPackage}},
		{"npx", []string{"-y", "@modelcontextprotocol/server-everything@2026.1.14"}, nil},
		{"/usr/bin/npx", []string{"-y", "@modelcontextprotocol/server-filesytem@1.0.0"}, []string{detect.RulePackageLookalike}},
		{"npx", []string{"@modelcontextprotocol/sever-memory@1.0.0"}, []string{detect.RulePackageLookalike}},
		{"npx", []string{"@modelcontextprotocol/server-memroy@1.0.0"}, []string{detect.RulePackageLookalike}},
		{"uvx", []string{"mcp-server-fetchh==1.2.0"}, []string{detect.RulePackageLookalike}},
		{"uvx", []string{"mcp-server-fetch==2025.4.7"}, nil},
		{"uvx", []string{"mcp-server-fetch"}, []string{detect.RuleUnpinnedPackage}},
		{"pipx", []string{"run", "mcp-server-time==1.0.0"}, nil},
		{"node", []string{"server.js"}, nil},
		// Honest: a different package, two edits or more away.
		{"npx", []string{"@acme/mcp-server-billing@1.2.3"}, nil},
		{"npx", []string{"mcp-server-kubernetes@1.0.0"}, nil},
	}
	for _, tc := range cases {
		fs := detect.PackageFindings(tc.command, tc.args)
		got := map[string]bool{}
		for _, f := range fs {
			got[f.Rule] = true
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s %v: %v, want %v", tc.command, tc.args, fs, tc.want)
			continue
		}
		for _, r := range tc.want {
			if !got[r] {
				t.Errorf("%s %v: %v, want %v", tc.command, tc.args, fs, tc.want)
			}
		}
	}
}

// The package findings travel in the launch identity, which the server
// record keeps and status --json prints as "launch".
func TestLaunchCarriesPackageFindings(t *testing.T) {
	npx, err := exec.LookPath("npx")
	if err != nil {
		t.Skip("npx not installed")
	}
	l, err := launchOf(t.Context(), Target{Command: npx, Args: []string{"-y", "@modelcontextprotocol/server-filesytem"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(l)
	var got struct {
		Package  string             `json:"package"`
		Findings []rugwatch.Finding `json:"findings"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	rules := map[string]bool{}
	for _, f := range got.Findings {
		rules[f.Rule] = true
	}
	if got.Package != "@modelcontextprotocol/server-filesytem" || !rules[detect.RuleUnpinnedPackage] || !rules[detect.RulePackageLookalike] {
		t.Fatalf("launch identity %s: want both package findings", raw)
	}
	// A command that is no package runner carries no package part.
	l, err = launchOf(t.Context(), Target{Command: npx[:strings.LastIndex(npx, "/")+1] + "node"}, nil, nil)
	if err != nil {
		t.Skip("node not next to npx:", err)
	}
	if raw, _ := json.Marshal(l); strings.Contains(string(raw), "findings") {
		t.Fatalf("node launch %s has package findings", raw)
	}
}
