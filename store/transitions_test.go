package store

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/rugwatch/rugwatch"
)

// transitionLog is a server's history as events: what NoteEvent and the
// v4 backfill must both read the same way.
func transitionLog() []rugwatch.Event {
	x, y := digestOf("x"), digestOf("y")
	return []rugwatch.Event{
		{Seq: 1, Type: rugwatch.EventToolNew, Server: "alpha", Tool: "echo"},
		{Seq: 2, Type: rugwatch.EventToolApproved, Server: "alpha", Tool: "echo", ApprovedDigest: x},
		{Seq: 3, Type: rugwatch.EventToolDrifted, Server: "alpha", Tool: "echo", ApprovedDigest: x},
		{Seq: 4, Type: rugwatch.EventToolNew, Server: "alpha", Tool: "other"},
		{Seq: 5, Type: rugwatch.EventToolApproved, Server: "alpha", ApprovedDigest: y}, // the instructions
		{Seq: 6, Type: rugwatch.EventInstructionsDrifted, Server: "alpha", ApprovedDigest: y},
		{Seq: 7, Type: rugwatch.EventToolApproved, Server: "alpha", Message: "launch identity pinned"}, // moves nothing
		{Seq: 8, Type: rugwatch.EventToolRevoked, Server: "beta", Tool: "echo"},                        // another server
		{Seq: 9, Type: rugwatch.EventServerUnreachable, Server: "alpha"},
		{Seq: 10, Type: rugwatch.EventApprovalInvalid, Server: "alpha", Tool: "other"}, // not a transition
		{Seq: 11, Type: rugwatch.EventToolRemoved, Server: "alpha", Tool: "other"},
	}
}

func checkTransitions(t *testing.T, r ServerRecord) {
	t.Helper()
	for _, c := range []struct {
		what            string
		last, withdrawn uint64
	}{
		{"echo", r.Tools["echo"].LastTransitionSeq, r.Tools["echo"].WithdrawnSeq},
		{"other", r.Tools["other"].LastTransitionSeq, r.Tools["other"].WithdrawnSeq},
		{"instructions", r.InstructionsTransitionSeq, r.InstructionsWithdrawnSeq},
	} {
		want := map[string][2]uint64{"echo": {3, 3}, "other": {11, 0}, "instructions": {6, 6}}[c.what]
		if c.last != want[0] || c.withdrawn != want[1] {
			t.Errorf("%s: last %d withdrawn %d, want %d %d", c.what, c.last, c.withdrawn, want[0], want[1])
		}
	}
}

func TestNoteEvent(t *testing.T) {
	r := ServerRecord{Name: "alpha", Tools: map[string]ToolRecord{"echo": {Name: "echo"}, "other": {Name: "other"}}}
	for _, e := range transitionLog() {
		r.NoteEvent(e)
	}
	checkTransitions(t, r)
	// An event without a seq (not appended) moves nothing.
	r.NoteEvent(rugwatch.Event{Type: rugwatch.EventToolDrifted, Server: "alpha", Tool: "echo"})
	checkTransitions(t, r)
}

// v3 → v4: every tool's transition seqs are backfilled from the event log;
// everything else in the record keeps its bytes, unknown fields too.
func TestMigration4BackfillTransitions(t *testing.T) {
	def := `{"description":"a <b> & c","name":"echo"}`
	server := `{"Name":"alpha","Transport":"stdio","Future":{"kept":true},"Tools":{` +
		`"echo":{"Name":"echo","State":"drifted","Definition":` + def + `,"FutureTool":[1,2]},` +
		`"other":{"Name":"other","State":"removed"},"never":{"Name":"never","State":"pending"}}}`
	path := buildAt(t, 3, func(tx kvTx) error {
		ev := tx.Bucket(bucketEvents)
		for _, e := range transitionLog() {
			v, err := json.Marshal(e)
			if err != nil {
				return err
			}
			if err := ev.Put(u64(e.Seq), v); err != nil {
				return err
			}
		}
		if err := ev.SetSequence(uint64(len(transitionLog()))); err != nil {
			return err
		}
		if err := tx.Bucket(bucketServers).Put([]byte("alpha"), []byte(server)); err != nil {
			return err
		}
		return tx.Bucket(bucketServers).Put([]byte("gamma"), []byte(`{"Name":"gamma","Odd":"<kept>"}`))
	})
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Open applies every migration after v3, this one and any later.
	if v := fileVersion(t, db); v < 4 || v != SchemaVersion() {
		t.Fatalf("version %d, want %d (v4 or later)", v, SchemaVersion())
	}
	err = db.View(func(tx *Tx) error {
		r, ok, err := tx.Server("alpha")
		if err != nil || !ok {
			t.Fatalf("server alpha: %v %v", ok, err)
		}
		checkTransitions(t, r)
		if n := r.Tools["never"]; n.LastTransitionSeq != 0 || n.WithdrawnSeq != 0 {
			t.Errorf("a tool without events got seqs %+v", n)
		}
		if string(r.Tools["echo"].Definition) != def {
			t.Errorf("definition bytes changed: %s", r.Tools["echo"].Definition)
		}
		raw := tx.tx.Bucket(bucketServers).Get([]byte("alpha"))
		for _, keep := range []string{`"Future":{"kept":true}`, `"FutureTool":[1,2]`} {
			if !bytes.Contains(raw, []byte(keep)) {
				t.Errorf("migration lost %s: %s", keep, raw)
			}
		}
		// v6 keeps the definition's bytes apart from the record.
		if got := tx.tx.Bucket(bucketDefinitions).Get([]byte("alpha")); string(got) != `{"echo":`+def+`}` {
			t.Errorf("stored definitions %s, want echo's %s", got, def)
		}
		if got := tx.tx.Bucket(bucketServers).Get([]byte("gamma")); string(got) != `{"Name":"gamma","Odd":"<kept>"}` {
			t.Errorf("a server without transitions was rewritten: %s", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
