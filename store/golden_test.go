package store

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files of stored records")

// goldenRecord sets every field of ServerRecord and ToolRecord, so that a
// field renamed, retagged or dropped shows in the stored bytes.
func goldenRecord() ServerRecord {
	at := time.Date(2026, 12, 6, 4, 13, 0, 0, time.UTC)
	return ServerRecord{
		Name: "github", Transport: "http", Reachable: true, LastPolledAt: at, Error: "last poll: timeout",
		ConsecutiveFailures: 2, Unreachable: true,
		InstructionsDigest: "sha256:aa", Instructions: "Use search first.", InstructionsState: rugwatch.StateApproved,
		InstructionsApproved: "sha256:aa",
		InstructionsFindings: []rugwatch.Finding{{Rule: "instruction-marker", Severity: rugwatch.SeverityWarning, Path: "/instructions", Message: "m"}},
		Launch:               json.RawMessage(`{"executable":"/usr/bin/node","sha256":"bb"}`),
		LaunchPinned:         json.RawMessage(`{"executable":"/usr/bin/node","sha256":"cc"}`),
		LaunchDrifted:        true, LaunchTransitionSeq: 13, InstructionsTransitionSeq: 7, InstructionsWithdrawnSeq: 5,
		Tools: map[string]ToolRecord{"search": {
			Name: "search", State: rugwatch.StateDrifted, Severity: rugwatch.SeverityCritical, ObservedDigest: "sha256:dd",
			Definition:     json.RawMessage(`{"name":"search","inputSchema":{"type":"object"}}`),
			ApprovedDigest: "sha256:ee",
			Findings:       []rugwatch.Finding{{Rule: "hidden-characters", Severity: rugwatch.SeverityCritical, Path: "/description", Message: "m"}},
			Changes:        []rugwatch.Change{{Path: "/description", Op: "replace", Old: json.RawMessage(`"a"`), New: json.RawMessage(`"b"`)}},
			FirstSeen:      at, LastChanged: at, PrevState: rugwatch.StateApproved, LastTransitionSeq: 9, WithdrawnSeq: 9,
		}},
		Sandboxed: true, SandboxNote: "note", ProtocolVersion: "2025-11-25", Cloaked: map[string]string{"search": "k"},
		Findings:       []rugwatch.Finding{{Rule: "stdout-noise", Severity: rugwatch.SeverityWarning, Path: "/stdout", Message: "m"}},
		Identity:       json.RawMessage(`{"tls_spki":"ff"}`),
		IdentityPinned: json.RawMessage(`{"tls_spki":"00"}`), IdentityDrifted: true,
		Churn: &ChurnState{Spent: 12.5, At: at, Since: at, Summarised: 4000, ReportedAt: at},
		Egress: &EgressRecord{Seen: []string{"api.example.com:443", "exfil.example.net:443"}, Dropped: 3,
			Pinned: []string{"api.example.com:443"}, PinnedDigest: "sha256:ab", PinMissing: true,
			Drifted: []string{"exfil.example.net:443"}, Refused: []string{"exfil.example.net:443"}, TransitionSeq: 11},
	}
}

// The bytes a store holds are a format: older stores must keep decoding,
// and what is written today must be what was written yesterday. The
// record's keys mix styles ("ConsecutiveFailures" beside
// "protocol_version"), and that is frozen here, not tidied: renaming a key
// would silently zero the field in every existing store.
func TestStoredServerRecordBytes(t *testing.T) {
	db := openTest(t)
	rec := goldenRecord()
	if err := db.Update(func(tx *Tx) error { return tx.PutServer(rec) }); err != nil {
		t.Fatal(err)
	}
	var record, defs []byte
	if err := db.View(func(tx *Tx) error {
		record = bytes.Clone(tx.tx.Bucket(bucketServers).Get([]byte("github")))
		defs = bytes.Clone(tx.tx.Bucket(bucketDefinitions).Get([]byte("github")))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, g := range []struct {
		file string
		got  []byte
	}{{"server_record.golden.json", record}, {"server_definitions.golden.json", defs}} {
		path := filepath.Join("testdata", g.file)
		if *updateGolden {
			if err := os.WriteFile(path, append(g.got, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test ./store -run StoredServerRecordBytes -update writes it)", err)
		}
		if !bytes.Equal(bytes.TrimSuffix(want, []byte("\n")), g.got) {
			t.Errorf("the stored bytes of %s changed:\n got %s\nwant %s", g.file, g.got, want)
		}
	}
	// And the frozen bytes read back as the record they were written from.
	var back ServerRecord
	if err := db.View(func(tx *Tx) error {
		var err error
		back, _, err = tx.Server("github")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, normalized(rec)) {
		t.Errorf("read back:\n%+v\nwant\n%+v", back, rec)
	}
}

// goldenRecord must set every field, or a field added later would never
// reach the golden bytes.
func TestGoldenRecordSetsEveryField(t *testing.T) {
	rec := goldenRecord()
	check := func(v reflect.Value) {
		for i := range v.NumField() {
			if v.Field(i).IsZero() {
				t.Errorf("goldenRecord leaves %s.%s unset", v.Type().Name(), v.Type().Field(i).Name)
			}
		}
	}
	check(reflect.ValueOf(rec))
	check(reflect.ValueOf(rec.Tools["search"]))
}
