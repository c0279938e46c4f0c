package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	bolt "go.etcd.io/bbolt"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/testkit"
)

// webhookReceiver is a real HTTP receiver that verifies every delivery's
// Standard Webhooks signature in constant time and keeps what arrived.
type webhookReceiver struct {
	t      *testing.T
	srv    *httptest.Server
	secret []byte
	delay  func() time.Duration

	mu   sync.Mutex
	got  []receivedHook
	bad  int
	more chan struct{}
}

type receivedHook struct {
	webhookID string
	event     rugwatch.Event
	at        time.Time
}

func newWebhookReceiver(t *testing.T) (*webhookReceiver, string) {
	t.Helper()
	key := make([]byte, 24)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	r := &webhookReceiver{t: t, secret: key, more: make(chan struct{}, 1)}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r, "whsec_" + base64.StdEncoding.EncodeToString(key)
}

func (r *webhookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	id, ts := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp")
	mac := hmac.New(sha256.New, r.secret)
	fmt.Fprintf(mac, "%s.%s.%s", id, ts, body)
	want := []byte("v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	ok := false
	for _, sig := range strings.Fields(req.Header.Get("webhook-signature")) {
		ok = ok || hmac.Equal([]byte(sig), want)
	}
	var e rugwatch.Event
	if !ok || json.Unmarshal(body, &e) != nil {
		r.mu.Lock()
		r.bad++
		r.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if r.delay != nil {
		// A slow receiver is the behaviour under test: it widens the
		// window in which a crash lands between sending and the ack.
		time.Sleep(r.delay())
	}
	r.mu.Lock()
	r.got = append(r.got, receivedHook{webhookID: id, event: e, at: time.Now()})
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *webhookReceiver) received() ([]receivedHook, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receivedHook(nil), r.got...), r.bad
}

// waitFor waits until match holds for what arrived.
func (r *webhookReceiver) waitFor(timeout time.Duration, match func([]receivedHook) bool) []receivedHook {
	r.t.Helper()
	deadline := time.After(timeout)
	for {
		got, _ := r.received()
		if match(got) {
			return got
		}
		select {
		case <-r.more:
		case <-deadline:
			r.t.Fatalf("webhook receiver: condition not met in %v; got %d deliveries", timeout, len(got))
		}
	}
}

type mailpitList struct {
	Messages []struct {
		Subject   string `json:"Subject"`
		MessageID string `json:"MessageID"`
	} `json:"messages"`
}

func TestDemoDriftReachesWebhookAndMailbox(t *testing.T) {
	recv, secret := newWebhookReceiver(t)
	mailbox := testkit.StartMailpit(t)
	smtpPort := mailbox.SMTPPort
	dir := t.TempDir()
	cfg := writeConfig(t, dir, fmt.Sprintf(`ephemeral: true
approve_first_seen: true
defaults: { schedule: "@every 1s", timeout: 10s }
servers:
  - name: demo
    command: "@self"
    args: ["demo-server", "--after", "1", "--state", "%[1]s/demo.state"]
    mounts: [{path: "%[1]s", mode: rw}]
notify:
  webhooks:
    - name: ops
      url: %[2]s/hook
      secret: "${env:E2E_WEBHOOK_SECRET}"
      min_severity: warning
  email:
    - name: security
      host: 127.0.0.1
      port: %[3]d
      tls: none
      from: rugwatch@example.com
      to: [security@example.com]
      min_severity: warning
`, sharedDir(t), recv.srv.URL, smtpPort))
	start := time.Now()
	d := startDaemon(t, append(baseEnv(dir), "E2E_WEBHOOK_SECRET="+secret), "serve", "--config", cfg)
	// The demo moves two tools in one poll: one alert says so
	// (server.changed), listing both, rather than one alert per tool.
	isDrift := func(e rugwatch.Event) bool {
		if e.Type == rugwatch.EventToolDrifted && e.Tool == "add" {
			return true
		}
		if e.Type != rugwatch.EventServerChanged {
			return false
		}
		for _, c := range e.Changes {
			if c.Path == "/tools/add" && c.Op == "replace" {
				return true
			}
		}
		return false
	}
	got := recv.waitFor(30*time.Second, func(hs []receivedHook) bool {
		for _, h := range hs {
			if isDrift(h.event) {
				return true
			}
		}
		return false
	})
	var drift receivedHook
	for _, h := range got {
		if isDrift(h.event) {
			drift = h
		}
	}
	l, _ := d.wait(0, 10*time.Second, event("tool.drifted", "demo", "add"))
	t.Logf("drift recorded %v after start; webhook delivered %v after the record", l.at.Sub(start), drift.at.Sub(l.at))
	if drift.webhookID != drift.event.ID || drift.event.Severity != rugwatch.SeverityCritical || len(drift.event.Changes) == 0 {
		t.Errorf("webhook delivery %+v", drift)
	}
	// The daemon logs each delivery after recording it, so the mailbox is
	// looked at once per email delivered, not on a timer.
	subject := "[rugwatch] CRITICAL " + string(drift.event.Type) + " demo"
	if drift.event.Tool != "" {
		subject += "/" + drift.event.Tool
	}
	next := 0
	for {
		_, next = d.wait(next, 30*time.Second, func(l logLine) bool {
			return l.str("msg") == "alert delivered" && l.str("channel") == "email:security"
		})
		var list mailpitList
		mailbox.GetJSON(t, "/api/v1/messages", &list)
		found := false
		for _, m := range list.Messages {
			if m.Subject == subject {
				found = true
				if !strings.Contains(m.MessageID, drift.event.ID) {
					t.Errorf("Message-ID %q does not derive from the event id %s", m.MessageID, drift.event.ID)
				}
			}
		}
		if found {
			t.Logf("email in the mailbox %v after start", time.Since(start))
			break
		}
	}
	if _, bad := recv.received(); bad != 0 {
		t.Errorf("%d deliveries failed signature verification", bad)
	}
	d.stop()
}

// TestCrashLoopLosesNoAlert kills serve with SIGKILL at random moments
// between detecting drifts and the receiver acknowledging them, restarts
// it, and checks that every recorded drift reached the receiver, with the
// same webhook-id on every copy, and that the bbolt file is sound.
func TestCrashLoopLosesNoAlert(t *testing.T) {
	if testing.Short() {
		t.Skip("crash loop")
	}
	runs := 50
	if v, err := strconv.Atoi(os.Getenv("RUGWATCH_CRASH_RUNS")); err == nil && v > 0 {
		runs = v
	}
	recv, secret := newWebhookReceiver(t)
	recv.delay = func() time.Duration { return time.Duration(mrand.IntN(150)) * time.Millisecond }
	srv, url, _ := fixtureHTTP(t)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, fmt.Sprintf(`data_dir: %[1]s/data
approve_first_seen: true
signing_key: %[1]s/.config/rugwatch/approver.key
defaults: { schedule: "@every 1h", timeout: 5s }
servers:
  - name: fixture
    url: %[2]s
    watch: true
notify:
  webhooks:
    - name: ops
      url: %[3]s/hook
      secret: "${env:E2E_WEBHOOK_SECRET}"
      min_severity: warning
`, dir, url, recv.srv.URL))
	env := append(baseEnv(dir), "E2E_WEBHOOK_SECRET="+secret, "RUGWATCH_CONFIG="+cfg)
	if r := runBin(t, env, "", "init"); r.code != 0 {
		t.Fatalf("init: %s", r.stderr)
	}
	change := func(i int) {
		srv.AddTool(&mcp.Tool{Name: "add", Description: fmt.Sprintf("Adds two numbers. Revision %d.", i),
			InputSchema: json.RawMessage(`{"type":"object","properties":{"a":{"type":"number"},"b":{"type":"number"}}}`)},
			func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return &mcp.CallToolResult{}, nil
			})
	}
	killed := 0
	for i := range runs {
		d := startDaemon(t, env, "serve")
		d.wait(0, 15*time.Second, func(l logLine) bool { return l.str("msg") == "watching" })
		change(i)
		// Somewhere between the drift being seen, recorded, sent and
		// acknowledged: a random moment is the behaviour under test, so
		// this sleep stays.
		time.Sleep(time.Duration(mrand.IntN(120)) * time.Millisecond)
		_ = d.cmd.Process.Kill()
		<-d.done
		_ = d.cmd.Wait()
		killed++
	}
	// A last clean run delivers what the crashes left in the outbox.
	d := startDaemon(t, env, "serve")
	d.wait(0, 15*time.Second, func(l logLine) bool { return l.str("msg") == "serving" })
	var drifts []rugwatch.Event
	// Checked again after every delivery the receiver takes: a recorded
	// drift still missing can only arrive as one.
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for {
		r := runBin(t, env, "", "history", "fixture", "--json", "--limit", "0")
		var h struct{ Events []rugwatch.Event }
		if err := json.Unmarshal([]byte(r.stdout), &h); err != nil {
			t.Fatalf("history: %v\n%s", err, r.stderr)
		}
		drifts = drifts[:0]
		for _, e := range h.Events {
			if e.Type == rugwatch.EventToolDrifted {
				drifts = append(drifts, e)
			}
		}
		got, _ := recv.received()
		seen := map[string]bool{}
		for _, g := range got {
			seen[g.event.ID] = true
		}
		missing := 0
		for _, e := range drifts {
			if !seen[e.ID] {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		select {
		case <-recv.more:
		case <-d.done:
			t.Fatalf("daemon exited with %d of %d recorded drifts undelivered\n%s", missing, len(drifts), d.dump())
		case <-deadline.C:
			t.Fatalf("%d of %d recorded drifts never reached the receiver", missing, len(drifts))
		}
	}
	d.stop()
	got, bad := recv.received()
	copies := map[string]int{}
	for _, g := range got {
		if g.webhookID != g.event.ID {
			t.Errorf("webhook-id %s carries event %s", g.webhookID, g.event.ID)
		}
		copies[g.event.ID]++
	}
	dups := 0
	for _, n := range copies {
		dups += n - 1
	}
	t.Logf("crash loop: %d runs killed with SIGKILL, %d drifts recorded, %d deliveries received (%d duplicates, same webhook-id), %d bad signatures",
		killed, len(drifts), len(got), dups, bad)
	if len(drifts) < runs/2 {
		t.Errorf("only %d drifts recorded over %d runs; the loop did not exercise detection", len(drifts), runs)
	}
	if bad != 0 {
		t.Errorf("%d deliveries failed signature verification", bad)
	}
	// The store passes bbolt's own consistency check.
	db, err := bolt.Open(filepath.Join(dir, "data", "rugwatch.db"), 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("bbolt check: %v", err)
	}
	sdb, err := store.Open(filepath.Join(dir, "data", "rugwatch.db"), store.Options{ReadOnly: true})
	if err == nil {
		n, cerr := sdb.VerifyChain()
		sdb.Close()
		if cerr != nil {
			t.Fatalf("event chain after %d crashes: %v", killed, cerr)
		}
		t.Logf("event chain intact: %d events", n)
	}
}
