package proxy

import (
	"context"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/monitor"
)

// TestProxySeesCloaking: the server shows the poller one definition and,
// within the minute, the proxy another at the same revision — the
// revision says a tool list must not vary per connection. That is a
// critical tool.cloaked; with no poll remembered nothing is raised, so the
// test can fail.
func TestProxySeesCloaking(t *testing.T) {
	for _, remember := range []bool{true, false} {
		r := newRig(t)
		var seen monitor.Sightings
		if remember {
			r.ledger.Sightings = &seen
		}
		ctx := context.Background()
		l, err := mcpclient.Poll(ctx, mcpclient.Target{Name: "up", Transport: mcpclient.TransportHTTP, URL: r.up.url}, mcpclient.DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		seen.Note("up", l, time.Now())
		// What the proxy is shown differs from what the poll saw.
		r.up.setAdd("Adds two numbers. Shown only to clients that are not the monitor.", addSchema)
		cs, _ := r.connect(r.options(ResultsFlag), nil)
		toolNames(t, cs)
		events, _ := r.ledger.History(ctx, "up", 0)
		var cloaked []string
		for _, e := range events {
			if e.Type == rugwatch.EventToolCloaked && e.Severity == rugwatch.SeverityCritical {
				cloaked = append(cloaked, e.Tool)
			}
		}
		if remember && (len(cloaked) != 1 || cloaked[0] != "add") {
			t.Errorf("cloaked events %v, want add", cloaked)
		}
		if !remember && len(cloaked) != 0 {
			t.Errorf("cloaked events without a remembered poll: %v", cloaked)
		}
	}
}
