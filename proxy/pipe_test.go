package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// TestPipeCarriesWhatTheWireWould: a message crosses the gateway's pipe as
// a copy of what the wire carries (no Extra, an answer's error as a
// JSON-RPC error keeping a wrapped one's code), so the reader may set its
// fields without touching the writer's; closing either end ends both.
func TestPipeCarriesWhatTheWireWould(t *testing.T) {
	a, b := newPipe()
	ctx := context.Background()
	id, _ := jsonrpc.MakeID(float64(7))
	sent := &jsonrpc.Request{ID: id, Method: "tools/call", Params: json.RawMessage(`{"name":"echo"}`), Extra: "not on the wire"}
	go func() { _ = a.Write(ctx, sent) }()
	got, err := b.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req, ok := got.(*jsonrpc.Request)
	if !ok || req == sent || req.ID != id || req.Method != "tools/call" || string(req.Params) != `{"name":"echo"}` || req.Extra != nil {
		t.Fatalf("read %#v, want a copy of the request without Extra", got)
	}
	req.Params = json.RawMessage(`{"name":"other"}`) // as readClient re-encodes in place
	if string(sent.Params) != `{"name":"echo"}` {
		t.Fatal("the reader's change reached the writer's message")
	}

	refused := fmt.Errorf("rugwatch proxy: %w", &jsonrpc.Error{Code: codeNotApproved, Message: "not approved"})
	for _, tc := range []struct {
		err  error
		want jsonrpc.Error
	}{
		{&jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "bad"}, jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "bad"}},
		{refused, jsonrpc.Error{Code: codeNotApproved, Message: refused.Error()}},
		{errors.New("plain"), jsonrpc.Error{Message: "plain"}},
	} {
		go func() { _ = b.Write(ctx, &jsonrpc.Response{ID: id, Error: tc.err}) }()
		got, err := a.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		we, ok := got.(*jsonrpc.Response).Error.(*jsonrpc.Error)
		if !ok || we.Code != tc.want.Code || we.Message != tc.want.Message {
			t.Fatalf("answer error %v arrived as %#v, want %#v", tc.err, got.(*jsonrpc.Response).Error, tc.want)
		}
	}

	// Closing one end ends a read waiting at the other, and its writes.
	read := make(chan error, 1)
	go func() {
		_, err := a.Read(ctx)
		read <- err
	}()
	b.Close()
	if err := <-read; !errors.Is(err, io.EOF) {
		t.Fatalf("a read at the other end after close: %v, want EOF", err)
	}
	if err := a.Write(ctx, sent); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("a write at the other end after close: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := newPipeEnd().Read(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("a read whose context ended: %v", err)
	}
}

// newPipeEnd is one end of a fresh pipe nobody writes to.
func newPipeEnd() *pipeConn {
	a, _ := newPipe()
	return a
}
