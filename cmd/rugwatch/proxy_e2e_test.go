package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/testkit"
)

// End-to-end tests of enforcement with real clients: the official
// TypeScript SDK's Client (testdata/proxy/client.mjs, @modelcontextprotocol/sdk
// pinned in package-lock.json) and the go-sdk's, through the built binary's
// `rugwatch proxy` and serve's proxy_listen, to server-everything and to the
// demo server turning malicious under a connected client; the MCP
// conformance suite both ways (proxy_inspector_test.go has the MCP
// Inspector's CLI, stdio_bridge_test.go the suite's way to the stdio proxy).

// mcpDriver is one connected MCP client, whichever SDK.
type mcpDriver interface {
	// list returns the tools as the client received them, as JSON.
	list() []json.RawMessage
	// call returns the result, or the JSON-RPC error's code and message.
	call(name string, args map[string]any) (res json.RawMessage, code int64, msg string)
	// waitChanged returns once a tools list_changed arrived since the last.
	waitChanged()
	close()
}

// nodeBin finds node; as with server-everything, CI must have it.
func nodeBin(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat("../../node_modules/@modelcontextprotocol/sdk/package.json")
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("node or the TypeScript SDK missing (%v); .ci/run must run npm ci", err)
		}
		t.Skipf("node or the TypeScript SDK missing; run `npm ci` (%v)", err)
	}
	return p
}

// tsClient is client.mjs running as a child, one JSON line per command.
type tsClient struct {
	t      *testing.T
	cmd    *exec.Cmd
	in     io.WriteCloser
	lines  chan string
	stderr *testkit.Output
	done   chan struct{}
	// Connected is the first line: server info, instructions, capabilities.
	connected map[string]json.RawMessage
}

// startTS starts the TypeScript client: "stdio", command, args... or
// "http", url.
func startTS(t *testing.T, env []string, args ...string) *tsClient {
	t.Helper()
	script, err := filepath.Abs("testdata/proxy/client.mjs")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nodeBin(t), append([]string{script}, args...)...)
	cmd.Env = env
	c := &tsClient{t: t, cmd: cmd, lines: make(chan string, 64), stderr: &testkit.Output{}, done: make(chan struct{})}
	cmd.Stderr = c.stderr
	if c.in, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		c.in.Close()
		select {
		case <-c.done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-c.done
		}
		_ = cmd.Wait()
	})
	line := c.next("connected")
	if err := json.Unmarshal([]byte(line), &c.connected); err != nil {
		t.Fatalf("TypeScript client: %q: %v", line, err)
	}
	return c
}

func (c *tsClient) next(op string) string {
	c.t.Helper()
	select {
	case l := <-c.lines:
		var m struct {
			Op string `json:"op"`
		}
		if json.Unmarshal([]byte(l), &m) != nil || m.Op != op {
			c.t.Fatalf("TypeScript client answered %q to %s\nstderr:\n%s", l, op, c.stderr.String())
		}
		return l
	case <-c.done:
		c.t.Fatalf("TypeScript client exited waiting for %s\nstderr:\n%s", op, c.stderr.String())
	case <-time.After(60 * time.Second):
		c.t.Fatalf("TypeScript client: no %s answer within 60s\nstderr:\n%s", op, c.stderr.String())
	}
	return ""
}

func (c *tsClient) send(cmd map[string]any) string {
	c.t.Helper()
	b, _ := json.Marshal(cmd)
	if _, err := c.in.Write(append(b, '\n')); err != nil {
		c.t.Fatalf("writing to the TypeScript client: %v\nstderr:\n%s", err, c.stderr.String())
	}
	return c.next(cmd["op"].(string))
}

func (c *tsClient) list() []json.RawMessage {
	c.t.Helper()
	var r struct {
		Tools []json.RawMessage `json:"tools"`
		Error *struct{ Message string }
	}
	line := c.send(map[string]any{"op": "list"})
	if json.Unmarshal([]byte(line), &r) != nil || r.Error != nil {
		c.t.Fatalf("TypeScript client tools/list: %s", line)
	}
	return r.Tools
}

func (c *tsClient) call(name string, args map[string]any) (json.RawMessage, int64, string) {
	c.t.Helper()
	var r struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    *int64 `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	line := c.send(map[string]any{"op": "call", "name": name, "arguments": args})
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		c.t.Fatalf("TypeScript client tools/call: %s", line)
	}
	if r.Error != nil {
		code := int64(0)
		if r.Error.Code != nil {
			code = *r.Error.Code
		}
		return nil, code, r.Error.Message
	}
	return r.Result, 0, ""
}

func (c *tsClient) waitChanged() { c.t.Helper(); c.send(map[string]any{"op": "wait_list_changed"}) }

func (c *tsClient) close() { c.in.Close() }

// goClient is the go-sdk's client.
type goClient struct {
	t       *testing.T
	cs      *mcp.ClientSession
	changed chan struct{}
}

func connectGo(t *testing.T, transport mcp.Transport) *goClient {
	t.Helper()
	g := &goClient{t: t, changed: make(chan struct{}, 16)}
	cl := mcp.NewClient(&mcp.Implementation{Name: "rugwatch-go-test-client", Version: "1"}, &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			select {
			case g.changed <- struct{}{}:
			default:
			}
		}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cs, err := cl.Connect(ctx, transport, nil)
	if err != nil {
		t.Fatalf("go-sdk client connect: %v", err)
	}
	g.cs = cs
	t.Cleanup(func() { cs.Close() })
	return g
}

func (g *goClient) list() []json.RawMessage {
	g.t.Helper()
	res, err := g.cs.ListTools(context.Background(), nil)
	if err != nil {
		g.t.Fatalf("go-sdk tools/list: %v", err)
	}
	var out []json.RawMessage
	for _, tl := range res.Tools {
		b, err := json.Marshal(tl)
		if err != nil {
			g.t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func (g *goClient) call(name string, args map[string]any) (json.RawMessage, int64, string) {
	g.t.Helper()
	res, err := g.cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		var we *jsonrpc.Error
		if errors.As(err, &we) {
			return nil, we.Code, we.Message
		}
		return nil, -1, err.Error()
	}
	b, _ := json.Marshal(res)
	return b, 0, ""
}

func (g *goClient) waitChanged() {
	g.t.Helper()
	select {
	case <-g.changed:
	case <-time.After(30 * time.Second):
		g.t.Fatal("go-sdk client: no tools list_changed within 30s")
	}
}

func (g *goClient) close() { g.cs.Close() }

// toolMap indexes listed tools by name.
func toolMap(t *testing.T, tools []json.RawMessage) map[string]json.RawMessage {
	t.Helper()
	m := map[string]json.RawMessage{}
	for _, raw := range tools {
		var n struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(raw, &n); err != nil {
			t.Fatal(err)
		}
		m[n.Name] = raw
	}
	return m
}

func sortedNames(m map[string]json.RawMessage) []string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// statusDigests returns each tool's state and approved digest from
// `rugwatch status SERVER --json`.
func statusDigests(t *testing.T, env []string, cfg, server string) map[string][2]string {
	t.Helper()
	r := runBin(t, env, "", "--config", cfg, "status", server, "--json")
	var st struct {
		Servers []struct {
			Name  string `json:"name"`
			Tools []struct {
				Name     string `json:"name"`
				State    string `json:"state"`
				Approved string `json:"approved_digest"`
			} `json:"tools"`
		} `json:"servers"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s\n%s", err, r.stdout, r.stderr)
	}
	out := map[string][2]string{}
	for _, s := range st.Servers {
		for _, tl := range s.Tools {
			out[tl.Name] = [2]string{tl.State, tl.Approved}
		}
	}
	return out
}

// wantExactlyApproved checks that the client sees exactly the approved
// tools, each one whose digest is the approved digest: what was signed,
// nothing rebuilt.
func wantExactlyApproved(t *testing.T, env []string, cfg, server string, listed []json.RawMessage, byteExact bool) map[string]json.RawMessage {
	t.Helper()
	st := statusDigests(t, env, cfg, server)
	var approved []string
	for name, s := range st {
		if s[0] == "approved" {
			approved = append(approved, name)
		}
	}
	sort.Strings(approved)
	got := toolMap(t, listed)
	if names := sortedNames(got); !slices.Equal(names, approved) {
		t.Fatalf("client lists %v, approved are %v", names, approved)
	}
	if byteExact {
		for name, raw := range got {
			d, _, err := signatures.Digest(raw, signatures.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if string(d) != st[name][1] {
				t.Errorf("%s reached the client as %s, digest %s; approved %s", name, raw, d, st[name][1])
			}
		}
	}
	return got
}

func wantRefused(t *testing.T, d mcpDriver, name string, args map[string]any, why string) {
	t.Helper()
	res, code, msg := d.call(name, args)
	if res != nil || code != -32001 || !strings.Contains(msg, why) {
		t.Errorf("call %s %v: result %s, error %d %q; want refused (-32001, %q)", name, args, res, code, msg, why)
	}
}

func resultText(t *testing.T, res json.RawMessage) string {
	t.Helper()
	var r struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
		IsError bool `json:"isError"`
	}
	if err := json.Unmarshal(res, &r); err != nil || r.IsError || len(r.Content) == 0 {
		t.Fatalf("not a successful result: %s", res)
	}
	return r.Content[0].Text
}

// enforce runs the contract against one connected client of server
// everything (get-sum approved beforehand; pending approved while
// connected). byteExact: the client keeps definitions as received (the
// go-sdk's Tool struct drops fields it does not know, so for it only the
// names are compared).
func enforce(t *testing.T, env []string, cfg string, d mcpDriver, pending string, byteExact bool) {
	t.Helper()
	tools := wantExactlyApproved(t, env, cfg, "everything", d.list(), byteExact)
	if _, ok := tools[pending]; ok {
		t.Fatalf("pending tool %s listed", pending)
	}
	if got := resultText(t, mustCall(t, d, "get-sum", map[string]any{"a": 2, "b": 3})); !strings.Contains(got, "5") {
		t.Errorf("get-sum through the proxy: %q", got)
	}
	wantRefused(t, d, pending, map[string]any{}, "not approved")
	wantRefused(t, d, "shell-exec", map[string]any{"cmd": "id"}, "not approved")
	wantRefused(t, d, "get-sum", map[string]any{"a": 1, "b": 2, "sidenote": "~/.ssh/id_rsa"}, `unknown argument "sidenote"`)
	wantRefused(t, d, "get-sum", map[string]any{"a": "one", "b": 2}, "arguments refused")

	// Approved while connected: list_changed reaches the client.
	runBin(t, env, "", "--config", cfg, "approve", "everything", pending, "--yes")
	d.waitChanged()
	tools = wantExactlyApproved(t, env, cfg, "everything", d.list(), byteExact)
	if _, ok := tools[pending]; !ok {
		t.Fatalf("%s not listed after its approval", pending)
	}
}

func mustCall(t *testing.T, d mcpDriver, name string, args map[string]any) json.RawMessage {
	t.Helper()
	res, code, msg := d.call(name, args)
	if res == nil {
		t.Fatalf("call %s %v: error %d %q", name, args, code, msg)
	}
	return res
}

// proxyRig is a config with server-everything (stdio, sandboxed by
// default) and two demo servers that turn malicious once a file exists.
type proxyRig struct {
	dir, shared, cfg string
	env              []string
}

func newProxyRig(t *testing.T, extra string) *proxyRig {
	t.Helper()
	ev := everythingBin(t)
	nodeBin(t)
	dir := t.TempDir()
	// The demo servers run sandboxed, with a /tmp of their own: their
	// trigger files live where they can see them.
	shared := sharedDir(t)
	cfg := writeConfig(t, dir, fmt.Sprintf(`data_dir: %[1]s/data
defaults:
  timeout: 60s
%[3]s
servers:
  - name: everything
    command: %[2]s
    args: ["stdio"]
  - name: demo-ts
    command: "@self"
    args: ["demo-server", "--after", "1000", "--turn-when-exists", "%[4]s/turn-ts"]
    mounts: [{path: "%[4]s"}]
  - name: demo-go
    command: "@self"
    args: ["demo-server", "--after", "1000", "--turn-when-exists", "%[4]s/turn-go"]
    mounts: [{path: "%[4]s"}]
`, dir, ev, extra, shared))
	r := &proxyRig{dir: dir, shared: shared, cfg: cfg, env: baseEnv(dir)}
	r.run(t, 0, "init")
	r.run(t, 1, "check") // first sight: every tool pending
	r.run(t, 0, "approve", "everything", "get-sum", "--yes")
	r.run(t, 0, "approve", "demo-ts", "--all", "--yes")
	r.run(t, 0, "approve", "demo-go", "--all", "--yes")
	return r
}

func (r *proxyRig) run(t *testing.T, code int, args ...string) binRun {
	t.Helper()
	res := runBin(t, r.env, "", append([]string{"--config", r.cfg}, args...)...)
	if res.code != code {
		t.Fatalf("rugwatch %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), res.code, code, res.stdout, res.stderr)
	}
	return res
}

func (r *proxyRig) proxyArgs(server string) []string {
	return []string{"--config", r.cfg, "--log-level", "warn", "proxy", server}
}

func (r *proxyRig) goStdio(t *testing.T, server string) *goClient {
	cmd := exec.Command(rugwatchBin(t), r.proxyArgs(server)...)
	cmd.Env = r.env
	cmd.Stderr = &testkit.Output{}
	return connectGo(t, &mcp.CommandTransport{Command: cmd})
}

// drift turns the demo server malicious under the connected client: the
// proxy hears the server's list_changed, records the drift, withholds the
// drifted tools and refuses their calls.
func (r *proxyRig) drift(t *testing.T, d mcpDriver, server, turnFile string, byteExact bool) {
	t.Helper()
	tools := wantExactlyApproved(t, r.env, r.cfg, server, d.list(), byteExact)
	if got := sortedNames(tools); !slices.Equal(got, []string{"add", "read_note", "weather"}) {
		t.Fatalf("%s lists %v before the drift", server, got)
	}
	if got := resultText(t, mustCall(t, d, "add", map[string]any{"a": 2, "b": 2})); !strings.Contains(got, "4") {
		t.Errorf("add before the drift: %q", got)
	}
	if err := os.WriteFile(filepath.Join(r.shared, turnFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d.waitChanged()
	tools = toolMap(t, d.list())
	if got := sortedNames(tools); !slices.Equal(got, []string{"read_note"}) {
		t.Fatalf("after the rug pull %s lists %v, want only read_note (add and weather drifted)", server, got)
	}
	wantRefused(t, d, "add", map[string]any{"a": 1, "b": 2, "sidenote": "ssh-rsa AAAA"}, "not approved")
	wantRefused(t, d, "add", map[string]any{"a": 1, "b": 2}, "not approved")
	h := r.run(t, 0, "history", server, "--json", "--limit", "0")
	var hist struct {
		Events []struct {
			Type, Tool, Severity string
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(h.stdout), &hist); err != nil {
		t.Fatal(err)
	}
	var drifted bool
	for _, e := range hist.Events {
		drifted = drifted || e.Type == "tool.drifted" && e.Tool == "add" && e.Severity == "critical"
	}
	if !drifted {
		t.Fatalf("no critical tool.drifted of add in history:\n%s", h.stdout)
	}
}

// TestProxyE2EStdio: both SDKs' clients through `rugwatch proxy` (no
// daemon): only approved tools, exactly as approved; pending, never-listed
// and out-of-schema calls refused; an approval made while connected
// arrives as list_changed; a rug pull under the client is withheld and
// recorded. The same client straight to the server shows each attack
// succeed without the proxy.
func TestProxyE2EStdio(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	r := newProxyRig(t, "")
	bin := rugwatchBin(t)

	t.Run("without the proxy the attacks succeed", func(t *testing.T) {
		d := startTS(t, r.env, "stdio", everythingBin(t), "stdio")
		if n := len(d.list()); n < 10 {
			t.Fatalf("server-everything lists %d tools directly", n)
		}
		mustCall(t, d, "echo", map[string]any{"message": "pending, yet called"})
		mustCall(t, d, "get-sum", map[string]any{"a": 1, "b": 2, "sidenote": "~/.ssh/id_rsa"})
		d.close()
	})
	t.Run("typescript", func(t *testing.T) {
		d := startTS(t, r.env, append([]string{"stdio", bin}, r.proxyArgs("everything")...)...)
		if instr := string(d.connected["instructions"]); instr != "null" {
			t.Errorf("unapproved instructions reached the client: %s", instr)
		}
		enforce(t, r.env, r.cfg, d, "echo", true)
		if got := resultText(t, mustCall(t, d, "echo", map[string]any{"message": "hi"})); !strings.Contains(got, "hi") {
			t.Errorf("echo after approval: %q", got)
		}
		d.close()
	})
	t.Run("go-sdk", func(t *testing.T) {
		d := r.goStdio(t, "everything")
		enforce(t, r.env, r.cfg, d, "get-tiny-image", false)
		d.close()
	})
	t.Run("typescript rug pull", func(t *testing.T) {
		d := startTS(t, r.env, append([]string{"stdio", bin}, r.proxyArgs("demo-ts")...)...)
		r.drift(t, d, "demo-ts", "turn-ts", true)
		d.close()
	})
	t.Run("go-sdk rug pull", func(t *testing.T) {
		r.drift(t, r.goStdio(t, "demo-go"), "demo-go", "turn-go", false)
	})
}

// TestProxyE2EManyAtOnce: three `rugwatch proxy` processes over one store,
// no daemon, list and call at the same time while the CLI approves; then
// with a daemon holding the store they still work, which they can only do
// through its socket.
func TestProxyE2EManyAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	r := newProxyRig(t, "")
	round := func(t *testing.T, label string) {
		t.Helper()
		var clients []*goClient
		for range 3 {
			clients = append(clients, r.goStdio(t, "everything"))
		}
		var wg sync.WaitGroup
		took := make([]time.Duration, len(clients))
		for i, c := range clients {
			wg.Go(func() {
				start := time.Now()
				for range 5 {
					if got := sortedNames(toolMap(t, c.list())); !slices.Contains(got, "get-sum") {
						t.Errorf("client %d lists %v", i, got)
					}
					if _, code, msg := c.call("get-sum", map[string]any{"a": 1, "b": 1}); code != 0 {
						t.Errorf("client %d: get-sum: %d %s", i, code, msg)
					}
				}
				took[i] = time.Since(start)
			})
		}
		// The CLI writes to the same store meanwhile.
		r.run(t, 0, "approve", "everything", "get-env", "--yes")
		wg.Wait()
		t.Logf("%s: 3 proxies x 5 list+call rounds took %v", label, took)
		for _, c := range clients {
			// The approval reached every proxy (a client that listed
			// after it already had it, so no list_changed is owed).
			if got := toolMap(t, c.list()); got["get-env"] == nil {
				t.Errorf("%s: get-env not listed after its approval", label)
			}
			c.close()
		}
		r.run(t, 0, "revoke", "everything", "get-env", "--reason", "test round over")
	}
	t.Run("no daemon", func(t *testing.T) { round(t, "no daemon") })
	t.Run("daemon", func(t *testing.T) {
		// serve holds the store's file lock for its life (openStore fails
		// at once for anyone else), so a proxy that works now went
		// through the daemon's socket.
		d := startDaemon(t, r.env, "serve", "--config", r.cfg)
		d.wait(0, 60*time.Second, func(l logLine) bool { return l.str("msg") == "serving" })
		round(t, "daemon")
	})
}

// TestProxyE2EListen: serve's proxy_listen with the TypeScript client over
// Streamable HTTP and the go-sdk's: the same enforcement as stdio.
func TestProxyE2EListen(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	r := newProxyRig(t, "proxy_listen: 127.0.0.1:0")
	d := startDaemon(t, r.env, "serve", "--config", r.cfg)
	l, _ := d.wait(0, 60*time.Second, func(l logLine) bool { return l.str("msg") == "proxy listening" })
	base := "http://" + l.str("proxy_listen") + "/mcp/"
	// init wrote the listeners' token; a client without it is refused,
	// loopback or not: any local process reaches loopback.
	tok := readToken(t, filepath.Join(r.dir, ".config", "rugwatch", "token"))
	anon := startTSExpectingFailure(t, r.env, "http", base+"everything")
	if !strings.Contains(anon, "bearer token required") {
		t.Errorf("a client without the token: %s", anon)
	}
	env := append(slices.Clone(r.env), "RUGWATCH_TEST_BEARER="+tok)
	t.Run("typescript", func(t *testing.T) {
		c := startTS(t, env, "http", base+"everything")
		enforce(t, r.env, r.cfg, c, "echo", true)
		c.close()
	})
	t.Run("go-sdk", func(t *testing.T) {
		c := connectGo(t, &mcp.StreamableClientTransport{Endpoint: base + "everything", HTTPClient: bearerClient(tok)})
		enforce(t, r.env, r.cfg, c, "get-tiny-image", false)
		c.close()
	})
	t.Run("typescript rug pull", func(t *testing.T) {
		c := startTS(t, env, "http", base+"demo-ts")
		r.drift(t, c, "demo-ts", "turn-ts", true)
		c.close()
	})
}

// readToken reads a listener token file.
func readToken(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the listener token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// bearerClient is an HTTP client that sends token on every request.
func bearerClient(token string) *http.Client {
	return &http.Client{Transport: bearerTransport{token: token, next: http.DefaultTransport}}
}

type bearerTransport struct {
	token string
	next  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// withBearer puts a reverse proxy that adds token in front of target and
// returns its URL.
func withBearer(t *testing.T, target, token string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	var self string // the front's own host:port
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u)
		r.Out.Header.Set("Authorization", "Bearer "+token)
		// Transparent for Host and Origin: the front's own address maps to
		// the target's, anything else (a DNS-rebinding test's foreign
		// Host) goes on as sent.
		_, port, _ := net.SplitHostPort(self)
		switch r.In.Host {
		case self, "localhost:" + port:
			r.Out.Host = u.Host
		default:
			r.Out.Host = r.In.Host
		}
		switch o := r.In.Header.Get("Origin"); o {
		case "http://" + self, "http://localhost:" + port:
			r.Out.Header.Set("Origin", "http://"+u.Host)
		}
	}, FlushInterval: -1}
	// The body is read whole before it is forwarded. Streamed, it races the
	// answer: net/http closes a request's body once the response is
	// flushed (HTTP/1.1 is not full duplex by default), and a proxy that
	// answers before the front's transport has read the body's end makes
	// that transport's write fail, which closes the connection the answer
	// is being read from ("use of closed network connection"), and the
	// client sees its answer cut off ("terminated").
	buffered := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		}
		rp.ServeHTTP(w, r)
	})
	hs := httptest.NewUnstartedServer(buffered)
	self = hs.Listener.Addr().String() // before any request reads it
	hs.Start()
	t.Cleanup(hs.Close)
	return hs.URL
}

// startTSExpectingFailure runs the TypeScript client where it must fail to
// connect, and returns what it said.
func startTSExpectingFailure(t *testing.T, env []string, args ...string) string {
	t.Helper()
	script, err := filepath.Abs("testdata/proxy/client.mjs")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nodeBin(t), append([]string{script}, args...)...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if err == nil && strings.Contains(string(out), `"op":"connected"`) {
		t.Fatalf("the client connected: %s", out)
	}
	return string(out)
}

// conformanceRun runs the MCP conformance suite's server scenarios against
// url and returns, per scenario, its checks.
func conformanceRun(t *testing.T, url string) map[string][]conformanceCheck {
	t.Helper()
	bin, err := filepath.Abs("../../node_modules/.bin/conformance")
	if err == nil {
		_, err = os.Stat(bin)
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("conformance suite not installed (%v); .ci/run must run npm ci", err)
		}
		t.Skipf("conformance suite not installed; run `npm ci` (%v)", err)
	}
	out := t.TempDir()
	cmd := exec.Command(bin, "server", "--url", url, "-o", out)
	cmd.Env = os.Environ()
	logs, _ := cmd.CombinedOutput() // failing scenarios make it exit non-zero
	dirs, _ := filepath.Glob(filepath.Join(out, "server-*", "checks.json"))
	if len(dirs) == 0 {
		t.Fatalf("conformance wrote no results:\n%s", logs)
	}
	res := map[string][]conformanceCheck{}
	for _, p := range dirs {
		// server-<scenario>-<timestamp>/checks.json
		name := conformanceStamp.ReplaceAllString(strings.TrimPrefix(filepath.Base(filepath.Dir(p)), "server-"), "")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var checks []conformanceCheck
		if err := json.Unmarshal(b, &checks); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		res[name] = checks
	}
	return res
}

// conformanceStamp is the time the suite appends to a scenario's
// directory, e.g. -2026-12-01T17-20-23-454Z.
var conformanceStamp = regexp.MustCompile(`-\d{4}-\d{2}-\d{2}T[\d-]+Z$`)

type conformanceCheck struct {
	ID           string          `json:"id"`
	Status       string          `json:"status"`
	ErrorMessage string          `json:"errorMessage"`
	Details      json.RawMessage `json:"details"`
}

func conformancePassed(checks []conformanceCheck) bool {
	for _, c := range checks {
		if c.Status == "FAILURE" {
			return false
		}
	}
	return true
}

// TestProxyConformance: every conformance scenario that passes against
// server-everything directly passes through proxy_listen and through the
// stdio `rugwatch proxy`, except where
// the proxy refuses by contract what the suite accepts from the server: a
// call of a tool the server never listed (server-everything answers it
// with an isError "not found" result, which those scenarios count as a
// pass; the proxy answers a JSON-RPC error). Each such exception is
// checked to be exactly that.
func TestProxyConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	compareConformance(t, startEverythingHTTP(t, everythingBin(t)))
}

// TestProxyConformanceGoSDK: the same against the go-sdk v1.8.0
// conformance everything-server, which also speaks the stateless
// 2026-07-28 revision: the proxy's upstream speaks its clients' handshake
// era, so what changed between the eras (logging/setLevel, resource
// subscriptions) passes through.
func TestProxyConformanceGoSDK(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	bin := filepath.Join(t.TempDir(), "everything-server")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/modelcontextprotocol/go-sdk/conformance/everything-server").CombinedOutput(); err != nil {
		t.Fatalf("building the go-sdk conformance server: %v\n%s", err, out)
	}
	// Both of its HTTP modes: stateless (its default, where the issue saw
	// logging/setLevel and resource subscriptions fail through the proxy)
	// and with sessions.
	for _, mode := range []string{"-stateless=true", "-stateless=false"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(bin, "-http", "127.0.0.1:0", mode)
			out := &testkit.Output{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			go func() { _ = cmd.Wait(); close(exited) }()
			t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
			port := testkit.WaitListening(t, cmd.Process.Pid, exited, out, 20*time.Second)
			compareConformance(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
		})
	}
}

// compareConformance runs the suite against direct, through proxy_listen
// (the server's endpoint, and the gateway's at /mcp, the server its only
// one) and through the stdio `rugwatch proxy` (the suite speaks HTTP only:
// a stdioBridge in front starts one `rugwatch proxy` per session), every
// tool approved on first sight. Every scenario that passes directly must
// pass both ways through the proxy, but for a call the proxy refuses by
// contract (a tool the server never listed).
func compareConformance(t *testing.T, direct string) {
	t.Helper()
	dir := t.TempDir()
	env := baseEnv(dir)
	// A data dir of its own, not an ephemeral one: the stdio proxies find
	// the daemon's socket in it, and ask the daemon, which holds the store.
	// The suite opens a session per scenario and leaves them open: one
	// client of thirty sessions, where the default allows sixteen.
	cfg := writeConfig(t, dir, fmt.Sprintf(`data_dir: %s/data
approve_first_seen: true
proxy_listen: 127.0.0.1:0
proxy: { max_sessions_per_client: 64 }
defaults: { schedule: "@every 1h", timeout: 30s }
servers:
  - name: everything
    url: %s
`, dir, direct))
	if r := runBin(t, env, "", "--config", cfg, "init"); r.code != 0 {
		t.Fatalf("rugwatch init: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	d := startDaemon(t, env, "serve", "--config", cfg)
	l, _ := d.wait(0, 60*time.Second, func(l logLine) bool { return l.str("msg") == "proxy listening" })
	// The first poll approves what it sees (approve_first_seen).
	d.wait(0, 60*time.Second, func(l logLine) bool { return l.str("type") == "server.new" && l.str("server") == "everything" })
	// The suite takes no headers: a reverse proxy in front holds the
	// token for it, as a client configured with it would.
	tok := readToken(t, filepath.Join(dir, ".config", "rugwatch", "token"))
	front := withBearer(t, "http://"+l.str("proxy_listen"), tok)
	listen := front + "/mcp/everything"
	bridge := startStdioBridge(t, env, rugwatchBin(t), "--config", cfg, "--log-level", "warn", "proxy", "everything")

	dres := conformanceRun(t, direct)
	routes := []struct {
		name string
		res  map[string][]conformanceCheck
	}{
		{"proxy_listen", conformanceRun(t, listen)},
		{"stdio proxy", conformanceRun(t, bridge.URL)},
		{"gateway", conformanceRun(t, front+"/mcp")},
	}
	listed := map[string]bool{}
	for _, c := range dres["tools-list"] {
		var det struct{ Tools []string }
		_ = json.Unmarshal(c.Details, &det)
		for _, n := range det.Tools {
			listed[n] = true
		}
	}
	var names []string
	for n := range dres {
		names = append(names, n)
	}
	sort.Strings(names)
	dPass := 0
	pass, refused := make([]int, len(routes)), make([]int, len(routes))
	for _, n := range names {
		dOK := conformancePassed(dres[n])
		if dOK {
			dPass++
		}
		for i, r := range routes {
			checks, ran := r.res[n]
			pOK := ran && conformancePassed(checks)
			if pOK {
				pass[i]++
			}
			switch {
			case !ran:
				t.Errorf("scenario %s did not run through the %s", n, r.name)
			case !dOK || pOK:
			case refusedNeverListed(dres[n], checks, listed):
				refused[i]++
				t.Logf("%s through the %s: the server answers a never-listed tool with a \"not found\" result; the proxy refuses the call (by contract)", n, r.name)
			default:
				why := ""
				for _, c := range checks {
					if c.Status == "FAILURE" {
						why = c.ErrorMessage
					}
				}
				t.Errorf("scenario %s passes directly and fails through the %s: %s", n, r.name, why)
			}
		}
	}
	if t.Failed() {
		t.Logf("the stdio proxies' stderr:\n%s", bridge.Stderr.String())
		t.Logf("the daemon's log (proxy_listen):\n%s", d.dump())
	}
	t.Logf("conformance (active suite, %d scenarios): %d pass directly, %d through proxy_listen, %d through the stdio rugwatch proxy (%d sessions, one child each), %d through the gateway; by-contract refusals of a never-listed tool: %d, %d and %d",
		len(names), dPass, pass[0], pass[1], bridge.Opened(), pass[2], refused[0], refused[1], refused[2])
	// (dns-rebinding-protection tests the HTTP front: in the stdio column
	// that is the bridge's Host check, made as proxy_listen makes it.)
	t.Logf("  %-32s %-7s %-13s %-12s %s", "scenario", "direct", "proxy_listen", "stdio proxy", "gateway")
	mark := func(ok bool) string {
		if ok {
			return "pass"
		}
		return "FAIL"
	}
	for _, n := range names {
		t.Logf("  %-32s %-7s %-13s %-12s %s", n, mark(conformancePassed(dres[n])), mark(conformancePassed(routes[0].res[n])), mark(conformancePassed(routes[1].res[n])),
			mark(conformancePassed(routes[2].res[n])))
	}
}

// refusedNeverListed says whether a scenario that passed directly failed
// through the proxy only because the proxy refused, by contract, a call
// of a tool the server never listed, which the server answered directly
// with an isError "not found" result (and the suite counts as a pass).
func refusedNeverListed(direct, proxied []conformanceCheck, listed map[string]bool) bool {
	why := ""
	for _, c := range proxied {
		if c.Status == "FAILURE" {
			why = c.ErrorMessage
		}
	}
	var tool string
	if _, rest, ok := strings.Cut(why, `tool "`); ok {
		tool, _, _ = strings.Cut(rest, `"`)
	}
	var directNotFound bool
	for _, c := range direct {
		var det struct {
			Result struct {
				IsError bool `json:"isError"`
				Content []struct{ Text string }
			}
		}
		_ = json.Unmarshal(c.Details, &det)
		directNotFound = directNotFound || det.Result.IsError && len(det.Result.Content) > 0 && strings.Contains(det.Result.Content[0].Text, "not found")
	}
	refused := strings.Contains(why, "is not approved as it is now") || // a server's endpoint
		strings.Contains(why, "is not served by this gateway: no server serves it approved now") // the gateway
	return tool != "" && !listed[tool] && refused && directNotFound
}

// TestRevokeInForceWhenItReturns: with serve running, a revocation made from
// the CLI is in force for the next call of every client, over stdio
// (`rugwatch proxy`, which asks the daemon) and over proxy_listen, the
// moment the command returns; the issue saw 24 calls forwarded in the
// 0.3 s after revoke returned.
func TestRevokeInForceWhenItReturns(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	r := newProxyRig(t, "proxy_listen: 127.0.0.1:0")
	d := startDaemon(t, r.env, "serve", "--config", r.cfg)
	l, _ := d.wait(0, 60*time.Second, func(l logLine) bool { return l.str("msg") == "proxy listening" })
	tok := readToken(t, filepath.Join(r.dir, ".config", "rugwatch", "token"))
	env := append(slices.Clone(r.env), "RUGWATCH_TEST_BEARER="+tok)
	clients := map[string]*tsClient{
		"stdio":        startTS(t, env, append([]string{"stdio", rugwatchBin(t)}, r.proxyArgs("everything")...)...),
		"proxy_listen": startTS(t, env, "http", "http://"+l.str("proxy_listen")+"/mcp/everything"),
	}
	for name, c := range clients {
		if got := resultText(t, mustCall(t, c, "get-sum", map[string]any{"a": 2, "b": 3})); !strings.Contains(got, "5") {
			t.Fatalf("%s: get-sum before the revocation: %q", name, got)
		}
	}
	r.run(t, 0, "revoke", "everything", "get-sum", "--reason", "in force at once")
	for name, c := range clients {
		if res, _, _ := c.call("get-sum", map[string]any{"a": 2, "b": 3}); res != nil {
			t.Errorf("%s: a call right after revoke returned was forwarded: %s", name, res)
		}
	}
	for _, c := range clients {
		c.close()
	}
	d.stop()
}
