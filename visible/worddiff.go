package visible

import (
	"strings"
	"unicode"
)

// maxDiffWords bounds the word diff, which is quadratic: longer texts are
// shown whole, old then new.
const maxDiffWords = 4000

// WordDiff renders the change from old to new word by word, with removed
// words in [-…-] and inserted words in {+…+}, every word made visible by
// Line. It is what a reviewer needs for a long description that gained one
// hidden sentence. ok is false when the texts are too long to diff.
func WordDiff(old, new string) (out string, ok bool) {
	a, b := words(old), words(new)
	if len(a) > maxDiffWords || len(b) > maxDiffWords {
		return "", false
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
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var sb strings.Builder
	var del, ins []string
	flush := func() {
		if len(del) > 0 {
			sb.WriteString("[-" + Line(strings.Join(del, "")) + "-]")
			del = del[:0]
		}
		if len(ins) > 0 {
			sb.WriteString("{+" + Line(strings.Join(ins, "")) + "+}")
			ins = ins[:0]
		}
	}
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			flush()
			sb.WriteString(Line(a[i]))
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
	return sb.String(), true
}

// words splits s into words and the runs of space between them, keeping
// every byte, so that joining the pieces gives s back.
func words(s string) []string {
	var out []string
	start := 0
	space := false
	for i, r := range s {
		sp := unicode.IsSpace(r)
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
