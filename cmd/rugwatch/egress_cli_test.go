package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rugwatch/rugwatch/testkit/testservers"
)

// TestCLIEgressPinning is behaviour pinning as a user meets it: `status`
// lists the destinations a server used, `approve --all` shows and signs
// them, a later destination (the tools unchanged) is refused under
// egress_mode: pinned and shown as drifted, and `approve --launch` shows
// it as new and lets it through.
func TestCLIEgressPinning(t *testing.T) {
	var hitsA, hitsB atomic.Int32
	listen := func(hits *atomic.Int32) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) }))
		t.Cleanup(s.Close)
		return s
	}
	a, b := listen(&hitsA), listen(&hitsB)
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`data_dir: %[1]s/data
defaults:
  timeout: 30s
  egress_mode: pinned
servers:
  - name: egress
    command: %[2]s
    args: ["-test.run=^$"]
    env: {%[3]s: %[4]s}
    egress: ["%[5]s", "%[6]s"]
`, dir, exe, testservers.EnvMode, testservers.EgressMode, a.Listener.Addr(), b.Listener.Addr())
	path := filepath.Join(dir, "rugwatch.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &cli{t: t, config: path, env: map[string]string{"XDG_CONFIG_HOME": filepath.Join(dir, "config")}}
	home := filepath.Join(dir, "data", "servers", "egress", "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	fetch := func(urls ...string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(home, testservers.EgressURLs), []byte(strings.Join(urls, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c.want(0, "", "init")
	fetch(a.URL)
	c.want(1, "", "check")
	if row := egressLine(c.want(1, "", "status", "egress").stdout); !strings.Contains(row, "PENDING") || !strings.Contains(row, "used: "+a.Listener.Addr().String()) {
		t.Fatalf("status before approval: %q", row)
	}
	out := c.want(0, "", "approve", "egress", "--all", "--yes").stdout
	if !strings.Contains(out, "egress destinations  PENDING") || !strings.Contains(out, a.Listener.Addr().String()) || !strings.Contains(out, "the egress destinations") {
		t.Fatalf("approve did not show the destinations it signs:\n%s", out)
	}
	if row := egressLine(c.want(0, "", "check").stdout); !strings.Contains(row, "APPROVED") || !strings.Contains(row, "approved: "+a.Listener.Addr().String()) {
		t.Fatalf("check after approval: %q", row)
	}

	fetch(a.URL, b.URL)
	r := decodeReport(t, c.want(1, "", "check", "--json").stdout)
	eg := r.Servers[0].Egress
	if eg == nil || fmt.Sprint(eg.Drifted) != "["+b.Listener.Addr().String()+"]" || fmt.Sprint(eg.Refused) != fmt.Sprint(eg.Drifted) || hitsB.Load() != 0 {
		t.Fatalf("after the new destination: egress %+v, b served %d", eg, hitsB.Load())
	}
	for _, tool := range r.Servers[0].Tools {
		if tool.State != "approved" {
			t.Errorf("tool %s is %s: the attack changes no tool", tool.Name, tool.State)
		}
	}
	if hist := c.want(0, "", "history", "egress").stdout; !strings.Contains(hist, "egress.drifted") {
		t.Fatalf("history lacks egress.drifted:\n%s", hist)
	}
	if row := egressLine(c.want(1, "", "status", "egress").stdout); !strings.Contains(row, "DRIFTED") || !strings.Contains(row, "new: "+b.Listener.Addr().String()+" (refused)") {
		t.Fatalf("status after the new destination: %q", row)
	}
	out = c.want(0, "", "approve", "egress", "--launch", "--yes").stdout
	if !strings.Contains(out, b.Listener.Addr().String()+"  NEW (refused until approved)") {
		t.Fatalf("approve --launch did not show the new destination:\n%s", out)
	}
	c.want(0, "", "check")
	if hitsB.Load() != 1 {
		t.Fatalf("after approval b served %d requests, want 1", hitsB.Load())
	}
}

// egressLine is the "(egress)" line of a status.
func egressLine(status string) string {
	for line := range strings.Lines(status) {
		if strings.Contains(line, "(egress)") {
			return line
		}
	}
	return ""
}
