package store

import (
	"path/filepath"
	"testing"
	"time"
)

// A poll that changed nothing writes only its time; the summaries metrics
// read show that time, decoded afresh or from the cache.
func TestServerSummariesShowTheLastPoll(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "s.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	changed := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	polled := changed.Add(time.Hour)
	if err := db.Update(func(tx *Tx) error {
		return tx.PutServer(ServerRecord{Name: "a", Reachable: true, LastPolledAt: changed})
	}); err != nil {
		t.Fatal(err)
	}
	var c SummaryCache
	read := func() time.Time {
		t.Helper()
		var at time.Time
		err := db.View(func(tx *Tx) error {
			s, _, err := tx.ServerSummaries(&c, 0)
			if err == nil && len(s) == 1 {
				at = s[0].LastPolledAt
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return at
	}
	if got := read(); !got.Equal(changed) {
		t.Fatalf("before an unchanged poll: %v, want %v", got, changed)
	}
	if err := db.Update(func(tx *Tx) error { return tx.MarkPolled("a", polled) }); err != nil {
		t.Fatal(err)
	}
	if got := read(); !got.Equal(polled) { // the record is cached: unchanged bytes
		t.Fatalf("after an unchanged poll: %v, want %v", got, polled)
	}
	c = SummaryCache{}
	if got := read(); !got.Equal(polled) {
		t.Fatalf("decoded afresh after an unchanged poll: %v, want %v", got, polled)
	}
}
