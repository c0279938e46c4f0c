package monitor

import (
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/sandbox"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/testkit/hostile"
	"github.com/rugwatch/rugwatch/testkit/storetest"
)

// TestRecorderKeepsSandboxNote: the record says whether the last poll ran
// sandboxed and why not, and the warning is logged once per server, not
// on every poll.
func TestRecorderKeepsSandboxNote(t *testing.T) {
	db := storetest.Open(t, t.TempDir(), store.Options{})
	var logs strings.Builder
	r := &Recorder{DB: db, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	note := "not sandboxed (sandbox: auto): sandbox unavailable: creating namespaces: operation not permitted"
	for range 3 {
		if _, _, err := r.Record("a", mcpclient.TransportStdio, &mcpclient.Listing{SandboxNote: note}, nil); err != nil {
			t.Fatal(err)
		}
	}
	rec, _, err := r.Record("b", mcpclient.TransportStdio, &mcpclient.Listing{Sandboxed: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Sandboxed || rec.SandboxNote != "" {
		t.Errorf("b: sandboxed=%v note=%q", rec.Sandboxed, rec.SandboxNote)
	}
	var a store.ServerRecord
	if err := db.View(func(tx *store.Tx) error {
		var err error
		a, _, err = tx.Server("a")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(a)
	if !strings.Contains(string(b), `"sandboxed":false`) || !strings.Contains(string(b), `"sandbox_note":"`+note+`"`) {
		t.Errorf("stored record lacks the sandbox fields: %s", b)
	}
	if n := strings.Count(logs.String(), "stdio server not sandboxed"); n != 1 {
		t.Errorf("warned %d times, want once:\n%s", n, logs.String())
	}
}

// TestNetworkRefusedIsAnEventEveryPoll: a destination the sandbox refused
// the server is a network.refused event naming the key that would allow
// it, on every poll, including one whose listing is unchanged (the fast
// path that skips evaluation).
func TestNetworkRefusedIsAnEventEveryPoll(t *testing.T) {
	f := newHostile(t, "", map[string]string{"HOSTILE_CONNECT": "exfil.example.test:443"})
	f.target.Sandbox.Allow = func(string) string { return "servers[0].egress (rugwatch.yaml line 7)" }
	h := newHarness(t)
	var mu sync.Mutex
	var events []rugwatch.Event
	p := &Poller{Recorder: h.rec, Log: quietLog(), OnEvent: func(e rugwatch.Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}}
	spec := ServerSpec{Name: "srv", Transport: mcpclient.TransportStdio, Timeout: 60 * time.Second, Resolve: func() (mcpclient.Target, error) { return f.target, nil }}
	for poll := 1; poll <= 2; poll++ {
		mu.Lock()
		events = nil
		mu.Unlock()
		if err := p.PollOne(pollCtx(t, 90*time.Second), spec); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		var refused []rugwatch.Event
		for _, e := range events {
			if e.Type == rugwatch.EventNetworkRefused {
				refused = append(refused, e)
			}
		}
		mu.Unlock()
		if len(refused) != 1 || refused[0].Severity != rugwatch.SeverityWarning ||
			!strings.Contains(refused[0].Message, "exfil.example.test:443") || !strings.Contains(refused[0].Message, "servers[0].egress (rugwatch.yaml line 7)") {
			t.Fatalf("poll %d: network.refused events %+v", poll, refused)
		}
	}
	// Allowed, the same server is let through the refusal and raises none.
	f.target.Sandbox.Egress = []string{"exfil.example.test:443"}
	events = nil
	if err := p.PollOne(pollCtx(t, 90*time.Second), spec); err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.Type == rugwatch.EventNetworkRefused {
			t.Fatalf("an allowed destination raised %+v", e)
		}
	}
}

type hostileFixture struct {
	target mcpclient.Target
}

// newHostile is the client's hostile server (mcpclient/testdata) against
// a laid-out machine (testkit/hostile), as a sandboxed stdio target.
func newHostile(t *testing.T, mode sandbox.Mode, env map[string]string) hostileFixture {
	t.Helper()
	f := hostile.New(t, "../mcpclient/testdata/hostile.mjs", env)
	return hostileFixture{target: mcpclient.Target{
		Name: "hostile", Transport: mcpclient.TransportStdio, Command: f.Node, Args: []string{f.Script}, Env: f.Env,
		Sandbox: mcpclient.Sandbox{Mode: mode, Hide: f.Hide, Home: f.SandboxHome,
			Resources: sandbox.Resources{MemoryBytes: 512 << 20}},
	}}
}
