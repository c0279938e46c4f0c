package store

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/rugwatch/rugwatch"
)

// v5 → v6: definitions leave the records for their own bucket, byte for
// byte, and read back through Server as before.
func TestMigration6MovesDefinitions(t *testing.T) {
	def := `{"description":"a <b> & c","name":"echo"}`
	server := `{"Name":"alpha","Transport":"stdio","Future":{"kept":true},"Tools":{` +
		`"echo":{"Name":"echo","State":"pending","Definition":` + def + `,"FutureTool":[1,2]},` +
		`"gone":{"Name":"gone","State":"removed","Definition":null}}}`
	path := buildAt(t, 5, func(tx kvTx) error {
		if err := tx.Bucket(bucketServers).Put([]byte("alpha"), []byte(server)); err != nil {
			return err
		}
		return tx.Bucket(bucketServers).Put([]byte("empty"), []byte(`{"Name":"empty"}`))
	})
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *Tx) error {
		r, ok, err := tx.Server("alpha")
		if err != nil || !ok {
			t.Fatalf("server alpha: %v %v", ok, err)
		}
		if got := string(r.Tools["echo"].Definition); got != def {
			t.Errorf("definition read back %s, want %s", got, def)
		}
		if r.Tools["gone"].Definition != nil {
			t.Errorf("a tool without a definition has %s", r.Tools["gone"].Definition)
		}
		raw := tx.tx.Bucket(bucketServers).Get([]byte("alpha"))
		if bytes.Contains(raw, []byte(`"description"`)) {
			t.Errorf("the record still holds the definition: %s", raw)
		}
		for _, keep := range []string{`"Future":{"kept":true}`, `"FutureTool":[1,2]`} {
			if !bytes.Contains(raw, []byte(keep)) {
				t.Errorf("migration lost %s: %s", keep, raw)
			}
		}
		if lean, _, _ := tx.ServerStates("alpha"); lean.Tools["echo"].Definition != nil || lean.Tools["echo"].State != rugwatch.StatePending {
			t.Errorf("ServerStates: %+v", lean.Tools["echo"])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// PutServer writes a definition only when its bytes change, drops those
// of tools the record no longer has, and SameServer sees a changed
// definition even when the record around it is the same.
func TestDefinitionsFollowTheRecord(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "rugwatch.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rec := ServerRecord{Name: "s", Tools: map[string]ToolRecord{
		"a": {State: rugwatch.StatePending, Definition: json.RawMessage(`{"name":"a"}`)},
		"b": {State: rugwatch.StatePending, Definition: json.RawMessage(`{"name":"b"}`)},
	}}
	update := func(fn func(tx *Tx) error) {
		t.Helper()
		if err := db.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
	update(func(tx *Tx) error { return tx.PutServer(rec) })
	update(func(tx *Tx) error {
		same, err := tx.SameServer(rec)
		if err != nil || !same {
			t.Errorf("SameServer of what was stored: %v %v", same, err)
		}
		edited := withDefinition(rec, "a", `{"name":"a","description":"now with an errand"}`)
		if same, _ := tx.SameServer(edited); same {
			t.Error("SameServer misses a definition that changed")
		}
		if same, _ := tx.SameServer(ServerRecord{Name: "s", Tools: map[string]ToolRecord{"a": rec.Tools["a"]}}); same {
			t.Error("SameServer misses a tool that went")
		}
		return tx.PutServer(ServerRecord{Name: "s", Tools: map[string]ToolRecord{"a": edited.Tools["a"]}})
	})
	update(func(tx *Tx) error {
		r, _, err := tx.Server("s")
		if err != nil {
			return err
		}
		if got := string(r.Tools["a"].Definition); got != `{"name":"a","description":"now with an errand"}` {
			t.Errorf("definition of a: %s", got)
		}
		if got := string(tx.tx.Bucket(bucketDefinitions).Get([]byte("s"))); got != `{"a":{"name":"a","description":"now with an errand"}}` {
			t.Errorf("definitions stored %s, want a's alone (b's went with it)", got)
		}
		if ok, err := tx.DeleteServer("s"); !ok || err != nil {
			t.Fatalf("delete: %v %v", ok, err)
		}
		if tx.tx.Bucket(bucketDefinitions).Get([]byte("s")) != nil {
			t.Error("a deleted server's definitions stay")
		}
		return nil
	})
}

func withDefinition(r ServerRecord, tool, def string) ServerRecord {
	tools := map[string]ToolRecord{}
	for k, v := range r.Tools {
		tools[k] = v
	}
	tr := tools[tool]
	tr.Definition = json.RawMessage(def)
	tools[tool] = tr
	r.Tools = tools
	return r
}
