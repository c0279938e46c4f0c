package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
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

// runsCommandsRE marks a tool whose name or description says it runs
// commands or reaches hosts: its string arguments end up in a shell or a
// network request.
var runsCommandsRE = regexp.MustCompile(`(?i)(\b|_)(shell|command|cmd|exec|execute|bash|sh|terminal|script|subprocess|ssh|ping|traceroute|curl|wget|nslookup|dig|host|hostname|url|fetch|http|dns|network|connect|download)(\b|_)`)

// injectionRE is a shell metacharacter chain or command substitution:
// ; && || | followed by a command word, $( ), backticks, ${ }, a
// redirection to a path, a newline followed by a command.
var injectionRE = regexp.MustCompile("\\$\\([^)]*\\)|`[^`]+`|\\$\\{[^}]+\\}|(;|&&|\\|\\||\\|)\\s*[A-Za-z./~_-]|>\\s*[/~]|\\n\\s*(sudo|rm|curl|wget|bash|sh|nc|python|perl|chmod|cat)\\b")

// argumentFindings returns the findings of one call's arguments.
func argumentFindings(def json.RawMessage, args map[string]any, tainted *taint) []rugwatch.Finding {
	return argumentFindingsOf(traitsOf(def), args, tainted)
}

// toolTraits is what the argument rules read of an approved definition:
// whether it runs commands or reaches hosts (by its words), and whether it
// may reach the open world (openWorldHint, true by MCP's default).
// Computed once per approved definition (schemaFor), not per call.
type toolTraits struct {
	commands, openWorld bool
}

func traitsOf(def json.RawMessage) toolTraits {
	var d struct {
		Name        string `json:"name"`
		Title       string `json:"title"`
		Description string `json:"description"`
		Annotations struct {
			OpenWorldHint *bool `json:"openWorldHint"`
		} `json:"annotations"`
	}
	_ = json.Unmarshal(def, &d)
	return toolTraits{
		commands: runsCommandsRE.MatchString(d.Name + " " + d.Title + " " + d.Description),
		// MCP's default for openWorldHint is true: only a tool that says
		// it stays in a closed world is spared.
		openWorld: d.Annotations.OpenWorldHint == nil || *d.Annotations.OpenWorldHint,
	}
}

// argumentFindingsOf is argumentFindings with the definition's traits
// already read.
func argumentFindingsOf(tr toolTraits, args map[string]any, tainted *taint) []rugwatch.Finding {
	var out []rugwatch.Finding
	commands := tr.commands
	var all []string
	for k, v := range args {
		walkStrings(v, "/arguments/"+detect.PointerToken(k), 0, func(text, path string) {
			all = append(all, text)
			if !commands {
				return
			}
			if loc := injectionRE.FindStringIndex(text); loc != nil {
				out = append(out, rugwatch.Finding{Rule: detect.RuleArgumentInjection, Severity: rugwatch.SeverityCritical, Path: path,
					Message: fmt.Sprintf("argument to a tool that runs commands or reaches hosts carries %q", visible.Line(text[loc[0]:loc[1]]))})
			}
		})
	}
	if tr.openWorld && tainted != nil {
		if n := tainted.carried(all); n > 0 {
			out = append(out, rugwatch.Finding{Rule: detect.RuleExfilChain, Severity: rugwatch.SeverityCritical, Path: "/arguments",
				Message: fmt.Sprintf("the arguments carry %d secret or sensitive item(s) this session received in a flagged result, to an open-world tool", n)})
		}
	}
	return out
}

// checkArguments records argument findings and returns the refusal, or
// nil to let the call through.
func (s *session) checkArguments(ctx context.Context, id jsonrpc.ID, check *schemaCheck, name string, args map[string]any) *jsonrpc.Response {
	findings := argumentFindingsOf(check.traits, args, &s.taint)
	if len(findings) == 0 {
		return nil
	}
	chain := false
	for _, f := range findings {
		chain = chain || f.Rule == detect.RuleExfilChain
	}
	refused := chain || s.opts.Results == ResultsBlock
	if err := s.withBackend(ctx, func(b Backend) error { return b.FlagResult(ctx, s.opts.Server, name, findings, refused) }); err != nil {
		s.log.Error("recording flagged arguments failed", "tool", visible.Line(name), "error", err)
	}
	if !refused {
		return nil
	}
	what := RefusedArgumentInjection
	if chain {
		what = RefusedExfiltration
	}
	return s.refuse(id, what, fmt.Sprintf("tool %q: the call was refused (%s)", visible.Line(name), findingRules(findings)))
}
