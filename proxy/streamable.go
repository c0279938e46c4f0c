package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/rugwatch/rugwatch/mcpclient"
)

// httpConn is a proxied session's client leg on proxy_listen: the
// server side of Streamable HTTP in the handshake-era revisions
// (2025-03-26 to 2025-11-25), as the mcp.Connection Serve and
// ServeGateway read from and write to.
//
// It is rugwatch's own rather than the go-sdk's StreamableServerTransport
// for two reasons. The proxy parses what a client sends once, strictly
// (a duplicate or case-duplicate member anywhere in the message is
// refused, the envelope included), with nothing else reading the bytes
// another way. And it is on the path of every call: the SDK's transport
// decodes each message twice more with a decoder that allocates 32 KiB
// per message, which a client of the proxy pays in garbage collection on
// every call.
//
// A POST carrying a request is answered with the response alone
// (application/json) unless something related comes first — the
// server's progress on that request — in which case the answer becomes an
// event stream carrying those messages and then the response; a request
// the client cancels ends its stream with no answer (the TypeScript SDK
// would otherwise hold the POST open for the session's life). A POST of a
// notification or a response is answered 202. The GET stream carries what
// relates to no request in flight (list_changed, logging, the server's
// own requests) from a queue of the session's: a newer GET replaces an
// older one, so a client that reconnects is never locked out by a stream
// the network dropped unnoticed, and what was queued for the older one
// goes out on the newer. Without a GET stream such messages are refused
// with the code the SDK's transport uses, which writeClientRequest
// retries. Every write to a client has a deadline, so one that stops
// reading frees its handler.
//
// Batches (2025-03-26 only, removed after) are refused; no SDK sends them.
type httpConn struct {
	id       string
	incoming chan jsonrpc.Message
	done     chan struct{}
	close    sync.Once

	mu sync.Mutex
	// calls are the requests in flight, each with the stream its POST is
	// waiting on; progress maps a request's progressToken to the same.
	calls    map[jsonrpc.ID]*httpStream
	progress map[string]*httpStream
	listen   *httpStream // the open GET stream, if any
	// listenOut is the GET stream's queue: the session's, not one
	// stream's, so a newer GET takes up what an older one left.
	listenOut chan frame

	// inline answers a call on its POST's goroutine, once the session has
	// set it (answerInline).
	inline atomic.Pointer[func(*jsonrpc.Request) (*jsonrpc.Response, bool)]
}

// httpStream is where the messages for one waiting HTTP response go.
type httpStream struct {
	out chan frame
	// gone is closed when the HTTP response has ended: nothing more can
	// be delivered to it.
	gone chan struct{}
	// stop is closed to end a GET stream a newer one replaced, or a
	// POST whose request the client cancelled.
	stop chan struct{}
}

// frame is one encoded message for a stream; last ends a POST's stream.
type frame struct {
	data []byte
	last bool
}

func newHTTPConn(id string) *httpConn {
	return &httpConn{
		id: id, incoming: make(chan jsonrpc.Message), done: make(chan struct{}),
		calls: map[jsonrpc.ID]*httpStream{}, progress: map[string]*httpStream{},
		listenOut: make(chan frame, 64),
	}
}

func newStream(size int) *httpStream {
	return &httpStream{out: make(chan frame, size), gone: make(chan struct{}), stop: make(chan struct{})}
}

// errSessionClosed is returned once the session has ended.
var errSessionClosed = errors.New("the client session has ended")

// rejected is the error for a message there is no stream to carry: the
// go-sdk transport's code, which callers treat as "not now" (see
// writeClientRequest) rather than a broken session.
func rejected(why string) error {
	return &jsonrpc.Error{Code: codeRejected, Message: "rejected by transport: " + why}
}

// Read returns the client's next message.
func (c *httpConn) Read(ctx context.Context) (jsonrpc.Message, error) {
	select {
	case m := <-c.incoming:
		return m, nil
	case <-c.done:
		return nil, errSessionClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Write sends a message to the client: a response on the stream of its
// request, server progress on the stream of the request it reports on,
// anything else on the GET stream.
func (c *httpConn) Write(ctx context.Context, msg jsonrpc.Message) error {
	data, err := encodeMessage(msg)
	if err != nil {
		return fmt.Errorf("encoding a message for the client: %w", err)
	}
	var st *httpStream
	last, listening := false, false
	c.mu.Lock()
	switch m := msg.(type) {
	case *jsonrpc.Response:
		st, last = c.calls[m.ID], true
		c.forgetLocked(m.ID, st)
	case *jsonrpc.Request:
		if m.Method == "notifications/progress" && !m.IsCall() {
			st = c.progress[progressToken(m.Params, false)]
		}
		listening = st == nil && c.listen != nil
	}
	c.mu.Unlock()
	select {
	case <-c.done:
		return errSessionClosed
	default:
	}
	out, gone := c.listenOut, (<-chan struct{})(nil)
	switch {
	case st != nil:
		out, gone = st.out, st.gone
	case last:
		return rejected("the request's HTTP response has ended")
	case !listening:
		return rejected("no stream open to carry it (the client has no GET stream)")
	}
	select {
	case out <- frame{data: data, last: last}:
		return nil
	case <-gone:
		return rejected("the stream ended")
	case <-c.done:
		return errSessionClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// encodeMessage is jsonrpc.EncodeMessage, but writes a result as it is
// held rather than compacting it again (a 64 KiB page result costs a
// second full scan there). Every result the proxy holds is valid JSON: a
// server's was parsed whole by the upstream transport, the proxy's own
// were marshalled.
//
// A result a server sent spread over lines (pretty-printed JSON, or SSE
// data lines the transport joined) is compacted as the SDK would: an
// event's data must be one line, and in valid JSON every CR or LF is
// whitespace between tokens.
func encodeMessage(msg jsonrpc.Message) ([]byte, error) {
	resp, ok := msg.(*jsonrpc.Response)
	if !ok || resp.Error != nil || len(resp.Result) == 0 || !resp.ID.IsValid() || bytes.ContainsAny(resp.Result, "\r\n") {
		return jsonrpc.EncodeMessage(msg)
	}
	var id []byte
	switch v := resp.ID.Raw().(type) {
	case int64:
		id = strconv.AppendInt(nil, v, 10)
	default:
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // as the SDK writes it
		if err := enc.Encode(v); err != nil {
			return nil, err
		}
		id = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	}
	b := make([]byte, 0, len(`{"jsonrpc":"2.0","id":,"result":}`)+len(id)+len(resp.Result))
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	b = append(b, id...)
	b = append(b, `,"result":`...)
	b = append(b, resp.Result...)
	return append(b, '}'), nil
}

// forgetLocked ends the tracking of request id, answered or abandoned, if
// st is still its stream. c.mu must be held.
func (c *httpConn) forgetLocked(id jsonrpc.ID, st *httpStream) {
	if st == nil || c.calls[id] != st {
		return
	}
	delete(c.calls, id)
	for tok, s := range c.progress {
		if s == st {
			delete(c.progress, tok)
		}
	}
}

// Close ends the session: waiting responses and the GET stream end.
func (c *httpConn) Close() error {
	c.close.Do(func() { close(c.done) })
	return nil
}

// answerInline: see inlineCalls.
func (c *httpConn) answerInline(answer func(*jsonrpc.Request) (*jsonrpc.Response, bool)) {
	c.inline.Store(&answer)
}

// membersChecked: decodeClientMessage has checked every message whole.
func (c *httpConn) membersChecked() {}

// SessionID is the Mcp-Session-Id of the session.
func (c *httpConn) SessionID() string { return c.id }

// readPOST reads the message of a POST whose body has been read whole,
// or answers the POST with why not (false).
func readPOST(w http.ResponseWriter, r *http.Request, body []byte) (jsonrpc.Message, bool) {
	if len(r.Header.Values("Last-Event-ID")) > 0 {
		writeRPCError(w, http.StatusBadRequest, requestID(body), "rugwatch proxy: Last-Event-ID is not for a POST")
		return nil, false
	}
	msg, err := decodeClientMessage(body)
	if err != nil {
		writeRPCError(w, http.StatusBadRequest, requestID(body), "rugwatch proxy: "+err.Error())
		return nil, false
	}
	return msg, true
}

// post serves a POST of msg (read by readPOST from body).
func (c *httpConn) post(w http.ResponseWriter, r *http.Request, msg jsonrpc.Message, body []byte) {
	// Once delivered, msg is its reader's (readClient re-encodes its
	// params in place): what is needed of it here is read before.
	req, ok := msg.(*jsonrpc.Request)
	if !ok || !req.IsCall() {
		var cancelled json.RawMessage
		if ok && req.Method == "notifications/cancelled" {
			cancelled = req.Params
		}
		if !c.deliver(r.Context(), msg) {
			http.Error(w, "rugwatch proxy: the session has ended", http.StatusNotFound)
			return
		}
		if cancelled != nil {
			c.cancelled(cancelled)
		}
		w.WriteHeader(http.StatusAccepted)
		return
	}
	id, initialize := req.ID, req.Method == "initialize"
	tok := progressToken(req.Params, true)
	st := newStream(16)
	c.mu.Lock()
	if _, dup := c.calls[id]; dup {
		c.mu.Unlock()
		writeRPCError(w, http.StatusBadRequest, requestID(body), "rugwatch proxy: a request with this id is already in flight")
		return
	}
	// Tracked on either path: a duplicate id is refused, and a
	// cancellation finds it.
	c.calls[id] = st
	if tok != "" {
		c.progress[tok] = st
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.forgetLocked(id, st)
		c.mu.Unlock()
		close(st.gone)
	}()
	h := w.Header()
	h.Set("Cache-Control", "no-cache, no-transform")
	rc := http.NewResponseController(w)
	// A call that asks for no progress has nothing but its answer to come
	// on this stream (Write puts only progress and the answer on a POST's),
	// so it is answered here. initialize stays on the read loop, in order
	// with what follows it.
	if answer := c.inline.Load(); answer != nil && tok == "" && !initialize {
		c.answerHere(w, rc, req, requestID(body), *answer)
		return
	}
	if !c.deliver(r.Context(), req) {
		http.Error(w, "rugwatch proxy: the session has ended", http.StatusNotFound)
		return
	}
	if initialize {
		h.Set("Mcp-Session-Id", c.id)
	}
	events := false
	startEvents := func() {
		if !events {
			events = true
			h.Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
		}
	}
	for {
		var f frame
		select {
		case f = <-st.out:
		case <-st.stop:
			// Cancelled by the client: no answer is due. An event stream
			// with none ends it (an empty JSON body would be taken by the
			// go-sdk client for a broken session).
			startEvents()
			_ = rc.Flush()
			return
		case <-r.Context().Done():
			return // the client left; the answer, when it comes, is refused
		case <-c.done:
			select {
			case f = <-st.out: // an answer that came as the session ended
			default:
				if !events {
					http.Error(w, "rugwatch proxy: the session has ended", http.StatusNotFound)
				}
				return
			}
		}
		if f.last && !events {
			writeAnswer(w, rc, f.data)
			return
		}
		startEvents()
		if writeEvent(w, rc, f.data) != nil || f.last {
			return
		}
	}
}

// answerHere serves a POST of call (rawID its id as it came) with the
// session's answer, handled on this goroutine (inlineCalls): the answer
// alone as JSON, or, for a call the client cancelled, an event stream
// with none (as post ends one).
func (c *httpConn) answerHere(w http.ResponseWriter, rc *http.ResponseController, call *jsonrpc.Request, rawID json.RawMessage,
	answer func(*jsonrpc.Request) (*jsonrpc.Response, bool)) {
	resp, ok := answer(call)
	if !ok {
		http.Error(w, "rugwatch proxy: the session has ended", http.StatusNotFound)
		return
	}
	if resp == nil {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_ = rc.Flush()
		return
	}
	data, err := encodeMessage(resp)
	if err != nil {
		writeRPCError(w, http.StatusInternalServerError, rawID, "rugwatch proxy: encoding the answer: "+err.Error())
		return
	}
	writeAnswer(w, rc, data)
}

// writeAnswer writes a POST's answer, data, as JSON. With its length
// known the answer is one write, head and body; chunked, the terminating
// chunk took a second, which the client waited for.
func writeAnswer(w http.ResponseWriter, rc *http.ResponseController, data []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	_ = writeBounded(w, rc, data)
}

// cancelled ends the stream of the request a client's
// notifications/cancelled names, if it is in flight: its answer is not
// due any more.
func (c *httpConn) cancelled(params json.RawMessage) {
	var p map[string]json.RawMessage
	if json.Unmarshal(params, &p) != nil {
		return
	}
	id, err := mcpclient.MessageID(p["requestId"])
	if err != nil || !id.IsValid() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.calls[id]; st != nil {
		c.forgetLocked(id, st)
		close(st.stop) // once: no longer in calls, no one finds it again
	}
}

// get serves the GET stream until the client leaves, a newer GET replaces
// it, or the session ends.
func (c *httpConn) get(w http.ResponseWriter, r *http.Request) {
	st := newStream(0) // its frames queue on c.listenOut
	c.mu.Lock()
	old := c.listen
	c.listen = st
	c.mu.Unlock()
	if old != nil {
		close(old.stop) // its handler returns
	}
	defer func() {
		c.mu.Lock()
		if c.listen == st {
			c.listen = nil
		}
		c.mu.Unlock()
		close(st.gone)
	}()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-transform")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return
	}
	for {
		// A replaced stream leaves the queue to the newer one at once.
		select {
		case <-st.stop:
			return
		default:
		}
		select {
		case f := <-c.listenOut:
			if writeEvent(w, rc, f.data) != nil {
				return
			}
		case <-st.stop:
			return
		case <-r.Context().Done():
			return
		case <-c.done:
			return
		}
	}
}

// deliver hands a client message to Read, unless the session or the
// request ends first.
func (c *httpConn) deliver(ctx context.Context, msg jsonrpc.Message) bool {
	select {
	case c.incoming <- msg:
		return true
	case <-c.done:
		return false
	case <-ctx.Done():
		return false
	}
}

// writeTimeout bounds each write to a client: one that stops reading
// frees the handler (and its session can idle out) rather than pin it.
const writeTimeout = 30 * time.Second

// writeEvent writes one server-sent event and flushes it, within
// writeTimeout.
func writeEvent(w http.ResponseWriter, rc *http.ResponseController, data []byte) error {
	// An encoded message is one line (see encodeMessage), so the data
	// cannot end the event early.
	ev := make([]byte, 0, len(data)+len("event: message\ndata: \n\n"))
	ev = append(ev, "event: message\ndata: "...)
	ev = append(ev, data...)
	return writeBounded(w, rc, append(ev, "\n\n"...))
}

// writeBounded writes b and flushes it within writeTimeout.
func writeBounded(w http.ResponseWriter, rc *http.ResponseController, b []byte) error {
	// (An error means the writer has no deadline to set, a test's
	// recorder: there is no connection to hold.)
	_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
	if _, err := w.Write(b); err != nil {
		return err
	}
	return rc.Flush()
}

// decodeClientMessage parses one JSON-RPC message from a client strictly:
// a duplicate or case-duplicate member anywhere is refused (see
// strictJSON), members are read by their exact names, and the id is a
// string or an integer. What it returns is all the proxy reads of the
// bytes; the params and result are checked again by readClient.
func decodeClientMessage(body []byte) (jsonrpc.Message, error) {
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		return nil, errors.New("JSON-RPC batches are not supported; send one message per request")
	}
	if err := checkMembers(body); err != nil {
		return nil, err
	}
	return mcpclient.DecodeMessage(body)
}

// progressToken is the progress token of a request (inMeta: at
// params._meta.progressToken) or of a progress notification (at
// params.progressToken), read by exact member names and keyed as idKey
// keys ids; "" for none.
func progressToken(params json.RawMessage, inMeta bool) string {
	if !bytes.Contains(params, []byte(`"progressToken"`)) {
		return ""
	}
	var p map[string]json.RawMessage
	if json.Unmarshal(params, &p) != nil {
		return ""
	}
	if inMeta {
		var meta map[string]json.RawMessage
		if json.Unmarshal(p["_meta"], &meta) != nil {
			return ""
		}
		p = meta
	}
	var tok any
	if json.Unmarshal(p["progressToken"], &tok) != nil {
		return ""
	}
	switch tok.(type) {
	case string, float64:
		return fmt.Sprintf("%T:%v", tok, tok)
	}
	return ""
}
