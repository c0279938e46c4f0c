package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// TestCheckReportsWhileAlertsPending: a receiver that does not answer
// within the drain bound leaves the check's alerts queued. The check
// still prints its whole report and exits by the states it saw (1:
// pending tools), with the pending alerts a warning on stderr, and
// `rugwatch alerts` lists them. Before, it printed nothing and exited 2.
func TestCheckReportsWhileAlertsPending(t *testing.T) {
	release := make(chan struct{})
	hung := make(chan struct{}, 16)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case hung <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer recv.Close()
	defer close(release)
	c := newCLI(t, 100)
	cfg, _ := os.ReadFile(c.config)
	cfg = append(cfg, []byte("notify:\n  webhooks:\n    - name: slow\n      url: "+recv.URL+"/hook\n      secret: \"${env:WH}\"\n      min_severity: info\n")...)
	if err := os.WriteFile(c.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	c.env["WH"] = "whsec_" + strings.Repeat("A", 32)
	c.env["RUGWATCH_ALERT_DRAIN_TIMEOUT"] = "300ms"
	c.want(0, "", "init")
	r := c.want(1, "", "check", "--json")
	select {
	case <-hung:
	default:
		t.Fatal("the receiver was never called: nothing was pending")
	}
	rep := decodeReport(t, r.stdout)
	if len(rep.Servers) != 1 || rep.Servers[0].Name != "demo" || len(rep.Servers[0].Tools) == 0 {
		t.Fatalf("report: %+v", rep)
	}
	if !strings.Contains(r.stderr, "alerts still pending") {
		t.Errorf("stderr does not warn of the pending alerts:\n%s", r.stderr)
	}
	list := c.run("", "alerts")
	if !strings.Contains(list.stdout, "webhook:slow") || !strings.Contains(strings.ToLower(list.stdout), "pending") {
		t.Errorf("alerts does not list the pending delivery:\n%s\n%s", list.stdout, list.stderr)
	}
}

// A drain bound that is not a positive duration is named on stderr, not
// quietly read as the two-minute default.
func TestDrainBoundWarnsOnABadValue(t *testing.T) {
	for v, warn := range map[string]bool{"30": true, "-1s": true, "soon": true, "45s": false} {
		var stderr strings.Builder
		a := &App{Stderr: &stderr, LookupEnv: func(k string) (string, bool) { return v, k == "RUGWATCH_ALERT_DRAIN_TIMEOUT" }}
		d := a.drainBound()
		if got := strings.Contains(stderr.String(), "RUGWATCH_ALERT_DRAIN_TIMEOUT"); got != warn {
			t.Errorf("%q: warned %v, want %v (%q)", v, got, warn, stderr.String())
		}
		if !warn && d != 45*time.Second || warn && d != defaultDrainBound {
			t.Errorf("%q: bound %v", v, d)
		}
	}
}
