package testservers

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Servers that do what real ones do to their stdout and their start.

// NoiseMode + scenario runs the fixture server (both eras) over stdio with
// lines on its stdout that are not JSON-RPC: "banner" prints NoiseBanner
// first (with $NOISE_SAY, if set) and NoiseJunk after its first message,
// as mcp-server-code-runner and chatty libraries do; "flood" prints $NOISE_LINES (default 20,000)
// junk lines before anything else.
const NoiseMode = "noise:"

// The noise lines: the banner carries terminal escapes, which every view
// must show inert.
const (
	NoiseBanner = "\x1b[32mNoisy MCP Server\x1b[0m running on stdio"
	NoiseJunk   = "debug: handled a request"
)

func noiseServer(scenario string) {
	out := &noisyStdout{w: os.Stdout}
	switch scenario {
	case "banner":
		banner := NoiseBanner
		if v := os.Getenv("NOISE_SAY"); v != "" {
			// A server echoing a configured value (its API key, say).
			banner += " (key " + v + ")"
		}
		fmt.Fprintln(os.Stdout, banner)
		out.after = NoiseJunk
	case "flood":
		n, err := strconv.Atoi(os.Getenv("NOISE_LINES"))
		if err != nil {
			n = 20000
		}
		junk := strings.Repeat(NoiseJunk+"\n", n)
		_, _ = io.WriteString(os.Stdout, junk)
	}
	s := EraServer("", BothEras, "")
	_ = s.Run(context.Background(), &mcp.IOTransport{Reader: os.Stdin, Writer: out})
}

// noisyStdout writes after between the server's first message and the
// next: the SDK writes each message, newline included, in one Write.
type noisyStdout struct {
	w     io.WriteCloser
	after string
	once  sync.Once
}

func (n *noisyStdout) Write(p []byte) (int, error) {
	k, err := n.w.Write(p)
	if err == nil && n.after != "" {
		n.once.Do(func() { _, err = io.WriteString(n.w, n.after+"\n") })
	}
	return k, err
}

func (n *noisyStdout) Close() error { return n.w.Close() }

// SlowMode + "MS:" + another mode sleeps MS milliseconds, as npx does while
// it installs a package, before it reads or writes anything, then runs
// that mode: a server that is slow to start, not slow to answer.
const SlowMode = "slow:"

func slowServer(spec string) {
	ms, mode, _ := strings.Cut(spec, ":")
	n, _ := strconv.Atoi(ms)
	time.Sleep(time.Duration(n) * time.Millisecond)
	Run(mode)
}
