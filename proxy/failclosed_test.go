package proxy

//lint:file-ignore SA1019 MCP logging is deprecated only from 2026-07-28; the proxy speaks the handshake-era revisions to its client, where notifications/message is how a client hears why tools are withheld.

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	dto "github.com/prometheus/client_model/go"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/ops"
	"github.com/rugwatch/rugwatch/store"
)

// awaitTools lists until the client is served exactly want (names joined
// by commas), listing again on each list_changed: stale signals from
// earlier changes cannot make it read too early. The bound only ends a
// test that would otherwise hang.
func awaitTools(t *testing.T, cs *mcp.ClientSession, changed <-chan struct{}, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		got := strings.Join(toolNames(t, cs), ",")
		if got == want {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("served %q, want %q", got, want)
		}
	}
}

// callErr calls tool with args through cs and returns the refusal, or
// nil when the call went through.
func callErr(cs *mcp.ClientSession, tool string, args map[string]any) error {
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
	if err == nil && res.IsError {
		return &jsonErr{res}
	}
	return err
}

type jsonErr struct{ res *mcp.CallToolResult }

func (e *jsonErr) Error() string { b, _ := json.Marshal(e.res); return string(b) }

// drift marks the stored record of up as a poll that saw its launch or
// its remote identity change would.
func (r *rig) drift(which string) {
	r.t.Helper()
	err := r.db.Update(func(tx *store.Tx) error {
		rec, _, err := tx.Server("up")
		if err != nil {
			return err
		}
		switch which {
		case monitor.DriftLaunch:
			rec.LaunchPinned = json.RawMessage(`{"executable":"/usr/bin/mcp-server","sha256":"aa"}`)
			rec.Launch = json.RawMessage(`{"executable":"/usr/bin/mcp-server","sha256":"bb"}`)
			rec.LaunchDrifted = true
		case monitor.DriftIdentity:
			rec.IdentityDrifted = true
		}
		return tx.PutServer(rec)
	})
	if err != nil {
		r.t.Fatal(err)
	}
}

// TestProxyServesNothingWhilePinDrifted: a server whose launch or remote
// identity drifted serves none of its tools, approved ones included, and
// refuses their calls naming `rugwatch approve up --launch`; approving
// the launch brings them back. Before the drift the same tool is served
// and called, so the withholding is the drift's doing.
func TestProxyServesNothingWhilePinDrifted(t *testing.T) {
	for _, which := range []string{monitor.DriftLaunch, monitor.DriftIdentity} {
		t.Run(which, func(t *testing.T) {
			r := newRig(t)
			cs, changed := r.connect(r.options(ResultsFlag), nil)
			toolNames(t, cs)
			r.approve("echo")
			awaitTools(t, cs, changed, "echo")
			if err := callErr(cs, "echo", map[string]any{"text": "x"}); err != nil {
				t.Fatalf("approved call before the drift: %v", err)
			}

			r.drift(which)
			awaitTools(t, cs, changed, "")
			err := callErr(cs, "echo", map[string]any{"text": "x"})
			if err == nil {
				t.Fatal("the approved tool of a drifted server was called")
			}
			for _, want := range []string{"`rugwatch approve up --launch`", "`rugwatch status up`", which + ".drifted"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("refusal %q does not name %s", err, want)
				}
			}

			if _, err := r.ledger.Approve(context.Background(), "up", nil, true); err != nil {
				t.Fatalf("approve --launch: %v", err)
			}
			awaitTools(t, cs, changed, "echo")
			if err := callErr(cs, "echo", map[string]any{"text": "x"}); err != nil {
				t.Fatalf("approved call after approve --launch: %v", err)
			}
		})
	}
}

// swappable is an upstream URL behind which the server can be replaced:
// new sessions reach whichever server is current.
func swappable(t *testing.T, name string) (*upstream, func(name string)) {
	t.Helper()
	var cur atomic.Pointer[mcp.Server]
	build := func(name string) *mcp.Server {
		srv := mcp.NewServer(&mcp.Implementation{Name: name, Version: "1.0.0"}, nil)
		srv.AddTool(&mcp.Tool{Name: "echo", Description: "Echoes text.", InputSchema: json.RawMessage(`{"type":"object","properties":{"text":{"type":"string"}}}`)},
			func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				var args struct {
					Text string `json:"text"`
				}
				_ = json.Unmarshal(req.Params.Arguments, &args)
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name + ":" + args.Text}}}, nil
			})
		return srv
	}
	cur.Store(build(name))
	hs := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return cur.Load() }, nil))
	t.Cleanup(hs.Close)
	return &upstream{srv: cur.Load(), url: hs.URL}, func(name string) { cur.Store(build(name)) }
}

// TestProxyRecordsAnImpostorAndServesNothing: another server answers at
// the approved server's URL, offering the very tool definitions that were
// approved. The proxy's own listing of it records identity.drifted, and
// that listing already serves nothing: the tool's approval still matches
// its definition (shown below), so only the identity pin stands between
// the impostor and the model.
func TestProxyRecordsAnImpostorAndServesNothing(t *testing.T) {
	up, swap := swappable(t, "weather")
	r := newRigWith(t, up)
	ctx := context.Background()
	// No watchers: each session lists upstream only when its client does,
	// so which identity was recorded last (the one approve --launch pins)
	// is up to the test.
	opts := r.options(ResultsFlag)
	opts.Watch = nil
	first, changed := r.connect(opts, nil)
	toolNames(t, first)
	r.approve("echo")
	awaitTools(t, first, changed, "echo")

	swap("impostor")
	second, changed2 := r.connect(opts, nil)
	if got := toolNames(t, second); len(got) != 0 {
		t.Fatalf("the impostor's tools were served: %v", got)
	}
	if err := callErr(second, "echo", map[string]any{"text": "x"}); err == nil || !strings.Contains(err.Error(), "`rugwatch approve up --launch`") {
		t.Fatalf("call through the impostor: %v", err)
	}
	rec, err := r.ledger.Server(ctx, "up")
	if err != nil {
		t.Fatal(err)
	}
	if e := rec.Tools["echo"]; e.State != rugwatch.StateApproved || e.ObservedDigest != e.ApprovedDigest {
		t.Fatalf("the impostor's echo is not the approved definition (%+v); the test shows nothing", e)
	}
	if !rec.IdentityDrifted {
		t.Fatal("the proxy's listing of the impostor recorded no identity drift")
	}
	// The session that connected before the swap stops serving too.
	awaitTools(t, first, changed, "")

	// Say the server really moved: the operator checks it (a poll
	// records who answers now), reviews that and pins it.
	l, err := mcpclient.Poll(ctx, mcpclient.Target{Name: "up", Transport: mcpclient.TransportHTTP, URL: up.url}, mcpclient.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.ledger.Recorder.Record("up", mcpclient.TransportHTTP, l, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ledger.Approve(ctx, "up", nil, true); err != nil {
		t.Fatal(err)
	}
	awaitTools(t, second, changed2, "echo")
	if err := callErr(second, "echo", map[string]any{"text": "x"}); err != nil {
		t.Fatalf("call after approve --launch: %v", err)
	}
}

// logSink collects what the session's logger writes (stderr, for
// `rugwatch proxy`).
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logSink) lines(containing string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.buf.String(), "\n") {
		if strings.Contains(line, containing) {
			out = append(out, line)
		}
	}
	return out
}

// nextLog returns the next log message the client received.
func nextLog(t *testing.T, msgs <-chan *mcp.LoggingMessageParams) *mcp.LoggingMessageParams {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("the client was not told why tools are withheld")
		return nil
	}
}

func loggingClient(msgs chan<- *mcp.LoggingMessageParams) *mcp.ClientOptions {
	return &mcp.ClientOptions{LoggingMessageHandler: func(_ context.Context, req *mcp.LoggingMessageRequest) {
		msgs <- req.Params
	}}
}

// TestProxyTellsTheClientWhyToolsAreWithheld: a client served fewer tools
// than the server offers gets one warning naming the commands to run,
// without ever calling logging/setLevel, and one line on the session's
// log; a second identical listing tells nothing new, and a changed
// withheld set is told again. Messages arrive in order, so the second one
// received being about the changed set shows no repeat came between.
func TestProxyTellsTheClientWhyToolsAreWithheld(t *testing.T) {
	r := newRig(t)
	var sink logSink
	opts := r.options(ResultsFlag)
	opts.Log = slog.New(slog.NewTextHandler(&sink, nil))
	msgs := make(chan *mcp.LoggingMessageParams, 16)
	cs, changed := r.connect(opts, loggingClient(msgs))

	if got := toolNames(t, cs); len(got) != 0 {
		t.Fatalf("pending tools served: %v", got)
	}
	if got := toolNames(t, cs); len(got) != 0 {
		t.Fatalf("pending tools served: %v", got)
	}
	m := nextLog(t, msgs)
	text, _ := m.Data.(string)
	if m.Level != "warning" || m.Logger != "rugwatch" {
		t.Errorf("level %q logger %q", m.Level, m.Logger)
	}
	for _, want := range []string{"withheld 3 of the 3 tools up offers (3 pending)", "`rugwatch status up`", "`rugwatch approve up`"} {
		if !strings.Contains(text, want) {
			t.Errorf("message %q lacks %q", text, want)
		}
	}

	r.approve("echo")
	awaitTools(t, cs, changed, "echo")
	toolNames(t, cs)
	m = nextLog(t, msgs)
	if text, _ := m.Data.(string); !strings.Contains(text, "withheld 2 of the 3 tools up offers (2 pending)") {
		t.Fatalf("second message %q: a repeat of the first, or not about the changed set", text)
	}

	lines := sink.lines("tools withheld from the client")
	if len(lines) != 2 {
		t.Fatalf("%d log lines for 2 withheld sets:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for _, want := range []string{`review="rugwatch status up"`, `approve="rugwatch approve up"`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("log line %q lacks %s", lines[0], want)
		}
	}
}

// TestProxyWithheldNoticeHonoursTheClientLevel: a client that asked for
// errors only is not sent the warning; with the level lowered again it
// hears of the next change, and that is the first message it receives.
func TestProxyWithheldNoticeHonoursTheClientLevel(t *testing.T) {
	r := newRig(t)
	msgs := make(chan *mcp.LoggingMessageParams, 16)
	cs, changed := r.connect(r.options(ResultsFlag), loggingClient(msgs))
	ctx := context.Background()
	if err := cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "error"}); err != nil {
		t.Fatalf("logging/setLevel through the proxy: %v", err)
	}
	toolNames(t, cs)
	if err := cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "info"}); err != nil {
		t.Fatal(err)
	}
	r.approve("echo")
	awaitTools(t, cs, changed, "echo")
	m := nextLog(t, msgs)
	if text, _ := m.Data.(string); m.Logger != "rugwatch" || !strings.Contains(text, "withheld 2 of the 3") {
		t.Fatalf("first message %q from %q: the warning passed a level of error", text, m.Logger)
	}
}

// TestProxyWithheldNoticeNamesTheDrift: while the identity drifted the
// notice says so and names approve --launch.
func TestProxyWithheldNoticeNamesTheDrift(t *testing.T) {
	r := newRig(t)
	msgs := make(chan *mcp.LoggingMessageParams, 16)
	cs, changed := r.connect(r.options(ResultsFlag), loggingClient(msgs))
	toolNames(t, cs)
	nextLog(t, msgs) // 3 pending
	r.approve("add", "ask", "echo")
	awaitTools(t, cs, changed, "add,ask,echo")
	r.drift(monitor.DriftIdentity)
	awaitTools(t, cs, changed, "")
	m := nextLog(t, msgs)
	text, _ := m.Data.(string)
	for _, want := range []string{"withheld 3 of the 3", "identity.drifted", "`rugwatch status up`", "`rugwatch approve up --launch`"} {
		if !strings.Contains(text, want) {
			t.Errorf("message %q lacks %q", text, want)
		}
	}
}

// metricValue is the value of the series of name whose labels include
// want, from a real gather of m's registry.
func metricValue(t *testing.T, m *ops.Metrics, name string, want map[string]string) (float64, bool) {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, s := range f.Metric {
			got := map[string]string{}
			for _, l := range s.Label {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue next
				}
			}
			return seriesValue(s), true
		}
	}
	return 0, false
}

func seriesValue(s *dto.Metric) float64 {
	switch {
	case s.Counter != nil:
		return s.Counter.GetValue()
	case s.Gauge != nil:
		return s.Gauge.GetValue()
	}
	return 0
}

// TestProxyFeedsTheMetrics: with the daemon's registry observing, a
// session moves rugwatch_proxy_sessions up and down again, refused calls
// count by reason, and what the proxy's listing recorded counts in
// rugwatch_events_total as a poll's events do.
func TestProxyFeedsTheMetrics(t *testing.T) {
	r := newRig(t)
	m := ops.NewMetrics(ops.StoreSource{}, ops.BuildInfo{})
	opts := r.options(ResultsFlag)
	opts.Observe = m.Proxy()
	opts.Backend = func(context.Context) (Backend, func(), error) {
		return monitor.Observed{Ledger: r.ledger, OnEvent: m.Event}, func() {}, nil
	}

	ct, st := mcp.NewInMemoryTransports()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sconn, err := st.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, sconn, opts) }()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "metrics-client", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := metricValue(t, m, "rugwatch_proxy_sessions", map[string]string{"server": "up"}); v != 1 {
		t.Errorf("sessions with one client connected: %v", v)
	}

	toolNames(t, cs)
	if callErr(cs, "echo", map[string]any{"text": "x"}) == nil || callErr(cs, "shell", map[string]any{"cmd": "id"}) == nil {
		t.Fatal("a pending or unknown tool was called")
	}
	for reason, want := range map[string]float64{ops.RefusedNotApproved: 1, ops.RefusedUnknownTool: 1} {
		if v, _ := metricValue(t, m, "rugwatch_proxy_refused_calls_total", map[string]string{"server": "up", "reason": reason}); v != want {
			t.Errorf("refused %s: %v, want %v", reason, v, want)
		}
	}

	// Every event of up so far was recorded by the proxy's listings.
	events, err := r.ledger.History(ctx, "up", 0)
	if err != nil || len(events) == 0 {
		t.Fatalf("the proxy's listing recorded no events: %v", err)
	}
	counts := map[[2]string]float64{}
	for _, e := range events {
		counts[[2]string{string(e.Type), string(e.Severity)}]++
	}
	for k, want := range counts {
		if v, _ := metricValue(t, m, "rugwatch_events_total", map[string]string{"type": k[0], "severity": k[1]}); v != want {
			t.Errorf("rugwatch_events_total{type=%s,severity=%s} = %v, want %v", k[0], k[1], v, want)
		}
	}

	cs.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not end with its client")
	}
	if v, _ := metricValue(t, m, "rugwatch_proxy_sessions", map[string]string{"server": "up"}); v != 0 {
		t.Errorf("sessions after the client left: %v", v)
	}
}

// TestRefusalReasonsAreMetricLabels: every reason the proxy refuses with
// is one the metrics count under its own label, not as "other"; the two
// lists live in two packages and this holds them together.
func TestRefusalReasonsAreMetricLabels(t *testing.T) {
	reasons := []string{RefusedNotApproved, RefusedUnknownTool, RefusedInvalidArgs, RefusedBlockedResult,
		RefusedNoApprovals, RefusedIdentityDrifted, RefusedArgumentInjection, RefusedExfiltration}
	m := ops.NewMetrics(ops.StoreSource{}, ops.BuildInfo{})
	for _, r := range reasons {
		m.Proxy().Refused("s", r)
	}
	for _, r := range reasons {
		if v, _ := metricValue(t, m, "rugwatch_proxy_refused_calls_total", map[string]string{"reason": r}); v != 1 {
			t.Errorf("reason %s counted %v times under its own label", r, v)
		}
	}
	if v, ok := metricValue(t, m, "rugwatch_proxy_refused_calls_total", map[string]string{"reason": "other"}); ok {
		t.Errorf("%v refusals counted as other", v)
	}
}

// TestRelistRecordsANewUpstreamAtOnce: an upstream dialled again (as
// upstream() does after a crash) may be another server with the same
// definitions. The listing that shows it is recorded at once, though it
// lists what the last recording did within recordEvery; skipping it, the
// impostor was served the approved tools until recordEvery ran out.
func TestRelistRecordsANewUpstreamAtOnce(t *testing.T) {
	up, swap := swappable(t, "weather")
	r := newRigWith(t, up)
	ctx := context.Background()
	dial := func() *mcpclient.Session {
		t.Helper()
		sess, err := mcpclient.Dial(ctx, mcpclient.Target{Name: "up", Transport: mcpclient.TransportHTTP, URL: up.url}, mcpclient.DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sess.Close() })
		return sess
	}
	opts := r.options(ResultsFlag)
	s := &session{opts: opts, log: opts.Log, schemas: map[string]*schemaCheck{}}
	s.initialized.Store(true)
	s.up.Store(dial())
	s.relist(ctx)
	r.approve("echo")
	s.relist(ctx)
	if _, ok := s.passes("echo"); !ok {
		t.Fatal("the approved tool does not pass before the swap; the test shows nothing")
	}

	swap("impostor")
	s.up.Store(dial())
	s.relist(ctx)
	if _, ok := s.passes("echo"); ok {
		t.Fatal("the approved tool passes through a redialled upstream that is another server")
	}
	if rec, _ := r.ledger.Server(ctx, "up"); !rec.IdentityDrifted {
		t.Fatal("the redialled upstream's identity was not recorded")
	}
}

// TestProxyKeepsTheNewerApprovals: a re-read of the approvals that was in
// flight across an approval or a revocation (its snapshot from before it,
// its answer after a reading that shows it) does not replace the newer
// reading. Installed, the old reading undid the change for the session
// until its next read: CI saw "not approved as it is now (pending)" right
// after the tool was served, and after a revocation the revoked tool ran.
func TestProxyKeepsTheNewerApprovals(t *testing.T) {
	for _, change := range []string{"approve", "revoke"} {
		t.Run(change, func(t *testing.T) {
			r := newRig(t)
			cs, changed := r.connect(r.options(ResultsFlag), nil)
			toolNames(t, cs)
			want := "echo"
			if change == "revoke" {
				r.approve("echo")
				awaitTools(t, cs, changed, "echo")
				want = ""
			}
			inFlight, err := r.ledger.Allowed(context.Background(), "up")
			if err != nil {
				t.Fatal(err)
			}
			if change == "approve" {
				r.approve("echo")
			} else if _, err := r.ledger.Revoke(context.Background(), "up", []string{"echo"}, false, "test"); err != nil {
				t.Fatal(err)
			}
			awaitTools(t, cs, changed, want)

			// The next read answers with the old reading; the one after
			// it holds the session's re-reads (which run one at a time)
			// until the test ends, so the call below meets what the old
			// reading left.
			var reads atomic.Int32
			settled, release := make(chan struct{}), make(chan struct{})
			t.Cleanup(func() { close(release) })
			r.mu.Lock()
			r.readHook = func(ctx context.Context) (monitor.Allowed, bool) {
				switch reads.Add(1) {
				case 1:
					return inFlight, true
				case 2:
					close(settled)
					select {
					case <-release:
					case <-ctx.Done():
					}
				}
				return monitor.Allowed{}, false
			}
			r.mu.Unlock()
			select {
			case <-settled:
			case <-time.After(10 * time.Second):
				t.Fatal("the session did not read its approvals again")
			}
			err = callErr(cs, "echo", map[string]any{"text": "x"})
			switch {
			case change == "approve" && err != nil:
				t.Fatalf("approved call after an older reading finished: %v", err)
			case change == "revoke" && err == nil:
				t.Fatal("a revoked tool ran after an older reading finished")
			}
		})
	}
}

// TestOlderReadingWindow: a lower Seq is an old reading only near the
// newer one; well after it, the event log went back (a store restored
// from a backup) and the lower reading is the store's truth.
func TestOlderReadingWindow(t *testing.T) {
	at := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		seq   uint64
		after time.Duration
		older bool
	}{
		{4, -time.Millisecond, true},            // began before the newer reading
		{4, time.Second, true},                  // finished after it
		{4, reorderWindow + time.Second, false}, // the log went back
		{5, 0, false},                           // the same snapshot's seq
		{6, -time.Second, false},                // newer
	} {
		a := monitor.Allowed{Seq: c.seq, ReadAt: at.Add(c.after)}
		if got := older(a, 5, at); got != c.older {
			t.Errorf("seq %d read %v after seq 5: older %v, want %v", c.seq, c.after, got, c.older)
		}
	}
}
