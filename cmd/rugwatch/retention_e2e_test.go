package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/store"
)

// serve with retention: 90d prunes the events of 200 days ago behind a
// checkpoint signed with the approver key init wrote; afterwards verify,
// and verify --head of an alert from before the cut, still pass.
func TestServePrunesOldEventsBehindASignedCheckpoint(t *testing.T) {
	c := newCLI(t, 100)
	c.want(0, "", "init")
	db := filepath.Join(filepath.Dir(c.config), "data", "rugwatch.db")
	// Events of 200 days ago, as a daemon then would have written them.
	old := time.Now().Add(-200 * 24 * time.Hour)
	s, err := store.Open(db, store.Options{Now: func() time.Time { return old }})
	if err != nil {
		t.Fatal(err)
	}
	var oldHead store.Head
	err = s.Update(func(tx *store.Tx) error {
		for i := range 3 {
			e := rugwatch.Event{Type: rugwatch.EventServerUnreachable, Severity: rugwatch.SeverityWarning, Server: "demo",
				Message: fmt.Sprintf("old event %d", i)}
			if err := tx.AppendEvent(&e); err != nil {
				return err
			}
			if i == 0 {
				oldHead = store.Head{Seq: e.Seq, Digest: e.ChainHead}
			}
		}
		return nil
	})
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	c.want(1, "", "check") // today's events: the demo server's tools are new
	f, err := os.OpenFile(c.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("retention: 90d\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()

	pruned := make(chan monitor.Pruned, 4)
	var logs bytes.Buffer
	app := &App{Stdin: bytes.NewReader(nil), Stdout: io.Discard, Stderr: &syncWriter{w: &logs},
		LookupEnv: func(k string) (string, bool) { v, ok := c.env[k]; return v, ok },
		pruned: func(p monitor.Pruned, err error) {
			if err != nil {
				t.Errorf("prune: %v", err)
			}
			pruned <- p
		}}
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() { code <- app.Run(ctx, []string{"--config", c.config, "serve"}) }()
	select {
	case p := <-pruned:
		if p.Checkpoint.Seq != 3 || p.Deleted != 3 {
			t.Errorf("pruned %+v, want the 3 old events behind a checkpoint at seq 3", p)
		}
	case c := <-code:
		t.Fatalf("serve exited %d before pruning:\n%s", c, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("no prune in 30s:\n%s", logs.String())
	}
	cancel()
	if c := <-code; c != 0 {
		t.Fatalf("serve exited %d:\n%s", c, logs.String())
	}
	out := c.want(0, "", "verify").stdout
	if !strings.Contains(out, "checkpoint 3:sha256:") || !strings.Contains(out, "older events were pruned") {
		t.Errorf("verify after the cut:\n%s", out)
	}
	out = c.want(0, "", "verify", "--head", oldHead.String()).stdout
	if !strings.Contains(out, "held behind the signed checkpoint") {
		t.Errorf("verify --head of a pruned event:\n%s", out)
	}
	hist := c.want(0, "", "history").stdout
	if strings.Contains(hist, "old event") {
		t.Errorf("history still shows pruned events:\n%s", hist)
	}
}
