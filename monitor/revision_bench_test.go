package monitor

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/sandbox"
	"github.com/rugwatch/rugwatch/testkit/testservers"
)

// BenchmarkPoll is one `check` of one 50-tool go-sdk server per revision
// and transport: connect (server/discover, or the handshake), every
// page, hashing, and recording in a real bbolt file. Over stdio it
// includes starting the sandboxed child and reaping it.
func BenchmarkPoll(b *testing.B) {
	for _, era := range []struct {
		name     string
		versions []string
	}{{mcpclient.StatelessVersion, testservers.OnlyStateless}, {"2025-11-25", testservers.OnlyHandshake}} {
		for _, transport := range []string{mcpclient.TransportStdio, mcpclient.TransportHTTP} {
			b.Run(era.name+"/"+transport, func(b *testing.B) {
				tg := eraStdio(b, "plain", era.versions, map[string]string{"TOOLS": "50"})
				if transport == mcpclient.TransportHTTP {
					tg = eraHTTP(b, testservers.EraServerN(50, "plain", era.versions, ""), era.name == mcpclient.StatelessVersion)
				}
				rec := benchRecorder(b)
				b.ReportAllocs()
				for b.Loop() {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					l, err := mcpclient.Poll(ctx, tg, mcpclient.DialOptions{})
					cancel()
					if err != nil || l.ProtocolVersion != era.name || len(l.Tools) != 50 {
						b.Fatalf("poll: %v", err)
					}
					if _, _, err := rec.Record("srv", transport, l, nil); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/check")
			})
		}
	}
}

// BenchmarkWatchLatency2026 is, per change, the time from a 2026-07-28
// server changing a tool to the drift being recorded: the notification on
// the subscriptions/listen stream, the re-check (a fresh poll over HTTP,
// a listing on the watched child over stdio) and the Recorder's write.
func BenchmarkWatchLatency2026(b *testing.B) {
	for _, transport := range []string{mcpclient.TransportHTTP, mcpclient.TransportStdio} {
		b.Run(transport, func(b *testing.B) {
			var srv *mcp.Server
			var tg mcpclient.Target
			pidfile := filepath.Join(b.TempDir(), "pid")
			if transport == mcpclient.TransportHTTP {
				srv = testservers.EraServerN(5, "plain", testservers.OnlyStateless, "")
				tg = eraHTTP(b, srv, true)
			} else {
				tg = eraStdio(b, "signal", testservers.OnlyStateless, map[string]string{"TOOLS": "5", "PIDFILE": pidfile})
				// Unsandboxed, so the benchmark can signal the child.
				tg.Sandbox.Mode = sandbox.Off
			}
			rec := benchRecorder(b)
			recorded := make(chan rugwatch.Event, 4)
			ctx, cancel := context.WithCancel(context.Background())
			w := &mcpclient.Watcher{Target: tg, Log: quietLog(), MinInterval: time.Millisecond, ConnectTimeout: 10 * time.Second,
				OnListing: func(ctx context.Context, l *mcpclient.Listing, err error) {
					if l == nil && err == nil {
						l, err = mcpclient.Poll(ctx, tg, mcpclient.DialOptions{})
					}
					if err != nil {
						return
					}
					_, ev, err := rec.Record("w", transport, l, nil)
					if err != nil {
						return
					}
					for _, e := range ev {
						if e.Type == rugwatch.EventToolDrifted || e.Type == rugwatch.EventToolNew {
							recorded <- e
							return
						}
					}
				}}
			done := make(chan struct{})
			go func() { defer close(done); w.Run(ctx) }()
			defer func() { cancel(); <-done }()
			<-recorded // first sight; the listen was acknowledged before it
			change := func(i int) {
				if srv != nil {
					t := testservers.FixtureTool(0)
					t.Description = "changed " + strconv.Itoa(i)
					srv.AddTool(t, testservers.Noop)
					return
				}
				raw, err := os.ReadFile(pidfile)
				pid, _ := strconv.Atoi(string(raw))
				if err != nil || pid == 0 {
					b.Fatalf("child pid: %v", err)
				}
				if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
					b.Fatal(err)
				}
			}
			i := 0
			for b.Loop() {
				change(i)
				i++
				select {
				case <-recorded:
				case <-time.After(10 * time.Second):
					b.Fatalf("change %d not recorded", i)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/change")
		})
	}
}
