package notify

import (
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch/visible"
)

// logText is a shortcut, never a different rendering: on every string it
// gives what visible.Line gives, hostile ones included.
func TestLogTextIsVisibleLine(t *testing.T) {
	cases := []string{"", " ", "sha256:ab12", "evt_01J", "tool.drifted", "my server", "a\\b", "a\nb", "a\tb", "a\rb",
		"\x1b[31mred", "zero\u200bwidth", "rtl\u202eevil", "é", "a  b", " lead", "trail ", "\x7f", "tag\U000E0041"}
	for n := 1; n <= 20; n++ {
		cases = append(cases, "a"+strings.Repeat(" ", n)+"b", strings.Repeat(" ", n))
	}
	for c := 0; c < 0x100; c++ {
		for _, d := range []byte{'a', ' ', '\\', 0x80} {
			cases = append(cases, string([]byte{byte(c), d}), string([]byte{d, byte(c)}))
		}
	}
	for _, s := range cases {
		if got, want := logText(s), visible.Line(s); got != want {
			t.Errorf("logText(%q) = %q, visible.Line gives %q", s, got, want)
		}
	}
}
