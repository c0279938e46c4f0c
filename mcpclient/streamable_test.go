package mcpclient

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/rugwatch/rugwatch/testkit/testservers"
)

// handMessage is a request as a hand-written server reads it.
type handMessage struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

// handServer is a Streamable HTTP server of the stateless revision written
// by hand: it answers server/discover, accepts notifications, and hands
// every other call to call, which writes the whole answer. It plays what
// no SDK server would send.
func handServer(t *testing.T, call func(w http.ResponseWriter, r *http.Request, m handMessage)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		var m handMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		switch {
		case m.ID == nil:
			w.WriteHeader(http.StatusAccepted)
		case m.Method == "server/discover":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, testservers.Result(m.ID, `{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}}}`))
		default:
			call(w, r, m)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func handDial(t *testing.T, url string, opts DialOptions) *Session {
	t.Helper()
	s, err := Dial(pollCtx(t, 10*time.Second), Target{Name: "hand", Transport: TransportHTTP, URL: url}, opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// sse writes events as one event stream.
func sse(w http.ResponseWriter, events ...string) {
	w.Header().Set("Content-Type", "text/event-stream")
	for _, e := range events {
		fmt.Fprintf(w, "event: message\ndata: %s\n\n", e)
	}
	w.(http.Flusher).Flush()
}

const echoParams = `{"name":"echo","arguments":{"text":"hi"}}`

// A server of the stateless revision refuses a request with an error
// status and the JSON-RPC error in the body: that is the call's answer,
// passed on as the server wrote it, and the session goes on.
func TestStreamableErrorStatusIsTheAnswer(t *testing.T) {
	srv := handServer(t, func(w http.ResponseWriter, r *http.Request, m handMessage) {
		if strings.Contains(string(m.Params), "refuse") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32602,"message":"unknown tool: refuse"}}`, m.ID)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, testservers.Result(m.ID, `{"content":[]}`))
	})
	s := handDial(t, srv.URL, DialOptions{})
	ctx := pollCtx(t, 10*time.Second)
	_, rpcErr, err := s.Forward(ctx, "tools/call", json.RawMessage(`{"name":"refuse"}`))
	if err != nil || rpcErr == nil || rpcErr.Code != -32602 || rpcErr.Message != "unknown tool: refuse" {
		t.Fatalf("refused call: error answer %+v, err %v; want the server's -32602", rpcErr, err)
	}
	res, rpcErr, err := s.Forward(ctx, "tools/call", json.RawMessage(echoParams))
	if err != nil || rpcErr != nil || string(res) != `{"content":[]}` {
		t.Fatalf("the call after: %s %+v %v", res, rpcErr, err)
	}
}

// Every request of the stateless revision names itself in SEP-2575's
// headers, which such a server checks against the body; the name is read
// by its exact member name.
func TestStreamableStatelessHeaders(t *testing.T) {
	type seen struct{ version, method, name string }
	got := make(chan seen, 1)
	srv := handServer(t, func(w http.ResponseWriter, r *http.Request, m handMessage) {
		got <- seen{r.Header.Get("Mcp-Protocol-Version"), r.Header.Get("Mcp-Method"), r.Header.Get("Mcp-Name")}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, testservers.Result(m.ID, `{}`))
	})
	s := handDial(t, srv.URL, DialOptions{})
	if _, _, err := s.Forward(pollCtx(t, 10*time.Second), "tools/call", json.RawMessage(`{"NAME":"other","name":"echo"}`)); err != nil {
		t.Fatal(err)
	}
	if h := <-got; h != (seen{StatelessVersion, "tools/call", "echo"}) {
		t.Fatalf("headers %+v", h)
	}
}

// A session id goes into the header of every later request: one that is
// not a header's visible ASCII, or is huge, is refused as hostile.
func TestStreamableHostileSessionID(t *testing.T) {
	for name, sid := range map[string]string{"huge": strings.Repeat("s", 64<<10), "spaced": "a b"} {
		t.Run(name, func(t *testing.T) {
			srv := testservers.RPCServer(t, func(method string, id, _ json.RawMessage) string {
				if method == "initialize" {
					return testservers.Result(id, testservers.RawInit)
				}
				return testservers.Result(id, `{"tools":[]}`)
			})
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Mcp-Session-Id", sid)
				srv.Config.Handler.ServeHTTP(w, r)
			}))
			defer front.Close()
			_, err := Poll(pollCtx(t, 10*time.Second), Target{Name: "h", Transport: TransportHTTP, URL: front.URL}, DialOptions{})
			var he *HostileError
			if !errors.As(err, &he) || !strings.Contains(err.Error(), "session id") {
				t.Fatalf("poll: %v, want the session id refused as hostile", err)
			}
		})
	}
}

// An event bigger than max_response_bytes fails the session with a
// *LimitError naming the setting, not a call that merely "ended".
func TestStreamableEventTooLarge(t *testing.T) {
	srv := handServer(t, func(w http.ResponseWriter, r *http.Request, m handMessage) {
		sse(w, testservers.Result(m.ID, `{"content":[{"type":"text","text":"`+strings.Repeat("A", 2<<20)+`"}]}`))
	})
	s := handDial(t, srv.URL, DialOptions{Limits: Limits{MaxResponseBytes: 1 << 20}})
	_, _, err := s.Forward(pollCtx(t, 10*time.Second), "tools/call", json.RawMessage(echoParams))
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != "max_response_bytes" {
		t.Fatalf("err = %v (%T), want *LimitError max_response_bytes", err, err)
	}
}

// A stream that ends before it answers fails that call; the session goes
// on.
func TestStreamableStreamEndsWithoutAnswer(t *testing.T) {
	var calls atomic.Int32
	srv := handServer(t, func(w http.ResponseWriter, r *http.Request, m handMessage) {
		if calls.Add(1) == 1 {
			sse(w, `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}`)
			return
		}
		sse(w, testservers.Result(m.ID, `{"content":[]}`))
	})
	s := handDial(t, srv.URL, DialOptions{})
	ctx := pollCtx(t, 10*time.Second)
	_, rpcErr, err := s.Forward(ctx, "tools/call", json.RawMessage(echoParams))
	if err != nil || rpcErr == nil || !strings.Contains(rpcErr.Message, errTerminated.Error()) {
		t.Fatalf("unanswered call: %+v %v, want it answered with %q", rpcErr, err, errTerminated)
	}
	if res, rpcErr, err := s.Forward(ctx, "tools/call", json.RawMessage(echoParams)); err != nil || rpcErr != nil || string(res) != `{"content":[]}` {
		t.Fatalf("the call after: %s %+v %v", res, rpcErr, err)
	}
}

// A server that answers a call and then holds its stream open neither
// holds the call nor the connection for long: the request is let go
// drainWait after the answer.
func TestStreamableHeldStreamIsLetGo(t *testing.T) {
	released := make(chan struct{})
	srv := handServer(t, func(w http.ResponseWriter, r *http.Request, m handMessage) {
		sse(w, testservers.Result(m.ID, `{"content":[]}`))
		<-r.Context().Done()
		close(released)
	})
	s := handDial(t, srv.URL, DialOptions{})
	// The call's own context lasts: only the transport can let go.
	res, rpcErr, err := s.Forward(context.Background(), "tools/call", json.RawMessage(echoParams))
	if err != nil || rpcErr != nil || string(res) != `{"content":[]}` {
		t.Fatalf("call: %s %+v %v", res, rpcErr, err)
	}
	select {
	case <-released:
	case <-time.After(10 * drainWait):
		t.Fatal("the held stream was never let go")
	}
}

// A server that holds every answered stream open holds no more than
// maxDrains of them: past those an answered stream is let go at once,
// connection and all, rather than each call holding a connection for
// drainWait.
func TestStreamableHeldStreamsAreBounded(t *testing.T) {
	released := make(chan struct{}, 64)
	srv := handServer(t, func(w http.ResponseWriter, r *http.Request, m handMessage) {
		sse(w, testservers.Result(m.ID, `{"content":[]}`))
		<-r.Context().Done()
		released <- struct{}{}
	})
	s := handDial(t, srv.URL, DialOptions{})
	s.conn.(*streamableConn).drainWait = time.Hour // only the bound lets go
	const calls = maxDrains + 3
	for i := range calls {
		if res, rpcErr, err := s.Forward(context.Background(), "tools/call", json.RawMessage(echoParams)); err != nil || rpcErr != nil || string(res) != `{"content":[]}` {
			t.Fatalf("call %d: %s %+v %v", i, res, rpcErr, err)
		}
	}
	for i := range calls - maxDrains {
		select {
		case <-released:
		case <-time.After(30 * time.Second): // a guard: they go at once
			t.Fatalf("%d of the %d answered streams past the bound were let go; the server holds the rest", i, calls-maxDrains)
		}
	}
	select {
	case <-released:
		t.Fatal("a stream within the bound was let go before its drainWait")
	default:
	}
}

// A caller done with a call's answer may cancel its context at once, as
// the proxy does every call's: the rest of the call's event stream is
// still read, so the connection goes back to the pool rather than being
// cut (the proxy dialled its upstream anew on one call in five).
func TestStreamableAnsweredCallKeepsItsConnection(t *testing.T) {
	finish := make(chan struct{})
	srv := handServer(t, func(w http.ResponseWriter, r *http.Request, m handMessage) {
		sse(w, testservers.Result(m.ID, `{"content":[]}`))
		<-finish // the stream ends only once the caller has cancelled
	})
	s := handDial(t, srv.URL, DialOptions{})
	pooled := make(chan error, 1)
	ctx, cancel := context.WithCancel(httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		PutIdleConn: func(err error) { pooled <- err },
	}))
	res, rpcErr, err := s.Forward(ctx, "tools/call", json.RawMessage(echoParams))
	if err != nil || rpcErr != nil || string(res) != `{"content":[]}` {
		t.Fatalf("call: %s %+v %v", res, rpcErr, err)
	}
	cancel()
	close(finish)
	select {
	case err := <-pooled:
		if err != nil {
			t.Fatalf("the call's connection was not pooled: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call's connection was closed: cancelling the answered call cut its stream")
	}
}

// A server that forgets the session (404 for its id) ends it: the session
// is done with an error naming that, and no DELETE follows.
func TestStreamableSessionEndedByServer(t *testing.T) {
	var deletes atomic.Int32
	var ended atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			deletes.Add(1)
			return
		}
		var m handMessage
		_ = json.NewDecoder(r.Body).Decode(&m)
		w.Header().Set("Mcp-Session-Id", "s-1")
		switch {
		case ended.Load():
			w.WriteHeader(http.StatusNotFound)
		case m.ID == nil:
			w.WriteHeader(http.StatusAccepted)
		case m.Method == "initialize":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, testservers.Result(m.ID, testservers.RawInit))
		case m.Method == "server/discover":
			w.WriteHeader(http.StatusBadRequest)
		default:
			ended.Store(true)
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	s := handDial(t, srv.URL, DialOptions{})
	_, _, err := s.Forward(pollCtx(t, 10*time.Second), "tools/call", json.RawMessage(echoParams))
	if err == nil || !strings.Contains(err.Error(), "no longer knows session s-1") {
		t.Fatalf("call in a forgotten session: %v", err)
	}
	<-s.Done()
	if !strings.Contains(s.Err().Error(), "no longer knows session") {
		t.Fatalf("session ended with %v", s.Err())
	}
	s.Close()
	if n := deletes.Load(); n != 0 {
		t.Fatalf("%d DELETEs for a session the server ended", n)
	}
}

// A session the server still knows is ended with one DELETE.
func TestStreamableCloseDeletesTheSession(t *testing.T) {
	deleted := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			deleted <- r.Header.Get("Mcp-Session-Id")
			return
		}
		var m handMessage
		_ = json.NewDecoder(r.Body).Decode(&m)
		w.Header().Set("Mcp-Session-Id", "s-2")
		switch {
		case m.ID == nil:
			w.WriteHeader(http.StatusAccepted)
		case m.Method == "initialize":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, testservers.Result(m.ID, testservers.RawInit))
		default:
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	s := handDial(t, srv.URL, DialOptions{})
	s.Close()
	select {
	case id := <-deleted:
		if id != "s-2" {
			t.Fatalf("DELETE for session %q", id)
		}
	default:
		t.Fatal("Close returned without ending the session")
	}
}

func TestDecodeMessage(t *testing.T) {
	deep := strings.Repeat("[", maxMessageDepth) + strings.Repeat("]", maxMessageDepth)
	for _, c := range []struct{ body, want string }{
		{`{"jsonrpc":"2.0","id":1,"result":` + deep + `}`, "deeper than"},
		{`{"jsonrpc":"2.0","id":1,"result":"` + strings.Repeat(`[\"`, 2000) + `"}`, ""}, // brackets in a string are text
		{`{"jsonrpc":"2.0","id":1,"result":"\\","x":` + deep + `}`, "deeper than"},      // an escaped backslash ends no string
		{`{"jsonrpc":"1.0","id":1,"result":{}}`, `"jsonrpc": "2.0"`},
		{`{"jsonrpc":"2.0","id":1,"METHOD":"tools/call"}`, "must carry a result"},
		{`{"jsonrpc":"2.0","id":1.5,"result":{}}`, "string or an integer"},
		{`{"jsonrpc":"2.0","id":9007199254740993,"result":{}}`, "±2^53"},
		{`{"jsonrpc":"2.0","method":""}`, "non-empty string"},
		{`{"jsonrpc":"2.0","result":{}}`, "with an id"},
		{`[{"jsonrpc":"2.0","id":1,"result":{}}]`, "not a JSON-RPC message"},
	} {
		_, err := DecodeMessage([]byte(c.body))
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("DecodeMessage(%.60s…) = %v, want %q", c.body, err, c.want)
		}
	}
	m, err := DecodeMessage([]byte(`{"jsonrpc":"2.0","id":"a","method":"ping","params":{}}`))
	if r, ok := m.(*jsonrpc.Request); err != nil || !ok || r.Method != "ping" || r.ID.Raw() != "a" {
		t.Fatalf("request: %#v %v", m, err)
	}
}

// eventReader reads events as the SDK's reader does.
func TestEventReader(t *testing.T) {
	stream := ": a comment\nid: 1\nretry: 10\n\n" + // no data: skipped
		"event: other\ndata: {\"skipped\":1}\n\n" +
		"data: {\"a\":\ndata: 1}\r\n\r\n" + // data lines joined by a newline
		"data:{\"b\":2}" // the last event, with no blank line after it
	e := &eventReader{r: bufioReader(stream), max: 1 << 10}
	var got []string
	for {
		d, err := e.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(d))
	}
	if strings.Join(got, "|") != "{\"a\":\n1}|{\"b\":2}" {
		t.Fatalf("events %q", got)
	}
	if _, err := (&eventReader{r: bufioReader("nofield\n\n"), max: 1 << 10}).next(); !errors.Is(err, errMalformedEvent) {
		t.Fatalf("a line with no field: %v", err)
	}
	// An event's lines are bounded together, by the reader itself (the
	// body's own cap is max_response_bytes for the whole stream).
	var le *LimitError
	long := "data: 1\n" + strings.Repeat("data: 22\n", 20) + "\n"
	if _, err := (&eventReader{r: bufioReader(long), max: 100}).next(); !errors.As(err, &le) || le.Limit != "max_response_bytes" {
		t.Fatalf("an event of %d bytes past a 100-byte bound: %v", len(long), err)
	}
}

// bufioReader reads s through the smallest buffer bufio allows, so that
// lines longer than it take the long path.
func bufioReader(s string) *bufio.Reader { return bufio.NewReaderSize(strings.NewReader(s), 16) }

// Members reads names as a decoder does (escapes undone) and visits a
// repeated member each time, so the last one read is the one kept, as
// encoding/json keeps it in a map.
func TestMembers(t *testing.T) {
	var got []string
	err := Members([]byte(` { "a" : 1 , "b\u0022c":{"x":[1,"}"]}, "a":"2" } `), func(name, v []byte) error {
		got = append(got, string(name)+"="+string(v))
		return nil
	})
	if err != nil || strings.Join(got, " ") != `a=1 b"c={"x":[1,"}"]} a="2"` {
		t.Fatalf("members %q, %v", got, err)
	}
	for _, bad := range []string{`[]`, `{"a":1} x`, `{"a" 1}`, `{"a":1 "b":2}`, `{a:1}`, `{"a":"1`, `{"a":{`} {
		if err := Members([]byte(bad), func(_, _ []byte) error { return nil }); err == nil {
			t.Errorf("Members(%s) read it", bad)
		}
	}
	// The envelope: an escaped name is that name, the last of a repeated
	// member is the one read.
	m, err := DecodeMessage([]byte(`{"jsonrpc":"2.0","id":3,"met\u0068od":"ping","method":"tools/list"}`))
	if r, ok := m.(*jsonrpc.Request); err != nil || !ok || r.Method != "tools/list" {
		t.Fatalf("envelope: %#v %v", m, err)
	}
}

// rugwatch's requests carry integer ids: an answer under the same digits
// as a string answers none of them (it matched before, the pending calls
// being keyed by the id's text).
func TestStringIDAnswersNoRequest(t *testing.T) {
	srv := handServer(t, func(w http.ResponseWriter, r *http.Request, m handMessage) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":"%s","result":{}}`, m.ID)
	})
	s := handDial(t, srv.URL, DialOptions{})
	_, _, err := s.Forward(pollCtx(t, 10*time.Second), "tools/call", json.RawMessage(echoParams))
	if err == nil || !strings.Contains(err.Error(), "which no request had") {
		t.Fatalf("answer with a string id: %v", err)
	}
}
