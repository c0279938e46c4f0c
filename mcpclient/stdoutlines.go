package mcpclient

import (
	"bytes"
	"fmt"
	"io"
	"sync"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/visible"
)

// A stdio server's stdout is meant to carry JSON-RPC messages only, one a
// line, yet servers print banners there ("Code Runner MCP Server running
// on stdio") and libraries log there. The official TypeScript and Python
// clients skip a line they cannot parse; the go-sdk's decoder fails the
// whole session on its first byte, so such a server was unreachable for
// rugwatch. stdoutLines sits between the child's stdout and the SDK's
// decoder and drops those lines, unread, with three rules:
//
//   - Only a line that starts, after blanks, outside any JSON value is
//     judged: one whose first non-blank byte is '{' (a message) or '['
//     (a batch, which a 2025-03-26 server may send) passes, any other is
//     dropped whole. Inside a value (its structure is followed, strings
//     and escapes included) nothing is dropped, so a message is never cut,
//     and everything that passes is what the decoder reads and checks as
//     before: what the filter lets through it does not interpret.
//   - Dropped lines are bounded per session (Limits.MaxNoiseLines and
//     MaxNoiseBytes): past either, the session fails with a *NoiseError
//     that quotes the first line, made safe.
//   - What was dropped is counted and its first line kept, scrubbed,
//     clipped and made visible (StdoutNoise), for the listing and its
//     stdout-noise finding. Nothing dropped reaches the decoder, a digest
//     or a model: a server that hides text in noise lines hides it from
//     every client alike.

// StdoutNoise is what a stdio server wrote on stdout that is not JSON-RPC
// during one session: lines dropped unread before and between messages.
type StdoutNoise struct {
	Lines int   `json:"lines"`
	Bytes int64 `json:"bytes"`
	// First is the start of the first dropped line, scrubbed of the
	// target's configured values, clipped and made visible.
	First string `json:"first"`
}

// NoiseError is a session that ended because the server wrote more
// non-JSON lines on stdout than the limits allow. It unwraps to the
// *LimitError of the limit it broke, so that no caller mistakes it for a
// server that simply does not speak a revision.
type NoiseError struct {
	StdoutNoise
	Limit string
	Value int64
}

func (e *NoiseError) Error() string {
	return fmt.Sprintf("the server wrote %d lines (%d bytes) on stdout that are not JSON-RPC messages, more than %s (%d) allows; the first: \"%s\"",
		e.Lines, e.Bytes, e.Limit, e.Value, e.First)
}

func (e *NoiseError) Unwrap() error { return &LimitError{Limit: e.Limit, Value: e.Value} }

// maxNoiseSample is how much of the first dropped line is kept: enough to
// scrub a configured secret that starts within the part shown, whole.
const maxNoiseSample = 4 << 10

// lineState is where in the stream stdoutLines is.
type lineState int

const (
	atLineStart lineState = iota // between values, at the start of a line (blanks so far)
	inValue                      // inside a JSON value
	afterValue                   // after a value, before the end of its line
	inNoise                      // inside a dropped line
)

// stdoutLines filters a stdio server's stdout (see above). Read is called
// by the SDK's one reader goroutine; noise and ready may be called from
// any goroutine.
type stdoutLines struct {
	r        io.ReadCloser
	maxLines int
	maxBytes int64
	// show makes the first dropped line safe to show: scrubbed, clipped
	// and made visible.
	show func(string) string

	chunk []byte
	pend  []byte // read from r, not yet filtered
	err   error  // r's error, returned once pend is drained

	state  lineState
	depth  int
	inStr  bool
	escape bool

	// ready is closed at the first byte the server writes, noise or not:
	// a server that writes has started (see discover).
	ready     chan struct{}
	readyOnce sync.Once

	mu       sync.Mutex
	lines    int
	bytes    int64
	sample   []byte
	sampling bool // the first dropped line is still being read
}

func newStdoutLines(r io.ReadCloser, lim Limits, show func(string) string) *stdoutLines {
	return &stdoutLines{r: r, maxLines: lim.MaxNoiseLines, maxBytes: lim.MaxNoiseBytes, show: show,
		chunk: make([]byte, 64<<10), ready: make(chan struct{})}
}

// Read returns the next bytes of the server's stdout that are not noise.
func (f *stdoutLines) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if len(f.pend) == 0 {
			if f.err != nil {
				return 0, f.err
			}
			n, err := f.r.Read(f.chunk)
			if n > 0 {
				f.readyOnce.Do(func() { close(f.ready) })
			}
			f.pend, f.err = f.chunk[:n], err
			continue
		}
		n, err := f.filter(p)
		if err != nil {
			// The noise bound is final: nothing after it is read.
			f.pend, f.err = nil, err
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		if n > 0 {
			return n, nil
		}
	}
}

// Close closes the server's stdout.
func (f *stdoutLines) Close() error { return f.r.Close() }

// filter moves what passes of f.pend into p, dropping noise lines, until
// f.pend is used up or p is full.
func (f *stdoutLines) filter(p []byte) (int, error) {
	n := 0
	for len(f.pend) > 0 && n < len(p) {
		switch f.state {
		case atLineStart:
			switch c := f.pend[0]; c {
			case ' ', '\t', '\r', '\n':
				// Blanks between values are the decoder's to skip, as
				// before.
				p[n] = c
				n++
				f.pend = f.pend[1:]
			case '{', '[':
				f.state, f.depth, f.inStr, f.escape = inValue, 0, false, false
			default:
				if err := f.startNoise(); err != nil {
					return n, err
				}
				f.state = inNoise
			}
		case inNoise:
			seg := f.pend
			end := bytes.IndexByte(seg, '\n')
			if end >= 0 {
				seg = seg[:end+1]
			}
			if err := f.noteNoise(seg, end >= 0); err != nil {
				return n, err
			}
			f.pend = f.pend[len(seg):]
			if end >= 0 {
				f.state = atLineStart
			}
		case inValue:
			k := f.scanValue(f.pend[:min(len(f.pend), len(p)-n)])
			n += copy(p[n:], f.pend[:k])
			f.pend = f.pend[k:]
		case afterValue:
			// The rest of the line is the decoder's: a newline, or the
			// trailing data it refuses.
			seg := f.pend[:min(len(f.pend), len(p)-n)]
			if end := bytes.IndexByte(seg, '\n'); end >= 0 {
				seg = seg[:end+1]
				f.state = atLineStart
			}
			n += copy(p[n:], seg)
			f.pend = f.pend[len(seg):]
		}
	}
	return n, nil
}

// scanValue follows the structure of the JSON value b continues and
// returns how many bytes of b belong to it: all of b, or up to and
// including the bracket that closes it.
func (f *stdoutLines) scanValue(b []byte) int {
	for i := 0; i < len(b); {
		if f.inStr {
			if f.escape {
				f.escape = false
				i++
				continue
			}
			j := bytes.IndexAny(b[i:], "\"\\")
			if j < 0 {
				return len(b)
			}
			i += j
			f.inStr, f.escape = b[i] != '"', b[i] == '\\'
			i++
			continue
		}
		j := bytes.IndexAny(b[i:], "\"{}[]")
		if j < 0 {
			return len(b)
		}
		i += j
		switch b[i] {
		case '"':
			f.inStr = true
		case '{', '[':
			f.depth++
		default:
			if f.depth--; f.depth <= 0 {
				f.state = afterValue
				return i + 1
			}
		}
		i++
	}
	return len(b)
}

// startNoise counts a dropped line.
func (f *stdoutLines) startNoise() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lines++
	if f.lines == 1 {
		f.sampling = true
	}
	if f.lines > f.maxLines {
		return f.exceeded("max_stdout_noise_lines", int64(f.maxLines))
	}
	return nil
}

// noteNoise counts seg, a dropped line or part of one (ending it when
// last), and keeps the start of the first.
func (f *stdoutLines) noteNoise(seg []byte, last bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bytes += int64(len(seg))
	if f.sampling {
		text := seg
		if last {
			text = bytes.TrimRight(text, "\r\n")
			f.sampling = false
		}
		f.sample = append(f.sample, text[:min(len(text), maxNoiseSample-len(f.sample))]...)
	}
	if f.bytes > f.maxBytes {
		return f.exceeded("max_stdout_noise_bytes", f.maxBytes)
	}
	return nil
}

// exceeded is the error of a broken bound. Called with f.mu held.
func (f *stdoutLines) exceeded(limit string, value int64) error {
	return &NoiseError{StdoutNoise: f.noiseLocked(), Limit: limit, Value: value}
}

// noise is what was dropped so far; nil when nothing was.
func (f *stdoutLines) noise() *StdoutNoise {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lines == 0 {
		return nil
	}
	n := f.noiseLocked()
	return &n
}

func (f *stdoutLines) noiseLocked() StdoutNoise {
	return StdoutNoise{Lines: f.lines, Bytes: f.bytes, First: f.show(string(f.sample))}
}

// noiseText makes the first dropped line safe to show: the target's
// configured values scrubbed first (a clip must not leave half a token),
// then clipped and made visible.
func (s *Session) noiseText(raw string) string {
	return visible.Line(visible.Clip(scrubText(raw, s.target.secretValues()), 0, 80))
}

// stdoutNoise is what the session dropped of a stdio server's stdout so
// far; nil when nothing (or not stdio).
func (s *Session) stdoutNoise() *StdoutNoise {
	if s.stdout == nil {
		return nil
	}
	return s.stdout.noise()
}

// ServerFindings are the listing's findings about the server rather than
// any of its tools: a stdio server's stdout noise.
func (l *Listing) ServerFindings() []rugwatch.Finding {
	if l.StdoutNoise == nil {
		return nil
	}
	n := l.StdoutNoise
	return []rugwatch.Finding{{Rule: detect.RuleStdoutNoise, Severity: detect.SeverityOf(detect.RuleStdoutNoise), Path: "/stdout",
		Message: fmt.Sprintf("the server wrote %d lines (%d bytes) on stdout that are not JSON-RPC; rugwatch dropped them unread, "+
			"as MCP clients do, and no model sees them; the first: \"%s\"", n.Lines, n.Bytes, n.First)}}
}
