package signatures

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/rugwatch/rugwatch"
)

var update = flag.Bool("update", false, "rewrite testdata/golden-digests.json")

type toolCases struct {
	Baseline json.RawMessage `json:"baseline"`
	Cases    []struct {
		ID   string          `json:"id"`
		Kind string          `json:"kind"`
		Tool json.RawMessage `json:"tool"`
	} `json:"cases"`
}

func loadToolCases(t testing.TB) toolCases {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "tool-cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	// The fixture file itself must pass the strict parser.
	if _, err := Canonical(raw, Limits{}); err != nil {
		t.Fatalf("fixture is not strict JSON: %v", err)
	}
	var tc toolCases
	if err := json.Unmarshal(raw, &tc); err != nil {
		t.Fatal(err)
	}
	if len(tc.Baseline) == 0 || len(tc.Cases) == 0 {
		t.Fatal("fixture has no baseline or no cases")
	}
	return tc
}

// TestGoldenDigests pins the digest of every fixture tool, taken from the
// raw bytes exactly as they appear in the file (as the monitor takes them
// from a server's response).
func TestGoldenDigests(t *testing.T) {
	tc := loadToolCases(t)
	got := map[string]rugwatch.Digest{}
	base, _, err := Digest(tc.Baseline, Limits{})
	if err != nil {
		t.Fatalf("baseline: %v", err)
	}
	got["baseline"] = base
	// Pinned by hand (and by Python's json.dumps with sorted keys, which
	// agrees with RFC 8785 on this input), independent of the golden file.
	const baseCanon = `{"annotations":{"readOnlyHint":true},"description":"Adds two numbers.","inputSchema":{"properties":{"a":{"type":"number"},"b":{"type":"number"}},"required":["a","b"],"type":"object"},"name":"add"}`
	if c, _ := Canonical(tc.Baseline, Limits{}); string(c) != baseCanon {
		t.Errorf("baseline canonical form\n got %s\nwant %s", c, baseCanon)
	}

	for _, c := range tc.Cases {
		d, _, err := Digest(c.Tool, Limits{})
		if err != nil {
			t.Errorf("%s: %v", c.ID, err)
			continue
		}
		if _, dup := got[c.ID]; dup {
			t.Fatalf("fixture case id %q repeated", c.ID)
		}
		got[c.ID] = d
		switch c.Kind {
		case "same":
			if d != base {
				t.Errorf("%s (same): digest %s, want baseline %s", c.ID, d.Short(), base.Short())
			}
		case "drift":
			if d == base {
				t.Errorf("%s (drift): digest equals the baseline", c.ID)
			}
		}
	}

	// Distinct drift cases must not collide with one another either.
	byDigest := map[rugwatch.Digest]string{}
	for _, c := range tc.Cases {
		if c.Kind != "drift" {
			continue
		}
		if other, ok := byDigest[got[c.ID]]; ok {
			t.Errorf("%s and %s share digest %s", c.ID, other, got[c.ID].Short())
		}
		byDigest[got[c.ID]] = c.ID
	}

	path := filepath.Join("testdata", "golden-digests.json")
	enc, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	enc = append(enc, '\n')
	if *update {
		if err := os.WriteFile(path, enc, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d digests)", path, len(got))
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./signatures -update to create it)", err)
	}
	if bytes.Equal(want, enc) {
		return
	}
	var wantMap map[string]rugwatch.Digest
	if err := json.Unmarshal(want, &wantMap); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	for id, d := range got {
		if wantMap[id] != d {
			t.Errorf("%s: digest %s, golden %s", id, d, wantMap[id])
		}
	}
	for id := range wantMap {
		if _, ok := got[id]; !ok {
			t.Errorf("%s: in golden file, not in fixture", id)
		}
	}
}
