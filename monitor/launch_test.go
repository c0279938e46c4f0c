package monitor

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/testkit/testservers"
)

// A server run by node from a script in node_modules: changing a module
// the script imports (not the executable, not the script, not a tool) is
// launch drift at /tree, seen on the next poll.
func TestChangedPackageFileRaisesLaunchDrifted(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	pkg := filepath.Join(outsideTmp(t), "app", "node_modules", "tiny-mcp")
	testservers.WriteFiles(t, pkg, map[string]string{
		"package.json":      `{"name":"tiny-mcp","version":"1.0.0","type":"module"}`,
		"dist/server.mjs*":  tinyServer,
		"dist/lib.mjs":      tinyLib,
		"dist/unused.d.mjs": "// types\n",
	})
	target := mcpclient.Target{Name: "tiny", Transport: mcpclient.TransportStdio, Command: node, Args: []string{filepath.Join(pkg, "dist", "server.mjs")}}
	h := newHarness(t)
	cache := &mcpclient.HashCache{}
	var tree string
	poll := func() (*mcpclient.Listing, []rugwatch.Event) {
		t.Helper()
		l, err := mcpclient.Poll(pollCtx(t, 20*time.Second), target, mcpclient.DialOptions{Hashes: cache})
		if err != nil {
			t.Fatal(err)
		}
		if l.Launch == nil || !strings.HasPrefix(l.Launch.Tree, "sha256:") || l.Launch.ServerName != "tiny" {
			t.Fatalf("launch identity %+v, warnings %v", l.Launch, l.Warnings)
		}
		_, ev := h.record(l, nil)
		return l, ev
	}
	l, _ := poll()
	t.Logf("sandboxed %v %s", l.Sandboxed, l.SandboxNote)
	tree = l.Launch.Tree
	if _, ev := poll(); len(ev) != 0 {
		t.Fatalf("an unchanged package raised %v", eventTypes(ev))
	}
	// The host changes the module, as an upgrade or an attacker with
	// write access to the package would; the tool stays the same.
	if err := os.WriteFile(filepath.Join(pkg, "dist", "lib.mjs"), []byte(tinyLib+"process.on('exit', () => {});\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, ev := poll()
	if l.Launch.Tree == tree {
		t.Fatal("the tree digest did not change")
	}
	if len(ev) != 1 || ev[0].Type != rugwatch.EventLaunchDrifted {
		t.Fatalf("events %v, want launch.drifted", eventTypes(ev))
	}
	if len(ev[0].Changes) != 1 || ev[0].Changes[0].Path != "/tree" {
		t.Fatalf("changes %+v, want one at /tree", ev[0].Changes)
	}
}

// A pin recorded before rugwatch hashed trees grows the tree quietly: the
// upgrade is no drift, a later change of the tree is.
func TestLaunchPinGrowsATreeQuietly(t *testing.T) {
	h := newHarness(t)
	listing := func(tree string) *mcpclient.Listing {
		l := listingOf(t, []byte(`{"name":"a","inputSchema":{"type":"object"}}`))
		l.Launch = &mcpclient.Launch{Executable: "/usr/bin/node", SHA256: "aa", Tree: tree}
		return l
	}
	h.record(listing(""), nil)
	if _, ev := h.record(listing("sha256:01"), nil); len(ev) != 0 {
		t.Fatalf("a tree the pin lacked raised %v", eventTypes(ev))
	}
	_, ev := h.record(listing("sha256:02"), nil)
	if len(ev) != 1 || ev[0].Type != rugwatch.EventLaunchDrifted || ev[0].Changes[0].Path != "/tree" {
		t.Fatalf("a changed tree: %+v", ev)
	}
}

// TestLaunchPinGrowsQuietlyWithNewFields: a pin written by an older
// rugwatch lacks fields a newer one records (the package's version); the
// first poll after the upgrade adds them without a launch.drifted, while a
// changed executable digest still drifts.
func TestLaunchPinGrowsQuietlyWithNewFields(t *testing.T) {
	h := newHarness(t)
	tool := json.RawMessage(`{"name":"a","inputSchema":{"type":"object"}}`)
	listing := func(l *mcpclient.Launch) *mcpclient.Listing {
		out := listingOf(t, tool)
		out.Launch = l
		return out
	}
	old := &mcpclient.Launch{Executable: "/usr/bin/npx", SHA256: "aa", Package: "@modelcontextprotocol/server-everything"}
	h.record(listing(old), nil)
	grown := *old
	grown.PackageInfo = &mcpclient.PackageInfo{PackageVersion: "2026.8.31"}
	_, ev := h.record(listing(&grown), nil)
	for _, e := range ev {
		if e.Type == rugwatch.EventLaunchDrifted {
			t.Fatalf("a field the pin lacked raised %+v", e)
		}
	}
	if h.server().LaunchDrifted {
		t.Fatal("launch drifted after an upgrade that only added fields")
	}
	swapped := grown
	swapped.SHA256 = "bb"
	_, ev = h.record(listing(&swapped), nil)
	var drifted bool
	for _, e := range ev {
		drifted = drifted || e.Type == rugwatch.EventLaunchDrifted
	}
	if !drifted {
		t.Fatal("a changed executable digest did not drift")
	}
}
