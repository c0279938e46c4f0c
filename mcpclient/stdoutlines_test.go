package mcpclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/testkit/testservers"
)

// TestStdoutNoiseBeforeAndBetweenMessages: a real stdio server (the
// go-sdk fixture, both eras) that prints a banner with terminal escapes
// before its first message and a log line after it, as
// mcp-server-code-runner does. Without the filter the poll fails on the
// banner's first byte; with it, the poll lists the same tools, with the
// same digests, as the quiet server, and the listing says what was
// dropped: two lines, the first inert and scrubbed of a configured value
// the server echoed, as a stdout-noise warning.
func TestStdoutNoiseBeforeAndBetweenMessages(t *testing.T) {
	const token = "tok-9f2c41d7e3"
	noisy := selfTarget(t, testservers.NoiseMode+"banner", map[string]string{"NOISE_SAY": token})

	t.Run("without the filter the server is unreachable", func(t *testing.T) {
		_, err := Poll(pollCtx(t, 20*time.Second), noisy, DialOptions{rawStdout: true})
		if err == nil || !strings.Contains(err.Error(), "invalid character") {
			t.Fatalf("poll of a bannered server through the raw transport: %v, want the decoder's error", err)
		}
	})

	quiet, err := Poll(pollCtx(t, 20*time.Second), selfTarget(t, "era::"+strings.Join(testservers.BothEras, ","), nil), DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // each poll a new process, each with its banner
		l, err := Poll(pollCtx(t, 20*time.Second), noisy, DialOptions{})
		if err != nil {
			t.Fatalf("poll %d: %v", i, err)
		}
		if l.ProtocolVersion != quiet.ProtocolVersion || len(l.Tools) != len(quiet.Tools) {
			t.Fatalf("poll %d: %s with %d tools, want %s with %d", i, l.ProtocolVersion, len(l.Tools), quiet.ProtocolVersion, len(quiet.Tools))
		}
		for j, tool := range l.Tools {
			if tool.Digest != quiet.Tools[j].Digest {
				t.Errorf("%s: digest %s, %s without the noise", tool.Name, tool.Digest, quiet.Tools[j].Digest)
			}
		}
		n := l.StdoutNoise
		if n == nil || n.Lines != 2 {
			t.Fatalf("poll %d: noise %+v, want the banner and the log line", i, n)
		}
		if strings.ContainsRune(n.First, 0x1b) || !strings.Contains(n.First, "Noisy MCP Server") ||
			strings.Contains(n.First, token) || !strings.Contains(n.First, "<secret>") {
			t.Errorf("first noise line shown as %q: want it visible, escapes inert, the configured value scrubbed", n.First)
		}
		fs := l.ServerFindings()
		if len(fs) != 1 || fs[0].Rule != detect.RuleStdoutNoise || fs[0].Severity != detect.SeverityOf(detect.RuleStdoutNoise) ||
			!strings.Contains(fs[0].Message, n.First) {
			t.Errorf("server findings %+v, want one stdout-noise warning quoting the first line", fs)
		}
		raw, _ := json.Marshal(l.Tools)
		if bytes.Contains(raw, []byte("Noisy")) || bytes.Contains(raw, []byte(testservers.NoiseJunk)) {
			t.Error("noise reached the tools")
		}
	}
	if quiet.StdoutNoise != nil || quiet.ServerFindings() != nil {
		t.Errorf("quiet server: noise %+v", quiet.StdoutNoise)
	}
}

// TestStdoutNoiseFloodFailsClearly: a server that writes junk lines past
// the bound fails the poll at once (not at its timeout) with an error that
// names the limit and quotes what was seen; either bound counts.
func TestStdoutNoiseFloodFailsClearly(t *testing.T) {
	for _, c := range []struct {
		name  string
		lim   Limits
		limit string
	}{
		{"lines", Limits{}, "max_stdout_noise_lines"},
		{"bytes", Limits{MaxNoiseBytes: 64 << 10}, "max_stdout_noise_bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			_, err := Poll(pollCtx(t, 30*time.Second), selfTarget(t, testservers.NoiseMode+"flood", nil), DialOptions{Limits: c.lim})
			var ne *NoiseError
			var le *LimitError
			if !errors.As(err, &ne) || !errors.As(err, &le) || le.Limit != c.limit {
				t.Fatalf("poll of a flooding server: %v, want a *NoiseError of %s", err, c.limit)
			}
			t.Log(err)
			if msg := err.Error(); !strings.Contains(msg, c.limit) || !strings.Contains(msg, `"`+testservers.NoiseJunk+`"`) ||
				!strings.Contains(msg, "not JSON-RPC") {
				t.Errorf("error does not say what was seen: %s", msg)
			}
			if el := time.Since(start); el > 15*time.Second {
				t.Errorf("failed after %v: the bound should end the poll, not its timeout", el)
			}
		})
	}
}

// TestStdoutLinesFilter reads the filter directly, a byte at a time on
// both sides so that every state crosses a read boundary: noise lines are
// dropped whole wherever they fall between values, and nothing inside a
// value is ever judged as a line (a pretty-printed message, a string
// holding a newline escape, brackets and quotes in strings), so the
// decoder reads exactly the messages.
func TestStdoutLinesFilter(t *testing.T) {
	msgs := []string{
		`{"jsonrpc":"2.0","id":1,"result":{"s":"}{ ][ \" \\\" \\n"}}`,
		"{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 2,\n  \"result\": {\"l\": [1,\n 2]}\n}",
		`[{"jsonrpc":"2.0","method":"notifications/x"}]`,
		`{"jsonrpc":"2.0","id":3,"result":{}}`,
	}
	in := "banner { not json\n" +
		msgs[0] + "\n" +
		"  \t\r\n" + // blank: kept, the decoder skips it
		"log: id=2 \"}\"\r\n" +
		"   indented junk\n" +
		msgs[1] + "\n" +
		msgs[2] + "\r\n" +
		"]\n" +
		msgs[3] + "\n" +
		"trailing noise without a newline"
	f := newStdoutLines(io.NopCloser(iotest.OneByteReader(strings.NewReader(in))), Limits{}.withDefaults(), func(s string) string { return s })
	out, err := io.ReadAll(iotest.OneByteReader(f))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for i, want := range msgs {
		var got json.RawMessage
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("message %d: %v\nfiltered stream:\n%s", i, err, out)
		}
		if string(got) != want {
			t.Errorf("message %d:\n got %s\nwant %s", i, got, want)
		}
	}
	if rest, _ := io.ReadAll(dec.Buffered()); len(bytes.TrimSpace(rest)) != 0 {
		t.Errorf("left after the messages: %q", rest)
	}
	n := f.noise()
	if n == nil || n.Lines != 5 || n.First != "banner { not json" {
		t.Errorf("noise %+v, want 5 lines, the first the banner", n)
	}
	select {
	case <-f.ready:
	default:
		t.Error("ready not closed after the server wrote")
	}

	// A line after a value on the same line is the decoder's to refuse,
	// as before the filter: it is passed, not dropped.
	f = newStdoutLines(io.NopCloser(strings.NewReader(msgs[3]+" junk\n")), Limits{}.withDefaults(), func(s string) string { return s })
	if out, _ := io.ReadAll(f); string(out) != msgs[3]+" junk\n" || f.noise() != nil {
		t.Errorf("trailing data on a message's line: passed %q, noise %+v", out, f.noise())
	}
}
