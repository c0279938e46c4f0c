package testkit

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// Output collects what a child process writes (set it as the Cmd's Stdout
// and Stderr), or what an in-process logger writes, and lets a test wait
// for a line, so that readiness is the writer saying so, not a guess at
// how long it takes.
type Output struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	more chan struct{}
}

// Write implements io.Writer. It is safe for concurrent use.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.more == nil {
		o.more = make(chan struct{}, 1)
	}
	n, err := o.buf.Write(p)
	select {
	case o.more <- struct{}{}:
	default:
	}
	return n, err
}

// String returns everything written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// Wrote receives after a Write (several writes may wake it once), so a
// test can re-check a condition each time the child says something
// instead of on a timer. Read String after receiving, never before.
func (o *Output) Wrote() <-chan struct{} {
	_, more := o.state()
	return more
}

func (o *Output) state() (string, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.more == nil {
		o.more = make(chan struct{}, 1)
	}
	return o.buf.String(), o.more
}

// WaitFor returns the first complete line containing s. It fails the test
// if the child exits first (exited is closed) or nothing matches within
// timeout; the bound only keeps a broken child from hanging the run.
func (o *Output) WaitFor(t testing.TB, s string, exited <-chan struct{}, timeout time.Duration) string {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		text, more := o.state()
		for line := range strings.Lines(text) {
			if strings.HasSuffix(line, "\n") && strings.Contains(line, s) {
				return strings.TrimSuffix(line, "\n")
			}
		}
		select {
		case <-more:
		case <-exited:
			// The last lines may have landed just before the exit.
			if line, ok := o.find(s); ok {
				return line
			}
			t.Fatalf("process exited before printing %q:\n%s", s, o.String())
		case <-deadline.C:
			t.Fatalf("no line with %q within %v:\n%s", s, timeout, o.String())
		}
	}
}

func (o *Output) find(s string) (string, bool) {
	for line := range strings.Lines(o.String()) {
		if strings.Contains(line, s) {
			return strings.TrimSuffix(line, "\n"), true
		}
	}
	return "", false
}
