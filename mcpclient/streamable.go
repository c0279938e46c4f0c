package mcpclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/rugwatch/rugwatch/visible"
)

// streamableConn is the client side of Streamable HTTP: each message is
// one POST, and a call's answer comes back as JSON or as an event stream
// on that POST. It is rugwatch's own rather than the go-sdk's
// StreamableClientTransport, which encoded each message, decoded every
// answer with a fresh 32 KiB buffer and decoded each request's params once
// more for a _meta: on a proxied call, a sixth of all bytes allocated.
//
// It does what a poll and a proxied session use, and no more: no GET
// stream (watch.go opens its own through the SDK), no resumption of a cut
// stream (the SDK's was off: MaxRetries -1), no OAuth. Its failures are
// the SDK's, sharpened: an error status with a JSON-RPC error for the call
// is that call's answer, a size limit surfaces as a *LimitError, and a
// session id that is not visible ASCII is hostile.
type streamableConn struct {
	url      string
	client   *http.Client
	maxEvent int // bytes of one event's lines

	// drains holds a place for each answered stream being read to its
	// end (readStream), drainWait the longest each is read.
	drains    chan struct{}
	drainWait time.Duration

	ctx       context.Context // the connection's own; Close cancels it
	cancel    context.CancelFunc
	incoming  chan jsonrpc.Message
	done      chan struct{}
	closeOnce sync.Once

	failOnce sync.Once
	failErr  error
	failed   chan struct{}

	mu        sync.Mutex
	sessionID string
	version   string // MCP-Protocol-Version to send; "" until settled
	ended     bool   // the server ended the session (404): no DELETE
}

// Bounds of what a server may put in the connection's own state.
const (
	maxSessionID  = 1024            // bytes of an Mcp-Session-Id
	maxErrorBody  = 64 << 10        // bytes of an error status's body read for a JSON-RPC error
	maxDrain      = 64 << 10        // bytes read past a call's answer to reuse the connection
	drainWait     = 2 * time.Second // to read a stream's end after the call's answer
	maxDrains     = 8               // answered streams read to their end at once
	deleteTimeout = 5 * time.Second // the DELETE that ends a session, best effort
)

// errClosed is a write after Close.
var errClosed = errors.New("the connection is closed")

// errTerminated answers a call whose stream ended without its answer.
var errTerminated = errors.New("the server ended the call's event stream without answering it")

func newStreamableConn(url string, client *http.Client, maxEvent int) *streamableConn {
	ctx, cancel := context.WithCancel(context.Background())
	return &streamableConn{
		url: url, client: client, maxEvent: maxEvent,
		drains: make(chan struct{}, maxDrains), drainWait: drainWait,
		ctx: ctx, cancel: cancel,
		incoming: make(chan jsonrpc.Message, 10),
		done:     make(chan struct{}),
		failed:   make(chan struct{}),
	}
}

// setVersion sets the MCP-Protocol-Version every later request carries:
// the stateless revision from server/discover on, none in the handshake
// era. (The SDK's transport sent none there either: its hook for the
// initialize answer is for its own client, which rugwatch is not. A
// server narrowed to the stateless revision refuses a request that names
// the handshake revision it answered "so that the client disconnects",
// and TestHalfOpenHandshakeIsRefused shows the revision check catching
// that session without the header's help.)
func (c *streamableConn) setVersion(v string) {
	c.mu.Lock()
	c.version = v
	c.mu.Unlock()
}

func (c *streamableConn) SessionID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sessionID
}

// fail ends the connection: the pending and every later Read return err.
func (c *streamableConn) fail(err error) {
	c.failOnce.Do(func() {
		c.failErr = err
		close(c.failed)
	})
}

func (c *streamableConn) failure() error {
	select {
	case <-c.failed:
		return c.failErr
	default:
		return nil
	}
}

func (c *streamableConn) Read(ctx context.Context) (jsonrpc.Message, error) {
	if err := c.failure(); err != nil {
		return nil, err
	}
	select {
	case msg := <-c.incoming:
		return msg, nil
	case <-c.failed:
		return nil, c.failErr
	case <-c.done:
		return nil, io.EOF
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// deliver hands a message to Read; false once the connection is closed.
func (c *streamableConn) deliver(msg jsonrpc.Message) bool {
	select {
	case c.incoming <- msg:
		return true
	case <-c.done:
		return false
	}
}

// Write sends one message. For a call it returns once the server has
// started its answer: a JSON answer is read here, an event stream by a
// goroutine of its own, which ends with the call's answer. An error
// returned fails this message only; what breaks the session (a status
// that ends it, a malformed stream) fails the connection too.
func (c *streamableConn) Write(ctx context.Context, msg jsonrpc.Message) error {
	if err := c.failure(); err != nil {
		return err
	}
	select {
	case <-c.done:
		return errClosed
	default:
	}
	var call *jsonrpc.Request
	what := "sending a response"
	if r, ok := msg.(*jsonrpc.Request); ok {
		what = "sending " + strconv.Quote(r.Method)
		if r.IsCall() {
			call = r
		}
	}
	body, err := jsonrpc.EncodeMessage(msg)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	// The request's own context: cancelled when this message is done
	// with, and by readStream to stop attending to a server that holds a
	// stream open after it answered. The caller's context ends it only
	// until the call is answered (detach): a caller done with the answer
	// cancels its context, as the proxy does every call's, and that cut
	// the stream's last bytes, without which the transport cannot use the
	// connection again; the proxy dialled its upstream anew on one call in
	// five.
	rctx, rcancelCause := context.WithCancelCause(context.WithoutCancel(ctx))
	rcancel := func() { rcancelCause(nil) }
	// With the caller's cause: a deadline that passed is still one.
	detach := context.AfterFunc(ctx, func() { rcancelCause(context.Cause(ctx)) })
	streaming := false
	defer func() {
		if !streaming {
			detach()
			rcancel()
		}
	}()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	c.mu.Lock()
	sid, version := c.sessionID, c.version
	c.mu.Unlock()
	h := req.Header
	h["Content-Type"] = []string{"application/json"}
	h["Accept"] = []string{"application/json, text/event-stream"}
	if version != "" {
		h["Mcp-Protocol-Version"] = []string{version}
	}
	if sid != "" {
		h["Mcp-Session-Id"] = []string{sid}
	}
	if r, ok := msg.(*jsonrpc.Request); ok && version >= StatelessVersion {
		// SEP-2575's standard headers, which a server of that revision
		// checks against the body.
		h["Mcp-Method"] = []string{r.Method}
		if name, ok := requestName(r.Method, r.Params); ok {
			h["Mcp-Name"] = []string{name}
		}
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if answered, err := c.check(resp, call, what); err != nil || answered {
		return err
	}
	if err := c.noteSession(resp); err != nil {
		resp.Body.Close()
		return fmt.Errorf("%s: %w", what, err)
	}
	if call == nil {
		// A notification or a response: 202 Accepted and no body, or a
		// body nobody reads.
		resp.Body.Close()
		return nil
	}
	ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	switch ct = strings.ToLower(strings.TrimSpace(ct)); ct {
	case "application/json":
		return c.readJSON(resp, what)
	case "text/event-stream":
		streaming = true
		go c.readStream(rctx, rcancel, detach, resp, call, what)
		return nil
	default:
		resp.Body.Close()
		return fmt.Errorf("%s: the server answered with content type %q, neither JSON nor an event stream", what, visible.Bounded(ct, maxIDText))
	}
}

// check turns an error status into an error, or, when its body is a
// JSON-RPC error answering call, into that call's answer (answered). The
// body is closed unless the status is a success.
func (c *streamableConn) check(resp *http.Response, call *jsonrpc.Request, what string) (answered bool, err error) {
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return false, nil
	}
	defer resp.Body.Close()
	status := fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	if call != nil {
		// A server of the stateless revision refuses a request it cannot
		// serve with an error status and the JSON-RPC error in the body:
		// that error is the answer, passed on as any other.
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		if m, err := DecodeMessage(b); err == nil {
			if r, ok := m.(*jsonrpc.Response); ok && r.Error != nil && r.ID == call.ID {
				if !c.deliver(r) {
					return true, io.EOF
				}
				return true, nil
			}
		}
	}
	c.mu.Lock()
	sid := c.sessionID
	c.mu.Unlock()
	switch {
	case transientStatus(resp.StatusCode):
		// Overload or a restart: this message failed, the session did not.
		return false, fmt.Errorf("%s: the server answered %s", what, status)
	case resp.StatusCode == http.StatusNotFound && sid != "":
		c.mu.Lock()
		c.ended = true
		c.mu.Unlock()
		err := fmt.Errorf("%s: the server no longer knows session %s (%s)", what, visible.Bounded(sid, maxIDText), status)
		c.fail(err)
		return false, err
	}
	err = fmt.Errorf("%s: the server answered %s", what, status)
	if call != nil && (call.Method == "server/discover" || call.Method == "subscriptions/listen") {
		// A handshake-era server refusing the stateless era's methods:
		// the caller falls back, on this same connection.
		return false, err
	}
	c.fail(err)
	return false, err
}

// transientStatus is a status that says "not now" rather than "never".
func transientStatus(code int) bool {
	switch code {
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable,
		http.StatusGatewayTimeout, http.StatusTooManyRequests:
		return true
	}
	return false
}

// noteSession keeps the session id the server assigned in its first
// answer. It goes into every later request's header, so it must be a
// header value: visible ASCII, and bounded.
func (c *streamableConn) noteSession(resp *http.Response) error {
	sid := resp.Header.Get("Mcp-Session-Id")
	if sid == "" {
		return nil
	}
	if len(sid) > maxSessionID || !visibleASCII(sid) {
		err := &HostileError{Reason: fmt.Sprintf("session id of %d bytes, not the visible ASCII a session id must be: %s",
			len(sid), visible.Bounded(sid, maxIDText))}
		c.fail(err)
		return err
	}
	c.mu.Lock()
	had := c.sessionID
	if had == "" {
		c.sessionID = sid
	}
	c.mu.Unlock()
	if had != "" && had != sid {
		return fmt.Errorf("the server answered for session %s in session %s", visible.Bounded(sid, maxIDText), visible.Bounded(had, maxIDText))
	}
	return nil
}

func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// readJSON reads a call's answer sent as one JSON body.
func (c *streamableConn) readJSON(resp *http.Response, what string) error {
	defer resp.Body.Close()
	var body []byte
	var err error
	if n := resp.ContentLength; n > 0 && n <= int64(c.maxEvent) {
		body = make([]byte, n)
		_, err = io.ReadFull(resp.Body, body)
	} else {
		body, err = io.ReadAll(resp.Body)
	}
	if err != nil {
		var le *LimitError
		if errors.As(err, &le) {
			err = fmt.Errorf("%s: reading the answer: %w", what, le)
			c.fail(err)
		}
		return fmt.Errorf("%s: reading the answer: %w", what, err)
	}
	msg, err := DecodeMessage(body)
	if err != nil {
		err = fmt.Errorf("%s: the answer is not JSON-RPC: %w", what, err)
		c.fail(err)
		return err
	}
	c.deliver(msg)
	return nil
}

// readStream reads a call's event stream, handing on each message, until
// the call's answer. A stream that ends before it answers the call with
// an error; one that breaks the bounds or the format fails the
// connection. Once the call is answered, detach ends the caller's hold
// on ctx (see Write).
func (c *streamableConn) readStream(ctx context.Context, cancel context.CancelFunc, detach func() bool, resp *http.Response, call *jsonrpc.Request, what string) {
	defer cancel()
	defer detach()
	defer resp.Body.Close()
	// Close ends the stream too: the call's context may outlive the
	// connection.
	defer context.AfterFunc(c.ctx, cancel)()
	events := &eventReader{r: bufio.NewReaderSize(resp.Body, 4096), max: c.maxEvent}
	for {
		data, err := events.next()
		if err != nil {
			if ctx.Err() != nil || c.ctx.Err() != nil {
				return // the caller gave up, or the connection closed
			}
			var le *LimitError
			if errors.As(err, &le) || errors.Is(err, errMalformedEvent) {
				c.fail(fmt.Errorf("%s: reading the answer: %w", what, err))
				return
			}
			// The stream ended (or broke) without the answer: the call
			// fails, the session need not.
			why := errTerminated
			if !errors.Is(err, io.EOF) {
				why = fmt.Errorf("%w: %v", errTerminated, err)
			}
			c.deliver(&jsonrpc.Response{ID: call.ID, Error: why})
			return
		}
		msg, err := DecodeMessage(data)
		if err != nil {
			c.fail(fmt.Errorf("%s: an event is not JSON-RPC: %w", what, err))
			return
		}
		if !c.deliver(msg) {
			return
		}
		if r, ok := msg.(*jsonrpc.Response); ok && r.ID == call.ID {
			// Answered. The server ends the stream now; reading to its end
			// lets the connection be used again, but a server that holds
			// it open gets no more than maxDrain bytes and drainWait of
			// attention, whatever the caller does with its context now,
			// and no more than maxDrains such streams at once: past them
			// the stream is let go at once, connection and all, as a
			// hostile server holding every answered stream would
			// otherwise hold a connection per call for drainWait.
			detach()
			select {
			case c.drains <- struct{}{}:
			default:
				return
			}
			stop := time.AfterFunc(c.drainWait, cancel)
			_, _ = io.CopyN(io.Discard, events.r, maxDrain)
			stop.Stop()
			<-c.drains
			return
		}
	}
}

// Close ends the session on the server (DELETE, best effort and bounded)
// unless the server ended it, then stops every stream.
func (c *streamableConn) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		sid, version, ended := c.sessionID, c.version, c.ended
		c.mu.Unlock()
		if sid != "" && !ended {
			ctx, cancel := context.WithTimeout(c.ctx, deleteTimeout)
			if req, err := http.NewRequestWithContext(ctx, http.MethodDelete, c.url, nil); err == nil {
				req.Header["Mcp-Session-Id"] = []string{sid}
				if version != "" {
					req.Header["Mcp-Protocol-Version"] = []string{version}
				}
				if resp, err := c.client.Do(req); err == nil {
					resp.Body.Close()
				}
			}
			cancel()
		}
		c.cancel()
		close(c.done)
	})
	return nil
}

// requestName is the name SEP-2575's Mcp-Name header carries: the tool's
// or prompt's name, or the resource's URI, read by its exact member name.
func requestName(method string, params json.RawMessage) (string, bool) {
	key := ""
	switch method {
	case "tools/call", "prompts/get":
		key = "name"
	case "resources/read":
		key = "uri"
	default:
		return "", false
	}
	var raw []byte
	if Members(params, func(member, v []byte) error {
		if string(member) == key {
			raw = v
		}
		return nil
	}) != nil {
		return "", false
	}
	var name string
	if json.Unmarshal(raw, &name) != nil {
		return "", false
	}
	return name, true
}

// errMalformedEvent is a stream that is not an event stream.
var errMalformedEvent = errors.New("malformed event stream")

// eventReader reads the data of a stream's message events, each bounded
// by max bytes of lines. Lines are as the SDK reads them: "field: value",
// data lines joined by newlines, ":" lines comments, other fields and
// events of other names skipped.
type eventReader struct {
	r   *bufio.Reader
	max int
}

// next returns the data of the next message event that has data; io.EOF
// when the stream ends.
func (e *eventReader) next() ([]byte, error) {
	var data []byte
	hasData, name := false, ""
	used := 0
	for {
		line, err := e.line(e.max - used)
		if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
			if errors.Is(err, io.EOF) && len(data) > 0 && (name == "" || name == "message") {
				return data, nil // the last event, with no blank line after it
			}
			return nil, err
		}
		used += len(line)
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			if len(data) > 0 && (name == "" || name == "message") {
				return data, nil
			}
			data, hasData, name, used = data[:0], false, "", 0
			continue
		}
		field, value, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			return nil, fmt.Errorf("%w: a line with no field: %s", errMalformedEvent, visible.Bounded(string(line), maxIDText))
		}
		switch string(field) {
		case "data":
			if hasData {
				data = append(data, '\n')
			}
			data = append(data, bytes.TrimSpace(value)...)
			hasData = true
		case "event":
			name = string(bytes.TrimSpace(value))
		}
	}
}

// line reads one line, its end included, of at most budget bytes.
func (e *eventReader) line(budget int) ([]byte, error) {
	var long []byte
	for {
		part, err := e.r.ReadSlice('\n')
		if len(long)+len(part) > budget {
			return nil, &LimitError{Limit: "max_response_bytes", Value: int64(e.max)}
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if long == nil {
				return part, err
			}
			return append(long, part...), err
		}
		long = append(long, part...)
	}
}

// streamableTransport hands dial its connection, made before Connect: a
// Streamable HTTP connection opens nothing until its first message.
type streamableTransport struct{ c *streamableConn }

func (t streamableTransport) Connect(context.Context) (mcp.Connection, error) { return t.c, nil }

// headerVersion sets the MCP-Protocol-Version the session's later
// requests carry, over Streamable HTTP (the only transport with headers
// per message).
func (s *Session) headerVersion(v string) {
	if c, ok := s.conn.(*streamableConn); ok {
		c.setVersion(v)
	}
}
