package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/testkit"
)

// End-to-end tests drive the built binary against the real
// @modelcontextprotocol/server-everything from npm (installed by `npm ci`,
// pinned in package-lock.json) and the demo server for the rug pull.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// rugwatchBin builds the binary once per test run.
func rugwatchBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		// .ci/run builds it once for the run as an ordinary user, who has
		// no module cache to build from.
		if p := os.Getenv("RUGWATCH_TEST_BIN"); p != "" {
			binPath = p
			return
		}
		dir, err := os.MkdirTemp("", "rugwatch-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "rugwatch")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// everythingBin finds server-everything from the repo's node_modules. In
// CI its absence is a failure, not a skip: .ci/run installs it.
func everythingBin(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("../../node_modules/.bin/mcp-server-everything")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("server-everything not installed (%v); .ci/run must run npm ci", err)
		}
		t.Skipf("server-everything not installed; run `npm ci` (%v)", err)
	}
	return p
}

// startEverythingHTTP runs server-everything's Streamable HTTP transport
// until the test ends. PORT=0 makes Node bind a port the kernel chooses,
// so no other process can hold it; the server prints its "listening" line
// from the listen callback, after it listens, but prints the PORT it was
// given, so the real port is read from /proc.
func startEverythingHTTP(t *testing.T, bin string) string {
	t.Helper()
	cmd := exec.Command(bin, "streamableHttp")
	cmd.Env = append(os.Environ(), "PORT=0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logs := &testkit.Output{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	logs.WaitFor(t, "Streamable HTTP Server listening on port", exited, 60*time.Second)
	ports, err := testkit.ListeningPorts(cmd.Process.Pid)
	if err != nil || len(ports) != 1 {
		t.Fatalf("server-everything listens on %v (%v), want one port:\n%s", ports, err, logs.String())
	}
	return fmt.Sprintf("http://127.0.0.1:%d/mcp", ports[0])
}

type binRun struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

func runBin(t *testing.T, env []string, stdin string, args ...string) binRun {
	t.Helper()
	cmd := exec.Command(rugwatchBin(t), args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := binRun{stdout: out.String(), stderr: errb.String(), elapsed: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running rugwatch %v: %v", args, err)
	}
	return r
}

func TestEndToEndEverythingAndRugPull(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	ev := everythingBin(t)
	httpURL := startEverythingHTTP(t, ev)
	dir := t.TempDir()
	bin := rugwatchBin(t)
	tokenFile := filepath.Join(dir, "token")
	const token = "tok-e2e-5f0c9b1d"
	const childKey = "childkey-e2e-77aa"
	const ownSecret = "whsec_e2e-own-secret-value"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`data_dir: %[1]s/data
defaults:
  timeout: 30s
servers:
  - name: everything
    command: %[2]s
    args: ["stdio"]
    env: { API_KEY: "${env:E2E_CHILD_KEY}" }
  - name: everything-http
    url: %[3]s
    headers: { Authorization: "Bearer ${file:%[4]s}" }
  - name: demo
    command: %[5]s
    args: ["demo-server", "--after", "1", "--state", "%[6]s/demo.state"]
    mounts: [{path: "%[6]s", mode: rw}]
`, dir, ev, httpURL, tokenFile, bin, sharedDir(t))
	cfgPath := filepath.Join(dir, "rugwatch.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "RUGWATCH_CONFIG=" + cfgPath,
		"E2E_CHILD_KEY=" + childKey, "RUGWATCH_WEBHOOK_SECRET=" + ownSecret}
	run := func(code int, stdin string, args ...string) binRun {
		t.Helper()
		r := runBin(t, env, stdin, args...)
		if r.code != code {
			t.Fatalf("rugwatch %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
		}
		return r
	}
	report := func(r binRun) map[string]map[string]string {
		t.Helper()
		var rep report.Report
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("decoding %q: %v", r.stdout, err)
		}
		m := map[string]map[string]string{}
		for _, s := range rep.Servers {
			if !s.Reachable {
				t.Fatalf("server %s unreachable: %s", s.Name, s.Error)
			}
			m[s.Name] = map[string]string{}
			for _, tool := range s.Tools {
				m[s.Name][tool.Name] = string(tool.State)
			}
		}
		return m
	}

	run(0, "", "init")
	first := report(run(1, "", "check", "--json"))
	for _, s := range []string{"everything", "everything-http"} {
		if len(first[s]) < 10 {
			t.Fatalf("%s lists %d tools, want server-everything's", s, len(first[s]))
		}
		for name, st := range first[s] {
			if st != "pending" {
				t.Errorf("%s/%s: %s on first sight", s, name, st)
			}
		}
	}
	for _, s := range []string{"everything", "everything-http", "demo"} {
		run(0, "", "approve", s, "--all", "--yes")
	}
	for _, s := range []string{"everything", "everything-http"} {
		r := run(0, "", "check", s, "--json")
		t.Logf("check %s (%d tools): %v", s, len(first[s]), r.elapsed)
	}
	// The demo server's third listing is the rug pull.
	r := run(1, "", "check", "--json")
	st := report(r)
	if st["demo"]["add"] != "drifted" {
		t.Fatalf("demo/add is %s after the rug pull, want drifted", st["demo"]["add"])
	}
	for _, s := range []string{"everything", "everything-http"} {
		for name, state := range st[s] {
			if state != "approved" {
				t.Errorf("%s/%s is %s; only demo changed", s, name, state)
			}
		}
	}
	run(0, "", "verify")

	// Edit one byte of one approval inside the bbolt file.
	dbPath := filepath.Join(dir, "data", "rugwatch.db")
	raw, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	marker := []byte(`"Server":"everything","Tool":"echo"`)
	edited := 0
	for off := 0; ; {
		i := bytes.Index(raw[off:], marker)
		if i < 0 {
			break
		}
		i += off
		j := bytes.Index(raw[i:], []byte(`"Envelope":"`))
		if j < 0 {
			break
		}
		pos := i + j + len(`"Envelope":"`) + 60
		if raw[pos] == 'A' {
			raw[pos] = 'B'
		} else {
			raw[pos] = 'A'
		}
		edited++
		off = pos
	}
	if edited == 0 {
		t.Fatal("no approval of everything/echo found in the bbolt file")
	}
	if err := os.WriteFile(dbPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	v := run(1, "", "verify")
	if !strings.Contains(v.stdout, "INVALID everything/echo") {
		t.Errorf("verify output does not name the tampered approval:\n%s", v.stdout)
	}
	st = report(run(1, "", "check", "everything", "--json"))
	if st["everything"]["echo"] == "approved" {
		t.Fatal("a tampered approval still counts")
	}

	// No secret reached the data dir.
	err = filepath.Walk(filepath.Join(dir, "data"), func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, secret := range []string{token, childKey, ownSecret} {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s holds secret %q", p, secret)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
