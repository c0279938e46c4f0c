package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// Team approvals as a person sees them in the web view, in headless
// Chromium: the daemon runs with quorum 2 and role security; alice
// (platform) signs add with the real CLI against the daemon, and the
// server page and the tool page both show "signatures: 1 of 2 (needs role
// security)" beside pending; once bob (security) signs, the tool page
// says approved.
func TestWebViewShowsTheQuorumTally(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	dir := t.TempDir()
	keys := approverKeys(t, dir, "alice", "bob")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := teamConfig(t, dir, exe, 2, "http_listen: 127.0.0.1:0\nhttp_token: ${env:TOK}\ndefaults: { schedule: \"@every 1h\", timeout: 20s }\n", "alice", "bob")
	p := serveInProcess(t, cfg, map[string]string{"XDG_CONFIG_HOME": filepath.Join(dir, "config"), "TOK": "quorum-view-token-0123456789abcdef"})
	c := p.client(t)
	ctx := context.Background()
	if _, err := c.Check(ctx, nil); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	approve := func(who string) string {
		t.Helper()
		r := runBin(t, env, "", "--config", cfg, "approve", "demo", "add", "--yes", "--key", keys[who])
		if r.code != 0 {
			t.Fatalf("%s's approve: exit %d\n%s%s", who, r.code, r.stdout, r.stderr)
		}
		return r.stdout
	}
	const waiting = "signatures: 1 of 2 (needs role security)"
	if out := approve("alice"); !strings.Contains(out, "PENDING  "+waiting) {
		t.Fatalf("alice's approve output:\n%s", out)
	}

	tok, err := p.d.httpToken()
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + p.d.healthAddr.String()
	bctx := browser(t)
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/servers/demo?token="+tok), chromedp.WaitVisible(`tr[data-tool="add"]`)); err != nil {
		t.Fatal(err)
	}
	row := run(t, bctx, chromedp.Evaluate[string](`document.querySelector('tr[data-tool="add"]').innerText`))
	png := run(t, bctx, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(artifacts(t), "server-quorum-tally.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(row, "pending") || !strings.Contains(row, waiting) {
		t.Errorf("the server page's row of add does not show the tally:\n%s", row)
	}
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/servers/demo/tools/add"), chromedp.WaitVisible("#signatures")); err != nil {
		t.Fatal(err)
	}
	if got := run(t, bctx, chromedp.Text("#signatures")); got != waiting {
		t.Errorf("the tool page says %q, want %q", got, waiting)
	}

	if out := approve("bob"); !strings.Contains(out, "APPROVED  signatures: 2 of 2") {
		t.Fatalf("bob's approve output:\n%s", out)
	}
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/servers/demo/tools/add"), chromedp.WaitVisible("#signatures")); err != nil {
		t.Fatal(err)
	}
	if got := run(t, bctx, chromedp.Text("#signatures")); got != "signatures: 2 of 2" {
		t.Errorf("after bob the tool page says %q", got)
	}
	if state := run(t, bctx, chromedp.Text(".s-approved")); state != "approved" {
		t.Errorf("after bob the tool page's state is %q", state)
	}
}
