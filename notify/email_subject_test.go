package notify

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch/configs"
)

func TestSubjectTokens(t *testing.T) {
	long64 := strings.Repeat("a", 64)
	for _, tt := range []struct{ server, tool, want string }{
		{"everything", "echo", "[rugwatch] CRITICAL tool.drifted everything/echo"},
		{"a.b-c_1", "get_weather.v2-beta", "[rugwatch] CRITICAL tool.drifted a.b-c_1/get_weather.v2-beta"},
		{"everything", long64, "[rugwatch] CRITICAL tool.drifted everything/" + long64},
		{"everything", long64 + "a", "[rugwatch] CRITICAL tool.drifted everything/(unprintable tool name)"},
		{"everything", "echo\r\nBcc: evil@x", "[rugwatch] CRITICAL tool.drifted everything/(unprintable tool name)"},
		{"everything", "echo\u202etxt.exe", "[rugwatch] CRITICAL tool.drifted everything/(unprintable tool name)"},
		{"everything", "echo tool", "[rugwatch] CRITICAL tool.drifted everything/(unprintable tool name)"},
		{"everything", "=?utf-8?q?x?=", "[rugwatch] CRITICAL tool.drifted everything/(unprintable tool name)"},
		{"everything", "ｅｃｈｏ", "[rugwatch] CRITICAL tool.drifted everything/(unprintable tool name)"},
		{"Ev\nil", "echo", "[rugwatch] CRITICAL tool.drifted (unprintable server name)/echo"},
		{"everything", "", "[rugwatch] CRITICAL tool.drifted everything"},
	} {
		e := driftEvent()
		e.Server, e.Tool = tt.server, tt.tool
		if got := Subject(e); got != tt.want {
			t.Errorf("Subject(server %q, tool %q) = %q, want %q", tt.server, tt.tool, got, tt.want)
		}
	}
	e := driftEvent()
	e.Severity, e.Type = "critical\r\nX: y", "tool.drifted\u202e"
	if got, want := Subject(e), "[rugwatch] (UNKNOWN SEVERITY) (unknown type) everything/echo"; got != want {
		t.Errorf("Subject = %q, want %q", got, want)
	}
}

// A hostile server names its tool to inject headers (CRLF), reorder what
// the inbox shows (bidi), or push the severity out of view (500
// characters). None of it reaches a header on the wire; the body still
// says, escaped, what the name was.
func TestEmailHostileToolNameNeverInHeaders(t *testing.T) {
	for _, tt := range []struct {
		name, tool string
		bodyShows  string // how the body renders the name
	}{
		{"crlf injection", "echo\r\nBcc: evil@attacker.example\r\nX-Injected: 1", `echo\r\nBcc: evil@attacker.example\r\nX-Injected: 1`},
		{"bidi override", "echo\u202eexe.tnirp", `echo\u202eexe.tnirp`},
		{"500 characters", strings.Repeat("w", 500), strings.Repeat("w", 500)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := startSMTP(t, smtpPlain, "", "", nil)
			m := &Email{Config: srv.emailConfig(configs.TLSNone)}
			e := driftEvent()
			e.Tool = tt.tool
			if _, err := m.Notify(context.Background(), e); err != nil {
				t.Fatal(err)
			}
			msgs := srv.messages()
			if len(msgs) != 1 {
				t.Fatalf("%d messages", len(msgs))
			}
			raw := msgs[0].Data
			end := bytes.Index(raw, []byte("\r\n\r\n"))
			if end < 0 {
				t.Fatalf("no end of headers in\n%s", raw)
			}
			head := raw[:end]
			// Plain printable ASCII only: no encoded word can smuggle
			// anything past a reader either.
			for i, c := range head {
				if (c < 0x20 || c > 0x7e) && c != '\r' && c != '\n' && c != '\t' {
					t.Fatalf("header byte %d is %#x:\n%s", i, c, head)
				}
			}
			if bytes.Contains(head, []byte("=?")) {
				t.Errorf("headers hold an encoded word:\n%s", head)
			}
			for _, frag := range []string{"evil", "Injected", "tnirp", "wwwwwwww"} {
				if bytes.Contains(bytes.ToLower(head), []byte(strings.ToLower(frag))) {
					t.Errorf("headers carry server text %q:\n%s", frag, head)
				}
			}
			msg, body := parseMail(t, raw)
			if got, want := msg.Header.Get("Subject"), "[rugwatch] CRITICAL tool.drifted everything/(unprintable tool name)"; got != want {
				t.Errorf("Subject %q, want %q", got, want)
			}
			for h := range msg.Header {
				switch h {
				case "From", "To", "Subject", "Message-Id", "Date", "User-Agent", "X-Mailer",
					"Mime-Version", "Content-Type", "Content-Transfer-Encoding":
				default:
					t.Errorf("unexpected header %s: %q", h, msg.Header[h])
				}
			}
			if text := decodeBody(t, msg, body); !strings.Contains(text, "Tool:     "+tt.bodyShows) {
				t.Errorf("body does not show the tool name escaped (%q):\n%s", tt.bodyShows, text)
			}
		})
	}
}
