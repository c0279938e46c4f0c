package store

import (
	"context"
	"testing"
	"time"
)

// A write that may change what a proxy passes reaches a listener of the
// same database, by the server's name, once it commits; a rolled-back
// one never does.
func TestListenHearsCommittedChanges(t *testing.T) {
	db := openPostgres(t, Options{})
	other := reopenBackend(t, db, Options{}) // another replica's handle
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	heard := make(chan string, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		other.Listen(ctx, func(server string) { heard <- server }, func(err error) { t.Logf("listen: %v", err) })
	}()
	// The first write may land before the LISTEN is in place: write
	// until one is heard.
	deadline := time.After(10 * time.Second)
	for got := ""; got != "a"; {
		_ = db.Update(func(tx *Tx) error {
			_ = tx.PutServer(ServerRecord{Name: "rolled-back"})
			return errRollback
		})
		if err := db.Update(func(tx *Tx) error { return tx.PutServer(ServerRecord{Name: "a"}) }); err != nil {
			t.Fatal(err)
		}
		select {
		case got = <-heard:
			if got == "rolled-back" {
				t.Fatal("a rolled-back write was announced")
			}
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatal("no notification of a committed write")
		}
	}
	cancel()
	<-done
}
