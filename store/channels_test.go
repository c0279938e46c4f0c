package store

import (
	"os"
	"testing"
	"time"
)

// v4 → v5 through Open: outbox/disabled appears, queued deliveries stay.
func TestMigration5DisabledChannels(t *testing.T) {
	path := buildAt(t, 4, func(tx kvTx) error {
		return tx.Bucket(bucketOutbox).Bucket(bucketDeliveries).Put([]byte("dlv_x_log"), []byte(`{"id":"dlv_x_log","event_id":"x","event_seq":1,"channel":"log","state":"dead"}`))
	})
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v := fileVersion(t, db); v != SchemaVersion() || v < 5 {
		t.Fatalf("version %d, want %d (>= 5)", v, SchemaVersion())
	}
	_ = db.kv.view(func(tx kvTx) error {
		if tx.Bucket(bucketOutbox).Bucket(bucketDisabled) == nil {
			t.Error("outbox/disabled missing after migration")
		}
		return nil
	})
	if err := db.View(func(tx *Tx) error {
		d, ok, err := tx.Delivery("dlv_x_log")
		if !ok || d.State != DeliveryDead {
			t.Errorf("v4 delivery lost: %+v ok=%v", d, ok)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// A disabled channel survives closing and reopening the file, keeps its
// first record, and is gone after EnableChannel.
func TestDisabledChannelPersists(t *testing.T) {
	path := t.TempDir() + "/rugwatch.db"
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	first := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := db.Update(func(tx *Tx) error {
		if err := tx.DisableChannel(DisabledChannel{Channel: "webhook:ops", DisabledAt: first, Reason: "HTTP 410"}); err != nil {
			return err
		}
		return tx.DisableChannel(DisabledChannel{Channel: "webhook:ops", DisabledAt: first.Add(time.Hour), Reason: "again"})
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *Tx) error {
		all, err := tx.DisabledChannels()
		if err != nil {
			return err
		}
		if len(all) != 1 || all[0].Channel != "webhook:ops" || !all[0].DisabledAt.Equal(first) || all[0].Reason != "HTTP 410" {
			t.Errorf("after reopen: %+v", all)
		}
		if _, ok, _ := tx.ChannelDisabled("webhook:other"); ok {
			t.Error("another channel reads as disabled")
		}
		ok, err := tx.EnableChannel("webhook:ops")
		if !ok || err != nil {
			t.Errorf("enable: %v %v", ok, err)
		}
		if _, ok, _ := tx.ChannelDisabled("webhook:ops"); ok {
			t.Error("still disabled after enable")
		}
		ok, err = tx.EnableChannel("webhook:ops")
		if ok || err != nil {
			t.Errorf("second enable: %v %v", ok, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A backup taken while a writer waits is a complete store of its own: it
// opens read-only at this schema and holds what was committed.
func TestBackupIsACompleteStore(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir+"/rugwatch.db", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *Tx) error { return tx.PutServer(ServerRecord{Name: "s", Transport: "http"}) }); err != nil {
		t.Fatal(err)
	}
	var size int64
	f := newFile(t, dir+"/copy.db")
	n, err := db.Backup(f, func(s int64) { size = s })
	if err != nil || n != size || n == 0 {
		t.Fatalf("backup: n=%d size=%d err=%v", n, size, err)
	}
	f.Close()
	cp, err := Open(dir+"/copy.db", Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	if err := cp.View(func(tx *Tx) error {
		r, ok, err := tx.Server("s")
		if !ok || r.Transport != "http" {
			t.Errorf("copy lacks the server: %+v %v", r, ok)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func newFile(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
