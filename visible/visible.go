package visible

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// padRun is how many spaces in a row are shown as they are; longer runs
// are counted instead, because padding is how a payload is pushed past the
// right edge of a review screen.
const padRun = 8

// Text renders s keeping newlines and tabs, for multi-line display.
func Text(s string) string { return render(s, false) }

// Line renders s on one line: newlines and tabs are escaped too, so a
// server's text cannot start what looks like a new line of output.
func Line(s string) string { return render(s, true) }

func render(s string, oneLine bool) string {
	var b strings.Builder
	b.Grow(len(s))
	spaces := 0
	flush := func() {
		if spaces > padRun {
			fmt.Fprintf(&b, "⟨%d spaces⟩", spaces)
		} else {
			b.WriteString(strings.Repeat(" ", spaces))
		}
		spaces = 0
	}
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == ' ' {
			spaces++
			i += size
			continue
		}
		flush()
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n' && !oneLine:
			b.WriteByte('\n')
		case r == '\t' && !oneLine:
			b.WriteByte('\t')
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == 0x1b:
			b.WriteString(`\e`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case Hidden(r):
			if r > 0xffff {
				fmt.Fprintf(&b, `\U%08x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteRune(r)
		}
		i += size
	}
	flush()
	return b.String()
}

// Hidden reports whether r must never reach a screen as itself: C0 and C1
// controls, DEL, Unicode format characters (bidi controls, zero-width
// characters, tag characters, the BOM), line and paragraph separators,
// private-use and unassigned-in-practice noncharacters.
func Hidden(r rune) bool {
	switch {
	case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
		return true
	case r >= 0xe0000 && r <= 0xe007f: // tags
		return true
	case r == 0x2028 || r == 0x2029:
		return true
	case r >= 0xfff9 && r <= 0xfffb: // interlinear annotation
		return true
	case r == 0x115f || r == 0x1160 || r == 0x3164 || r == 0xffa0: // Hangul fillers render blank
		return true
	case r >= 0xfe00 && r <= 0xfe0f, r >= 0xe0100 && r <= 0xe01ef: // variation selectors
		return true
	case r == 0xfffe || r == 0xffff || (r >= 0xfdd0 && r <= 0xfdef):
		return true
	}
	return unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Co, r)
}

// Message renders text that rugwatch composed from already-rendered parts
// (finding messages, stored errors): shown as it is when nothing in it
// needs escaping, so the escapes inside are not escaped twice, and through
// Line otherwise, so that even a message edited in the store stays inert.
func Message(s string) string {
	if !utf8.ValidString(s) {
		return Line(s)
	}
	for _, r := range s {
		if r == '\n' || r == '\t' || Hidden(r) {
			return Line(s)
		}
	}
	return s
}
