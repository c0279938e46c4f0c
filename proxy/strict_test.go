package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// rawClient speaks JSON-RPC to Serve over an in-memory transport with
// messages written as bytes, so a test can send what no SDK client would.
type rawClient struct {
	t    *testing.T
	conn mcp.Connection
}

func (r *rig) rawConnect(opts Options) *rawClient {
	r.t.Helper()
	ct, st := mcp.NewInMemoryTransports()
	ctx, cancel := context.WithCancel(context.Background())
	sconn, err := st.Connect(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = Serve(ctx, sconn, opts) }()
	cconn, err := ct.Connect(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { cconn.Close(); cancel(); <-done })
	c := &rawClient{t: r.t.(*testing.T), conn: cconn}
	c.call(1, "initialize", `{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}`)
	c.send(`{"jsonrpc":"2.0","method":"notifications/initialized","params":{}}`)
	return c
}

func (c *rawClient) send(raw string) {
	c.t.Helper()
	msg, err := jsonrpc.DecodeMessage([]byte(raw))
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.conn.Write(context.Background(), msg); err != nil {
		c.t.Fatal(err)
	}
}

// call sends a request whose params are written verbatim and returns the
// answer to it.
func (c *rawClient) call(id int64, method, params string) *jsonrpc.Response {
	c.t.Helper()
	pid, err := jsonrpc.MakeID(float64(id))
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.conn.Write(context.Background(), &jsonrpc.Request{ID: pid, Method: method, Params: json.RawMessage(params)}); err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		msg, err := c.conn.Read(ctx)
		if err != nil {
			c.t.Fatalf("no answer to %s: %v", method, err)
		}
		if resp, ok := msg.(*jsonrpc.Response); ok && fmt.Sprint(resp.ID.Raw()) == fmt.Sprint(id) {
			return resp
		}
	}
}

// TestCaseVariantMembersRefused: a member spelt twice, once in other
// case, is read one way by a case-insensitive decoder and another by an
// exact one: the attack checked "NAME" (approved) and ran "name"
// (not approved). Through the proxy such a request is refused as hostile,
// whichever member is doubled, at any depth.
func TestCaseVariantMembersRefused(t *testing.T) {
	r := newRig(t)
	opts := r.options(ResultsFlag)
	cs, _ := r.connect(opts, nil)
	toolNames(t, cs) // recorded: add, echo, ask pending
	r.approve("echo")
	smuggle := `{"name":"add","NAME":"echo","arguments":{"a":1,"b":2}}`

	// Without the protection: encoding/json into a struct (the proxy's old
	// reading) takes "NAME", the approved echo; the server takes the exact
	// "name" and runs add, which nobody approved.
	var old struct{ Name string }
	if err := json.Unmarshal([]byte(smuggle), &old); err != nil || old.Name != "echo" {
		t.Fatalf("the old reading took %q (%v); the test cannot tell", old.Name, err)
	}
	direct := postMCP(t, r.up.url, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`, "")
	session := direct.Header.Get("Mcp-Session-Id")
	postMCP(t, r.up.url, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, session)
	res := postMCP(t, r.up.url, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":`+smuggle+`}`, session)
	if body, _ := io.ReadAll(res.Body); !bytes.Contains(body, []byte(`"text":"3"`)) {
		t.Fatalf("the server did not run add; the test cannot tell: %s", body)
	}

	c := r.rawConnect(opts)
	for i, params := range []string{
		smuggle,
		`{"name":"add","NAME":"echo","arguments":{"text":"x"}}`,
		`{"name":"echo","arguments":{"text":"a","TEXT":"b"}}`,
		`{"name":"echo","name":"add","arguments":{}}`,
		`{"name":"echo","arguments":{"text":"x"},"_meta":{"k":1,"K":2}}`,
	} {
		resp := c.call(int64(10+i), "tools/call", params)
		if resp.Error == nil || !strings.Contains(resp.Error.Error(), "hostile request") {
			t.Errorf("%s: got %+v, want a refusal as hostile", params, resp)
		}
	}
	// An honest call still passes, with the exact members it has.
	resp := c.call(20, "tools/call", `{"name":"echo","arguments":{"text":"honest"}}`)
	if resp.Error != nil || !bytes.Contains(resp.Result, []byte("honest")) {
		t.Errorf("honest call: %+v %s", resp.Error, resp.Result)
	}
	// A lone "NAME" is not a name: the exact reading finds none.
	if resp := c.call(21, "tools/call", `{"NAME":"echo","arguments":{"text":"x"}}`); resp.Error == nil {
		t.Errorf("a call with no exact name passed: %s", resp.Result)
	}
}

func postMCP(t *testing.T, url, body, session string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

// The re-encoded params keep numbers as written and every exact member.
func TestStrictJSONReencodes(t *testing.T) {
	out, err := strictJSON(json.RawMessage(`{"b": 12345678901234567890, "a" : "<x>\u0041", "n": 1.50}`), false)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out); got != `{"a":"<x>A","b":12345678901234567890,"n":1.50}` {
		t.Errorf("re-encoded %s", got)
	}
	for _, bad := range []string{`{"a":1,"a":2}`, `{"a":1,"A":2}`, `{"\u212a":1,"k":2}`, `[{"x":{"y":1,"Y":1}}]`, "{\"a\":\"\xff\"}"} {
		if _, err := strictJSON(json.RawMessage(bad), false); err == nil {
			t.Errorf("%q passed", bad)
		}
	}
}
