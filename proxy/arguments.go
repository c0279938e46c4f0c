package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/visible"
)

// Argument checks beyond the schema: what a model was talked into
// sending. argument-injection is recorded (and refused under
// proxy.results: block); exfiltration-chain is always refused.

// taint holds, per session, the secrets and sensitive matches results
// flagged secret-in-result or sensitive-path carried. Bounded: the
// newest maxTaint entries are kept.
type taint struct {
	mu    sync.Mutex
	items []string
}

const (
	maxTaint = 256
	// minTaint is the shortest text that counts: "~/.ssh" in a reply to
	// a question about SSH is not a leak, a key is.
	minTaint = 8
)

func (t *taint) add(lists ...[]string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, l := range lists {
		for _, s := range l {
			if len(s) >= minTaint {
				t.items = append(t.items, s)
			}
		}
	}
	if len(t.items) > maxTaint {
		t.items = append([]string(nil), t.items[len(t.items)-maxTaint:]...)
	}
}

// carried returns how many tainted items one of strs contains.
func (t *taint) carried(strs []string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, item := range t.items {
		for _, s := range strs {
			if strings.Contains(s, item) {
				n++
				break
			}
		}
	}
	return n
}

// argumentFindings returns the findings of one call's arguments.
func argumentFindings(def json.RawMessage, args map[string]any, tainted *taint) []rugwatch.Finding {
	return argumentFindingsOf(detect.TraitsOf(def), args, tainted)
}

// argumentFindingsOf is argumentFindings with the definition's traits
// already read (once per approved definition: schemaFor).
func argumentFindingsOf(tr detect.ToolTraits, args map[string]any, tainted *taint) []rugwatch.Finding {
	var carried func([]string) int
	if tainted != nil {
		carried = tainted.carried
	}
	return detect.ArgumentFindings(tr, args, carried)
}

// checkArguments records argument findings and returns the refusal, or
// nil to let the call through.
func (s *session) checkArguments(ctx context.Context, id jsonrpc.ID, check *schemaCheck, name string, args map[string]any) *jsonrpc.Response {
	findings := argumentFindingsOf(check.traits, args, s.taint)
	if len(findings) == 0 {
		return nil
	}
	chain := false
	for _, f := range findings {
		chain = chain || f.Rule == detect.RuleExfilChain
	}
	// Under block, what is refused is what is critical: a browser tool
	// opening localhost (a warning) is a developer's everyday.
	refused := chain || s.opts.Results == ResultsBlock && detect.MaxSeverity(findings) == rugwatch.SeverityCritical
	if err := s.withBackend(ctx, func(ctx context.Context, b Backend) error {
		return b.FlagResult(ctx, s.opts.Server, name, findings, refused)
	}); err != nil {
		s.log.Error("recording flagged arguments failed", "tool", visible.Line(name), "error", err)
	}
	if !refused {
		return nil
	}
	what := RefusedArgumentInjection
	if chain {
		what = RefusedExfiltration
	}
	return s.refuse(id, what, fmt.Sprintf("tool %q: the call was refused (%s)", visible.Line(name), detect.RuleSet(findings)))
}
