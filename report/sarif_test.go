package report_test

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/report"
)

func sarifSchema(t *testing.T) *jsonschema.Resolved {
	t.Helper()
	b, err := os.ReadFile("testdata/sarif/sarif-schema-2.1.0.json")
	if err != nil {
		t.Fatal(err)
	}
	var s jsonschema.Schema
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	rs, err := s.Resolve(nil)
	if err != nil {
		t.Fatalf("resolving the SARIF schema: %v", err)
	}
	return rs
}

// sarifInputs runs the poisoning rules over the shared fixture cases and
// adds a drift event, as `check` would.
func fixtureSARIFInputs(t *testing.T) []report.SARIFInput {
	t.Helper()
	b, err := os.ReadFile("../detect/testdata/tool-cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Cases []struct {
			ID   string          `json:"id"`
			Tool json.RawMessage `json:"tool"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	var in []report.SARIFInput
	for _, tc := range c.Cases {
		in = append(in, report.SARIFInput{Server: "math", Tool: tc.ID, Findings: detect.Findings(tc.Tool, detect.FindingContext{Server: "math"}),
			Digest: rugwatch.Digest("sha256:" + strings.Repeat("ab", 32))})
	}
	in = append(in, report.SARIFInput{Server: "math", Tool: "add", Digest: rugwatch.Digest("sha256:" + strings.Repeat("cd", 32)),
		Drift: &rugwatch.Event{ID: "evt_1", Type: rugwatch.EventToolDrifted, Severity: rugwatch.SeverityCritical, Server: "math", Tool: "add",
			ApprovedDigest: rugwatch.Digest("sha256:" + strings.Repeat("ef", 32)), ObservedDigest: rugwatch.Digest("sha256:" + strings.Repeat("cd", 32)),
			Changes: []rugwatch.Change{{Path: "/inputSchema/properties/sidenote", Op: "add"}}, Message: "definition changed\x1b[2J"}})
	in = append(in, report.SARIFInput{Server: "math", Tool: "gone", Drift: &rugwatch.Event{Type: rugwatch.EventToolRemoved, Severity: rugwatch.SeverityWarning}})
	return in
}

func TestSARIFValidatesAgainstTheSchema(t *testing.T) {
	rs := sarifSchema(t)
	for name, in := range map[string][]report.SARIFInput{"cases": fixtureSARIFInputs(t), "empty": nil} {
		var buf bytes.Buffer
		if err := report.WriteSARIF(&buf, in); err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(buf.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		if err := rs.Validate(v); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The validator does reject what the schema forbids.
	var bad any
	_ = json.Unmarshal([]byte(`{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"x"}},"results":[{"message":{"text":"a"},"level":"critical"}]}]}`), &bad)
	if rs.Validate(bad) == nil {
		t.Error("the schema accepts level critical")
	}
}

type sarifDoc struct {
	Version string `json:"version"`
	Runs    []struct {
		Tool struct {
			Driver struct {
				Name  string `json:"name"`
				Rules []struct {
					ID                   string `json:"id"`
					DefaultConfiguration struct {
						Level string `json:"level"`
					} `json:"defaultConfiguration"`
				} `json:"rules"`
			} `json:"driver"`
		} `json:"tool"`
		Results []struct {
			RuleID    string `json:"ruleId"`
			RuleIndex int    `json:"ruleIndex"`
			Level     string `json:"level"`
			Message   struct {
				Text string `json:"text"`
			} `json:"message"`
			Locations []struct {
				PhysicalLocation struct {
					ArtifactLocation struct {
						URI string `json:"uri"`
					} `json:"artifactLocation"`
				} `json:"physicalLocation"`
				LogicalLocations []struct {
					FullyQualifiedName string `json:"fullyQualifiedName"`
					Kind               string `json:"kind"`
				} `json:"logicalLocations"`
				Properties map[string]string `json:"properties"`
			} `json:"locations"`
			PartialFingerprints map[string]string `json:"partialFingerprints"`
		} `json:"results"`
	} `json:"runs"`
}

func TestSARIFContent(t *testing.T) {
	in := fixtureSARIFInputs(t)
	var buf bytes.Buffer
	if err := report.WriteSARIF(&buf, in); err != nil {
		t.Fatal(err)
	}
	var doc sarifDoc
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Runs) != 1 || doc.Runs[0].Tool.Driver.Name != "rugwatch" || doc.Version != "2.1.0" {
		t.Fatalf("run: %+v", doc)
	}
	run := doc.Runs[0]
	want := 0
	for _, i := range in {
		want += len(i.Findings)
		if i.Drift != nil {
			want++
		}
	}
	if len(run.Results) != want || want < 20 {
		t.Fatalf("%d results, want %d", len(run.Results), want)
	}
	ids := map[string]bool{}
	for _, r := range run.Tool.Driver.Rules {
		ids[r.ID] = true
	}
	for _, id := range []string{detect.RuleHiddenUnicode, detect.RuleShadowing, "rugwatch/drift/tool-drifted", "rugwatch/drift/tool-removed"} {
		if !ids[id] {
			t.Errorf("rule %s missing", id)
		}
	}
	fps := map[string]string{}
	levels := map[string]int{}
	for _, r := range run.Results {
		if run.Tool.Driver.Rules[r.RuleIndex].ID != r.RuleID {
			t.Errorf("ruleIndex %d is not %s", r.RuleIndex, r.RuleID)
		}
		levels[r.Level]++
		if len(r.Locations) != 1 || !strings.HasPrefix(r.Locations[0].PhysicalLocation.ArtifactLocation.URI, "mcp://math/") {
			t.Errorf("%s: locations %+v", r.RuleID, r.Locations)
		}
		l := r.Locations[0]
		if l.LogicalLocations[0].Kind != "function" || !strings.HasPrefix(l.LogicalLocations[0].FullyQualifiedName, "math/") {
			t.Errorf("%s: logical %+v", r.RuleID, l.LogicalLocations)
		}
		if p := l.Properties["jsonPath"]; p != "" && l.LogicalLocations[1].FullyQualifiedName != l.LogicalLocations[0].FullyQualifiedName+"#"+p {
			t.Errorf("%s: member location %+v", r.RuleID, l.LogicalLocations)
		}
		fp := r.PartialFingerprints["rugwatch/v1"]
		if other, dup := fps[fp]; dup || len(fp) != 32 {
			t.Errorf("fingerprint %q of %s repeats %s", fp, r.RuleID, other)
		}
		fps[fp] = r.RuleID
		if strings.ContainsAny(r.Message.Text, "\x1b\u200b\u202e\r") {
			t.Errorf("raw control text in %q", r.Message.Text)
		}
	}
	if levels["error"] == 0 || levels["warning"] == 0 {
		t.Errorf("levels %v", levels)
	}
	// Stable: the same input gives the same bytes.
	var again bytes.Buffer
	_ = report.WriteSARIF(&again, in)
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("not deterministic")
	}
}
