package monitor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/testkit/storetest"
)

// TestStatusEachOrderAndStop: the chunks decoded ahead, several at once,
// reach fn in config order, servers never recorded included; an error
// from fn ends the walk with that error.
func TestStatusEachOrderAndStop(t *testing.T) {
	db := storetest.Open(t, t.TempDir(), store.Options{})
	const n = 5*statusChunk + 17
	var refs []ServerRef
	err := db.Update(func(tx *store.Tx) error {
		for i := range n {
			name := fmt.Sprintf("s%04d", i)
			refs = append(refs, ServerRef{Name: name, Transport: "http"})
			if i%7 == 3 {
				continue // configured, never polled
			}
			if err := tx.PutServer(store.ServerRecord{Name: name, Transport: "http", Reachable: true,
				Tools: map[string]store.ToolRecord{"t": {State: rugwatch.StatePending}}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(refs), func(i, j int) { refs[i], refs[j] = refs[j], refs[i] })
	l := &Ledger{DB: db, Servers: refs}
	var got []string
	if err := l.StatusEach(context.Background(), nil, func(s report.ServerReport) error {
		got = append(got, s.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d servers reported, want %d", len(got), n)
	}
	for i, r := range refs {
		if got[i] != r.Name {
			t.Fatalf("server %d is %s, want %s (config order)", i, got[i], r.Name)
		}
	}
	stopAt := errors.New("enough")
	seen := 0
	err = l.StatusEach(context.Background(), nil, func(s report.ServerReport) error {
		if seen++; seen == statusChunk+3 {
			return stopAt
		}
		return nil
	})
	if !errors.Is(err, stopAt) || seen != statusChunk+3 {
		t.Errorf("after fn's error: %v, %d servers seen", err, seen)
	}
}
