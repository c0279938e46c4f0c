package main

// The in-process serve test lives in the first file of the package so it
// runs before the end-to-end tests, whose fixture servers leave SDK
// session goroutines behind that are not the daemon's.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch/control"
	"go.uber.org/goleak"
)

func TestServeStartsAndStopsInProcess(t *testing.T) {
	// Cleanups run last-in first-out: this check runs after the fixture
	// servers are closed, so only goroutines the daemon left would show.
	ignore := goleak.IgnoreCurrent()
	// The fixture servers' own SDK sessions may outlive their listeners;
	// they are the test's, not the daemon's.
	t.Cleanup(func() {
		goleak.VerifyNone(t, ignore,
			goleak.IgnoreAnyFunction("github.com/modelcontextprotocol/go-sdk/mcp.(*streamableServerConn).Read"),
			goleak.IgnoreAnyFunction("github.com/modelcontextprotocol/go-sdk/mcp.(*sseServerConn).Read"))
	})
	_, url, sse := fixtureHTTP(t)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, fmt.Sprintf(`ephemeral: true
approve_first_seen: true
http_listen: 127.0.0.1:0
defaults: { schedule: "@every 1h", timeout: 5s }
servers:
  - name: http
    url: %s
    watch: true
  - name: sse
    url: %s
    transport: sse
    watch: true
`, url, sse))
	ready := make(chan *daemon, 1)
	var logs bytes.Buffer
	app := &App{Stdin: bytes.NewReader(nil), Stdout: io.Discard, Stderr: &syncWriter{w: &logs}, LookupEnv: func(string) (string, bool) { return "", false },
		ready: func(d *daemon) { ready <- d }}
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() { code <- app.Run(ctx, []string{"--config", cfg, "serve"}) }()
	var d *daemon
	select {
	case d = <-ready:
	case c := <-code:
		t.Fatalf("serve exited %d before it was ready:\n%s", c, logs.String())
	case <-time.After(15 * time.Second):
		t.Fatal("serve not ready in 15s")
	}
	base := "http://" + d.healthAddr.String()
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %s", path, resp.Status)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	// The control socket answers, and a check polls through the daemon.
	cfgv, _, _ := d.current()
	r, ok := control.Dial(ctx, socketPath(cfgv))
	if !ok {
		t.Fatal("control socket does not answer")
	}
	rep, err := r.Check(ctx, nil)
	r.Close()
	if err != nil || len(rep.Servers) != 2 || !rep.Clean() {
		t.Fatalf("check through the socket: %+v, %v", rep, err)
	}
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("serve exited %d:\n%s", c, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop within 15s of cancel")
	}
}

// syncWriter serialises writes from the daemon's goroutines.
type syncWriter struct {
	mu chanMutex
	w  io.Writer
}

type chanMutex struct{ c chan struct{} }

func (m *chanMutex) lock() {
	if m.c == nil {
		m.c = make(chan struct{}, 1)
	}
	m.c <- struct{}{}
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.lock()
	defer func() { <-s.mu.c }()
	return s.w.Write(p)
}
