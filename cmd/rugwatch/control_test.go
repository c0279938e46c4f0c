package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListenControlRefusesWhatItMustNotReplace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "rugwatch.sock")

	// A fresh socket: 0600 in a 0700 directory.
	ln, err := listenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	di, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
		t.Errorf("socket %v, dir %v; want 0600 and 0700", fi.Mode().Perm(), di.Mode().Perm())
	}
	// A live socket: another serve answers there.
	if _, err := listenControl(path); err == nil || !strings.Contains(err.Error(), "another rugwatch serve") {
		t.Errorf("second listen: %v", err)
	}
	// A stale socket, left by a crash, is replaced.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln, err = listenControl(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln.Close()
	// Anything else at the path is refused.
	if err := os.WriteFile(path, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := listenControl(path); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("regular file at the socket path: %v", err)
	}
}

func TestAlertsCommand(t *testing.T) {
	recv, secret := newWebhookReceiver(t)
	c := newCLI(t, 100)
	cfg, _ := os.ReadFile(c.config)
	cfg = append(cfg, []byte("notify:\n  webhooks:\n    - name: ops\n      url: "+recv.srv.URL+"/hook\n      secret: \"${env:WH}\"\n      min_severity: info\n    - name: broken\n      url: "+recv.srv.URL+"/nope\n      secret: \"${env:WH2}\"\n")...)
	if err := os.WriteFile(c.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	// The receiver verifies signatures with its own secret: "broken" signs
	// with the wrong one, so it answers 401 and the delivery is dead.
	c.env["WH"] = secret
	c.env["WH2"] = "whsec_" + strings.Repeat("A", 32)
	c.want(0, "", "init")
	out := c.want(0, "", "alerts", "test", "webhook:ops").stdout
	if !strings.Contains(out, "webhook:ops\tdelivered") {
		t.Errorf("alerts test: %q", out)
	}
	got, _ := recv.received()
	if len(got) != 1 || got[0].event.Type != EventAlertTest {
		t.Fatalf("receiver got %+v", got)
	}
	c.want(1, "", "alerts", "test", "webhook:broken")
	list := c.want(1, "", "alerts").stdout
	if !strings.Contains(list, "DEAD (1)") || !strings.Contains(list, "webhook:broken") {
		t.Fatalf("alerts list:\n%s", list)
	}
	var id string
	for _, f := range strings.Fields(list) {
		if strings.HasPrefix(f, "dlv_") && strings.HasSuffix(f, "webhook:broken") {
			id = f
		}
	}
	// Fixed: the right secret, and the dead delivery is sent again.
	c.env["WH2"] = secret
	c.want(0, "", "alerts", "retry", id)
	if list := c.want(0, "", "alerts").stdout; !strings.Contains(list, "DEAD (0)") {
		t.Errorf("after retry with the right secret:\n%s", list)
	}
	c.want(2, "", "alerts", "test", "webhook:nope")
}
