package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/rugwatch/rugwatch"
)

// A real launch drift, seen in headless Chromium on the overview, and the
// approve commands copied from the pages run as they are, in a shell, from
// another directory, against the same daemon: the tool's (with
// --accept-findings for its critical finding) and the launch's.
func TestWebViewShowsLaunchDriftAndItsCommandsRunAsCopied(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	dir := t.TempDir()
	// The server is a copy of this test binary serving the demo: its
	// launch identity pins the copy's bytes, so changing them is a launch
	// drift, as an upgrade swapped under the same command line would be.
	server := filepath.Join(dir, "bin", "demo-server")
	copyExecutable(t, server)
	shared := sharedDir(t)
	cfg := writeConfig(t, dir, fmt.Sprintf(`ephemeral: true
approve_first_seen: true
http_listen: 127.0.0.1:0
defaults: { schedule: "@every 1h", timeout: 20s }
servers:
  - name: demo
    command: %s
    args: ["-test.run=^$"]
    env:
      RUGWATCH_TEST_DEMO: "--after 1 --state %s/demo.state"
    mounts: [{path: "%s", mode: rw}]
`, server, shared, shared))
	p := serveInProcess(t, cfg, nil)
	c := p.client(t)
	ctx := context.Background()
	if _, err := c.Check(ctx, nil); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(server, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("\nchanged under the same command line\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	rep, err := c.Check(ctx, nil)
	if err != nil || len(rep.Servers) != 1 || !rep.Servers[0].LaunchDrifted {
		t.Fatalf("second check: launch not drifted: %+v %v", rep, err)
	}

	tok, err := p.d.httpToken()
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + p.d.healthAddr.String()
	bctx := browser(t)
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/?token="+tok), chromedp.WaitVisible(`tr[data-server="demo"]`)); err != nil {
		t.Fatal(err)
	}
	row := run(t, bctx, chromedp.Evaluate[string](`document.querySelector('tr[data-server="demo"]').innerText`))
	png := run(t, bctx, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(artifacts(t), "overview-launch-drift.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(row, "launch DRIFTED") || !strings.Contains(row, "critical") {
		t.Errorf("the overview's row of demo does not show the launch drift:\n%s", row)
	}

	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/servers/demo/tools/add"), chromedp.WaitVisible("#approve")); err != nil {
		t.Fatal(err)
	}
	approveTool := run(t, bctx, chromedp.Text("#approve"))
	approveLaunch := run(t, bctx, chromedp.Text("#approve-launch"))
	if !strings.Contains(approveTool, "--config "+cfg) || !strings.Contains(approveTool, "--accept-findings") {
		t.Errorf("approve command %q lacks --config %s or --accept-findings", approveTool, cfg)
	}

	// Copied into a shell elsewhere, each runs as it is; the person
	// answers y after reading what it shows.
	for _, cmd := range []string{approveTool, approveLaunch} {
		out := runCopied(t, cmd, dir)
		if !strings.Contains(out, "approved ") {
			t.Errorf("%s:\n%s", cmd, out)
		}
	}
	rep, err = c.Status(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Servers[0]
	if s.LaunchDrifted {
		t.Error("launch still drifted after the launch's copied command")
	}
	for _, tool := range s.Tools {
		if tool.Name == "add" && tool.State != rugwatch.StateApproved {
			t.Errorf("add is %s after the tool's copied command", tool.State)
		}
	}
}

// copyExecutable copies this test binary to path.
func copyExecutable(t *testing.T, path string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// runCopied runs a command line as a person pasting it would: through sh,
// from a directory of its own, with the rugwatch built from this tree
// first on PATH, answering y. It returns what it printed; a failure fails
// the test.
func runCopied(t *testing.T, line, home string) string {
	t.Helper()
	cmd := exec.Command("sh", "-c", line)
	cmd.Dir = t.TempDir()
	cmd.Env = []string{"PATH=" + filepath.Dir(rugwatchBin(t)) + ":" + os.Getenv("PATH"), "HOME=" + home}
	cmd.Stdin = strings.NewReader("y\n")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out.String())
	}
	return out.String()
}
