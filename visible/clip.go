package visible

import (
	"fmt"
	"unicode/utf8"
)

// Quote renders untrusted text for a message: visibly, on one line,
// short, in quotes. It is the one way rugwatch clips what a server sent
// into a message.
func Quote(s string) string { return `"` + Line(Clip(s, 0, 80)) + `"` }

// Clip returns up to max runes of s around byte offset at, with ellipses.
func Clip(s string, at, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	start := at
	for n := 0; start > 0 && n < max/3; n++ {
		_, size := utf8.DecodeLastRuneInString(s[:start])
		start -= size
	}
	end := start
	for n := 0; end < len(s) && n < max; n++ {
		_, size := utf8.DecodeRuneInString(s[end:])
		end += size
	}
	out := s[start:end]
	if start > 0 {
		out = "…" + out
	}
	if end < len(s) {
		out += "…"
	}
	return out
}

// Excerpt quotes s around byte offset at, as Quote does the start.
func Excerpt(s string, at int) string { return `"` + Line(Clip(s, at, 60)) + `"` }

// Bounded caps raw at max bytes on a rune boundary, says how much was
// cut, and renders it on one line.
func Bounded(raw string, max int) string {
	if len(raw) <= max {
		return Line(raw)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(raw[cut]) {
		cut--
	}
	return Line(raw[:cut]) + fmt.Sprintf("… (%d more bytes)", len(raw)-cut)
}
