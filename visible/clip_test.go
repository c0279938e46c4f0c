package visible

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// Clipping never splits a rune, never lets a hidden character through
// unrendered, and says what it cut.
func TestClipQuoteBounded(t *testing.T) {
	long := strings.Repeat("é", 100) + "\u202e" + strings.Repeat("x", 100)
	if c := Clip(long, 0, 80); !utf8.ValidString(c) || utf8.RuneCountInString(c) != 81 || !strings.HasSuffix(c, "…") {
		t.Errorf("Clip: %q", c)
	}
	if q := Quote("a\u202eb"); strings.ContainsRune(q, '\u202e') || !strings.HasPrefix(q, `"`) {
		t.Errorf("Quote let a bidi override through: %q", q)
	}
	b := Bounded(strings.Repeat("é", 10), 5)
	if !utf8.ValidString(b) || !strings.HasPrefix(b, "éé…") || !strings.Contains(b, "(16 more bytes)") {
		t.Errorf("Bounded: %q", b)
	}
	if e := Excerpt(long, 200); !strings.HasPrefix(e, `"…`) {
		t.Errorf("Excerpt: %q", e)
	}
}
