package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/notify"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/testkit"
)

// The fleet benchmark measures rugwatch from outside, as issue 13 did: a
// fleet of N Streamable HTTP servers × T tools served by a separate
// process (this test binary re-executed with RUGWATCH_FLEET_SERVE set, so
// nothing extra ships), `rugwatch check --json` run as a child process of
// the built binary, and beside it the bare floor of the same run: the
// same round trips and a SHA-256 per tool, nothing else.
//
//	go test ./cmd/rugwatch -run '^$' -bench BenchmarkFleet -benchtime 1x
//	RUGWATCH_FLEET_N=10000 go test ./cmd/rugwatch -run '^$' -bench BenchmarkFleet -benchtime 1x
//
// RUGWATCH_FLEET_PROFILE=DIR also writes rugwatch's CPU profiles of the
// first and the steady cycle there (check reads RUGWATCH_CPUPROFILE).

const fleetTools = 50

// TestFleetServer is the fleet process, not a test: re-executed with
// RUGWATCH_FLEET_SERVE=N it serves N servers at /s/0 … /s/N-1 on a
// loopback port it prints, until its stdin closes.
func TestFleetServer(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv("RUGWATCH_FLEET_SERVE"))
	if err != nil || n <= 0 {
		t.Skip("the fleet process of BenchmarkFleet; runs only re-executed by it")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := newFleet(n, fleetTools)
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("FLEET %s\n", ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = srv.Close()
}

// fleet answers the MCP requests a poll makes with pre-rendered JSON, so
// the servers cost almost nothing: server/discover is unknown (an MCP
// 2025 server), initialize, notifications/initialized, tools/list.
type fleet struct {
	lists [][]byte // per server: the tools/list result
	init  []byte
}

func newFleet(n, tools int) *fleet {
	f := &fleet{lists: make([][]byte, n)}
	for s := range n {
		var b bytes.Buffer
		b.WriteString(`{"tools":[`)
		for i := range tools {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(testkit.FleetTool(s, i))
		}
		b.WriteString(`]}`)
		f.lists[s] = b.Bytes()
	}
	f.init = []byte(`{"protocolVersion":"2025-11-25","capabilities":{"tools":{"listChanged":false}},"serverInfo":{"name":"fleet","version":"1.0.0"}}`)
	return f
}

func (f *fleet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	idx, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/s/"))
	if err != nil || idx < 0 || idx >= len(f.lists) {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	var req struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if len(req.ID) == 0 {
		w.WriteHeader(http.StatusAccepted) // a notification
		return
	}
	var body []byte
	switch req.Method {
	case "initialize":
		body = rpcResult(req.ID, f.init)
	case "tools/list":
		body = rpcResult(req.ID, f.lists[idx])
	case "ping":
		body = rpcResult(req.ID, []byte(`{}`))
	default:
		body = []byte(`{"jsonrpc":"2.0","id":` + string(req.ID) + `,"error":{"code":-32601,"message":"Method not found"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func rpcResult(id json.RawMessage, result []byte) []byte {
	b := make([]byte, 0, len(result)+48)
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	b = append(b, id...)
	b = append(b, `,"result":`...)
	b = append(b, result...)
	return append(b, '}')
}

// startFleet runs the fleet process and returns its base URL.
func startFleet(b *testing.B, n int) string {
	cmd := exec.Command(os.Args[0], "-test.run", "^TestFleetServer$", "-test.count", "1")
	cmd.Env = append(os.Environ(), "RUGWATCH_FLEET_SERVE="+strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if addr, ok := strings.CutPrefix(sc.Text(), "FLEET "); ok {
			go func() { _, _ = io.Copy(io.Discard, out) }()
			return "http://" + addr
		}
	}
	b.Fatalf("fleet process printed no address: %v", sc.Err())
	return ""
}

// floor is the bare floor: per server the round trips a poll makes
// (server/discover, initialize, notifications/initialized, tools/list)
// and a SHA-256 per tool, concurrency at a time. It returns the bytes of
// the definitions.
func floor(b *testing.B, base string, n, concurrency int) (time.Duration, time.Duration, int64) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}}
	post := func(url, body string) []byte {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return out
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		bytes int64
	)
	sem := make(chan struct{}, concurrency)
	cpu0 := selfCPU()
	start := time.Now()
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			url := fmt.Sprintf("%s/s/%d", base, i)
			post(url, `{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{}}`)
			post(url, `{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"floor","version":"1"}}}`)
			post(url, `{"jsonrpc":"2.0","method":"notifications/initialized","params":{}}`)
			raw := post(url, `{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{}}`)
			var resp struct {
				Result struct {
					Tools []json.RawMessage `json:"tools"`
				} `json:"result"`
			}
			if err := json.Unmarshal(raw, &resp); err != nil || len(resp.Result.Tools) != fleetTools {
				b.Errorf("floor: server %d: %d tools, %v", i, len(resp.Result.Tools), err)
				return
			}
			var sum int64
			for _, t := range resp.Result.Tools {
				_ = sha256.Sum256(t)
				sum += int64(len(t))
			}
			mu.Lock()
			bytes += sum
			mu.Unlock()
		})
	}
	wg.Wait()
	return time.Since(start), selfCPU() - cpu0, bytes
}

// selfCPU is this process's user+system CPU so far: the floor's own cost
// (nothing else of the benchmark runs while it does).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// childRun is one rugwatch child process, measured from outside.
type childRun struct {
	wall time.Duration
	cpu  time.Duration
	// peakRSS is the child's VmHWM from /proc/<pid>/status, last read
	// before it exited. Not ru_maxrss: Go starts a child with
	// CLONE_VFORK|CLONE_VM, and Linux carries the parent's RSS high-water
	// mark into the child's at exec, so ru_maxrss counts this benchmark's
	// own memory (the reports it holds) as rugwatch's.
	peakRSS int64
	// peakAnon and peakFile are the highest RssAnon (heap, stacks) and
	// RssFile (pages of mapped files: bbolt's mmap, the binary) sampled
	// from /proc/<pid>/status: VmHWM counts both, and file pages are the
	// kernel's to drop, the heap is not.
	peakAnon, peakFile int64
	code               int
	stdout             []byte
	stderr             string
}

func runChild(b *testing.B, bin string, env []string, args ...string) childRun {
	r, err := runChildErr(bin, env, args...)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// runChildErr is runChild for a caller off the benchmark's goroutine
// (replicas run side by side), which must not call b.Fatal.
func runChildErr(bin string, env []string, args ...string) (childRun, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var out bytes.Buffer
	errb := &tailBuffer{max: 8 << 10}
	cmd.Stdout, cmd.Stderr = &out, errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return childRun{}, fmt.Errorf("starting rugwatch %v: %w", args[:min(len(args), 2)], err)
	}
	var anon, file, hwm int64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if raw, err := os.ReadFile(status); err == nil {
				a, f, h := rssOf(raw)
				anon, file, hwm = max(anon, a), max(file, f), max(hwm, h)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	<-sampled
	r := childRun{wall: time.Since(start), stdout: out.Bytes(), stderr: errb.String(), peakAnon: anon, peakFile: file, peakRSS: max(hwm, anon+file)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		return r, fmt.Errorf("running rugwatch %v: %w", args[:min(len(args), 2)], err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return r, nil
}

// rssOf reads RssAnon, RssFile and VmHWM (bytes) from a /proc/<pid>/status.
func rssOf(status []byte) (anon, file, hwm int64) {
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "RssAnon":
			anon = kb << 10
		case "RssFile":
			file = kb << 10
		case "VmHWM":
			hwm = kb << 10
		}
	}
	return anon, file, hwm
}

// tailBuffer keeps the last max bytes written (a first cycle's debug log
// could be large; only its end explains a failure).
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	if len(t.buf) > t.max {
		return string(t.buf[len(t.buf)-t.max:])
	}
	return string(t.buf)
}

// fleetSize is $RUGWATCH_FLEET_N, the servers of a fleet benchmark; 1,000
// unless set (the contract's figure is 10,000).
func fleetSize() int {
	if v, err := strconv.Atoi(os.Getenv("RUGWATCH_FLEET_N")); err == nil && v > 0 {
		return v
	}
	return 1000
}

func BenchmarkFleet(b *testing.B) {
	n := fleetSize()
	const concurrency = 64
	bin := rugwatchBinB(b)
	base := startFleet(b, n)
	dir := b.TempDir()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "data_dir: %s/data\nconcurrency: %d\ndefaults: { timeout: 60s }\nservers:\n", dir, concurrency)
	for i := range n {
		fmt.Fprintf(&cfg, "  - name: s%05d\n    url: %s/s/%d\n", i, base, i)
	}
	cfgPath := filepath.Join(dir, "rugwatch.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	env := append(baseEnv(dir), "RUGWATCH_CONFIG="+cfgPath)
	if r := runChild(b, bin, env, "init"); r.code != 0 {
		b.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	profDir := os.Getenv("RUGWATCH_FLEET_PROFILE")
	envFor := func(name string) []string {
		if profDir == "" {
			return env
		}
		return append(env[:len(env):len(env)], "RUGWATCH_CPUPROFILE="+filepath.Join(profDir, name))
	}
	for b.Loop() {
		floorFirst, floorFirstCPU, defBytes := floor(b, base, n, concurrency)
		dbPath := filepath.Join(dir, "data", "rugwatch.db")
		check := func(name string) (childRun, int64) {
			r := runChild(b, bin, envFor(name), "check", "--json")
			// Exit 1: every tool is pending (never approved), a finding.
			if r.code != 1 || len(r.stdout) == 0 || !json.Valid(r.stdout) {
				b.Fatalf("check (%s): exit %d, %d bytes of report (valid JSON %v)\nstderr tail:\n%s", name, r.code, len(r.stdout), json.Valid(r.stdout), r.stderr)
			}
			return r, fileSize(b, dbPath)
		}
		first, storeFirst := check(fmt.Sprintf("first-%d.pprof", n))
		floorSteady, floorSteadyCPU, _ := floor(b, base, n, concurrency)
		steady, storeSteady := check(fmt.Sprintf("steady-%d.pprof", n))
		_, storeThird := check(fmt.Sprintf("third-%d.pprof", n))
		tools := int64(n * fleetTools)
		drained := drainRate(b)
		fmt.Printf("\nfleet %d × %d, concurrency %d, %d cores\n", n, fleetTools, concurrency, runtime.NumCPU())
		fmt.Printf("%-34s %12s %12s\n", "", "first", "steady")
		fmt.Printf("%-34s %12s %12s\n", "bare floor (same run)", rnd(floorFirst), rnd(floorSteady))
		fmt.Printf("%-34s %12s %12s\n", "rugwatch check --json", rnd(first.wall), rnd(steady.wall))
		fmt.Printf("%-34s %12.1f %12.1f\n", "  × floor", ratio(first.wall, floorFirst), ratio(steady.wall, floorSteady))
		fmt.Printf("%-34s %12s %12s\n", "  CPU (user+sys)", rnd(first.cpu), rnd(steady.cpu))
		perPoll := func(d time.Duration) time.Duration { return (d / time.Duration(n)).Round(time.Microsecond) }
		fmt.Printf("%-34s %12s %12s\n", "  CPU per poll", perPoll(first.cpu), perPoll(steady.cpu))
		fmt.Printf("%-34s %12s %12s\n", "  floor's CPU per poll", perPoll(floorFirstCPU), perPoll(floorSteadyCPU))
		fmt.Printf("%-34s %12s %12s\n", "  CPU per poll above the floor", perPoll(first.cpu-floorFirstCPU), perPoll(steady.cpu-floorSteadyCPU))
		fmt.Printf("%-34s %9d MiB %9d MiB\n", "  peak RSS (VmHWM)", first.peakRSS>>20, steady.peakRSS>>20)
		fmt.Printf("%-34s %9d MiB %9d MiB\n", "    of it heap (peak RssAnon)", first.peakAnon>>20, steady.peakAnon>>20)
		fmt.Printf("%-34s %9d MiB %9d MiB\n", "    mapped files (peak RssFile)", first.peakFile>>20, steady.peakFile>>20)
		fmt.Printf("%-34s %9d MB  %9d MB\n", "  store file", storeFirst/1e6, storeSteady/1e6)
		fmt.Printf("%-34s %8d B   %8d B\n", "  store per tool", storeFirst/tools, storeSteady/tools)
		fmt.Printf("%-34s %8d B   %8d B\n", "  store per tool over definitions", (storeFirst-defBytes)/tools, (storeSteady-defBytes)/tools)
		fmt.Printf("%-34s %+12d B after a third cycle\n", "  store growth, unchanged poll", storeThird-storeSteady)
		fmt.Printf("%-34s %12.0f /s\n", "outbox drain, log channel", drained)
		b.ReportMetric(first.wall.Seconds(), "first-s")
		b.ReportMetric(steady.wall.Seconds(), "steady-s")
		b.ReportMetric(floorSteady.Seconds(), "floor-s")
		b.ReportMetric(float64(perPoll(steady.cpu-floorSteadyCPU).Microseconds()), "steady-µs-CPU/poll-over-floor")
		b.ReportMetric(float64(max(first.peakRSS, steady.peakRSS)>>20), "peakRSS-MiB")
		b.ReportMetric(float64(max(first.peakAnon, steady.peakAnon)>>20), "peakAnon-MiB")
		b.ReportMetric(float64((storeSteady-defBytes)/tools), "store-B/tool-over-defs")
		b.ReportMetric(drained, "drain/s")
	}
}

// drainRate is how many log-channel deliveries a second the dispatcher
// settles: 50,000 events queued, drained in one-shot mode as check does.
func drainRate(b *testing.B) float64 {
	const events = 50_000
	db, err := store.Open(filepath.Join(b.TempDir(), "drain.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for start := 0; start < events; start += 5000 {
		err := db.Update(func(tx *store.Tx) error {
			for i := start; i < start+5000; i++ {
				e := rugwatch.Event{Type: rugwatch.EventToolNew, Severity: rugwatch.SeverityInfo, Server: "s", Tool: fmt.Sprintf("t%d", i), Message: "first seen"}
				if err := tx.AppendEvent(&e); err != nil {
					return err
				}
				if err := notify.Enqueue(tx, e, []string{notify.LogChannel}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	d := &notify.Dispatcher{DB: db, Channels: notify.ByName([]notify.Notifier{&notify.Log{Logger: log}}), Log: log}
	start := time.Now()
	if err := d.Drain(context.Background(), 10*time.Minute); err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	var left []store.Delivery
	_ = db.View(func(tx *store.Tx) error {
		left, err = tx.DueDeliveries(time.Now(), 0)
		return err
	})
	if len(left) != 0 {
		b.Fatalf("drain left %d deliveries pending", len(left))
	}
	return events / took.Seconds()
}

func rugwatchBinB(b *testing.B) string {
	buildOnce.Do(func() {
		d, err := os.MkdirTemp("", "rugwatch-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(d, "rugwatch")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	return binPath
}

func fileSize(b *testing.B, p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

func rnd(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }
