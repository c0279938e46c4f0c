package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
)

// Releasing the mapped pages loses nothing: every record reads back the
// same afterwards, in the same transaction's view and in a new one.
func TestReleaseMappedKeepsData(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "r.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := map[string]string{}
	err = db.Update(func(tx *Tx) error {
		for i := range 200 {
			name := fmt.Sprintf("s%03d", i)
			want[name] = fmt.Sprintf("error %d %0500d", i, i)
			if err := tx.PutServer(ServerRecord{Name: name, Error: want[name]}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	read := func() {
		t.Helper()
		err := db.View(func(tx *Tx) error {
			for name, e := range want {
				r, ok, err := tx.Server(name)
				if err != nil || !ok || r.Error != e {
					t.Fatalf("server %s after release: ok %v err %v, error %.20q", name, ok, err, r.Error)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	read()
	if err := db.ReleaseMapped(); err != nil {
		t.Fatal(err)
	}
	read()
	err = db.View(func(tx *Tx) error {
		if err := db.ReleaseMapped(); err != nil { // beside an open reader
			return err
		}
		r, _, err := tx.Server("s007")
		if err != nil || r.Error != want["s007"] {
			t.Fatalf("read in a transaction across a release: %v %.20q", err, r.Error)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A Tx kept past its transaction gets ErrTxClosed from ReleaseMapped, as
// from every other method, not a nil dereference inside bbolt.
func TestReleaseMappedAfterTxEnds(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "rugwatch.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var kept *Tx
	if err := db.View(func(tx *Tx) error { kept = tx; return tx.ReleaseMapped() }); err != nil {
		t.Fatal(err)
	}
	if err := kept.ReleaseMapped(); !errors.Is(err, ErrTxClosed) {
		t.Errorf("after the transaction: %v, want ErrTxClosed", err)
	}
}
