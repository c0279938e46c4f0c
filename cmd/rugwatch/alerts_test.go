package main

import (
	"os"
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch"
)

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
	if len(got) != 1 || got[0].event.Type != rugwatch.EventAlertTest {
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
