package monitor

import (
	"encoding/json"
	"testing"

	"github.com/rugwatch/rugwatch"
)

// TestLaunchPinGrowsQuietlyWithNewFields: a pin written by an older
// rugwatch lacks fields a newer one records (the package's version); the
// first poll after the upgrade adds them without a launch.drifted, while a
// changed executable digest still drifts.
func TestLaunchPinGrowsQuietlyWithNewFields(t *testing.T) {
	h := newHarness(t)
	tool := json.RawMessage(`{"name":"a","inputSchema":{"type":"object"}}`)
	listing := func(l *Launch) *Listing {
		out := listingOf(t, tool)
		out.Launch = l
		return out
	}
	old := &Launch{Executable: "/usr/bin/npx", SHA256: "aa", Package: "@modelcontextprotocol/server-everything"}
	h.record(listing(old), nil)
	grown := *old
	grown.PackageInfo = &PackageInfo{PackageVersion: "2026.8.31"}
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
