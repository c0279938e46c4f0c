package monitor

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/testkit/testservers"
)

// A server that loops its cursor after the first page would, if the loop
// ended the listing, have every tool behind the loop read as removed. The
// poll fails as hostile instead, and through the Recorder and a real store
// the last good listing stands: b stays approved, no tool.removed event.
func TestRepeatedCursorKeepsLastGoodListing(t *testing.T) {
	var looping atomic.Bool
	srv := testservers.RPCServer(t, func(method string, id, params json.RawMessage) string {
		switch method {
		case "initialize":
			return testservers.Result(id, testservers.RawInit)
		case "tools/list":
			var p struct{ Cursor string }
			_ = json.Unmarshal(params, &p)
			switch {
			case p.Cursor == "":
				return testservers.Result(id, `{"tools":[{"name":"a","inputSchema":{"type":"object"}}],"nextCursor":"p2"}`)
			case looping.Load():
				// Page 2 hides b and points back at itself.
				return testservers.Result(id, `{"tools":[],"nextCursor":"p2"}`)
			default:
				return testservers.Result(id, `{"tools":[{"name":"b","inputSchema":{"type":"object"}}]}`)
			}
		}
		return ""
	})
	target := mcpclient.Target{Name: "srv", Transport: mcpclient.TransportHTTP, URL: srv.URL}
	h := newHarness(t)

	l, err := mcpclient.Poll(pollCtx(t, 10*time.Second), target, mcpclient.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Tools) != 2 || l.Pages != 2 {
		t.Fatalf("good listing: %d tools on %d pages", len(l.Tools), l.Pages)
	}
	h.record(l, nil)
	h.approve("a")
	h.approve("b")
	if rec, _ := h.record(l, nil); rec.Tools["b"].State != rugwatch.StateApproved {
		t.Fatalf("b is %s after approval", rec.Tools["b"].State)
	}

	looping.Store(true)
	l, err = mcpclient.Poll(pollCtx(t, 10*time.Second), target, mcpclient.DialOptions{})
	var he *mcpclient.HostileError
	if !errors.As(err, &he) || !strings.Contains(err.Error(), `repeats the cursor "p2"`) {
		t.Fatalf("looping cursor: listing %v, err %v; want a hostile response error naming the cursor", l, err)
	}
	rec, events := h.record(l, err)
	for _, name := range []string{"a", "b"} {
		if st := rec.Tools[name].State; st != rugwatch.StateApproved {
			t.Errorf("%s is %s after the looping poll, want still approved", name, st)
		}
	}
	for _, e := range events {
		if e.Type == rugwatch.EventToolRemoved || e.Type == rugwatch.EventToolDrifted {
			t.Errorf("looping poll raised %s for %s", e.Type, e.Tool)
		}
	}
	if rec.Reachable || !strings.Contains(rec.Error, "hostile server response") {
		t.Errorf("record: reachable %v, error %q; want unreachable with the reason", rec.Reachable, rec.Error)
	}
}

// 2 MiB of error text with ANSI and bidi, from initialize and from stderr:
// the error rugwatch returns is already short and inert, so the log line,
// the store and --json all are.
func TestServerErrorTextIsBoundedAtTheSource(t *testing.T) {
	hostile := "\x1b[2J\x1b[31mfatal\u202e" + strings.Repeat("\x1b[1mA\u2066", 2<<20/8)
	check := func(t *testing.T, err error, wantPrefix string) {
		t.Helper()
		if err == nil {
			t.Fatal("poll succeeded")
		}
		msg := err.Error()
		if len(msg) > mcpclient.MaxErrorText+64 {
			t.Errorf("error is %d bytes", len(msg))
		}
		if strings.ContainsAny(msg, "\x1b\u202e\u2066\n\r") {
			t.Errorf("error carries raw control or bidi characters: %q", msg[:min(len(msg), 200)])
		}
		if !strings.Contains(msg, wantPrefix) || !strings.Contains(msg, "more bytes)") {
			t.Errorf("error lacks %q or the cut note: %q", wantPrefix, msg[:min(len(msg), 300)])
		}
		h := newHarness(t)
		rec, _ := h.record(nil, err)
		if strings.ContainsAny(rec.Error, "\x1b\u202e") || len(rec.Error) > mcpclient.MaxErrorText+64 {
			t.Errorf("stored error: %d bytes, %q", len(rec.Error), rec.Error[:min(len(rec.Error), 200)])
		}
	}

	t.Run("initialize error", func(t *testing.T) {
		data, _ := json.Marshal(hostile)
		srv := testservers.RPCServer(t, func(method string, id, params json.RawMessage) string {
			return fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"error":{"code":-32603,"message":%s,"data":%s}}`, id, data, data)
		})
		_, err := mcpclient.Poll(pollCtx(t, 10*time.Second), mcpclient.Target{Transport: mcpclient.TransportHTTP, URL: srv.URL}, mcpclient.DialOptions{})
		var se *mcpclient.ServerError
		if !errors.As(err, &se) || se.Code != -32603 || len(se.Message) > 4*mcpclient.MaxServerText+32 {
			t.Fatalf("err = %.300v, want a *ServerError with a capped message", err)
		}
		check(t, err, `initialize: server error -32603: \e[2J\e[31mfatal\u202e\e[1mA\u2066`)
	})

	t.Run("stderr", func(t *testing.T) {
		tg := mcpclient.Target{Transport: mcpclient.TransportStdio, Command: "sh", Args: []string{"-c",
			`{ printf '\033[2J\033[31mboot\342\200\256'; i=0; while [ $i -lt 16384 ]; do printf '\033[1mA\342\201\246%.0s' 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; i=$((i+1)); done; printf 'last words'; } >&2; exit 3`}}
		_, err := mcpclient.Poll(pollCtx(t, 30*time.Second), tg, mcpclient.DialOptions{Limits: mcpclient.Limits{MaxStderrBytes: 4 << 20}})
		check(t, err, `stderr: \e[2J\e[31mboot\u202e\e[1mA\u2066`)
		if !strings.HasSuffix(err.Error(), "last words") {
			t.Errorf("the tail of stderr is lost: …%q", err.Error()[max(0, len(err.Error())-100):])
		}
	})
}
