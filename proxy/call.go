package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/visible"
)

// refuseUnapproved refuses a call of a tool that does not pass now, or
// returns nil.
func (s *session) refuseUnapproved(req *jsonrpc.Request) *jsonrpc.Response {
	name, _, err := callParams(req.Params)
	if err != nil {
		return errorResponse(req.ID, jsonrpc.CodeInvalidParams, "tools/call: "+err.Error())
	}
	if _, ok := s.passes(name); !ok {
		reason, msg := s.whyNot(name)
		return s.refuse(req.ID, reason, msg)
	}
	return nil
}

// whyNot says why the tool called name does not pass now: one of the
// Refused reasons, and the error the client reads, which names what to
// run about it.
func (s *session) whyNot(name string) (reason, msg string) {
	server, shown := s.opts.Server, visible.Line(name)
	s.mu.Lock()
	s.expireStale()
	drifted, unreadable := s.allowed.Drifted, s.unreadable
	_, live := s.live[name]
	state, recorded := s.allowed.Withheld[name]
	_, approved := s.allowed.Tool(name)
	s.mu.Unlock()
	switch {
	case len(drifted) > 0:
		// Checked first: the tool's own approval may well hold, and it is
		// exactly what an impostor serving the same definitions inherits.
		return RefusedIdentityDrifted, fmt.Sprintf("tool %q is not served: %s since it was approved, so none of its tools is; review it with `rugwatch status %s`, then `rugwatch approve %s --launch`",
			shown, driftText(drifted, server), server, server)
	case unreadable:
		return RefusedNoApprovals, fmt.Sprintf("tool %q is not served: rugwatch cannot read its approvals now and serves no tools (fail closed); see `rugwatch status %s`", shown, server)
	case !live && !recorded && !approved:
		return RefusedUnknownTool, fmt.Sprintf("tool %q is not approved as it is now (%s never listed it); see `rugwatch status %s`", shown, server, server)
	}
	why := string(rugwatch.StatePending)
	switch {
	case recorded && state == rugwatch.StateApproved:
		why = "its approval does not verify"
	case recorded:
		why = string(state)
	case approved:
		why = string(rugwatch.StateDrifted)
	}
	return RefusedNotApproved, fmt.Sprintf("tool %q is not approved as it is now (%s); review it with `rugwatch status %s`, then `rugwatch approve %s`",
		shown, why, server, server)
}

// callTool forwards a call of a tool that passes now with arguments the
// approved schema accepts, and checks the result before the model sees it.
func (s *session) callTool(ctx context.Context, up *mcpclient.Session, req *jsonrpc.Request) *jsonrpc.Response {
	var params struct {
		Name      string
		Arguments json.RawMessage
	}
	var err error
	if params.Name, params.Arguments, err = callParams(req.Params); err != nil {
		return errorResponse(req.ID, jsonrpc.CodeInvalidParams, "tools/call: "+err.Error())
	}
	tool, ok := s.passes(params.Name)
	if !ok {
		reason, msg := s.whyNot(params.Name)
		return s.refuse(req.ID, reason, msg)
	}
	check, err := s.schemaFor(tool)
	if err != nil {
		return s.refuse(req.ID, RefusedInvalidArgs, fmt.Sprintf("tool %q: its approved input schema cannot be used to check arguments: %v", visible.Line(params.Name), err))
	}
	args, err := check.validate(params.Arguments)
	if err != nil {
		return s.refuse(req.ID, RefusedInvalidArgs, fmt.Sprintf("tool %q: arguments refused: %s", visible.Line(params.Name), visible.Line(err.Error())))
	}
	if resp := s.checkArguments(ctx, req.ID, check, params.Name, args); resp != nil {
		return resp
	}
	res, rpcErr, err := up.Forward(ctx, req.Method, req.Params)
	if err != nil {
		return errorResponse(req.ID, codeUpstream, "rugwatch proxy: "+err.Error())
	}
	if rpcErr != nil {
		return &jsonrpc.Response{ID: req.ID, Error: rpcErr}
	}
	scan := detect.ScanResult(res, detect.ResultScanOptions{Redact: s.opts.Results == ResultsRedact && !tool.ReturnsSecrets,
		Server: s.opts.Server, Others: s.others.index(ctx, s)})
	if s.opts.Classify != nil {
		if text := resultText(res); text != "" {
			scan.Findings = append(scan.Findings, s.opts.Classify(ctx, params.Name, text)...)
		}
	}
	// What a flagged result carried is remembered for the session, so a
	// later call cannot carry it on to an open-world tool: also for a tool
	// approved as returning secrets, whose secrets are no finding but
	// must still not leave.
	s.taint.add(scan.Secrets, scan.Sensitive)
	if tool.ReturnsSecrets {
		scan.Findings = withoutRule(scan.Findings, detect.RuleSecretInResult)
	}
	if findings := scan.Findings; len(findings) > 0 {
		blocked := s.opts.Results == ResultsBlock && detect.MaxSeverity(findings) == rugwatch.SeverityCritical
		// Warnings (a credential file's name in a directory listing, an
		// order to call another tool) are recorded once an hour per tool
		// and rules, criticals always: a tool that lists a project's .env
		// wrote an event, and sent an alert at the default min_severity,
		// on every call; the first says all the rest would.
		if s.noticed.First(s.opts.Server, params.Name, findings, time.Now()) {
			err := s.withBackend(ctx, func(ctx context.Context, b Backend) error {
				return b.FlagResult(ctx, s.opts.Server, params.Name, findings, blocked)
			})
			if err != nil {
				s.noticed.Forget(s.opts.Server, params.Name, findings)
				s.log.Error("recording a flagged result failed", "tool", visible.Line(params.Name), "error", err)
			}
		}
		if blocked {
			return s.refuse(req.ID, RefusedBlockedResult, fmt.Sprintf("tool %q returned text the poisoning rules flag (%s); the result was withheld",
				visible.Line(params.Name), detect.RuleSet(findings)))
		}
		if scan.Redacted != nil {
			res = scan.Redacted
		}
	}
	return &jsonrpc.Response{ID: req.ID, Result: res}
}

// toolNamer is a backend that knows every recorded server's tool names
// (the daemon and the store do).
type toolNamer interface {
	ToolNames(ctx context.Context) (map[string][]string, error)
}

// otherTools is the index of every server's tool names a session's
// results are read against (cross-server-call), read again after
// othersFor. A backend that cannot say leaves the rule without an index.
type otherTools struct {
	mu  sync.Mutex
	idx *detect.ToolIndex
	at  time.Time
}

// othersFor bounds how old the names a result is read against may be: a
// server added a minute ago is looked for within a minute.
const othersFor = time.Minute

func (o *otherTools) index(ctx context.Context, s *session) *detect.ToolIndex {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.at.IsZero() && time.Since(o.at) < othersFor {
		return o.idx
	}
	var names map[string][]string
	err := s.withBackend(ctx, func(ctx context.Context, b Backend) error {
		tn, ok := b.(toolNamer)
		if !ok {
			return nil
		}
		var err error
		names, err = tn.ToolNames(ctx)
		return err
	})
	if err != nil {
		s.log.Debug("reading other servers' tool names failed", "error", err)
		return o.idx // the last reading, if any, until one succeeds
	}
	idx := detect.NewToolIndex(nil)
	for server, tools := range names {
		idx.SetServer(server, tools)
	}
	o.idx, o.at = idx, time.Now()
	return idx
}

// withoutRule is fs without the findings of rule.
func withoutRule(fs []rugwatch.Finding, rule string) []rugwatch.Finding {
	out := fs[:0:0]
	for _, f := range fs {
		if f.Rule != rule {
			out = append(out, f)
		}
	}
	return out
}

// ResultsRedact masks secrets (secret-in-result) in a result and passes
// the rest on; other findings are recorded as with flag.
const ResultsRedact = "redact"

// schemaCheck validates arguments against one approved input schema.
type schemaCheck struct {
	resolved *jsonschema.Resolved
	// props are the declared top-level properties; an argument not among
	// them is refused even where the schema would allow it, since a
	// parameter no one approved is how exfiltration travels.
	props map[string]bool
	// traits are what the argument rules read of the definition.
	traits detect.ToolTraits
}

func (s *session) schemaFor(t monitor.AllowedTool) (*schemaCheck, error) {
	s.mu.Lock()
	c, ok := s.schemas[string(t.Digest)]
	s.mu.Unlock()
	if ok {
		return c, nil
	}
	var def struct {
		InputSchema json.RawMessage `json:"inputSchema"`
	}
	if err := json.Unmarshal(t.Definition, &def); err != nil {
		return nil, err
	}
	var sch jsonschema.Schema
	if len(def.InputSchema) > 0 {
		if err := json.Unmarshal(def.InputSchema, &sch); err != nil {
			return nil, err
		}
	}
	rs, err := sch.Resolve(nil)
	if err != nil {
		return nil, err
	}
	c = &schemaCheck{resolved: rs, props: map[string]bool{}, traits: detect.TraitsOf(t.Definition)}
	for name := range sch.Properties {
		c.props[name] = true
	}
	s.mu.Lock()
	if len(s.schemas) > 1024 {
		s.schemas = map[string]*schemaCheck{}
	}
	s.schemas[string(t.Digest)] = c
	s.mu.Unlock()
	return c, nil
}

func (c *schemaCheck) validate(raw json.RawMessage) (map[string]any, error) {
	var args any = map[string]any{}
	if len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, &args); err != nil {
			return nil, fmt.Errorf("not JSON: %w", err)
		}
	}
	obj, ok := args.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("arguments must be an object")
	}
	var unknown []string
	for k := range obj {
		if !c.props[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("unknown argument %q (the approved schema declares %s)", unknown[0], declared(c.props))
	}
	return obj, c.resolved.Validate(obj)
}

func declared(props map[string]bool) string {
	if len(props) == 0 {
		return "none"
	}
	names := make([]string, 0, len(props))
	for n := range props {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// maxClassified bounds the result text handed to an external classifier.
const maxClassified = 256 << 10

// resultText is the text content of a tool result, joined, for an
// external classifier; what the rules read in full goes through
// detect.ScanResult.
func resultText(raw json.RawMessage) string {
	var res struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
	}
	if json.Unmarshal(raw, &res) != nil {
		return ""
	}
	var b strings.Builder
	for _, c := range res.Content {
		if c.Text == "" {
			continue
		}
		if b.Len()+len(c.Text) > maxClassified {
			b.WriteString(c.Text[:max(maxClassified-b.Len(), 0)])
			break
		}
		b.WriteString(c.Text)
		b.WriteString("\n")
	}
	return b.String()
}
