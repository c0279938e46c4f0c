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
}

// historyLimit bounds the events read for one tool's page.
const historyLimit = 500

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
	Name, Transport, Protocol, LastPolled, Error string
	NotSandboxed                                 string
	Reachable                                    bool
	Counts                                       []stateCount
	Instructions                                 string
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
		rows = append(rows, rowOf(s))
	}
	wv.render(w, "servers", struct{ Servers []serverRow }{rows})
}

func rowOf(s report.ServerReport) serverRow {
	row := serverRow{Name: s.Name, Transport: s.Transport, Reachable: s.Reachable, Error: visible.Message(s.Error),
		Protocol: visible.Line(s.ProtocolVersion), Instructions: string(s.InstructionsState),
		NotSandboxed: visible.Line(s.NotSandboxed())}
	if s.LastPolledAt != nil {
		row.LastPolled = s.LastPolledAt.UTC().Format(time.RFC3339)
	}
	n := map[rugwatch.State]int{}
	for _, t := range s.Tools {
		n[t.State]++
	}
	for _, st := range states {
		row.Counts = append(row.Counts, stateCount{string(st), n[st]})
	}
	return row
}

type toolRow struct {
	Name, Href, State, Severity string
	Findings                    int
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
		tools = append(tools, toolRow{Name: visible.Line(t.Name), Href: toolHref(s.Name, t.Name),
			State: string(t.State), Severity: string(t.Severity), Findings: len(t.Findings)})
	}
	wv.render(w, "server", struct {
		Server serverRow
		Tools  []toolRow
	}{rowOf(s), tools})
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
	ApprovedDigest, ObservedDigest string
	Changes                        []changeView
	Definition                     string
	Findings                       []findingView
	History                        []eventView
	Approve                        string
	ApproveHidden                  bool
	NeverApproved                  bool
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
		State: string(d.State), Severity: string(d.Severity),
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
		p.Approve, p.ApproveHidden = approveCommand(server, tool, string(d.ObservedDigest))
	}
	wv.render(w, "tool", p)
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9._/:=@+-]+$`)

// approveCommand is the command that approves exactly the observed
// digest. hidden says the tool name holds characters the page shows
// escaped, so the command as shown is not the name's bytes: such a tool
// is approved from the terminal, after `rugwatch diff`.
func approveCommand(server, tool, digest string) (cmd string, hidden bool) {
	q := func(s string) string {
		if shellSafe.MatchString(s) {
			return s
		}
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	shown := visible.Line(tool)
	return "rugwatch approve " + q(server) + " " + q(shown) + " --digest " + digest, shown != tool
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
