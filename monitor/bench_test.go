package monitor

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/testkit"
	"github.com/rugwatch/rugwatch/testkit/storetest"
	"github.com/rugwatch/rugwatch/testkit/testservers"
)

// rusage returns CPU time used so far and the peak RSS in bytes.
func rusage() (cpu time.Duration, maxRSS int64) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return cpu, ru.Maxrss * 1024
}

func benchRecorder(b *testing.B) *Recorder {
	dir := b.TempDir()
	if _, err := signatures.GenerateKeyPair(dir, nil); err != nil {
		b.Fatal(err)
	}
	pub, err := signatures.LoadPublicKey(filepath.Join(dir, "approver.pub"))
	if err != nil {
		b.Fatal(err)
	}
	db := storetest.Open(b, dir, store.Options{})
	signer, err := signatures.LoadPrivateKey(filepath.Join(dir, "approver.key"), nil)
	if err != nil {
		b.Fatal(err)
	}
	// Tools are approved on first sight, so every later change is a drift
	// with an event.
	return &Recorder{DB: db, Verifier: signatures.NewVerifier([]signatures.PublicKey{pub}), Signer: signer}
}

// BenchmarkCheckCycle200x50 is one full check cycle: 200 in-process
// Streamable HTTP servers of 50 tools each, polled 16 at a time and
// recorded in a real store (bbolt, or PostgreSQL: see testkit/storetest).
func BenchmarkCheckCycle200x50(b *testing.B) {
	const servers, tools, concurrency = 200, 50, 16
	targets := make([]mcpclient.Target, servers)
	for i := range servers {
		s := testservers.FixtureServer(tools, 0)
		h := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true}))
		b.Cleanup(h.Close)
		targets[i] = mcpclient.Target{Name: fmt.Sprintf("srv-%03d", i), Transport: mcpclient.TransportHTTP, URL: h.URL}
	}
	rec := benchRecorder(b)
	cycle := func() {
		sem := make(chan struct{}, concurrency)
		var wg sync.WaitGroup
		errs := make(chan error, servers)
		for _, tg := range targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				l, err := mcpclient.Poll(ctx, tg, mcpclient.DialOptions{})
				if err != nil {
					errs <- err
					return
				}
				if _, _, err := rec.Record(tg.Name, tg.Transport, l, nil); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
	// The first cycle sees every tool for the first time: findings and
	// 10,000 first-sight signatures. It is timed apart; the benchmark is
	// the steady state of a running daemon.
	first := time.Now()
	cycle()
	firstCycle := time.Since(first)
	cpu0, _ := rusage()
	b.ResetTimer()
	for b.Loop() {
		cycle()
	}
	b.StopTimer()
	cpu1, rss := rusage()
	polls := float64(b.N * servers)
	b.ReportMetric(polls/b.Elapsed().Seconds(), "polls/s")
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/polls, "cpu-µs/poll")
	b.ReportMetric(float64(rss)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(firstCycle.Seconds(), "first-cycle-s")
}

// BenchmarkPoll10kTools polls one stdio server listing 10,000 tools.
func BenchmarkPoll10kTools(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	tg := mcpclient.Target{Name: "big", Transport: mcpclient.TransportStdio, Command: exe, Args: []string{"-test.run=^$"},
		Env: map[string]string{"RUGWATCH_TEST_SERVER": "sdk", "TOOLS": "10000"}}
	b.ReportAllocs()
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		l, err := mcpclient.Poll(ctx, tg, mcpclient.DialOptions{})
		cancel()
		if err != nil || len(l.Tools) != 10000 {
			b.Fatalf("poll: %v", err)
		}
	}
	_, rss := rusage()
	b.ReportMetric(float64(rss)/(1<<20), "peak-RSS-MiB")
}

// BenchmarkWatchLatency measures, over 100 changes, the time from a
// server changing a tool to the drift being recorded, through a watch
// session on Streamable HTTP.
func BenchmarkWatchLatency(b *testing.B) {
	for b.Loop() {
		srv := testservers.FixtureServer(5, 0)
		handler, streamOpen := testkit.StandaloneStreamOpened(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
		h := httptest.NewServer(handler)
		tg := mcpclient.Target{Name: "w", Transport: mcpclient.TransportHTTP, URL: h.URL}
		rec := benchRecorder(b)
		recorded := make(chan time.Time, 4)
		ctx, cancel := context.WithCancel(context.Background())
		// MinInterval paces a flood of notifications in production; here
		// it would measure the pacing, not the path from change to record.
		w := &mcpclient.Watcher{Target: tg, Log: quietLog(), MinInterval: time.Millisecond, OnListing: func(ctx context.Context, _ *mcpclient.Listing, _ error) {
			l, err := mcpclient.Poll(ctx, tg, mcpclient.DialOptions{})
			if err != nil {
				return
			}
			if _, ev, err := rec.Record(tg.Name, tg.Transport, l, nil); err == nil && len(ev) > 0 {
				recorded <- time.Now()
			}
		}}
		done := make(chan struct{})
		go func() { defer close(done); w.Run(ctx) }()
		<-recorded // first sight: tool.new events
		// A change made before the watch's standalone stream is open would
		// be missed, not measured.
		<-streamOpen
		var lags []time.Duration
		for i := range 100 {
			t := testservers.FixtureTool(0)
			t.Description = fmt.Sprintf("changed %d", i)
			start := time.Now()
			srv.AddTool(t, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return &mcp.CallToolResult{}, nil
			})
			select {
			case at := <-recorded:
				lags = append(lags, at.Sub(start))
			case <-time.After(10 * time.Second):
				b.Fatalf("change %d not recorded", i)
			}
		}
		cancel()
		<-done
		h.Close()
		sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
		b.ReportMetric(float64(lags[len(lags)/2].Microseconds())/1000, "median-ms")
		b.ReportMetric(float64(lags[len(lags)-1].Microseconds())/1000, "max-ms")
	}
}

// BenchmarkPollPastItsTimeout measures how long a poll of a server that
// never answers runs past its deadline (killing the stdio child, closing
// the HTTP request): the figure the tests used to bound, kept here where a
// loaded machine cannot fail the suite with it.
func BenchmarkPollPastItsTimeout(b *testing.B) {
	const timeout = 200 * time.Millisecond
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(hang)
	targets := map[string]mcpclient.Target{
		"stdio-silent": selfTarget(b, "raw:silent", nil),
		"http-hung":    {Transport: mcpclient.TransportHTTP, URL: srv.URL},
	}
	for _, name := range []string{"stdio-silent", "http-hung"} {
		b.Run(name, func(b *testing.B) {
			var over time.Duration
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				start := time.Now()
				if _, err := mcpclient.Poll(ctx, targets[name], mcpclient.DialOptions{}); err == nil {
					b.Fatal("poll of a silent server succeeded")
				}
				over += time.Since(start) - timeout
				cancel()
			}
			b.ReportMetric(float64(over.Microseconds())/1000/float64(b.N), "ms-past-deadline/op")
		})
	}
}
