package proxy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/monitor"
)

// hanging is a backend whose reads of the allowed set wait for their
// context, as a shared store that stopped answering (a partitioned
// PostgreSQL: no error, no answer) does.
type hanging struct {
	Backend
	stuck <-chan struct{}
}

func (h hanging) Allowed(ctx context.Context, server string) (monitor.Allowed, error) {
	if err := h.wait(ctx); err != nil {
		return monitor.Allowed{}, err
	}
	return h.Backend.Allowed(ctx, server)
}

func (h hanging) Enforce(ctx context.Context, server string, l *mcpclient.Listing) (monitor.Allowed, error) {
	if err := h.wait(ctx); err != nil {
		return monitor.Allowed{}, err
	}
	return h.Backend.Enforce(ctx, server, l)
}

// wait holds a read until the store answers again or ctx ends.
func (h hanging) wait(ctx context.Context) error {
	select {
	case <-h.stuck:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestProxyServesNothingPastMaxStaleness: when approvals stop answering
// (a read hangs rather than fails), the session serves the last set it
// confirmed for MaxStaleness and then nothing, and says so; with no bound
// the stale set would be served for as long as the read hangs, which the
// second run shows.
func TestProxyServesNothingPastMaxStaleness(t *testing.T) {
	for _, bounded := range []bool{true, false} {
		t.Run(map[bool]string{true: "bounded", false: "unbounded"}[bounded], func(t *testing.T) {
			r := newRig(t)
			opts := r.options(ResultsFlag)
			hang := make(chan struct{}) // closed: reads answer again
			inner := opts.Backend
			state := struct{ hangs bool }{}
			opts.Backend = func(ctx context.Context) (Backend, func(), error) {
				b, release, err := inner(ctx)
				if err != nil {
					return nil, nil, err
				}
				r.mu.Lock()
				h := state.hangs
				r.mu.Unlock()
				if !h {
					return b, release, nil
				}
				return hanging{Backend: b, stuck: hang}, release, nil
			}
			if bounded {
				opts.MaxStaleness = 300 * time.Millisecond
			}
			cs, changed := r.connect(opts, nil)
			toolNames(t, cs)
			r.approve("echo")
			awaitTools(t, cs, changed, "echo")

			r.mu.Lock()
			state.hangs = true
			r.mu.Unlock()
			hungAt := time.Now()
			if !bounded {
				// No signal comes of a bound that is not there: give the
				// stale set five times the bound the other run sets, and
				// show a call still passes on it. (A listing would hang
				// with the read; calls never read the store.)
				defer close(hang)
				<-time.After(1500 * time.Millisecond)
				if err := callErr(cs, "echo", map[string]any{"text": "x"}); err != nil {
					t.Fatalf("without a bound the stale set should still pass calls: %v", err)
				}
				return
			}
			awaitTools(t, cs, changed, "")
			t.Logf("served no tools %v after reads began to hang (max_staleness %v, refresh %v)", time.Since(hungAt).Round(time.Millisecond), opts.MaxStaleness, opts.Refresh)
			err := callErr(cs, "echo", map[string]any{"text": "x"})
			if err == nil || !strings.Contains(err.Error(), "cannot read its approvals") {
				t.Fatalf("call past max_staleness: %v", err)
			}
			// Reads answer again: the tool comes back.
			close(hang)
			awaitTools(t, cs, changed, "echo")
		})
	}
}
