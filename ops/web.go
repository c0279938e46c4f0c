package ops

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/visible"
)

// Reader is what the web view reads: the Ledger's read methods, which
// control.Backend has too (the daemon hands one per request).
type Reader interface {
	Status(ctx context.Context, servers []string) (report.Report, error)
	Diff(ctx context.Context, server, tool string) (report.DiffResult, error)
	History(ctx context.Context, server string, limit int) ([]rugwatch.Event, error)
}

// Web is the read-only web view: servers, a server's tools, a tool's
// diff, findings and history. Every string a server sent is made visible
// by the visible rules first and then escaped by html/template, so it
// renders as inert text: no markup, no script, no bidi reordering, no
// zero-width hiding. The page carries no script at all and one inline
// stylesheet, allowed by its hash in a Content-Security-Policy that allows
// nothing else.
type Web struct {
	get func() Reader
	log *slog.Logger
	csp string

	// ConfigPath, absolute, goes into every command a page shows
	// (`rugwatch --config PATH approve …`), so that it runs as copied
	// from any directory; empty leaves --config out.
	ConfigPath string
}

// historyLimit bounds the events read for one tool's page.
const historyLimit = 500

// eventsLimit is how many recent events the events page shows.
const eventsLimit = 200

// maxDiffWords bounds the word diff of one changed string (the diff is
// quadratic in memory: 2,000 words on each side is 16 MB).
const maxDiffWords = 2000

// NewWeb serves what get returns, a fresh Reader per request so a reload
// is seen at once.
func NewWeb(get func() Reader, log *slog.Logger) *Web {
	sum := sha256.Sum256([]byte(pageCSS))
	return &Web{get: get, log: log, csp: "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; " +
		"img-src 'none'; script-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"}
}

// Handler routes the view's pages.
func (wv *Web) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", wv.servers)
	mux.HandleFunc("GET /servers/{server}", wv.server)
	mux.HandleFunc("GET /servers/{server}/tools/{tool}", wv.tool)
	mux.HandleFunc("GET /events", wv.events)
	return mux
}

func (wv *Web) headers(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", wv.csp)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

func (wv *Web) render(w http.ResponseWriter, name string, data any) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		wv.log.Error("rendering web page", "page", name, "error", err)
		wv.fail(w, errors.New("rendering the page failed; see the daemon's log"))
		return
	}
	wv.headers(w)
	_, _ = w.Write(buf.Bytes())
}

func (wv *Web) fail(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	var u interface{ Usage() bool }
	if errors.As(err, &u) && u.Usage() {
		code = http.StatusNotFound
	}
	var buf bytes.Buffer
	_ = pages.ExecuteTemplate(&buf, "error", errorPage{Title: http.StatusText(code), Message: visible.Line(err.Error())})
	wv.headers(w)
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

type errorPage struct{ Title, Message string }

type serverRow struct {
	Name, Transport, Protocol, LastPolled string
	NotSandboxed                          string
	Reachable                             bool
	Counts                                []stateCount
	// Instructions is the instructions' state, with how far their
	// approval is towards the quorum where one is needed;
	// InstructionsState and InstructionsSignatures are the two apart.
	Instructions                              string
	InstructionsState, InstructionsSignatures string
	// Severity is the worst of the server's: its tools' and their
	// findings', its drifts', unreachable's (warning).
	Severity string
	rank     int
	// Drifts are the server-wide drifts (launch, identity, egress), each
	// of which withholds every tool of the server until approved.
	Drifts []driftView
	// ErrorSummary is the poll error's first part; ErrorDetail the rest
	// (the server's stderr, a line per line it wrote), folded.
	ErrorSummary, ErrorDetail string
	// ApproveLaunch approves the drifts (approve SERVER --launch).
	ApproveLaunch string
}

// driftView is one server-wide drift: what moved, and how it stands.
type driftView struct {
	What, State, Detail string
}

type stateCount struct {
	State string
	N     int
}

var states = []rugwatch.State{rugwatch.StateApproved, rugwatch.StatePending, rugwatch.StateDrifted, rugwatch.StateRevoked, rugwatch.StateRemoved}

func (wv *Web) servers(w http.ResponseWriter, r *http.Request) {
	rep, err := wv.get().Status(r.Context(), nil)
	if err != nil {
		wv.fail(w, err)
		return
	}
	rows := make([]serverRow, 0, len(rep.Servers))
	for _, s := range rep.Servers {
		rows = append(rows, wv.rowOf(s))
	}
	// What needs a person first: the worst severity, then by name.
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].rank != rows[j].rank {
			return rows[i].rank > rows[j].rank
		}
		return rows[i].Name < rows[j].Name
	})
	wv.render(w, "servers", struct{ Servers []serverRow }{rows})
}

func (wv *Web) rowOf(s report.ServerReport) serverRow {
	row := serverRow{Name: s.Name, Transport: s.Transport, Reachable: s.Reachable,
		Protocol: visible.Line(s.ProtocolVersion), Instructions: string(s.InstructionsState),
		InstructionsState: string(s.InstructionsState), InstructionsSignatures: s.InstructionsSignatures,
		NotSandboxed: visible.Line(s.NotSandboxed())}
	if s.InstructionsSignatures != "" {
		row.Instructions += " · signatures: " + s.InstructionsSignatures
	}
	row.ErrorSummary, row.ErrorDetail = foldError(s.Error)
	if s.LastPolledAt != nil {
		row.LastPolled = s.LastPolledAt.UTC().Format(time.RFC3339)
	}
	worst := rugwatch.SeverityInfo
	if !s.Reachable || s.Error != "" {
		worst = rugwatch.SeverityWarning
	}
	n := map[rugwatch.State]int{}
	for _, t := range s.Tools {
		n[t.State]++
		worst = worst.Max(toolSeverity(t))
	}
	for _, st := range states {
		row.Counts = append(row.Counts, stateCount{string(st), n[st]})
	}
	row.Drifts = driftsOf(s)
	for _, d := range row.Drifts {
		worst = worst.Max(d.severity())
	}
	if len(row.Drifts) > 0 {
		row.ApproveLaunch = wv.command("approve", s.Name, "--launch")
	}
	row.Severity, row.rank = string(worst), worst.Rank()
	return row
}

// toolSeverity is what a tool ranks by: its state's severity, and for a
// tool not approved the worst of its findings too (a pending tool with a
// critical finding is critical to review).
func toolSeverity(t report.ToolReport) rugwatch.Severity {
	sev := t.Severity
	if sev == "" {
		sev = rugwatch.SeverityInfo
	}
	if t.State != rugwatch.StateApproved {
		for _, f := range t.Findings {
			sev = sev.Max(f.Severity)
		}
	}
	return sev
}

// driftsOf lists the server-wide drifts of s, as `rugwatch status` shows
// them: launch (what runs changed), identity (who answers changed),
// egress (where it goes changed, or its pin no longer verifies).
// Under a quorum each says how far its approval is ("signatures: 1 of 2
// (needs role security)").
func driftsOf(s report.ServerReport) []driftView {
	var out []driftView
	sigs := func(tally string) string {
		if tally == "" {
			return ""
		}
		return "; signatures: " + tally
	}
	if s.LaunchDrifted {
		out = append(out, driftView{"launch", "DRIFTED", "what runs changed: no tool of this server is served until its launch is approved again" + sigs(s.LaunchSignatures)})
	}
	if s.IdentityDrifted {
		out = append(out, driftView{"identity", "DRIFTED", "who answers changed: no tool of this server is served until its identity is approved again" + sigs(s.LaunchSignatures)})
	}
	if e := s.Egress; e != nil {
		switch {
		case e.PinMissing:
			out = append(out, driftView{"egress", "INVALID", "the approved destinations are gone or no longer verify; used: " + lineList(e.Seen) + sigs(e.Signatures)})
		case len(e.Drifted) > 0:
			d := "new destinations: " + lineList(e.Drifted)
			if len(e.Refused) > 0 {
				d += "; refused until approved: " + lineList(e.Refused)
			}
			out = append(out, driftView{"egress", "DRIFTED", d + sigs(e.Signatures)})
		}
	}
	return out
}

// severity is a drift's, as its event's: egress.drifted and an approval
// that no longer verifies are critical, launch and identity warnings.
func (d driftView) severity() rugwatch.Severity {
	if d.What == "egress" {
		return rugwatch.SeverityCritical
	}
	return rugwatch.SeverityWarning
}

func lineList(items []string) string {
	if len(items) == 0 {
		return "none"
	}
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = visible.Line(it)
	}
	return strings.Join(out, ", ")
}

// foldError splits a stored poll error for a page: the summary stays in
// view, clipped; the server's stderr, or the rest of a long error, goes
// into a folded block, one line per line the server wrote. Both stay
// escaped (visible.Message): only the escaped line breaks of stderr
// become breaks again.
func foldError(e string) (summary, detail string) {
	if e == "" {
		return "", ""
	}
	e = visible.Message(e)
	head, stderr, found := strings.Cut(e, "; stderr: ")
	if found {
		detail = strings.ReplaceAll(stderr, `\n`, "\n")
	}
	const max = 240
	if r := []rune(head); len(r) > max {
		head = string(r[:max]) + "…"
		if !found {
			detail = strings.ReplaceAll(e, `\n`, "\n")
		}
	}
	return head, detail
}

type toolRow struct {
	Name, Href, State, Severity string
	// Signatures is how far the tool's approval is towards its server's
	// quorum; "" where one signature is all an approval needs.
	Signatures string
	Findings   int
	rank       int
}

func (wv *Web) server(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("server")
	rep, err := wv.get().Status(r.Context(), []string{name})
	if err != nil {
		wv.fail(w, err)
		return
	}
	s := rep.Servers[0]
	var tools []toolRow
	for _, t := range s.Tools {
		sev := toolSeverity(t)
		tools = append(tools, toolRow{Name: visible.Line(t.Name), Href: toolHref(s.Name, t.Name),
			State: string(t.State), Severity: string(sev), Signatures: t.Signatures, Findings: len(t.Findings), rank: sev.Rank()*10 + stateRank(t.State)})
	}
	// The worst first: severity, then what the state asks of a person.
	sort.SliceStable(tools, func(i, j int) bool {
		if tools[i].rank != tools[j].rank {
			return tools[i].rank > tools[j].rank
		}
		return tools[i].Name < tools[j].Name
	})
	wv.render(w, "server", struct {
		Server serverRow
		Tools  []toolRow
	}{wv.rowOf(s), tools})
}

// stateRank orders states of one severity: drifted before revoked,
// removed, pending, approved.
func stateRank(s rugwatch.State) int {
	switch s {
	case rugwatch.StateDrifted:
		return 4
	case rugwatch.StateRevoked:
		return 3
	case rugwatch.StateRemoved:
		return 2
	case rugwatch.StatePending:
		return 1
	}
	return 0
}

type eventRow struct {
	Seq                    uint64
	At, Type, Severity     string
	Server, ServerHref     string
	Tool, ToolHref         string
	Message, Changes, Keys string
}

// events is the recent-events page: the newest events of every server.
func (wv *Web) events(w http.ResponseWriter, r *http.Request) {
	events, err := wv.get().History(r.Context(), "", eventsLimit)
	if err != nil {
		wv.fail(w, err)
		return
	}
	rows := make([]eventRow, 0, len(events))
	for _, e := range events {
		ev := eventRow{Seq: e.Seq, At: e.OccurredAt.UTC().Format(time.RFC3339), Type: string(e.Type), Severity: string(e.Severity),
			Message: visible.Message(e.Message), Changes: visible.Line(report.ChangeSummary(e.Changes)), Keys: e.KeyID}
		if ev.Message == ev.Changes {
			ev.Message = ""
		}
		if e.Server != "" {
			ev.Server, ev.ServerHref = e.Server, "/servers/"+pathEscape(e.Server)
		}
		if e.Tool != "" && e.Server != "" {
			ev.Tool, ev.ToolHref = visible.Line(e.Tool), toolHref(e.Server, e.Tool)
		}
		rows = append(rows, ev)
	}
	wv.render(w, "events", struct {
		Events []eventRow
		Limit  int
	}{rows, eventsLimit})
}

// toolHref is the tool page's path, every byte of the tool name escaped
// as a path segment (html/template then escapes the attribute).
func toolHref(server, tool string) string {
	return "/servers/" + pathEscape(server) + "/tools/" + pathEscape(tool)
}

func pathEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

type toolPage struct {
	Server, Tool                   string
	ServerHref                     string
	State, Severity                string
	Signatures                     string // as toolRow's
	ApprovedDigest, ObservedDigest string
	Changes                        []changeView
	Definition                     string
	Findings                       []findingView
	History                        []eventView
	Approve                        string
	ApproveHidden                  bool
	NeverApproved                  bool
	// Drifts are the server's own (launch, identity, egress): while one
	// stands, no tool of the server is served, this one included.
	Drifts        []driftView
	ApproveLaunch string
}

type changeView struct {
	Path, Op string
	Old, New string // whole values, visible
	Words    []segment
}

type segment struct {
	Kind string // "same", "del", "ins"
	Text string
}

type findingView struct{ Severity, Rule, Path, Message string }

type eventView struct {
	Seq                    uint64
	At, Type, Severity     string
	Message, Changes, Keys string
}

func (wv *Web) tool(w http.ResponseWriter, r *http.Request) {
	server, tool := r.PathValue("server"), r.PathValue("tool")
	rd := wv.get()
	res, err := rd.Diff(r.Context(), server, tool)
	if err != nil {
		wv.fail(w, err)
		return
	}
	if len(res.Tools) != 1 {
		wv.fail(w, fmt.Errorf("diff of %s/%s returned %d tools", server, visible.Line(tool), len(res.Tools)))
		return
	}
	d := res.Tools[0]
	p := toolPage{
		Server: server, Tool: visible.Line(tool), ServerHref: "/servers/" + pathEscape(server),
		State: string(d.State), Severity: string(d.Severity), Signatures: d.Signatures,
		ApprovedDigest: string(d.ApprovedDigest), ObservedDigest: string(d.ObservedDigest),
		Definition:    definitionText(res.Definitions[tool]),
		NeverApproved: d.ApprovedDigest == "",
	}
	for _, c := range d.Changes {
		p.Changes = append(p.Changes, changeOf(c))
	}
	for _, f := range d.Findings {
		p.Findings = append(p.Findings, findingView{string(f.Severity), f.Rule, visible.Line(f.Path), visible.Message(f.Message)})
	}
	events, err := rd.History(r.Context(), server, historyLimit)
	if err != nil {
		wv.fail(w, err)
		return
	}
	for _, e := range events {
		if e.Tool != tool {
			continue
		}
		ev := eventView{Seq: e.Seq, At: e.OccurredAt.UTC().Format(time.RFC3339), Type: string(e.Type), Severity: string(e.Severity),
			Message: visible.Message(e.Message), Changes: visible.Line(report.ChangeSummary(e.Changes)), Keys: e.KeyID}
		if ev.Message == ev.Changes {
			ev.Message = ""
		}
		p.History = append(p.History, ev)
	}
	if d.State != rugwatch.StateApproved || d.ApprovedDigest != d.ObservedDigest {
		critical := false
		for _, f := range d.Findings {
			critical = critical || f.Severity == rugwatch.SeverityCritical
		}
		p.Approve, p.ApproveHidden = wv.approveCommand(server, tool, string(d.ObservedDigest), critical)
	}
	if rep, err := rd.Status(r.Context(), []string{server}); err == nil && len(rep.Servers) == 1 {
		row := wv.rowOf(rep.Servers[0])
		p.Drifts, p.ApproveLaunch = row.Drifts, row.ApproveLaunch
	}
	wv.render(w, "tool", p)
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9._/:=@+-]+$`)

// shellQuote is s as one shell word.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// command is a rugwatch command line to copy: with --config when the
// view knows the config's path, so that it runs from any directory.
func (wv *Web) command(args ...string) string {
	words := []string{"rugwatch"}
	if wv.ConfigPath != "" {
		words = append(words, "--config", shellQuote(wv.ConfigPath))
	}
	for _, a := range args {
		words = append(words, shellQuote(a))
	}
	return strings.Join(words, " ")
}

// approveCommand is the command that approves exactly the observed
// digest, with --accept-findings where the definition has a critical
// finding (approve refuses it otherwise; the page shows the findings
// above the command). hidden says the tool name holds characters the page
// shows escaped, so the command as shown is not the name's bytes: such a
// tool is approved from the terminal, after `rugwatch diff`.
func (wv *Web) approveCommand(server, tool, digest string, critical bool) (cmd string, hidden bool) {
	shown := visible.Line(tool)
	args := []string{"approve", server, shown, "--digest", digest}
	if critical {
		args = append(args, "--accept-findings")
	}
	return wv.command(args...), shown != tool
}

func changeOf(c rugwatch.Change) changeView {
	path := c.Path
	if path == "" {
		path = "/"
	}
	cv := changeView{Path: visible.Line(path), Op: c.Op, Old: valueText(c.Old), New: valueText(c.New)}
	var old, nw string
	if c.Op == "replace" && json.Unmarshal(c.Old, &old) == nil && json.Unmarshal(c.New, &nw) == nil {
		cv.Words = wordDiff(old, nw)
	}
	return cv
}

// valueText renders a JSON value for the page: a string as its visible
// text, anything else indented JSON with every string in it visible.
func valueText(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return visible.Text(s)
	}
	return definitionText(raw)
}

// definitionText renders a JSON value as an indented tree, keys sorted,
// every key and string made visible.
func definitionText(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil {
		return visible.Line(string(raw))
	}
	var b strings.Builder
	writeValue(&b, v, "")
	return b.String()
}

func writeValue(b *strings.Builder, v any, indent string) {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			b.WriteString("{}")
			return
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			if i > 0 || indent != "" {
				b.WriteString("\n" + indent)
			}
			b.WriteString(quoted(k) + ": ")
			writeValue(b, x[k], indent+"  ")
		}
	case []any:
		if len(x) == 0 {
			b.WriteString("[]")
			return
		}
		for _, e := range x {
			b.WriteString("\n" + indent + "- ")
			writeValue(b, e, indent+"  ")
		}
	case string:
		b.WriteString(quoted(x))
	case nil:
		b.WriteString("null")
	default:
		fmt.Fprint(b, x)
	}
}

// quoted is a server string on one line between quotes, its own quotes
// escaped, so where it ends is never in doubt.
func quoted(s string) string {
	return `"` + strings.ReplaceAll(visible.Line(s), `"`, `\"`) + `"`
}

// wordDiff is the word-level change from old to new, each piece made
// visible by Line; texts too long to diff come back as one deletion and
// one insertion. The diff itself is the visible package's, so the web view
// and the CLI show a change alike.
func wordDiff(old, new string) []segment {
	segs, ok := visible.WordSegments(old, new, maxDiffWords)
	if !ok {
		return []segment{{"del", visible.Line(old)}, {"ins", visible.Line(new)}}
	}
	out := make([]segment, len(segs))
	for i, sg := range segs {
		out[i] = segment{sg.Op, visible.Line(sg.Text)}
	}
	return out
}
