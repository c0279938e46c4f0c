package mcpclient

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch/sandbox"
	"github.com/rugwatch/rugwatch/testkit"
	"github.com/rugwatch/rugwatch/testkit/testservers"
)

func TestPollEveryTransportSeesTheSameTools(t *testing.T) {
	streamable, sse := httpTargets(t, testservers.FixtureServer(5, 0))
	targets := []Target{selfTarget(t, "sdk", map[string]string{"TOOLS": "5"}), streamable, sse}
	var want []Tool
	for _, tg := range targets {
		t.Run(tg.Transport, func(t *testing.T) {
			l, err := Poll(pollCtx(t, 20*time.Second), tg, DialOptions{})
			if err != nil {
				t.Fatalf("poll: %v", err)
			}
			if len(l.Tools) != 5 {
				t.Fatalf("got %d tools, want 5", len(l.Tools))
			}
			if l.Instructions == nil || *l.Instructions != "Use these tools for arithmetic." || !l.InstructionsDigest.Valid() {
				t.Errorf("instructions = %v, digest %q", l.Instructions, l.InstructionsDigest)
			}
			for _, tool := range l.Tools {
				if !tool.Digest.Valid() {
					t.Errorf("tool %s: bad digest %q", tool.Name, tool.Digest)
				}
			}
			if want == nil {
				want = l.Tools
				return
			}
			for i := range want {
				if want[i].Name != l.Tools[i].Name || want[i].Digest != l.Tools[i].Digest {
					t.Errorf("tool %d: %s %s over %s, %s %s over stdio", i, l.Tools[i].Name, l.Tools[i].Digest, tg.Transport, want[i].Name, want[i].Digest)
				}
			}
		})
	}
}

func TestPollFollowsPages(t *testing.T) {
	streamable, _ := httpTargets(t, testservers.FixtureServer(250, 40))
	l, err := Poll(pollCtx(t, 20*time.Second), streamable, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Tools) != 250 || l.Pages != 7 {
		t.Fatalf("got %d tools in %d pages, want 250 in 7", len(l.Tools), l.Pages)
	}
	_, err = Poll(pollCtx(t, 20*time.Second), streamable, DialOptions{Limits: Limits{MaxPages: 3}})
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != "max_pages" {
		t.Fatalf("with max_pages 3: err = %v, want max_pages limit", err)
	}
}

func TestPollRefusesHostileResponses(t *testing.T) {
	cases := []struct {
		scenario string
		limits   Limits
		hostile  bool   // want *HostileError
		limit    string // want *LimitError with this limit
	}{
		{scenario: "dup-keys", hostile: true},
		{scenario: "dup-instructions", hostile: true},
		{scenario: "dup-tools-key", hostile: true},
		{scenario: "dup-tools-case", hostile: true},
		{scenario: "padded-dup", hostile: true},
		{scenario: "dup-names", hostile: true},
		{scenario: "bad-utf8", hostile: true},
		{scenario: "deep", hostile: true},
		{scenario: "no-tools", hostile: true},
		{scenario: "huge", limits: Limits{MaxResponseBytes: 1 << 20}, limit: "max_response_bytes"},
		{scenario: "100k", limit: "max_tools"},
		{scenario: "100k", limits: Limits{MaxTools: 200_000, MaxListingBytes: 1 << 20}, limit: "max_listing_bytes"},
	}
	for _, c := range cases {
		t.Run(c.scenario, func(t *testing.T) {
			_, err := Poll(pollCtx(t, 30*time.Second), selfTarget(t, "raw:"+c.scenario, nil), DialOptions{Limits: c.limits})
			if err == nil {
				t.Fatal("poll succeeded, want it refused")
			}
			var he *HostileError
			var le *LimitError
			switch {
			case c.hostile && !errors.As(err, &he):
				t.Fatalf("err = %v, want a hostile response error", err)
			case c.limit != "" && !strings.Contains(err.Error(), c.limit):
				t.Fatalf("err = %v, want it to name %s", err, c.limit)
			case c.limit == "max_tools" && !errors.As(err, &le):
				t.Fatalf("err = %v (%T), want *LimitError", err, err)
			}
		})
	}
}

func TestPollHugeHTTPBodyIsRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(200)
		_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{"x":"`))
		chunk := []byte(strings.Repeat("A", 64<<10))
		for range 64 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	_, err := Poll(pollCtx(t, 10*time.Second), Target{Transport: TransportHTTP, URL: srv.URL}, DialOptions{Limits: Limits{MaxResponseBytes: 1 << 20}})
	if err == nil || !strings.Contains(err.Error(), "max_response_bytes") {
		t.Fatalf("err = %v, want max_response_bytes", err)
	}
}

// A repeated cursor fails the poll: a listing that loops is never
// complete (see TestRepeatedCursorKeepsLastGoodListing for the store).
func TestPollRefusesRepeatedCursor(t *testing.T) {
	l, err := Poll(pollCtx(t, 10*time.Second), selfTarget(t, "raw:repeat-cursor", nil), DialOptions{})
	var he *HostileError
	if !errors.As(err, &he) || !strings.Contains(err.Error(), `page 2 repeats the cursor "same"`) {
		t.Fatalf("listing %+v, err %v; want a hostile response error at page 2", l, err)
	}
}

func TestPollEndsAtItsTimeout(t *testing.T) {
	for _, scenario := range []string{"silent", "silent-init"} {
		t.Run(scenario, func(t *testing.T) {
			_, err := Poll(pollCtx(t, time.Second), selfTarget(t, "raw:"+scenario, nil), DialOptions{})
			if err == nil {
				t.Fatal("poll of a silent server succeeded")
			}
			// It ended because its timeout fired, not for another reason;
			// how long past the deadline it returns is a figure for
			// BenchmarkPollPastItsTimeout, not an assertion.
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("poll of a silent server: %v, want its deadline exceeded", err)
			}
		})
	}
	t.Run("http", func(t *testing.T) {
		hang := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		}))
		defer srv.Close()
		defer close(hang)
		_, err := Poll(pollCtx(t, time.Second), Target{Transport: TransportHTTP, URL: srv.URL}, DialOptions{})
		if err == nil {
			t.Fatal("poll of a hung server succeeded")
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("poll of a hung server: %v, want its deadline exceeded", err)
		}
	})
}

func TestPoll100kTools(t *testing.T) {
	if testing.Short() {
		t.Skip("large listing")
	}
	l, err := Poll(pollCtx(t, 60*time.Second), selfTarget(t, "raw:100k", nil), DialOptions{Limits: Limits{MaxTools: 200_000}})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Tools) != 100_000 {
		t.Fatalf("got %d tools", len(l.Tools))
	}
}

// sharedDir is where a sandboxed stdio server may write what a test reads.
func sharedDir(t testing.TB) string { return testkit.OutsideTmp(t, 0o777) }

// TestStdioLeavesNothingBehind is the unsandboxed path (sandbox: off, or
// auto where the kernel refuses): the process group and every descendant
// are killed. Sandboxed, the PID namespace does it (sandbox_test.go), and a
// pid written from inside would name another process out here.
func TestStdioLeavesNothingBehind(t *testing.T) {
	pidfile := filepath.Join(sharedDir(t), "pid")
	target := selfTarget(t, "grandchild", map[string]string{"PIDFILE": pidfile})
	target.Sandbox.Mode = sandbox.Off
	l, err := Poll(pollCtx(t, 20*time.Second), target, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Tools) != 2 {
		t.Fatalf("got %d tools", len(l.Tools))
	}
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(string(b))
	// The grandchild was reparented; it must be dead (a zombie reaped by
	// init at worst, never running). The poll sent SIGKILL; WaitGone
	// waits for the kernel to finish delivering it.
	testkit.WaitGone(t, pid, 10*time.Second)
}

func TestStdioChildSeesOnlyItsEnvironment(t *testing.T) {
	t.Setenv("RUGWATCH_WEBHOOK_SECRET", "whsec_topsecret")
	t.Setenv("SMTP_PASSWORD", "hunter2")
	dump := filepath.Join(sharedDir(t), "env")
	target := selfTarget(t, "dumpenv", map[string]string{"DUMPFILE": dump, "API_KEY": "for-the-child"})
	target.Sandbox.Mounts = []sandbox.Mount{{Path: filepath.Dir(dump), Write: true}}
	_, err := Poll(pollCtx(t, 20*time.Second), target, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]bool{}
	for _, kv := range strings.Split(string(b), "\n") {
		k, _, _ := strings.Cut(kv, "=")
		env[k] = true
	}
	for _, leak := range []string{"whsec_topsecret", "hunter2"} {
		if strings.Contains(string(b), leak) {
			t.Errorf("child environment holds %q", leak)
		}
	}
	// The sandbox's own proxy variables point at its forwarder: they are
	// not the daemon's.
	sandboxVars := sandbox.ProxyVariables()
	for k := range env {
		switch {
		case k == "PATH", k == "HOME", k == "API_KEY", k == "DUMPFILE", k == "RUGWATCH_TEST_SERVER", k == markerVar:
		case slices.Contains(sandboxVars, k):
		default:
			t.Errorf("child got variable %s", k)
		}
	}
	if !env["API_KEY"] {
		t.Error("child did not get its configured API_KEY")
	}
}

func TestStdioStderrIsShownInErrors(t *testing.T) {
	tg := Target{Transport: TransportStdio, Command: "sh", Args: []string{"-c", "echo boom: missing token >&2; exit 3"}}
	_, err := Poll(pollCtx(t, 10*time.Second), tg, DialOptions{})
	if err == nil || !strings.Contains(err.Error(), "boom: missing token") {
		t.Fatalf("err = %v, want the server's stderr in it", err)
	}
}

// A grandchild that double-forks and calls setsid leaves the process group
// and is reparented away; it still must not outlive the poll, nor hold it
// open through the pipes it inherited.
func TestStdioEscapedGrandchildIsKilled(t *testing.T) {
	marker := strconv.Itoa(int(time.Now().UnixNano()%1000000) + 4000000)
	tg := Target{Transport: TransportStdio, Command: "sh", Args: []string{"-c", "( setsid sleep " + marker + " & ); exit 1"}}
	_, err := Poll(pollCtx(t, 3*time.Second), tg, DialOptions{})
	if err == nil {
		t.Fatal("poll of a server that exits succeeded")
	}
	// Had the grandchild's inherited pipes held the poll open, it would
	// have ended only at its 3s timeout.
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("poll ran into its timeout (held open by the escaped grandchild?): %v", err)
	}
	// Every process carrying the marker (the sleep, or a shell not yet
	// replaced by it) must die of the SIGKILL the poll sent.
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(b), marker) {
			if pid, _ := strconv.Atoi(e.Name()); pid != os.Getpid() {
				testkit.WaitGone(t, pid, 10*time.Second)
			}
		}
	}
}

// A server that echoes its credentials in its errors must not put them in
// rugwatch's errors, and so not in logs, the store or alerts.
func TestPollErrorsNeverCarryConfiguredSecrets(t *testing.T) {
	const key = "sk-live-5e3cr3t-9f2a"
	tg := Target{Transport: TransportStdio, Command: "sh", Args: []string{"-c", `echo "auth failed for key $API_KEY" >&2; exit 1`},
		Env: map[string]string{"API_KEY": key}}
	_, err := Poll(pollCtx(t, 10*time.Second), tg, DialOptions{})
	if err == nil || strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "auth failed for key <secret>") {
		t.Fatalf("err = %v", err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad token: "+r.Header.Get("Authorization"), http.StatusUnauthorized)
	}))
	defer srv.Close()
	_, err = Poll(pollCtx(t, 10*time.Second), Target{Transport: TransportHTTP, URL: srv.URL, Headers: map[string]string{"Authorization": "Bearer " + key}}, DialOptions{})
	if err == nil || strings.Contains(err.Error(), key) {
		t.Fatalf("err = %v", err)
	}
}

// A page that is mostly padding outside "tools" lists its tools as any
// other (they are kept as copies, the page is not).
func TestPollPaddedPage(t *testing.T) {
	l, err := Poll(pollCtx(t, 30*time.Second), selfTarget(t, "raw:padded", nil), DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Tools) != 1 || !strings.Contains(string(l.Tools[0].Raw), `"Adds."`) {
		t.Fatalf("tools %+v", l.Tools)
	}
}
