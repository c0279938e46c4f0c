package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// hostileEnvelopes are JSON-RPC messages whose envelope two readers can
// read two ways, or that no client of this transport may send.
var hostileEnvelopes = []struct{ name, body, want string }{
	{"duplicate method", `{"jsonrpc":"2.0","id":7,"method":"ping","method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`, "hostile request"},
	{"case-duplicate method", `{"jsonrpc":"2.0","id":7,"method":"ping","METHOD":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`, "hostile request"},
	{"case-duplicate id", `{"jsonrpc":"2.0","id":7,"ID":8,"method":"ping"}`, "hostile request"},
	{"case-duplicate params", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"},"Params":{"name":"get-env"}}`, "hostile request"},
	// Inside params: what readClient's strictJSON would refuse, refused
	// here once for the whole message (readClient does not walk again).
	{"case-duplicate name in params", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"add","NAME":"echo","arguments":{"a":1,"b":2}}}`, "hostile request"},
	{"case-duplicate argument", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a","TEXT":"b"}}}`, "hostile request"},
	{"batch", `[{"jsonrpc":"2.0","id":7,"method":"ping"}]`, "batches are not supported"},
	{"no version", `{"id":7,"method":"ping"}`, "lacks"},
	{"id beyond 2^53", `{"jsonrpc":"2.0","id":9007199254740993,"method":"ping"}`, "within ±2^53"},
	{"fractional id", `{"jsonrpc":"2.0","id":7.5,"method":"ping"}`, "string or an integer"},
	{"object id", `{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}`, "string or an integer"},
	{"response without result", `{"jsonrpc":"2.0","id":7}`, "result or an error"},
}

// The transport reads each envelope one way or refuses it. The go-sdk's
// own decoder (what served proxy_listen before) takes the same bytes as a
// message, so the refusal is this transport's doing.
func TestClientEnvelopeParsedStrictly(t *testing.T) {
	for _, tc := range hostileEnvelopes {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeClientMessage([]byte(tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decodeClientMessage(%s) = %v, want an error with %q", tc.body, err, tc.want)
			}
		})
	}
	for _, body := range []string{hostileEnvelopes[0].body, hostileEnvelopes[1].body} {
		if _, err := jsonrpc.DecodeMessage([]byte(body)); err != nil {
			t.Errorf("the SDK's decoder refused %s too (%v): the test no longer shows what the strict parse adds", body, err)
		}
	}
	// "error": null is no error, as the SDK reads it: the answer stands.
	m, err := decodeClientMessage([]byte(`{"jsonrpc":"2.0","id":"rugwatch-1","result":{"roots":[]},"error":null}`))
	if resp, ok := m.(*jsonrpc.Response); err != nil || !ok || resp.Error != nil || string(resp.Result) != `{"roots":[]}` {
		t.Fatalf(`an answer with "error": null: %#v %v`, m, err)
	}
	m, err = decodeClientMessage([]byte(`{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"echo"}}`))
	if req, ok := m.(*jsonrpc.Request); err != nil || !ok || req.Method != "tools/call" || req.ID.Raw() != "a-1" {
		t.Fatalf("an honest request: %#v %v", m, err)
	}
}

// Over HTTP a hostile envelope is answered 400 with the request's id, the
// session goes on, and nothing reached the server.
func TestHTTPRefusesHostileEnvelopes(t *testing.T) {
	r := newRig(t)
	srv, _ := r.proxyHTTP("")
	url := srv.URL + "/mcp/up"
	session := rawSession(t, nil, url)
	for _, tc := range hostileEnvelopes {
		code, body, err := raw(nil, http.MethodPost, url, session, strings.NewReader(tc.body))
		if err != nil || code != http.StatusBadRequest || !strings.Contains(body, tc.want) || !strings.Contains(body, `"error"`) {
			t.Errorf("%s: %d %s %v, want 400 naming %q", tc.name, code, body, err, tc.want)
		}
	}
	ping(t, url, session)
}

// A server's progress on a call reaches the client on that call's own
// response, which turns into an event stream for it: a client with no
// GET stream still sees it. A call with nothing before its answer is
// answered as plain JSON.
func TestHTTPProgressRidesItsCall(t *testing.T) {
	up := newUpstream(t)
	up.srv.AddTool(&mcp.Tool{Name: "slow", Description: "Reports progress, then answers.", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			for i := range 3 {
				if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
					ProgressToken: req.Params.GetProgressToken(), Progress: float64(i + 1), Total: 3}); err != nil {
					return nil, err
				}
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil
		})
	r := newRigWith(t, up)
	srv, _ := r.proxyHTTP("")
	url := srv.URL + "/mcp/up"
	session := rawSession(t, nil, url)
	if code, body, err := raw(nil, http.MethodPost, url, session, strings.NewReader(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)); err != nil || code != http.StatusOK {
		t.Fatalf("list: %d %s %v", code, body, err)
	}
	r.approve("slow", "echo")
	// A listing reads the approvals again.
	if code, body, err := raw(nil, http.MethodPost, url, session, strings.NewReader(`{"jsonrpc":"2.0","id":5,"method":"tools/list"}`)); err != nil || !strings.Contains(body, `"slow"`) {
		t.Fatalf("list after approval: %d %s %v", code, body, err)
	}

	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"slow","arguments":{},"_meta":{"progressToken":"p-1"}}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", session)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("a call with progress is answered as %q (%s), want an event stream", ct, b)
	}
	var events []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, data)
		}
	}
	if len(events) != 4 {
		t.Fatalf("events on the call's stream: %q, want 3 progress and the result", events)
	}
	for i, e := range events[:3] {
		if !strings.Contains(e, `"notifications/progress"`) || !strings.Contains(e, `"progressToken":"p-1"`) {
			t.Errorf("event %d: %s, want progress for p-1", i, e)
		}
	}
	if !strings.Contains(events[3], `"id":3`) || !strings.Contains(events[3], `"done"`) {
		t.Errorf("last event: %s, want the call's result", events[3])
	}

	code, body, err := raw(nil, http.MethodPost, url, session, strings.NewReader(
		`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`))
	if err != nil || code != http.StatusOK || !strings.HasPrefix(body, `{"jsonrpc":"2.0","id":4,"result":`) {
		t.Fatalf("a plain call: %d %s %v, want the response alone as JSON", code, body, err)
	}
}

// A client that opens a new GET stream (it reconnected; the old one may be
// dead without the proxy knowing) gets it, and the old one ends.
func TestHTTPNewerGETStreamReplacesOlder(t *testing.T) {
	r := newRig(t)
	srv, _ := r.proxyHTTP("")
	url := srv.URL + "/mcp/up"
	session := rawSession(t, nil, url)
	open := func() *http.Response {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Mcp-Session-Id", session)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET stream: %v %v", resp, err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	older := open()
	_ = open()
	// The older stream's body ends: the read returns rather than block.
	if n, err := older.Body.Read(make([]byte, 1)); err == nil {
		t.Fatalf("the older stream carried %d bytes and stays open", n)
	}
	ping(t, url, session)
}

// encodeMessage writes what jsonrpc.EncodeMessage writes, for every kind
// of message and id.
func TestEncodeMessageAsTheSDK(t *testing.T) {
	sid, _ := jsonrpc.MakeID("a\"<b>")
	nid, _ := jsonrpc.MakeID(float64(42))
	for _, msg := range []jsonrpc.Message{
		&jsonrpc.Response{ID: nid, Result: json.RawMessage(`{"content":[{"type":"text","text":"<b>&</b>"}]}`)},
		&jsonrpc.Response{ID: sid, Result: json.RawMessage(`{}`)},
		&jsonrpc.Response{ID: nid, Error: &jsonrpc.Error{Code: -32001, Message: "no"}},
		&jsonrpc.Request{Method: "notifications/progress", Params: json.RawMessage(`{"progressToken":"p","progress":1}`)},
		&jsonrpc.Request{ID: sid, Method: "sampling/createMessage", Params: json.RawMessage(`{}`)},
	} {
		got, err := encodeMessage(msg)
		want, werr := jsonrpc.EncodeMessage(msg)
		if err != nil || werr != nil || string(got) != string(want) {
			t.Errorf("encodeMessage = %s %v, want %s %v", got, err, want, werr)
		}
	}
}

// sseEvents splits an event stream as the SSE spec reads it: lines end at
// CRLF, LF or CR, a blank line ends an event, data lines join with LF.
func sseEvents(b []byte) []string {
	s := strings.ReplaceAll(strings.ReplaceAll(string(b), "\r\n", "\n"), "\r", "\n")
	var out, data []string
	has := false
	for _, line := range strings.Split(s, "\n") {
		if line == "" {
			if has {
				out = append(out, strings.Join(data, "\n"))
			}
			data, has = nil, false
			continue
		}
		if v, ok := strings.CutPrefix(line, "data:"); ok {
			data, has = append(data, strings.TrimPrefix(v, " ")), true
		}
	}
	return out
}

// A result the server sent over several lines (pretty-printed) is one
// event's data on the client's stream, not a broken event: written as held
// it would end the go-sdk client's session.
func TestHTTPMultilineResultStaysOneEvent(t *testing.T) {
	up, err := jsonrpc.DecodeMessage([]byte("{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\n  \"content\": [],\r\n\n  \"isError\": false\n}}"))
	if err != nil {
		t.Fatal(err)
	}
	held := up.(*jsonrpc.Response).Result
	c := newHTTPConn("s1")
	defer c.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if msg, ok := readPOST(w, r, body); ok {
			c.post(w, r, msg, body)
		}
	}))
	defer srv.Close()
	go func() {
		m, err := c.Read(context.Background())
		if err != nil {
			return
		}
		ctx := context.Background()
		_ = c.Write(ctx, &jsonrpc.Request{Method: "notifications/progress", Params: json.RawMessage(`{"progressToken":"p","progress":1}`)})
		_ = c.Write(ctx, &jsonrpc.Response{ID: m.(*jsonrpc.Request).ID, Result: held})
	}()
	resp, err := http.Post(srv.URL, "application/json", strings.NewReader(
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":"p"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	events := sseEvents(b)
	if len(events) != 2 {
		t.Fatalf("events %q, want the progress and the result", events)
	}
	for i, ev := range events {
		if _, err := jsonrpc.DecodeMessage([]byte(ev)); err != nil {
			t.Errorf("event %d does not decode (%v): %q", i, err, ev)
		}
	}
}

// A first message that fails, or is not an initialize call, opens no
// session: one would hold an upstream nobody has the id of, counted
// against the caps until it idled out.
func TestHTTPNoSessionForAFailedFirstMessage(t *testing.T) {
	r := newRig(t)
	srv, h := r.proxyHTTP("")
	url := srv.URL + "/mcp/up"
	for _, body := range []string{
		`{"jsonrpc":"2.0","method":"initialize","params":{}}`,
		`{"jsonrpc":"2.0","id":1,"Method":"initialize","result":{}}`,
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"a":1,"A":2}}`,
	} {
		code, resp, err := raw(nil, http.MethodPost, url, "", strings.NewReader(body))
		if err != nil || code == http.StatusOK && !strings.Contains(resp, `"error"`) {
			t.Errorf("%s: %d %s %v, want a refusal", body, code, resp, err)
		}
		if n := h.Sessions(); n != 0 {
			t.Fatalf("%s left %d sessions that no client has the id of", body, n)
		}
	}
}

// stuckWriter is a client that stopped reading: the first write blocks.
type stuckWriter struct {
	h          http.Header
	registered chan struct{} // the GET stream is the session's
	entered    chan struct{} // a write is stuck
	block      chan struct{}
	once       sync.Once
}

func (s *stuckWriter) Header() http.Header { return s.h }
func (s *stuckWriter) WriteHeader(int)     { close(s.registered) }
func (s *stuckWriter) Flush()              {}
func (s *stuckWriter) Write([]byte) (int, error) {
	s.once.Do(func() { close(s.entered) })
	<-s.block
	return 0, io.ErrClosedPipe
}

// What was queued for a GET stream that a newer one replaced goes out on
// the newer one.
func TestHTTPNewerGETTakesUpTheQueue(t *testing.T) {
	c := newHTTPConn("s1")
	defer c.Close()
	sw := &stuckWriter{h: http.Header{}, registered: make(chan struct{}), entered: make(chan struct{}), block: make(chan struct{})}
	defer close(sw.block)
	ctx1, cancel1 := context.WithCancel(context.Background())
	defer cancel1()
	go c.get(sw, httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx1))
	<-sw.registered
	note := func(n int) jsonrpc.Message {
		return &jsonrpc.Request{Method: "notifications/message", Params: json.RawMessage(fmt.Sprintf(`{"level":"info","data":%d}`, n))}
	}
	ctx := context.Background()
	if err := c.Write(ctx, note(1)); err != nil {
		t.Fatal(err)
	}
	<-sw.entered // the older stream holds 1, stuck
	if err := c.Write(ctx, note(2)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(c.get))
	defer srv.Close()
	resp, err := http.Get(srv.URL) // returns once the newer stream is the session's
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := c.Write(ctx, note(3)); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	var got []string
	for len(got) < 2 && sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			got = append(got, d)
		}
	}
	if len(got) != 2 || !strings.Contains(got[0], `"data":2`) || !strings.Contains(got[1], `"data":3`) {
		t.Fatalf("the newer stream carried %q, want notification 2, then 3", got)
	}
}

// A call the client cancels gets no answer, its POST ends rather than wait
// for the session's end (the TypeScript SDK does not abort it), and the
// server is told, so the tool's work stops (a go-sdk server starts its
// answer only when it has one, so the proxy's request was still being
// written when it was cancelled). Both kinds of client session answer such
// a call on its POST's goroutine (inlineCalls).
func TestHTTPCancelledCallEndsItsPOST(t *testing.T) {
	for _, path := range []string{"/mcp/up", "/mcp"} { // one server's session, and the gateway's
		t.Run(path, func(t *testing.T) { cancelledCallEndsItsPOST(t, path) })
	}
}

func cancelledCallEndsItsPOST(t *testing.T, path string) {
	up := newUpstream(t)
	entered, release, upCancelled := make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	up.srv.AddTool(&mcp.Tool{Name: "block", Description: "Waits.", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(ctx context.Context, _ *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			entered <- struct{}{}
			select {
			case <-ctx.Done():
				close(upCancelled)
			case <-release: // the test's end, before the upstream closes
			}
			return nil, errors.New("released")
		})
	r := newRigWith(t, up)
	srv, h := r.proxyHTTP("")
	h.Gateway = func() (GatewayOptions, bool) { return GatewayOptions{Servers: []Options{r.options(ResultsFlag)}}, true }
	t.Cleanup(func() { close(release) }) // first: the upstream's DELETE waits on the tool
	url := srv.URL + path
	session := rawSession(t, nil, url)
	raw(nil, http.MethodPost, url, session, strings.NewReader(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`))
	r.approve("block")
	if _, body, _ := raw(nil, http.MethodPost, url, session, strings.NewReader(`{"jsonrpc":"2.0","id":3,"method":"tools/list"}`)); !strings.Contains(body, `"block"`) {
		t.Fatalf("block not listed after approval: %s", body)
	}
	type result struct {
		code int
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// The timeout only keeps a failing test from hanging the rig's
		// cleanup; the POST should end as soon as the cancel is read.
		code, body, err := raw(&http.Client{Timeout: time.Minute}, http.MethodPost, url, session,
			strings.NewReader(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"block","arguments":{}}}`))
		done <- result{code, body, err}
	}()
	<-entered
	if code, body, err := raw(nil, http.MethodPost, url, session, strings.NewReader(
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}`)); err != nil || code != http.StatusAccepted {
		t.Fatalf("cancel: %d %s %v", code, body, err)
	}
	res := <-done
	if res.err != nil || res.code != http.StatusOK || strings.Contains(res.body, "data:") {
		t.Fatalf("the cancelled call's POST: %d %q %v, want an event stream with no answer", res.code, res.body, res.err)
	}
	ping(t, url, session)
	// And the server heard of it: the tool's work stops.
	select {
	case <-upCancelled:
	case <-time.After(time.Minute): // a guard, not a measure: it comes at once
		t.Fatal("the server's tool was never told of the cancellation")
	}
}

// requestID, which answers a refused body (perhaps cut off at the cap),
// echoes the id as the transport would read it, or null.
func TestRequestIDOfARefusedBody(t *testing.T) {
	for body, want := range map[string]string{
		`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"x":"cut off`: `7`,
		`{"jsonrpc":"2.0","id":"a<b>","method":"ping"}`:                        `"a\u003cb\u003e"`,
		`{"id":7.5,"method":"ping"}`:                                           `null`,
		`{"id":9007199254740993,"method":"ping"}`:                              `null`,
		`{"id":{"a":1}}`:    `null`,
		`{"method":"ping"}`: `null`,
		`[{"id":1}]`:        `null`,
	} {
		if got := string(requestID([]byte(body))); got != want {
			t.Errorf("requestID(%s) = %s, want %s", body, got, want)
		}
	}
}
