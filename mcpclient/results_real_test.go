package mcpclient

import (
	"context"
	"encoding/json"
	"sort"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
)

// argsFor builds arguments a schema accepts: every required property
// with the simplest value of its type (an enum's first member).
func argsFor(schema json.RawMessage) map[string]any {
	var s struct {
		Properties map[string]struct {
			Type    any   `json:"type"`
			Enum    []any `json:"enum"`
			Default any   `json:"default"`
		} `json:"properties"`
		Required []string `json:"required"`
	}
	_ = json.Unmarshal(schema, &s)
	out := map[string]any{}
	for _, name := range s.Required {
		p := s.Properties[name]
		switch {
		case len(p.Enum) > 0:
			out[name] = p.Enum[0]
		case p.Default != nil:
			out[name] = p.Default
		default:
			switch p.Type {
			case "number", "integer":
				out[name] = 1
			case "boolean":
				out[name] = false
			case "array":
				out[name] = []any{}
			case "object":
				out[name] = map[string]any{}
			default:
				out[name] = "hello"
			}
		}
	}
	return out
}

// TestResultScanOnRealServer calls every tool of the real server-everything
// (the proxy reads its results with ScanResult, as here) and requires no
// critical finding on an honest server's results.
func TestResultScanOnRealServer(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real npm server")
	}
	target := everythingStdio(t)
	target.Sandbox.Hide = []string{outsideTmp(t)}
	ctx := pollCtx(t, 120*time.Second)
	s, err := Dial(ctx, target, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	raw, rpcErr, err := s.Forward(ctx, "tools/list", json.RawMessage(`{}`))
	if err != nil || rpcErr != nil {
		t.Fatalf("tools/list: %v %v", err, rpcErr)
	}
	var list struct {
		Tools []struct {
			Name        string          `json:"name"`
			InputSchema json.RawMessage `json:"inputSchema"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatal(err)
	}
	sort.Slice(list.Tools, func(i, j int) bool { return list.Tools[i].Name < list.Tools[j].Name })
	scanned, warnings, bytes := 0, 0, 0
	for _, tl := range list.Tools {
		params, _ := json.Marshal(map[string]any{"name": tl.Name, "arguments": argsFor(tl.InputSchema)})
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		res, rpcErr, err := s.Forward(cctx, "tools/call", params)
		cancel()
		if err != nil || rpcErr != nil {
			// Sampling and elicitation need a client that answers them.
			t.Logf("%s: no result (%v %v)", tl.Name, err, rpcErr)
			continue
		}
		scanned++
		bytes += len(res)
		for _, f := range detect.ScanResult(res, detect.ResultScanOptions{Redact: true}).Findings {
			if f.Severity == rugwatch.SeverityCritical {
				t.Errorf("%s: critical %s at %s: %s", tl.Name, f.Rule, f.Path, f.Message)
			} else {
				warnings++
				t.Logf("%s: %s %s at %s: %s", tl.Name, f.Severity, f.Rule, f.Path, f.Message)
			}
		}
	}
	if scanned < 8 {
		t.Fatalf("only %d of %d tools answered", scanned, len(list.Tools))
	}
	t.Logf("server-everything: %d of %d tools' results scanned (%d bytes), %d warning findings, 0 critical", scanned, len(list.Tools), bytes, warnings)
}
