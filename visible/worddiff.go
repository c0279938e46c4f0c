package visible

import (
	"slices"
	"strings"
)

// maxDiffWords bounds the word diff, which is quadratic: longer texts are
// shown whole, old then new.
const maxDiffWords = 4000

// Segment is one piece of a word diff: Op is "same", "del" or "ins"; Text
// is the server's text as it came, not yet made visible.
type Segment struct {
	Op   string
	Text string
}

// WordSegments is the change from old to new word by word, runs of the same
// operation joined. ok is false when the texts are too long to diff
// (longer than max words; max <= 0 means the default).
func WordSegments(old, new string, max int) (segs []Segment, ok bool) {
	if max <= 0 {
		max = maxDiffWords
	}
	a, b := words(old), words(new)
	if len(a) > max || len(b) > max {
		return nil, false
	}
	// Longest common subsequence over words, by dynamic programming.
	n, m := len(a), len(b)
	lcs := make([][]int32, n+1)
	for i := range lcs {
		lcs[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = maxInt(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	add := func(op, s string) {
		if k := len(segs) - 1; k >= 0 && segs[k].Op == op {
			segs[k].Text += s
			return
		}
		segs = append(segs, Segment{op, s})
	}
	var del, ins []string
	flush := func() {
		if len(del) > 0 {
			add("del", strings.Join(del, ""))
			del = del[:0]
		}
		if len(ins) > 0 {
			add("ins", strings.Join(ins, ""))
			ins = ins[:0]
		}
	}
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			flush()
			add("same", a[i])
			i, j = i+1, j+1
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			ins = append(ins, b[j])
			j++
		default:
			del = append(del, a[i])
			i++
		}
	}
	flush()
	return segs, true
}

func maxInt(a, b int32) int32 {
	if a > b {
		return a
	}
	return b
}

// WordDiff renders the change from old to new word by word, with removed
// words in [-…-] and inserted words in {+…+}, every word made visible by
// Line. It is what a reviewer needs for a long description that gained one
// hidden sentence. ok is false when the texts are too long to diff, and
// when they share no word: then it would only repeat the old and new lines
// (two digests, one after the other).
func WordDiff(old, new string) (out string, ok bool) {
	segs, ok := WordSegments(old, new, 0)
	if !ok || !slices.ContainsFunc(segs, sharedWord) {
		return "", false
	}
	var sb strings.Builder
	for _, s := range segs {
		switch s.Op {
		case "del":
			sb.WriteString("[-" + Line(s.Text) + "-]")
		case "ins":
			sb.WriteString("{+" + Line(s.Text) + "+}")
		default:
			sb.WriteString(Line(s.Text))
		}
	}
	return sb.String(), true
}

// sharedWord is an unchanged segment with more than space in it.
func sharedWord(s Segment) bool {
	return s.Op == "same" && strings.TrimSpace(s.Text) != ""
}

// words splits s into words and the runs of space between them, keeping
// every byte, so that joining the pieces gives s back. Only ASCII space,
// tab and newlines separate: a Unicode space is part of the word it hides
// in, and shown escaped with it.
func words(s string) []string {
	var out []string
	start, space := 0, false
	for i := 0; i < len(s); i++ {
		sp := s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'
		if i > start && sp != space {
			out = append(out, s[start:i])
			start = i
		}
		space = sp
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}
