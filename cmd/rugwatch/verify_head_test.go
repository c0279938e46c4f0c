package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/notify"
)

func copyStore(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// Rollback: the store as it was before a drift, put back. Its chain is
// consistent in itself, so plain verify passes (the attack works without a
// head); verify --head with the seq and chain_head the drift's alert
// carried exits 1 and says the log was cut or rolled back.
func TestVerifyHeadCatchesRolledBackStore(t *testing.T) {
	c := newCLI(t, 2)
	c.want(0, "", "init")
	c.want(1, "", "check")
	c.want(0, "", "approve", "demo", "--all", "--yes")
	c.want(0, "", "check")
	db := filepath.Join(filepath.Dir(c.config), "data", "rugwatch.db")
	saved := filepath.Join(t.TempDir(), "before-drift.db")
	copyStore(t, db, saved)

	c.want(1, "", "check") // the demo server turns: drift
	var hist struct {
		Events []rugwatch.Event `json:"events"`
	}
	if err := json.Unmarshal([]byte(c.want(0, "", "history", "demo", "--json").stdout), &hist); err != nil {
		t.Fatal(err)
	}
	var drift rugwatch.Event
	for _, e := range hist.Events {
		if e.Type == rugwatch.EventToolDrifted {
			drift = e
			break
		}
	}
	if drift.Seq == 0 || !drift.ChainHead.Valid() {
		t.Fatalf("no drift with seq and chain_head in history: %+v", hist.Events)
	}
	// What the webhook carried for it.
	body, err := notify.Payload(drift)
	if err != nil {
		t.Fatal(err)
	}
	var alert struct {
		Seq       uint64 `json:"seq"`
		ChainHead string `json:"chain_head"`
	}
	if err := json.Unmarshal(body, &alert); err != nil {
		t.Fatal(err)
	}
	head := fmt.Sprintf("%d:%s", alert.Seq, alert.ChainHead)
	if out := c.want(0, "", "verify", "--head", head).stdout; !strings.Contains(out, "held") {
		t.Errorf("verify --head on the log that raised the alert:\n%s", out)
	}

	copyStore(t, saved, db)
	c.want(0, "", "verify") // consistent in itself: only the head tells
	r := c.want(1, "", "verify", "--head", head)
	if !strings.Contains(r.stdout, "NOT HELD") || !strings.Contains(r.stdout, "cut or rolled back") {
		t.Errorf("verify --head on the rolled-back store:\n%s", r.stdout)
	}
	var rep struct {
		OK        bool   `json:"ok"`
		HeadError string `json:"head_error"`
	}
	if err := json.Unmarshal([]byte(c.want(1, "", "verify", "--json", "--head", head).stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.OK || !strings.Contains(rep.HeadError, "does not hold head "+head) {
		t.Errorf("verify --json --head: %+v", rep)
	}
	c.want(exitError, "", "verify", "--head", "42")
}
