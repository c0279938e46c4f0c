package detect

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/rugwatch/rugwatch/visible"
	"golang.org/x/text/unicode/norm"
	"pgregory.net/rapid"
)

// The character rules and the normaliser skip text that holds nothing
// they act on, by a look for the characters they act on: each look must
// see every such character, and each rewritten loop must answer as the
// loop it replaced (kept here as the reference).

// TestMayHideIsWhatHiddenRunesReports: a rune alone is reported by every
// case of hiddenRunes that reports it anywhere (context only excuses:
// a ZWJ inside an emoji, a selector after its base), so mayHide, the
// look in front of it, must hold exactly the runes reported alone.
func TestMayHideIsWhatHiddenRunesReports(t *testing.T) {
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if r >= 0xd800 && r <= 0xdfff {
			continue
		}
		msg, _ := hiddenRunes(string(r))
		if reported := msg != ""; reported != mayHide(r) {
			t.Fatalf("%U: reported %v, mayHide %v", r, reported, mayHide(r))
		}
	}
}

// TestMayControlSeesEveryControl: mayControl opens on every text
// controlRunes reports on, each character alone and each byte alone.
func TestMayControlSeesEveryControl(t *testing.T) {
	check := func(s string) {
		if msg, _ := controlRunes(s); msg != "" && !mayControl(s) {
			t.Fatalf("%q: controlRunes reports, mayControl shuts", s)
		}
	}
	for r := rune(0); r <= 0x800; r++ {
		check(string(r))
	}
	for b := range 256 {
		check(string([]byte{byte(b)}))
		check(string([]byte{0xc2, byte(b)}))
	}
}

// paddingBefore is padding as it was before it skipped visible ASCII.
func paddingBefore(s string) (string, int) {
	run, runStart, blank := 0, 0, false
	lines, lineStart := 0, 0
	for i, r := range s {
		switch {
		case r == '\n':
			if lines == 0 {
				lineStart = i
			}
			lines++
			run, blank = 0, false
			continue
		case r == ' ' || r == '\t' || visible.Blank(r):
			if run == 0 {
				runStart = i
			}
			if r != ' ' && r != '\t' {
				blank = true
			}
			run++
			continue
		}
		if run >= padSpaces {
			what := "spaces"
			if blank {
				what = "spaces or blank-looking characters"
			}
			return fmt.Sprintf("%d %s in a row before more text", run, what), runStart
		}
		if lines > padLines {
			return fmt.Sprintf("%d blank lines in a row before more text", lines-1), lineStart
		}
		run, lines, blank = 0, 0, false
	}
	return "", 0
}

// normalizeTextBefore is normalizeText as it was before it skipped ASCII
// lines and lines with nothing to drop or map.
func normalizeTextBefore(s string) (string, []string) {
	var undone []string
	if t := unBidi(s); t != s {
		s = t
		undone = append(undone, "a right-to-left override")
	}
	if t := strings.Map(func(r rune) rune {
		if unicode.Is(unicode.Cf, r) || isVariationSelector(r) {
			return -1
		}
		return r
	}, s); t != s {
		s = t
		undone = append(undone, "hidden characters")
	}
	if !norm.NFKC.IsNormalString(s) {
		s = norm.NFKC.String(s)
		undone = append(undone, "NFKC")
	}
	if t := skeletonBefore(s); t != s {
		s = t
		undone = append(undone, "look-alike letters")
	}
	return s, undone
}

// skeletonBefore is skeleton as it was before it copied ASCII whole.
func skeletonBefore(s string) string {
	return strings.Map(func(r rune) rune {
		if a, ok := skeletonTable[r]; ok {
			return a
		}
		return r
	}, s)
}

// charText draws text of what the character rules and the normaliser act
// on: runs of spaces, blanks, line breaks, hidden and format characters,
// look-alikes, compatibility forms, invalid UTF-8, and ASCII.
func charText() *rapid.Generator[string] {
	pieces := []string{" ", "\t", "\n", "\r", "a", "Z", ".", "\x00", "\x1b", "\x7f", "\u0085", "\u00a0", "\u00ad", "\u2003",
		"\u3000", "\u2800", "\u3164", "\u200b", "\u200d", "\u202e", "\u202c", "\u2066", "\ufe0f", "\U000e0041", "\U000e0100",
		"\u2028", "а", "е", "Ρ", "օ", "ſ", "\u212a", "Ａ", "ﬀ", "①", "é", "e\u0301", "😀", "世", "ب", "\ufffd", "\xff", "\xc2", "\xe2\x80"}
	piece := rapid.Custom(func(t *rapid.T) string {
		p := rapid.SampledFrom(pieces).Draw(t, "piece")
		return strings.Repeat(p, rapid.IntRange(1, 60).Draw(t, "times"))
	})
	return rapid.Custom(func(t *rapid.T) string {
		return strings.Join(rapid.SliceOfN(piece, 0, 12).Draw(t, "pieces"), "")
	})
}

// TestCharRulesAnswerAsBefore: the rewritten padding and normalizeText,
// and the character rules behind their looks, answer as before.
func TestCharRulesAnswerAsBefore(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		s := charText().Draw(rt, "text")
		for _, c := range []struct {
			name      string
			got, want func(string) (string, int)
		}{{"padding", func(s string) (string, int) { return padding(s, false) }, paddingBefore}, {"hiddenUnicode", hiddenUnicode, hiddenRunes}, {"controlChars", controlChars, controlRunes}} {
			got, at := c.got(s)
			if want, wantAt := c.want(s); got != want || at != wantAt {
				rt.Fatalf("%s(%q) = %q %d, want %q %d", c.name, s, got, at, want, wantAt)
			}
		}
		if got, want := skeleton(s), skeletonBefore(s); got != want {
			rt.Fatalf("skeleton(%q) = %q, before %q", s, got, want)
		}
		for _, line := range strings.Split(s, "\n") {
			got, undone := normalizeText(line)
			if want, wantUndone := normalizeTextBefore(line); got != want || !slices.Equal(undone, wantUndone) {
				rt.Fatalf("normalizeText(%q) = %q %q, before %q %q", line, got, undone, want, wantUndone)
			}
		}
	})
}

// TestLooksSkipOnlyWhatTheyMay: the tables behind the looks.
func TestLooksSkipOnlyWhatTheyMay(t *testing.T) {
	for r := range rune(utf8.RuneSelf) {
		if visible.Blank(r) {
			t.Errorf("%U is blank: padding reads ASCII as spaces, tabs and text only", r)
		}
		if _, ok := skeletonTable[r]; ok {
			t.Errorf("%U is in the skeleton table: skeleton copies ASCII as it is", r)
		}
	}
	for b := range 256 {
		c := byte(b)
		want := 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '_' || c == '-'
		if isBase64Byte(c) != want {
			t.Errorf("isBase64Byte(%q) = %v", c, !want)
		}
	}
	for _, s := range []string{"", "abc", strings.Repeat("x", 17) + "é" + "y", "é", strings.Repeat("a", 16)} {
		if got, want := asciiPrefix(s), strings.IndexFunc(s, func(r rune) bool { return r >= utf8.RuneSelf }); got != want && !(want < 0 && got == len(s)) {
			t.Errorf("asciiPrefix(%q) = %d, want %d", s, got, want)
		}
	}
}
