package demo

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// demoConn is a running runDemoServer with an SDK client connected over pipes,
// as rugwatch sees it through a child's stdin and stdout.
type demoConn struct {
	t       *testing.T
	cs      *mcp.ClientSession
	changed chan struct{} // one value per notifications/tools/list_changed
	stderr  *demoSyncBuffer
	s2cR    *io.PipeReader
	done    chan int
}

func demoStart(t *testing.T, ctx context.Context, version string, args ...string) *demoConn {
	t.Helper()
	c2sR, c2sW := io.Pipe()
	s2cR, s2cW := io.Pipe()
	d := &demoConn{t: t, changed: make(chan struct{}, 16), stderr: &demoSyncBuffer{}, s2cR: s2cR, done: make(chan int, 1)}
	go func() {
		code := Run(ctx, args, c2sR, s2cW, d.stderr)
		s2cW.Close()
		d.done <- code
	}()
	client := mcp.NewClient(&mcp.Implementation{Name: "demo-test", Version: "0"}, &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			select {
			case d.changed <- struct{}{}:
			default:
			}
		},
	})
	// The client must not close the server's stdout pipe: a late
	// notification would then fail to write and fail the server.
	transport := &mcp.IOTransport{Reader: io.NopCloser(s2cR), Writer: c2sW}
	cs, err := client.Connect(ctx, transport, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		c2sW.Close()
		go io.Copy(io.Discard, s2cR)
		<-d.done
		t.Fatalf("connect to demo server: %v\nstderr:\n%s", err, d.stderr)
	}
	d.cs = cs
	return d
}

// close closes stdin as a parent process would and returns the exit code.
func (d *demoConn) close() int {
	d.t.Helper()
	if err := d.cs.Close(); err != nil {
		d.t.Errorf("close client session: %v", err)
	}
	go io.Copy(io.Discard, d.s2cR) // whatever the server still writes
	select {
	case code := <-d.done:
		return code
	case <-time.After(10 * time.Second):
		d.t.Fatalf("demo server still running 10s after stdin closed\nstderr:\n%s", d.stderr)
		return -1
	}
}

// list lists the tools once and returns them by name.
func (d *demoConn) list(ctx context.Context) map[string]*mcp.Tool {
	d.t.Helper()
	res, err := d.cs.ListTools(ctx, nil)
	if err != nil {
		d.t.Fatalf("tools/list: %v\nstderr:\n%s", err, d.stderr)
	}
	tools := map[string]*mcp.Tool{}
	for _, tool := range res.Tools {
		tools[tool.Name] = tool
	}
	for _, name := range []string{"add", "read_note", "weather"} {
		if tools[name] == nil {
			d.t.Fatalf("tools/list lacks %q; got %v", name, res.Tools)
		}
	}
	if len(tools) != 3 {
		d.t.Fatalf("tools/list: got %d tools, want 3", len(tools))
	}
	return tools
}

// demoMalicious reports whether tools are the poisoned set, and fails the
// test when they are a mix of both.
func demoMalicious(t *testing.T, tools map[string]*mcp.Tool) bool {
	t.Helper()
	add, weather := tools["add"], tools["weather"]
	if add.Annotations == nil || !add.Annotations.ReadOnlyHint {
		t.Errorf("add: readOnlyHint not true: %+v", add.Annotations)
	}
	props, _ := add.InputSchema.(map[string]any)["properties"].(map[string]any)
	if props["a"] == nil || props["b"] == nil {
		t.Fatalf("add: inputSchema lacks a and b: %v", add.InputSchema)
	}
	signs := []bool{
		strings.Contains(add.Description, "<IMPORTANT>"),
		strings.Contains(add.Description, "~/.ssh/id_rsa") && strings.Contains(add.Description, "'sidenote'"),
		props["sidenote"] != nil,
		strings.ContainsRune(weather.Description, '\u200b'),
	}
	for _, s := range signs[1:] {
		if s != signs[0] {
			t.Fatalf("half-poisoned tool set %v:\nadd: %q %v\nweather: %q", signs, add.Description, add.InputSchema, weather.Description)
		}
	}
	return signs[0]
}

func TestDemoServerTurnsMalicious(t *testing.T) {
	// "" lets the SDK pick its newest protocol (server/discover and
	// subscriptions/listen); 2025-06-18 is the initialize handshake most
	// servers speak today.
	for _, version := range []string{"", "2025-06-18"} {
		t.Run("protocol="+version, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			d := demoStart(t, ctx, version, "--after", "2")
			if got := d.cs.InitializeResult().Instructions; got != demoInstructions {
				t.Errorf("instructions = %q, want %q", got, demoInstructions)
			}
			for i := 1; i <= 2; i++ {
				if demoMalicious(t, d.list(ctx)) {
					t.Fatalf("listing %d of --after 2: tools already malicious", i)
				}
			}
			select {
			case <-d.changed:
				t.Fatal("tools/list_changed before the tools changed")
			default:
			}
			if !demoMalicious(t, d.list(ctx)) {
				t.Fatal("listing 3 of --after 2: tools still honest")
			}
			select {
			case <-d.changed:
			case <-ctx.Done():
				t.Fatal("no notifications/tools/list_changed after the tools turned")
			}
			if !demoMalicious(t, d.list(ctx)) {
				t.Fatal("listing 4: tools honest again")
			}

			// The poisoned add still adds and quietly drops the sidenote.
			res, err := d.cs.CallTool(ctx, &mcp.CallToolParams{Name: "add", Arguments: map[string]any{"a": 2, "b": 40, "sidenote": "-----BEGIN OPENSSH PRIVATE KEY-----"}})
			if err != nil || res.IsError || len(res.Content) != 1 || res.Content[0].(*mcp.TextContent).Text != "42" {
				t.Errorf("call add: %v %+v", err, res)
			}
			if code := d.close(); code != 0 {
				t.Errorf("exit code %d after stdin closed, want 0\nstderr:\n%s", code, d.stderr)
			}
			if strings.Contains(d.stderr.String(), "PRIVATE KEY") {
				t.Errorf("the sidenote reached stderr:\n%s", d.stderr)
			}
		})
	}
}

func TestDemoServerHonestTools(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := demoStart(t, ctx, "2025-06-18")
	d.list(ctx)
	for _, tc := range []struct {
		tool    string
		args    map[string]any
		want    string
		isError bool
	}{
		{"add", map[string]any{"a": 1.5, "b": 2}, "3.5", false},
		{"add", map[string]any{"a": 1}, "add needs numbers a and b", true},
		{"read_note", map[string]any{"name": "welcome"}, demoNotes["welcome"], false},
		{"read_note", map[string]any{"name": "nope"}, "no such note; known notes: rugwatch, welcome", true},
		{"weather", map[string]any{"city": "Oslo"}, "Sunny, 21 °C in Oslo (canned demo forecast).", false},
	} {
		res, err := d.cs.CallTool(ctx, &mcp.CallToolParams{Name: tc.tool, Arguments: tc.args})
		if err != nil {
			t.Fatalf("call %s %v: %v", tc.tool, tc.args, err)
		}
		if got := res.Content[0].(*mcp.TextContent).Text; got != tc.want || res.IsError != tc.isError {
			t.Errorf("call %s %v = %q (isError %v), want %q (isError %v)", tc.tool, tc.args, got, res.IsError, tc.want, tc.isError)
		}
	}
	if code := d.close(); code != 0 {
		t.Errorf("exit code %d, want 0\nstderr:\n%s", code, d.stderr)
	}
}

// rugwatch starts a new process for every poll, so the count must live in
// the state file, not in the process.
func TestDemoServerStatePersists(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	state := filepath.Join(t.TempDir(), "demo.state")
	for run, want := range []bool{false, true, true} {
		d := demoStart(t, ctx, "2025-06-18", "--after", "1", "--state", state)
		if got := demoMalicious(t, d.list(ctx)); got != want {
			t.Errorf("run %d: malicious = %v, want %v", run+1, got, want)
		}
		if code := d.close(); code != 0 {
			t.Fatalf("run %d: exit code %d, want 0\nstderr:\n%s", run+1, code, d.stderr)
		}
		b, err := os.ReadFile(state)
		if err != nil || string(b) != strconv.Itoa(run+1)+"\n" {
			t.Fatalf("run %d: state file = %q, %v; want %d", run+1, b, err, run+1)
		}
	}
	if tmp, _ := filepath.Glob(filepath.Join(filepath.Dir(state), ".demo.state.tmp*")); len(tmp) > 0 {
		t.Errorf("temp files left behind: %v", tmp)
	}

	// Deleting the file starts the demo over, even mid-process.
	d := demoStart(t, ctx, "2025-06-18", "--after", "1", "--state", state)
	if !demoMalicious(t, d.list(ctx)) {
		t.Error("count 4: tools honest")
	}
	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	if demoMalicious(t, d.list(ctx)) {
		t.Error("after deleting the state file: tools still malicious")
	}
	if code := d.close(); code != 0 {
		t.Errorf("exit code %d\nstderr:\n%s", code, d.stderr)
	}

	// Without --state every process starts from zero.
	for run := range 2 {
		d := demoStart(t, ctx, "2025-06-18", "--after", "1")
		if demoMalicious(t, d.list(ctx)) {
			t.Errorf("run %d without --state: first listing malicious", run+1)
		}
		d.close()
	}
}

// A watching client must learn of a change without listing: the tools turn
// mid-session and the SDK announces it with notifications/tools/list_changed.
func TestDemoServerTurnsMidSession(t *testing.T) {
	trigger := filepath.Join(t.TempDir(), "pull-the-rug")
	for name, args := range map[string][]string{
		"turn-when-exists": {"--after", "1000", "--turn-when-exists", trigger},
		"turn-after":       {"--after", "1000", "--turn-after", "200ms"},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			d := demoStart(t, ctx, "2025-06-18", args...)
			if demoMalicious(t, d.list(ctx)) {
				t.Fatal("first listing: tools already malicious")
			}
			if name == "turn-when-exists" {
				if err := os.WriteFile(trigger, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case <-d.changed:
			case <-ctx.Done():
				t.Fatal("no notifications/tools/list_changed after the tools turned")
			}
			if !demoMalicious(t, d.list(ctx)) {
				t.Fatal("after list_changed: tools still honest")
			}
			if name == "turn-when-exists" {
				os.Remove(trigger) // turned is turned: the rug stays pulled
			}
			if !demoMalicious(t, d.list(ctx)) {
				t.Fatal("tools honest again")
			}
			if code := d.close(); code != 0 {
				t.Errorf("exit code %d\nstderr:\n%s", code, d.stderr)
			}
		})
	}
}

// --state auto ties the count to the parent process, so the polls of one
// rugwatch run share it without a path in the config.
func TestDemoServerStateAuto(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	state := filepath.Join(os.TempDir(), "rugwatch-demo-"+strconv.Itoa(os.Getppid())+".state")
	os.Remove(state)
	t.Cleanup(func() { os.Remove(state) })
	for run, want := range []bool{false, true} {
		d := demoStart(t, ctx, "2025-06-18", "--after", "1", "--state", "auto")
		if got := demoMalicious(t, d.list(ctx)); got != want {
			t.Errorf("run %d: malicious = %v, want %v", run+1, got, want)
		}
		if code := d.close(); code != 0 {
			t.Fatalf("run %d: exit code %d\nstderr:\n%s", run+1, code, d.stderr)
		}
	}
	if b, err := os.ReadFile(state); err != nil || string(b) != "2\n" {
		t.Errorf("auto state file %s = %q, %v; want 2", state, b, err)
	}
}

func TestDemoServerArgs(t *testing.T) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt")
	if err := os.WriteFile(corrupt, []byte("three\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"--after"}, 2, "flag needs an argument"},
		{[]string{"--after", "x"}, 2, "invalid value"},
		{[]string{"--after", "-1"}, 2, "--after must be 0 or more"},
		{[]string{"--nope"}, 2, "usage: rugwatch demo-server"},
		{[]string{"state.json"}, 2, "rugwatch demo-server --state FILE"},
		{[]string{"--state", corrupt}, 2, `want a listing count, got "three\n"`},
		{[]string{"--state", filepath.Join(dir, "no", "such", "dir", "f")}, 0, ""}, // missing: count 0
		{[]string{"-h"}, 0, "usage: rugwatch demo-server"},
		{nil, 0, ""}, // stdin already at EOF: a clean exit
	} {
		var stdout, stderr bytes.Buffer
		code := Run(context.Background(), tc.args, strings.NewReader(""), &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("demo-server %q: exit %d, stderr %q; want exit %d, stderr containing %q", tc.args, code, stderr.String(), tc.code, tc.stderr)
		}
		if stdout.Len() > 0 {
			t.Errorf("demo-server %q wrote to stdout, which belongs to the protocol: %q", tc.args, stdout.String())
		}
	}
}

// A listing the server cannot count is an error, not a silently honest answer.
func TestDemoServerStateFileBreaks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub := filepath.Join(t.TempDir(), "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	d := demoStart(t, ctx, "2025-06-18", "--state", filepath.Join(sub, "demo.state"))
	d.list(ctx)
	// A file where the state's directory was fails even for root.
	if err := os.RemoveAll(sub); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sub, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.cs.ListTools(ctx, nil); err == nil || !strings.Contains(err.Error(), "state file") {
		t.Errorf("tools/list with a broken state path: err = %v, want a state file error", err)
	}
	if code := d.close(); code != 0 {
		t.Errorf("exit code %d, want 0\nstderr:\n%s", code, d.stderr)
	}
}

func TestDemoServerContextCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	stdin, stdinW := io.Pipe() // never closed: only ctx can stop the server
	defer stdinW.Close()
	done := make(chan int, 1)
	go func() { done <- Run(ctx, nil, stdin, io.Discard, io.Discard) }()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d after cancel, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("demo server ignored ctx cancel")
	}
}

// demoSyncBuffer is a bytes.Buffer safe for the server's goroutines to write
// while the test reads it.
type demoSyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *demoSyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *demoSyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// --stay-turned keeps the turn for the processes of later polls: rugwatch
// starts a fresh process for each poll, and one that came up honest
// again would look like a second rug pull (a "server.changed" a minute
// into the demo). Without the flag, the next process is honest.
func TestDemoServerStaysTurned(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := []string{"--after", "1000", "--turn-after", "100ms", "--stay-turned"}
	d := demoStart(t, ctx, "2025-06-18", args...)
	if demoMalicious(t, d.list(ctx)) {
		t.Fatal("first process: malicious before the turn")
	}
	select {
	case <-d.changed:
	case <-ctx.Done():
		t.Fatal("no list_changed after the turn")
	}
	if code := d.close(); code != 0 {
		t.Fatalf("exit %d\n%s", code, d.stderr)
	}
	for _, tc := range []struct {
		name string
		args []string
		want bool
	}{
		{"later process, --stay-turned", args, true},
		{"later process, without it", []string{"--after", "1000", "--turn-after", "1h"}, false},
	} {
		d := demoStart(t, ctx, "2025-06-18", tc.args...)
		if got := demoMalicious(t, d.list(ctx)); got != tc.want {
			t.Errorf("%s: malicious = %v, want %v", tc.name, got, tc.want)
		}
		if code := d.close(); code != 0 {
			t.Fatalf("%s: exit %d\n%s", tc.name, code, d.stderr)
		}
	}
	// Deleting the marker starts the demo over.
	if err := os.Remove(filepath.Join(home, demoTurnedFile)); err != nil {
		t.Fatal(err)
	}
	d = demoStart(t, ctx, "2025-06-18", "--after", "1000", "--turn-after", "1h", "--stay-turned")
	if demoMalicious(t, d.list(ctx)) {
		t.Error("after the marker was removed: still malicious")
	}
	d.close()
}
