package monitor

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/store"
)

func toolJSON(name, desc string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"name":%q,"description":%q,"inputSchema":{"type":"object"}}`, name, desc))
}

// TestOneAlertPerPoll: first sight of a server of several tools queues
// one server.new alert listing them, a poll drifting several tools one
// server.changed alert listing them, and a poll moving one tool that
// tool's own alert; the per-tool events stay in the log either way.
func TestOneAlertPerPoll(t *testing.T) {
	h := newHarness(t)
	h.rec.Signer = h.signer // approve_first_seen, so that changes drift
	var queued []rugwatch.Event
	h.rec.InTx = func(tx *store.Tx, e rugwatch.Event) error {
		if e.Seq == 0 || e.ID == "" {
			t.Errorf("queued an event that is not in the log: %+v", e)
		}
		queued = append(queued, e)
		return nil
	}
	names := []string{"alpha", "beta", "gamma"}
	listing := func(descs ...string) *mcpclient.Listing {
		raws := make([]json.RawMessage, len(names))
		for i, n := range names {
			raws[i] = toolJSON(n, descs[i])
		}
		return listingOf(t, raws...)
	}
	_, events := h.record(listing("a", "b", "c"), nil)
	if len(queued) != 1 || queued[0].Type != rugwatch.EventServerNew {
		t.Fatalf("first sight queued %d alerts %v, want one server.new", len(queued), types(queued))
	}
	sum := queued[0]
	if len(sum.Changes) != 3 || sum.Changes[0].Path != "/tools/alpha" || sum.Changes[0].Op != "add" || sum.Server != "srv" {
		t.Errorf("server.new changes: %+v", sum.Changes)
	}
	var news, approvals int
	for _, e := range events {
		switch e.Type {
		case rugwatch.EventToolNew:
			news++
		case rugwatch.EventToolApproved:
			approvals++
		}
	}
	if news != 3 || approvals != 3 || events[len(events)-1].ID != sum.ID {
		t.Errorf("the log has %d tool.new and %d tool.approved (want 3 each) and ends with %v", news, approvals, types(events))
	}

	queued = nil
	h.record(listing("a2", "b2", "c"), nil)
	if len(queued) != 1 || queued[0].Type != rugwatch.EventServerChanged {
		t.Fatalf("two drifts queued %v, want one server.changed", types(queued))
	}
	replaced := map[string]bool{}
	for _, c := range queued[0].Changes {
		if c.Op == "replace" && strings.Count(c.Path, "/") == 2 {
			replaced[c.Path] = true // the tool; its field changes follow
		}
	}
	if !replaced["/tools/alpha"] || !replaced["/tools/beta"] || len(replaced) != 2 {
		t.Errorf("server.changed replaces %v, want alpha and beta", replaced)
	}
	if queued[0].Severity.Rank() < rugwatch.SeverityWarning.Rank() {
		t.Errorf("server.changed severity %s, want at least the drifts'", queued[0].Severity)
	}

	queued = nil
	h.record(listing("a2", "b2", "c3"), nil)
	if len(queued) != 1 || queued[0].Type != rugwatch.EventToolDrifted || queued[0].Tool != "gamma" {
		t.Fatalf("one drift queued %v, want its own tool.drifted", types(queued))
	}

	// Nothing changed: no alert, no event, and the record is not
	// rewritten; only its poll time moves.
	queued = nil
	var before store.ServerRecord
	_ = h.db.View(func(tx *store.Tx) error { before, _, _ = tx.Server("srv"); return nil })
	rec, events := h.record(listing("a2", "b2", "c3"), nil)
	if len(queued) != 0 || len(events) != 0 {
		t.Fatalf("unchanged poll: %d alerts, events %v", len(queued), types(events))
	}
	var after store.ServerRecord
	_ = h.db.View(func(tx *store.Tx) error { after, _, _ = tx.Server("srv"); return nil })
	if !after.LastPolledAt.Equal(rec.LastPolledAt) || !after.LastPolledAt.After(before.LastPolledAt) {
		t.Errorf("last_polled_at %v after an unchanged poll at %v (was %v)", after.LastPolledAt, rec.LastPolledAt, before.LastPolledAt)
	}
	after.LastPolledAt = before.LastPolledAt
	b1, _ := json.Marshal(before)
	b2, _ := json.Marshal(after)
	if string(b1) != string(b2) {
		t.Errorf("unchanged poll changed the record:\n%s\n%s", b1, b2)
	}
}

func types(es []rugwatch.Event) []rugwatch.EventType {
	out := make([]rugwatch.EventType, len(es))
	for i, e := range es {
		out[i] = e.Type
	}
	return out
}
