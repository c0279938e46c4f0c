package visible

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// padRun is how many spaces in a row are shown as they are; longer runs
// are counted instead, because padding is how a payload is pushed past the
// right edge of a review screen. A run of one blank-looking character
// (Blank) longer than padRun is counted the same way.
const padRun = 8

// maxMarks is how many combining marks in a row one base character may
// carry on screen (Vietnamese needs two, pointed Hebrew three); the rest
// are escaped. Dozens of stacked marks ("Zalgo" text) paint over the lines
// above and below and can cover other words.
const maxMarks = 3

// Text renders s keeping newlines and tabs, for multi-line display.
func Text(s string) string { return render(s, false) }

// Line renders s on one line: newlines and tabs are escaped too, so a
// server's text cannot start what looks like a new line of output.
func Line(s string) string { return render(s, true) }

func render(s string, oneLine bool) string {
	var b strings.Builder
	b.Grow(len(s))
	var (
		spaces int  // ASCII spaces not yet written
		blank  rune // the Blank character of the run not yet written
		blanks int  // its length
		marks  int  // combining marks shown on the current base
		base   bool // the last thing written is a character a mark may sit on
	)
	flush := func() {
		if spaces > padRun {
			fmt.Fprintf(&b, "⟨%d spaces⟩", spaces)
		} else {
			b.WriteString(strings.Repeat(" ", spaces))
		}
		if blanks > padRun {
			fmt.Fprintf(&b, "⟨%d × %s⟩", blanks, escape(blank))
		} else {
			b.WriteString(strings.Repeat(escape(blank), blanks))
		}
		spaces, blanks = 0, 0
	}
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == ' ' && blanks == 0:
			spaces++
			base = false
			continue
		case Blank(r) && spaces == 0 && (blanks == 0 || r == blank):
			blank = r
			blanks++
			base = false
			continue
		}
		flush()
		if r == ' ' || Blank(r) {
			// A run of another kind starts where the last one ended.
			i -= size
			continue
		}
		if combining(r) && !Hidden(r) {
			// A mark with nothing to sit on (start, space, newline, an
			// escape) would be drawn over whatever comes before it.
			if base && marks < maxMarks {
				b.WriteRune(r)
				marks++
			} else {
				b.WriteString(escape(r))
				base = false
			}
			continue
		}
		marks = 0
		base = false
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i-size])
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
			b.WriteString(escape(r))
		default:
			b.WriteRune(r)
			base = true
		}
	}
	flush()
	return b.String()
}

// escape is the visible form of r: \u00a0, or \U000e0041 outside the BMP.
func escape(r rune) string {
	if r > 0xffff {
		return fmt.Sprintf(`\U%08x`, r)
	}
	return fmt.Sprintf(`\u%04x`, r)
}

// combining reports a nonspacing or enclosing mark: drawn on the character
// before it, taking no room of its own.
func combining(r rune) bool { return unicode.In(r, unicode.Mn, unicode.Me) }

// Blank reports whether r looks like empty space on screen but is not the
// ASCII space or tab: the other Unicode space separators (no-break, Ogham,
// en/em to hair, narrow no-break, medium mathematical, ideographic), the
// braille pattern blank U+2800, the Hangul fillers, the Khitan filler and
// the musical null notehead. Such characters pad a payload out of view,
// or make two names that look the same differ, without an ASCII space the
// eye or a rule would count. Every Blank character is also Hidden.
func Blank(r rune) bool {
	switch r {
	case 0x2800, // BRAILLE PATTERN BLANK
		0x115f, 0x1160, 0x3164, 0xffa0, // Hangul choseong, jungseong, compatibility and halfwidth fillers
		0x16fe4, // KHITAN SMALL SCRIPT FILLER
		0x1d159: // MUSICAL SYMBOL NULL NOTEHEAD
		return true
	}
	return r != ' ' && unicode.Is(unicode.Zs, r)
}

// Hidden reports whether r must never reach a screen as itself: C0 and C1
// controls, DEL, Unicode format characters (bidi controls, zero-width
// characters, tag characters, the BOM), line and paragraph separators,
// blank-looking characters (Blank), default-ignorable code points that
// fonts draw as nothing (the combining grapheme joiner, Khmer inherent
// vowels), variation selectors, private-use characters and noncharacters.
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
	case Blank(r):
		return true
	case r >= 0xfe00 && r <= 0xfe0f, r >= 0xe0100 && r <= 0xe01ef: // variation selectors
		return true
	case r&0xfffe == 0xfffe || (r >= 0xfdd0 && r <= 0xfdef): // noncharacters, in every plane
		return true
	}
	return unicode.In(r, unicode.Cf, unicode.Co, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
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
