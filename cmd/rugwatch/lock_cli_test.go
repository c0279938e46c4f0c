package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/signatures"
)

// lockEnv is a two-approver setup for the lock tests: alice (platform)
// and bob (security) under quorum 2 with role security, the demo server
// (the test binary re-executed) whose tools turn malicious when its
// state file says so, and the real rugwatch binary.
type lockEnv struct {
	t         *testing.T
	dir, cfg  string
	lock      string // rugwatch.lock.json beside the config
	state     string // the demo's listing count: "5000" turns it, "0" turns it back
	keys, ids map[string]string
	env       []string
	lookupEnv func(string) (string, bool)
}

func newLockEnv(t *testing.T, extra string) *lockEnv {
	t.Helper()
	e := &lockEnv{t: t, dir: t.TempDir(), keys: map[string]string{}, ids: map[string]string{}}
	for _, who := range []string{"alice", "bob", "mallory"} {
		d := filepath.Join(e.dir, who)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		id, err := signatures.GenerateKeyPair(d, nil)
		if err != nil {
			t.Fatal(err)
		}
		e.keys[who], e.ids[who] = filepath.Join(d, signatures.PrivateKeyFile), id
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	shared := sharedDir(t)
	e.state = filepath.Join(shared, "demo.state")
	cfg := fmt.Sprintf(`data_dir: %[1]s/data
trusted_keys:
  - {path: alice/approver.pub, name: alice, roles: [platform]}
  - {path: bob/approver.pub, name: bob, roles: [security]}
approvals: {quorum: 2, require_roles: [security]}
defaults:
  timeout: 20s
  schedule: "@every 1h"
servers:
  - name: demo
    command: %[2]s
    args: ["-test.run=^$"]
    env:
      RUGWATCH_TEST_DEMO: "--after 1000 --state %[3]s"
    mounts: [{path: "%[4]s", mode: rw}]
%[5]s`, e.dir, exe, e.state, shared, extra)
	e.cfg = filepath.Join(e.dir, "rugwatch.yaml")
	e.lock = filepath.Join(e.dir, "rugwatch.lock.json")
	if err := os.WriteFile(e.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	xdg := filepath.Join(e.dir, "config")
	e.env = append(os.Environ(), "XDG_CONFIG_HOME="+xdg)
	e.lookupEnv = func(k string) (string, bool) {
		if k == "XDG_CONFIG_HOME" {
			return xdg, true
		}
		return "", false
	}
	return e
}

// run runs the real binary and wants exit code.
func (e *lockEnv) run(code int, args ...string) binRun {
	e.t.Helper()
	r := runBin(e.t, e.env, "", append([]string{"--config", e.cfg}, args...)...)
	if r.code != code {
		e.t.Fatalf("rugwatch %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	return r
}

// turn makes the demo's next listing malicious (true) or honest again.
func (e *lockEnv) turn(malicious bool) {
	e.t.Helper()
	n := "0"
	if malicious {
		n = "5000"
	}
	if err := os.WriteFile(e.state, []byte(n+"\n"), 0o666); err != nil {
		e.t.Fatal(err)
	}
}

func (e *lockEnv) read(path string) []byte {
	e.t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// write replaces path whole, as git checkout or a rename would: a reader
// never sees half of it.
func (e *lockEnv) write(path string, b []byte) {
	e.t.Helper()
	if err := writeLockFile(path, b); err != nil {
		e.t.Fatal(err)
	}
}

// splitLine returns the lock file's lines but the one by keyID, and that
// one.
func splitLine(t *testing.T, lock []byte, keyID string) (rest []string, line string) {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSuffix(string(lock), "\n"), "\n") {
		if strings.Contains(l, `"key_id":"`+keyID+`"`) {
			line = l
			continue
		}
		rest = append(rest, l)
	}
	if line == "" {
		t.Fatalf("no line by %s in\n%s", keyID, lock)
	}
	return rest, line
}

// Export → verify passes, deterministically; then each attack on the file
// makes verify exit 1: a signature tampered with, a signature removed, a
// line that says another digest than its envelope signs, one signed by a
// key outside trusted_keys; and --live exits 1 once the server drifts.
func TestLockExportVerifyAndAttacks(t *testing.T) {
	e := newLockEnv(t, "")
	e.run(1, "check")
	for _, who := range []string{"alice", "bob"} {
		e.run(0, "approve", "demo", "add", "read_note", "weather", "--instructions", "--yes", "--key", e.keys[who])
	}
	e.run(0, "lock", "export", "--out", e.lock)
	good := e.read(e.lock)
	if again := e.run(0, "lock", "export").stdout; again != string(good) {
		t.Fatalf("two exports differ:\n%s\n---\n%s", good, again)
	}
	if n := strings.Count(string(good), "\n"); n != 9 || !strings.HasPrefix(string(good), signatures.LockHeader+"\n") {
		t.Fatalf("want the header and 8 signature lines (3 tools and the instructions × alice, bob):\n%s", good)
	}
	out := e.run(0, "lock", "verify", e.lock).stdout
	if !strings.Contains(out, "ok    tool demo/add") || !strings.Contains(out, "signatures 2 of 2 (alice, bob)") || !strings.HasSuffix(out, "OK\n") {
		t.Fatalf("verify of the export:\n%s", out)
	}
	out = e.run(0, "lock", "verify", e.lock, "--live").stdout
	if !strings.Contains(out, "live: every server the file names serves what it approves") {
		t.Fatalf("verify --live before any drift:\n%s", out)
	}

	attacks := []struct {
		name string
		edit func() []byte
		want string
	}{
		{"tampered signature", func() []byte {
			rest, line := splitLine(t, good, e.ids["bob"])
			// One base64 character of bob's signature changed: still
			// base64, no longer his signature.
			sig := regexp.MustCompile(`"sig":"([A-Za-z0-9+/])`).FindStringSubmatchIndex(line)
			c := line[sig[2]]
			repl := byte('A')
			if c == 'A' {
				repl = 'B'
			}
			line = line[:sig[2]] + string(repl) + line[sig[2]+1:]
			return []byte(strings.Join(append(rest, line), "\n") + "\n")
		}, "does not verify"},
		{"removed signature", func() []byte {
			rest, _ := splitLine(t, good, e.ids["bob"])
			return []byte(strings.Join(rest, "\n") + "\n")
		}, "quorum not met: signatures 1 of 2 (needs role security)"},
		{"line claims another digest", func() []byte {
			rest, line := splitLine(t, good, e.ids["bob"])
			line = regexp.MustCompile(`"digest":"sha256:[0-9a-f]{64}"`).ReplaceAllString(line, `"digest":"sha256:`+strings.Repeat("0", 64)+`"`)
			return []byte(strings.Join(append(rest, line), "\n") + "\n")
		}, "one approval, one digest"},
		{"key outside trusted_keys", func() []byte {
			rest, line := splitLine(t, good, e.ids["bob"])
			line = strings.ReplaceAll(line, e.ids["bob"], e.ids["mallory"])
			return []byte(strings.Join(append(rest, line), "\n") + "\n")
		}, "approval not signed by a trusted key"},
		{"duplicate member", func() []byte {
			rest, line := splitLine(t, good, e.ids["bob"])
			line = strings.Replace(line, `{"server":"demo"`, `{"server":"demo","Server":"demo"`, 1)
			return []byte(strings.Join(append(rest, line), "\n") + "\n")
		}, "not a valid lock file"},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			path := filepath.Join(e.dir, strings.ReplaceAll(a.name, " ", "-")+".lock.json")
			e.write(path, a.edit())
			r := e.run(1, "lock", "verify", path)
			if !strings.Contains(r.stdout, a.want) || !strings.HasSuffix(r.stdout, "FAILED\n") {
				t.Fatalf("verify of a file with a %s lacks %q:\n%s", a.name, a.want, r.stdout)
			}
		})
	}

	// The server drifts: the file still verifies on its own, --live fails.
	e.turn(true)
	e.run(0, "lock", "verify", e.lock)
	out = e.run(1, "lock", "verify", e.lock, "--live").stdout
	if !strings.Contains(out, "LIVE  tool demo/add: the server now serves another definition") || !strings.HasSuffix(out, "FAILED\n") {
		t.Fatalf("verify --live after the drift:\n%s", out)
	}
}

// lockServe is serve run in-process on a lockEnv's config, telling the
// test of every approvals_from pass.
type lockServe struct {
	t      *testing.T
	d      *daemon
	passes chan monitor.LockPass
	code   chan int
	logs   *lockLog
}

// lockLog is serve's log, written by its goroutines, read by the test.
type lockLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serve starts serve and waits until it serves; every, when set, is how
// often it stats approvals_from. It stops when the test ends.
func (e *lockEnv) serve(every time.Duration) *lockServe {
	e.t.Helper()
	t := e.t
	s := &lockServe{t: t, passes: make(chan monitor.LockPass, 256), code: make(chan int, 1), logs: &lockLog{}}
	ready := make(chan *daemon, 1)
	app := &App{Stdin: bytes.NewReader(nil), Stdout: io.Discard, Stderr: s.logs, LookupEnv: e.lookupEnv, lockEvery: every,
		ready: func(d *daemon) { ready <- d },
		lockPassed: func(p monitor.LockPass, err error) {
			if err != nil {
				t.Errorf("approvals_from pass: %v", err)
			}
			select {
			case s.passes <- p:
			default:
				t.Error("approvals_from passes not read")
			}
		}}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { s.code <- app.Run(ctx, []string{"--config", e.cfg, "serve"}) }()
	t.Cleanup(func() {
		cancel()
		if c := <-s.code; c != 0 {
			t.Errorf("serve exited %d:\n%s", c, s.logs)
		}
	})
	select {
	case s.d = <-ready:
	case c := <-s.code:
		t.Fatalf("serve exited %d before it was ready:\n%s", c, s.logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("serve not ready in 30s:\n%s", s.logs)
	}
	return s
}

// wait reads passes until one satisfies ok.
func (s *lockServe) wait(what string, ok func(monitor.LockPass) bool) monitor.LockPass {
	s.t.Helper()
	timeout := time.NewTimer(60 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case p := <-s.passes:
			if ok(p) {
				return p
			}
		case c := <-s.code:
			s.t.Fatalf("serve exited %d while waiting for %s:\n%s", c, what, s.logs)
		case <-timeout.C:
			s.t.Fatalf("no approvals_from pass %s in 60s:\n%s", what, s.logs)
		}
	}
}

// approvals_from: serve takes approvals from the lock file. alice signs
// through the CLI and exports; serve starts on that file (1 of 2); bob
// co-signs the file itself (lock sign) and the running daemon approves
// the tool without a restart. Then the tool drifts, and the older file,
// put back after the server turned honest again, approves nothing: its
// signatures are bound to a state the tool has left.
func TestLockApprovalsFromPicksUpSignatureAndRefusesReplay(t *testing.T) {
	e := newLockEnv(t, "approvals_from: rugwatch.lock.json\n")
	e.run(1, "check")
	e.run(0, "approve", "demo", "add", "--yes", "--key", e.keys["alice"])
	e.run(0, "lock", "export", "--out", e.lock)

	srv := e.serve(0)
	wait := srv.wait
	has := func(list []string, parts ...string) bool {
		for _, s := range list {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(s, p)
			}
			if all {
				return true
			}
		}
		return false
	}

	wait("reading alice's signature, already held", func(p monitor.LockPass) bool { return p.Read && p.Held == 1 })
	if st := states(decodeReport(t, e.run(1, "status", "--json").stdout)); st["add"] != "pending" {
		t.Fatalf("with alice's signature alone: %v", st)
	}

	out := e.run(0, "lock", "sign", e.lock, "--key", e.keys["bob"], "--yes").stdout
	if !strings.Contains(out, "Adds two numbers and returns the sum.") || !strings.Contains(out, "signed 1 approval(s)") {
		t.Fatalf("lock sign shows what it signs and says so:\n%s", out)
	}
	e.run(0, "lock", "verify", e.lock)
	wait("taking bob's signature", func(p monitor.LockPass) bool { return has(p.Applied, "tool demo/add by "+e.ids["bob"]) })
	if st := states(decodeReport(t, e.run(1, "status", "--json").stdout)); st["add"] != "approved" {
		t.Fatalf("after bob's signature in the file: %v", st)
	}
	if h := e.run(0, "history", "demo", "--json").stdout; !strings.Contains(h, "signed by alice, bob") {
		t.Fatalf("tool.approved does not name both signers:\n%s", h)
	}
	older := e.read(e.lock)

	// The rug pull: add drifts and loses its approval.
	e.turn(true)
	e.run(1, "check", "demo")
	if st := states(decodeReport(t, e.run(1, "status", "--json").stdout)); st["add"] != "drifted" {
		t.Fatalf("after the drift: %v", st)
	}
	e.run(0, "lock", "export", "--out", e.lock) // the repository follows: no approval of add
	wait("reading the export after the drift", func(p monitor.LockPass) bool {
		return p.Changed && p.Held == 0 && len(p.Applied) == 0 && len(p.Refused) == 0
	})

	// The older file is put back, and the server turns honest again, so
	// the digest the file approves is the one observed: the signatures
	// are still bound to the state before the drift and approve nothing.
	e.write(e.lock, older)
	wait("refusing the older file", func(p monitor.LockPass) bool { return has(p.Refused, "tool demo/add by "+e.ids["bob"]) })
	e.turn(false)
	e.run(1, "check", "demo")
	p := wait("refusing the replay once the digest matches again", func(p monitor.LockPass) bool {
		return has(p.Refused, "tool demo/add by "+e.ids["bob"], "a replayed approval")
	})
	if len(p.Applied) != 0 {
		t.Fatalf("the older file applied %v", p.Applied)
	}
	old, err := signatures.ParseLock(older)
	if err != nil {
		t.Fatal(err)
	}
	rep := decodeReport(t, e.run(1, "status", "--json").stdout)
	for _, tr := range rep.Servers[0].Tools {
		if tr.Name == "add" && (tr.State != "drifted" || tr.ObservedDigest != old.Signatures[0].Digest) {
			t.Fatalf("add after the older file came back: %+v, want drifted with the digest of the older file observed", tr)
		}
	}
}

// SIGHUP reads approvals_from at once: with the file's stat check an
// hour apart and no poll due, bob's signature is taken on the reload
// that SIGHUP runs, not on its own.
func TestLockApprovalsFromRereadOnSIGHUP(t *testing.T) {
	e := newLockEnv(t, "approvals_from: rugwatch.lock.json\n")
	e.run(1, "check")
	e.run(0, "approve", "demo", "add", "--yes", "--key", e.keys["alice"])
	e.run(0, "lock", "export", "--out", e.lock)
	srv := e.serve(time.Hour)
	srv.wait("at start", func(p monitor.LockPass) bool { return p.Read && p.Held == 1 })
	e.run(0, "lock", "sign", e.lock, "--key", e.keys["bob"], "--yes")
	if st := states(decodeReport(t, e.run(1, "status", "--json").stdout)); st["add"] != "pending" {
		t.Fatalf("the signed file taken before SIGHUP: %v", st)
	}
	srv.d.Reload() // what serve does on SIGHUP
	p := srv.wait("after SIGHUP", func(p monitor.LockPass) bool { return p.Read })
	if len(p.Applied) != 1 || !strings.Contains(p.Applied[0], "tool demo/add by "+e.ids["bob"]) {
		t.Fatalf("the pass after SIGHUP applied %v", p.Applied)
	}
	if st := states(decodeReport(t, e.run(1, "status", "--json").stdout)); st["add"] != "approved" {
		t.Fatalf("after SIGHUP: %v", st)
	}
}

// addApprover makes a trusted key for who (in role) and sets the quorum
// line of e's config to quorum.
func (e *lockEnv) addApprover(who, role, quorum string) {
	e.t.Helper()
	d := filepath.Join(e.dir, who)
	if err := os.Mkdir(d, 0o700); err != nil {
		e.t.Fatal(err)
	}
	id, err := signatures.GenerateKeyPair(d, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.keys[who], e.ids[who] = filepath.Join(d, signatures.PrivateKeyFile), id
	e.setQuorum(quorum)
	cfg := strings.Replace(string(e.read(e.cfg)), "trusted_keys:\n",
		"trusted_keys:\n  - {path: "+who+"/approver.pub, name: "+who+", roles: ["+role+"]}\n", 1)
	if err := os.WriteFile(e.cfg, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// setQuorum replaces the approvals line of e's config.
func (e *lockEnv) setQuorum(quorum string) {
	e.t.Helper()
	cfg := regexp.MustCompile(`(?m)^approvals: .*$`).ReplaceAllString(string(e.read(e.cfg)), "approvals: "+quorum)
	if err := os.WriteFile(e.cfg, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// An honest export verifies: alice and bob approve add (bound to its
// state then), the quorum is raised to 3 and carol approves it through
// the CLI, bound to the newer transition the completed approval made.
// The daemon counts all three; lock verify of the export must too.
func TestLockVerifyCountsCosignatureBoundAfterTheFirst(t *testing.T) {
	e := newLockEnv(t, "")
	e.run(1, "check")
	for _, who := range []string{"alice", "bob"} {
		e.run(0, "approve", "demo", "add", "--yes", "--key", e.keys[who])
	}
	e.addApprover("carol", "platform", "{quorum: 3, require_roles: [security]}")
	e.run(0, "approve", "demo", "add", "--yes", "--key", e.keys["carol"])
	if h := e.run(1, "status", "demo", "--json").stdout; !strings.Contains(h, `"signatures": "3 of 3"`) {
		t.Fatalf("the daemon does not count carol's signature:\n%s", h)
	}
	e.run(0, "lock", "export", "--out", e.lock)
	lock := e.read(e.lock)
	l, err := signatures.ParseLock(lock)
	if err != nil {
		t.Fatal(err)
	}
	seqs := map[string]uint64{}
	for _, s := range l.Signatures {
		st, err := signatures.StatementOf(s.Envelope)
		if err != nil {
			t.Fatal(err)
		}
		seqs[s.KeyID], _ = st.Bound()
	}
	if seqs[e.ids["carol"]] <= seqs[e.ids["alice"]] {
		t.Fatalf("carol's signature is not bound later than alice's (%v): the test shows nothing", seqs)
	}
	out := e.run(0, "lock", "verify", e.lock).stdout
	if !strings.Contains(out, "signatures 3 of 3 (alice, bob, carol)") || !strings.HasSuffix(out, "OK\n") {
		t.Fatalf("verify of an honest export:\n%s", out)
	}
}

// lockStatementBy is the statement the line by keyID of lock signs.
func lockStatementBy(t *testing.T, lock []byte, keyID string) signatures.Statement {
	t.Helper()
	_, line := splitLine(t, lock, keyID)
	l, err := signatures.ParseLock([]byte(signatures.LockHeader + "\n" + line + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := signatures.StatementOf(l.Signatures[0].Envelope)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// lock sign is approve's gate for a co-signer: it shows the poisoning
// findings of each definition it signs and signs one with critical
// findings only with --accept-findings, recording them in the signature
// as approve does. It finds them itself: a first signature that accepts
// none (signed by something other than approve) does not let a second
// signer pass them unseen. And it exits 1 when nothing it was asked to
// sign holds.
func TestLockSignGatesCriticalFindings(t *testing.T) {
	e := newLockEnv(t, "")
	e.turn(true) // the first listing the monitor sees is already poisoned
	e.run(1, "check")
	var critical []string
	for _, tr := range decodeReport(t, e.run(1, "status", "demo", "--json").stdout).Servers[0].Tools {
		if tr.Name == "add" {
			critical = signatures.AcceptedFindings(tr.Findings)
		}
	}
	if len(critical) == 0 {
		t.Fatal("the poisoned add has no critical finding: the test shows nothing")
	}
	e.run(0, "approve", "demo", "add", "--yes", "--accept-findings", "--key", e.keys["alice"])
	e.run(0, "lock", "export", "--out", e.lock)
	exported := e.read(e.lock)

	// Alice's signature replaced by one of the same statement that
	// records no accepted finding.
	st := lockStatementBy(t, exported, e.ids["alice"])
	st.AcceptedFindings = nil
	alice, err := signatures.LoadPrivateKey(e.keys["alice"], nil)
	if err != nil {
		t.Fatal(err)
	}
	env, err := alice.SignApproval(st)
	if err != nil {
		t.Fatal(err)
	}
	bare, err := signatures.Lock{Signatures: []signatures.LockSignature{{Server: "demo", Kind: "tool", Tool: "add",
		Digest: st.Digest, KeyID: alice.KeyID(), First: true, Envelope: env}}}.Encode()
	if err != nil {
		t.Fatal(err)
	}

	for name, file := range map[string][]byte{"accepted by alice": exported, "accepted by no one": bare} {
		t.Run(name, func(t *testing.T) {
			e.write(e.lock, file)
			r := e.run(1, "lock", "sign", e.lock, "--yes", "--key", e.keys["bob"])
			if !strings.Contains(r.stdout, "! critical ") || !strings.Contains(r.stderr, "--accept-findings") {
				t.Fatalf("lock sign without --accept-findings does not show the findings and refuse:\n%s\n%s", r.stdout, r.stderr)
			}
			if !bytes.Equal(e.read(e.lock), file) {
				t.Fatal("the refused lock sign changed the file")
			}
			e.run(0, "lock", "sign", e.lock, "--yes", "--accept-findings", "--key", e.keys["bob"])
			got := lockStatementBy(t, e.read(e.lock), e.ids["bob"]).AcceptedFindings
			for _, f := range critical {
				if !slices.Contains(got, f) {
					t.Fatalf("bob's signature accepts %v, not the critical finding %s", got, f)
				}
			}
			e.run(0, "lock", "verify", e.lock)
		})
	}

	// Nothing holds: alice's only signature does not verify.
	rest, line := splitLine(t, exported, e.ids["alice"])
	line = strings.Replace(line, `"sig":"`, `"sig":"AAAA`, 1)
	e.write(e.lock, []byte(strings.Join(append(rest, line), "\n")+"\n"))
	if r := e.run(1, "lock", "sign", e.lock, "--yes", "--accept-findings", "--key", e.keys["bob"]); !strings.Contains(r.stderr, "no signature that holds") {
		t.Fatalf("lock sign of a file where nothing holds:\n%s\n%s", r.stdout, r.stderr)
	}
}

// lock verify fails a file that approves nothing, and --live fails while
// a server sends instructions the file does not approve: each is
// something served that no one in the file reviewed.
func TestLockVerifyFailsWhatTheFileDoesNotApprove(t *testing.T) {
	e := newLockEnv(t, "")
	e.run(1, "check")
	for _, who := range []string{"alice", "bob"} {
		e.run(0, "approve", "demo", "add", "read_note", "weather", "--yes", "--key", e.keys[who])
	}
	e.run(0, "lock", "export", "--out", e.lock)
	e.run(0, "lock", "verify", e.lock)
	out := e.run(1, "lock", "verify", e.lock, "--live").stdout
	if !strings.Contains(out, "LIVE  instructions demo: instructions sent by the server, not approved in the file") || !strings.HasSuffix(out, "FAILED\n") {
		t.Fatalf("verify --live with the instructions unapproved:\n%s", out)
	}

	empty := filepath.Join(e.dir, "empty.lock.json")
	e.write(empty, []byte(signatures.LockHeader+"\n"))
	for _, args := range [][]string{{"lock", "verify", empty}, {"lock", "verify", empty, "--live"}} {
		out := e.run(1, args...).stdout
		if !strings.Contains(out, "the file approves nothing") || !strings.HasSuffix(out, "FAILED\n") {
			t.Fatalf("rugwatch %s:\n%s", strings.Join(args, " "), out)
		}
	}
}

// A lock file is untrusted text: a digest that is not a digest is
// refused, and nothing of the file reaches the terminal as control
// characters, whichever command reads it.
func TestLockFileTextReachesNoTerminal(t *testing.T) {
	e := newLockEnv(t, "")
	e.run(1, "check")
	e.run(0, "approve", "demo", "add", "--yes", "--key", e.keys["alice"])
	e.run(0, "lock", "export", "--out", e.lock)
	good := e.read(e.lock)
	const esc = `\u001b]0;owned\u0007\u001b[2J`
	rest, line := splitLine(t, good, e.ids["alice"])
	evil := map[string]string{
		"digest": regexp.MustCompile(`"digest":"sha256:[0-9a-f]{64}"`).ReplaceAllString(line, `"digest":"sha256:`+esc+`"`),
		"key id": strings.ReplaceAll(line, e.ids["alice"], esc),
		"server": strings.Replace(line, `"server":"demo"`, `"server":"demo`+esc+`"`, 1),
		"member": strings.Replace(line, `{"server"`, `{"`+esc+`":1,"server"`, 1),
	}
	for name, l := range evil {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(e.dir, strings.ReplaceAll(name, " ", "-")+".lock.json")
			e.write(path, []byte(strings.Join(append(rest, l), "\n")+"\n"))
			for _, r := range []binRun{
				e.run(1, "lock", "verify", path),
				e.run(1, "lock", "verify", path, "--live"),
				runBin(t, e.env, "", "--config", e.cfg, "lock", "sign", path, "--yes", "--key", e.keys["bob"]),
			} {
				if strings.ContainsAny(r.stdout+r.stderr, "\x1b\x07") {
					t.Fatalf("control characters of the file printed:\n%q\n%q", r.stdout, r.stderr)
				}
				if r.code == 0 {
					t.Fatalf("exit 0 on a file with a bad %s:\n%s\n%s", name, r.stdout, r.stderr)
				}
			}
		})
	}
}

// What lock sign --accept-findings signs of a poisoned definition is
// what the daemon takes: bob's co-signature in the file completes the
// approval alice gave with --accept-findings.
func TestLockSignAcceptedFindingsTakenByTheDaemon(t *testing.T) {
	e := newLockEnv(t, "approvals_from: rugwatch.lock.json\n")
	e.turn(true)
	e.run(1, "check")
	e.run(0, "approve", "demo", "add", "--yes", "--accept-findings", "--key", e.keys["alice"])
	e.run(0, "lock", "export", "--out", e.lock)
	e.run(0, "lock", "sign", e.lock, "--yes", "--accept-findings", "--key", e.keys["bob"])
	srv := e.serve(0)
	p := srv.wait("the first pass", func(p monitor.LockPass) bool { return p.Read })
	if len(p.Applied) != 1 || !strings.Contains(p.Applied[0], "tool demo/add by "+e.ids["bob"]) || len(p.Refused) != 0 {
		t.Fatalf("the daemon took %v, refused %v", p.Applied, p.Refused)
	}
	if st := states(decodeReport(t, e.run(1, "status", "--json").stdout)); st["add"] != "approved" {
		t.Fatalf("after bob's co-signature: %v", st)
	}
}
