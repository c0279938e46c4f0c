package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/rugwatch/rugwatch"
)

// fixedClock is a deterministic Options.Now that advances one second per
// call.
func fixedClock() func() time.Time {
	t := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	return func() time.Time {
		t = t.Add(time.Second)
		return t
	}
}

func openTest(t testing.TB) *DB {
	t.Helper()
	return openBackend(t, Options{Now: fixedClock()})
}

func digestOf(s string) rugwatch.Digest { return recordDigest([]byte(s)) }

func TestOpenCreatesPrivateDirAndFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	path := filepath.Join(dir, "rugwatch.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.Path() != path {
		t.Errorf("Path() = %q, want %q", db.Path(), path)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode %o, want %o", p, got, want)
		}
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	db := openTest(t)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := db.View(func(*Tx) error { return nil }); err == nil {
		t.Fatal("View after Close succeeded")
	}
}

func sampleServer() ServerRecord {
	// The definition carries characters encoding/json would escape by
	// default; they must come back byte for byte.
	def := json.RawMessage(`{"description":"a<b>&c \u2028 ` + "\u2028" + `","inputSchema":{"type":"object"},"name":"echo"}`)
	return ServerRecord{
		Name:                "everything",
		Transport:           "stdio",
		Reachable:           true,
		LastPolledAt:        time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC),
		ConsecutiveFailures: 0,
		InstructionsDigest:  digestOf("instructions"),
		Instructions:        "Use the tools.",
		Launch:              json.RawMessage(`{"command":"npx"}`),
		Tools: map[string]ToolRecord{
			"echo": {
				Name:           "echo",
				State:          rugwatch.StateApproved,
				Severity:       rugwatch.SeverityInfo,
				ObservedDigest: digestOf("echo"),
				ApprovedDigest: digestOf("echo"),
				Definition:     def,
				Findings:       []rugwatch.Finding{{Rule: "hidden-text", Severity: rugwatch.SeverityWarning, Path: "/description", Message: "zero width"}},
				Changes:        []rugwatch.Change{{Path: "/description", Op: "replace", Old: json.RawMessage(`"a"`), New: json.RawMessage(`"b"`)}},
				FirstSeen:      time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
				LastChanged:    time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC),
			},
			"add": {State: rugwatch.StatePending, Severity: rugwatch.SeverityWarning, ObservedDigest: digestOf("add"), Definition: json.RawMessage(`{"name":"add"}`)},
		},
	}
}

func TestServerRoundTrip(t *testing.T) {
	db := openTest(t)
	in := sampleServer()
	other := ServerRecord{Name: "alpha", Transport: "http", Error: "connection refused", ConsecutiveFailures: 3, Unreachable: true}
	if err := db.Update(func(tx *Tx) error {
		if err := tx.PutServer(in); err != nil {
			return err
		}
		return tx.PutServer(other)
	}); err != nil {
		t.Fatal(err)
	}
	var got ServerRecord
	var all []ServerRecord
	if err := db.View(func(tx *Tx) error {
		var ok bool
		var err error
		if got, ok, err = tx.Server("everything"); err != nil || !ok {
			t.Fatalf("Server: ok=%v err=%v", ok, err)
		}
		if _, ok, err := tx.Server("nope"); ok || err != nil {
			t.Fatalf("Server(nope): ok=%v err=%v", ok, err)
		}
		all, err = tx.Servers()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	in.Tools["add"] = func(tr ToolRecord) ToolRecord { tr.Name = "add"; return tr }(in.Tools["add"])
	if a, b := mustJSON(t, got), mustJSON(t, in); !bytes.Equal(a, b) {
		t.Errorf("round trip:\n got %s\nwant %s", a, b)
	}
	if !bytes.Equal(got.Tools["echo"].Definition, in.Tools["echo"].Definition) {
		t.Errorf("definition bytes changed:\n got %s\nwant %s", got.Tools["echo"].Definition, in.Tools["echo"].Definition)
	}
	if len(all) != 2 || all[0].Name != "alpha" || all[1].Name != "everything" {
		t.Errorf("Servers not sorted by name: %+v", all)
	}
	if !all[0].Unreachable || all[0].ConsecutiveFailures != 3 {
		t.Errorf("alpha = %+v", all[0])
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPutServerRejects(t *testing.T) {
	db := openTest(t)
	cases := map[string]ServerRecord{
		"empty name":        {},
		"tool key mismatch": {Name: "s", Tools: map[string]ToolRecord{"a": {Name: "b"}}},
		"invalid raw json":  {Name: "s", Launch: json.RawMessage(`{`)},
	}
	for name, r := range cases {
		err := db.Update(func(tx *Tx) error { return tx.PutServer(r) })
		if err == nil {
			t.Errorf("%s: PutServer succeeded", name)
		}
	}
}

func TestDeleteServer(t *testing.T) {
	db := openTest(t)
	err := db.Update(func(tx *Tx) error {
		if err := tx.PutServer(ServerRecord{Name: "s"}); err != nil {
			return err
		}
		if ok, err := tx.DeleteServer("s"); !ok || err != nil {
			t.Errorf("DeleteServer(s) = %v, %v", ok, err)
		}
		if ok, err := tx.DeleteServer("s"); ok || err != nil {
			t.Errorf("second DeleteServer(s) = %v, %v", ok, err)
		}
		_, ok, err := tx.Server("s")
		if ok {
			t.Error("server still there")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// What a transaction hands out must survive the transaction and be the
// caller's to modify.
func TestReturnedValuesAreCopies(t *testing.T) {
	db := openTest(t)
	envelope := []byte(`{"payloadType":"application/vnd.rugwatch.approval+json", "payload":"e30=",  "signatures":[]}`)
	if err := db.Update(func(tx *Tx) error {
		if err := tx.PutServer(sampleServer()); err != nil {
			return err
		}
		if err := tx.PutApproval(ApprovalRecord{Kind: KindTool, Server: "everything", Tool: "echo", Digest: digestOf("echo"), Envelope: envelope}); err != nil {
			return err
		}
		return tx.AppendEvent(&rugwatch.Event{Type: rugwatch.EventToolNew, Server: "everything", Changes: []rugwatch.Change{{Path: "/x", Op: "add", New: json.RawMessage(`1`)}}})
	}); err != nil {
		t.Fatal(err)
	}

	var srv ServerRecord
	var appr ApprovalRecord
	var evs []rugwatch.Event
	if err := db.View(func(tx *Tx) error {
		var err error
		if srv, _, err = tx.Server("everything"); err != nil {
			return err
		}
		if appr, _, err = tx.Approval("everything", KindTool, "echo"); err != nil {
			return err
		}
		evs, err = tx.Events("", 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// Force bbolt to remap and reuse pages, then scribble over everything
	// handed out; the race detector and the re-read below catch sharing.
	if err := db.Update(func(tx *Tx) error {
		for i := range 200 {
			if err := tx.PutServer(ServerRecord{Name: strings.Repeat("x", 10) + string(rune('a'+i%26)) + strings.Repeat("y", i), Instructions: strings.Repeat("z", 4096)}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	wantDef := append([]byte(nil), sampleServer().Tools["echo"].Definition...)
	if !bytes.Equal(srv.Tools["echo"].Definition, wantDef) {
		t.Fatalf("definition changed after tx: %s", srv.Tools["echo"].Definition)
	}
	if !bytes.Equal(appr.Envelope, envelope) {
		t.Fatalf("envelope not verbatim: %s", appr.Envelope)
	}
	for i := range srv.Tools["echo"].Definition {
		srv.Tools["echo"].Definition[i] = 'X'
	}
	for i := range appr.Envelope {
		appr.Envelope[i] = 'X'
	}
	evs[0].Changes[0].New[0] = 'X'

	if err := db.View(func(tx *Tx) error {
		s, _, err := tx.Server("everything")
		if err != nil {
			return err
		}
		if !bytes.Equal(s.Tools["echo"].Definition, wantDef) {
			t.Errorf("stored definition changed by caller: %s", s.Tools["echo"].Definition)
		}
		a, _, err := tx.Approval("everything", KindTool, "echo")
		if err != nil {
			return err
		}
		if !bytes.Equal(a.Envelope, envelope) {
			t.Errorf("stored envelope changed by caller: %s", a.Envelope)
		}
		e, err := tx.Events("", 0)
		if err != nil {
			return err
		}
		if string(e[0].Changes[0].New) != "1" {
			t.Errorf("stored change changed by caller: %s", e[0].Changes[0].New)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.VerifyChain(); err != nil {
		t.Fatal(err)
	}
}

func TestTxUseAfterEndFails(t *testing.T) {
	db := openTest(t)
	var leaked *Tx
	if err := db.View(func(tx *Tx) error { leaked = tx; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := leaked.Server("x"); !errors.Is(err, ErrTxClosed) {
		t.Errorf("Server after tx: %v, want ErrTxClosed", err)
	}
	if _, err := leaked.Events("", 0); !errors.Is(err, ErrTxClosed) {
		t.Errorf("Events after tx: %v, want ErrTxClosed", err)
	}
	if err := db.Update(func(tx *Tx) error { leaked = tx; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := leaked.AppendEvent(&rugwatch.Event{Type: rugwatch.EventToolNew}); !errors.Is(err, ErrTxClosed) {
		t.Errorf("AppendEvent after tx: %v, want ErrTxClosed", err)
	}
}

func TestUpdateRollsBackOnError(t *testing.T) {
	db := openTest(t)
	boom := errors.New("boom")
	err := db.Update(func(tx *Tx) error {
		if err := tx.PutServer(ServerRecord{Name: "s"}); err != nil {
			return err
		}
		if err := tx.AppendEvent(&rugwatch.Event{Type: rugwatch.EventToolNew, Server: "s"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v", err)
	}
	_ = db.View(func(tx *Tx) error {
		if _, ok, _ := tx.Server("s"); ok {
			t.Error("server survived rollback")
		}
		if evs, _ := tx.Events("", 0); len(evs) != 0 {
			t.Error("event survived rollback")
		}
		return nil
	})
	if n, err := db.VerifyChain(); n != 0 || err != nil {
		t.Fatalf("VerifyChain = %d, %v", n, err)
	}
}

func TestReadOnlyOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rugwatch.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *Tx) error { return tx.PutServer(ServerRecord{Name: "s"}) }); err != nil {
		t.Fatal(err)
	}
	db.Close()

	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if err := ro.View(func(tx *Tx) error {
		_, ok, err := tx.Server("s")
		if !ok {
			t.Error("server missing in read-only view")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := ro.Update(func(tx *Tx) error { return nil }); !errors.Is(err, bolterrors.ErrDatabaseReadOnly) {
		t.Errorf("Update on read-only store: %v", err)
	}
	// Two readers share the lock.
	ro2, err := Open(path, Options{ReadOnly: true, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("second read-only open: %v", err)
	}
	ro2.Close()
}

func TestReadOnlyMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent", "rugwatch.db")
	if _, err := Open(path, Options{ReadOnly: true}); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open read-only of missing file: %v", err)
	}
	if _, err := os.Stat(filepath.Dir(path)); !os.IsNotExist(err) {
		t.Errorf("read-only open created the directory: %v", err)
	}
}

func TestForeignBoltFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := (boltDB{bdb}).update(func(tx kvTx) error { _, err := tx.CreateBucket([]byte("widgets")); return err }); err != nil {
		t.Fatal(err)
	}
	bdb.Close()
	_, err = Open(path, Options{})
	if err == nil || !strings.Contains(err.Error(), "not a rugwatch store") {
		t.Fatalf("Open foreign file: %v", err)
	}
}
