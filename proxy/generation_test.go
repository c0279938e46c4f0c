package proxy

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// A revocation is in force for the very next call, not at the proxy's next
// periodic re-read: the proxy compares the backend's approvals generation
// before each call. Without a generation the same call still passes (the
// re-read every Refresh is all there is), so the test can fail.
func TestRevocationInForceBeforeTheCommandReturns(t *testing.T) {
	for _, withGen := range []bool{true, false} {
		name := map[bool]string{true: "generation", false: "no generation"}[withGen]
		t.Run(name, func(t *testing.T) {
			r := newRig(t)
			var gen atomic.Uint64
			gen.Store(1)
			if withGen {
				r.ledger.Gen = gen.Load
				r.ledger.AfterWrite = func(context.Context) error { gen.Add(1); return nil }
			}
			first, _ := r.connect(r.options(ResultsFlag), nil)
			toolNames(t, first) // recorded: pending
			r.approve("echo")
			opts := r.options(ResultsFlag)
			// No periodic re-read within the test: only the generation
			// can bring the revocation in.
			opts.Refresh = time.Hour
			opts.Watch = nil
			cs, _ := r.connect(opts, nil)
			toolNames(t, cs)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			call := func() error {
				_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}})
				return err
			}
			if err := call(); err != nil {
				t.Fatalf("an approved call: %v", err)
			}
			if _, err := r.ledger.Revoke(ctx, "up", []string{"echo"}, false, "test"); err != nil {
				t.Fatal(err)
			}
			err := call()
			if withGen && err == nil {
				t.Fatal("a call right after the revocation returned was forwarded")
			}
			if !withGen && err != nil {
				t.Fatalf("without a generation the call was refused (%v): the test cannot tell the generation works", err)
			}
		})
	}
}

// A backend that keeps no generation (a stdio proxy opening the store
// itself) is not opened for every call just to learn that: between two
// periodic re-reads it is asked once.
func TestNoGenerationIsNotAskedPerCall(t *testing.T) {
	r := newRig(t)
	first, _ := r.connect(r.options(ResultsFlag), nil)
	toolNames(t, first)
	r.approve("echo")
	opts := r.options(ResultsFlag)
	opts.Refresh = time.Hour
	opts.Watch = nil
	inner := opts.Backend
	var opened atomic.Int64
	opts.Backend = func(ctx context.Context) (Backend, func(), error) {
		opened.Add(1)
		return inner(ctx)
	}
	cs, _ := r.connect(opts, nil)
	toolNames(t, cs)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	before := opened.Load()
	const calls = 20
	for range calls {
		if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := opened.Load() - before; n > 2 {
		t.Errorf("%d calls opened the backend %d times", calls, n)
	}
}
