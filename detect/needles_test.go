package detect

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"pgregory.net/rapid"
)

// TestOnlyTwoRunesFoldToASCII: a (?i) expression matches a letter by its
// Unicode simple-fold orbit. Outside ASCII only ſ LONG S and K KELVIN SIGN
// have an ASCII letter in theirs, so lowering ASCII and folding those two
// finds every needle such an expression can match.
func TestOnlyTwoRunesFoldToASCII(t *testing.T) {
	var got []rune
	for r := rune(utf8.RuneSelf); r <= unicode.MaxRune; r++ {
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < utf8.RuneSelf {
				got = append(got, r)
				break
			}
		}
	}
	if !slices.Equal(got, []rune{0x17f, 0x212a}) {
		t.Fatalf("runes outside ASCII folding to ASCII: %U", got)
	}
	for _, c := range []struct{ re, text string }{{`(?i)pass`, "paſſ"}, {`(?i)key`, "\u212aey"}} {
		if !regexp.MustCompile(c.re).MatchString(c.text) {
			t.Fatalf("%s does not match %q: the fold is not what the expressions read", c.re, c.text)
		}
	}
}

// foldedWithOffsets is s folded rune by rune as the automaton reads it,
// with the offset in s of each folded byte (and len(s) after the last).
func foldedWithOffsets(s string) ([]byte, []int) {
	var folded []byte
	var offs []int
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if f := foldRuneASCII(r); f < utf8.RuneSelf && (r < utf8.RuneSelf || f != r) {
			folded, offs = append(folded, byte(f)), append(offs, i)
		} else {
			for k := range n {
				folded, offs = append(folded, s[i+k]), append(offs, i+k)
			}
		}
		i += n
	}
	return folded, append(offs, len(s))
}

// naiveHits is every occurrence of needles in s, found one needle and one
// offset at a time: what the automaton must find.
func naiveHits(s string, needles []needle) []needleHit {
	folded, offs := foldedWithOffsets(s)
	var out []needleHit
	for id, n := range needles {
		for i := 0; i+len(n.word) <= len(folded); i++ {
			if string(folded[i:i+len(n.word)]) != n.word {
				continue
			}
			start, end := offs[i], offs[i+len(n.word)]
			if n.exact != "" && s[start:end] != n.exact {
				continue
			}
			out = append(out, needleHit{start, end, uint16(id)})
		}
	}
	return out
}

func sortHits(hs []needleHit) []needleHit {
	hs = slices.Clone(hs)
	slices.SortFunc(hs, func(a, b needleHit) int {
		return cmp.Or(cmp.Compare(a.start, b.start), cmp.Compare(a.end, b.end), cmp.Compare(a.id, b.id))
	})
	return hs
}

func scanWith(a *needleAutomaton, s string) *textMatch {
	m := &textMatch{s: s}
	a.scan(m)
	return m
}

// TestNeedleAutomatonClassic: overlapping needles, needles inside needles,
// and a needle found through ſ and K, where its bytes are not its length.
func TestNeedleAutomatonClassic(t *testing.T) {
	needles := []needle{{word: "he"}, {word: "she"}, {word: "his"}, {word: "hers"}, {word: "key"}, {word: "akia", exact: "AKIA"}}
	a := newNeedleAutomaton(needles, []bool{true, true, true, true, true, true})
	for _, tc := range []struct {
		text string
		want []needleHit
	}{
		{"ushers", []needleHit{{1, 4, 1}, {2, 4, 0}, {2, 6, 3}}},
		{"SHE said hiſ \u212aEY", []needleHit{{0, 3, 1}, {1, 3, 0}, {9, 13, 2}, {14, 19, 4}}},
		{"akia AKIA Akia", []needleHit{{5, 9, 5}}},
	} {
		if got := sortHits(scanWith(a, tc.text).hits); !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %v, want %v", tc.text, got, tc.want)
		}
	}
}

// TestNeedleAutomatonFindsEveryOccurrence holds the automaton to a search
// for each needle at each offset, on drawn needles and text full of case
// and fold variants, and the needles kept unplaced are seen only.
func TestNeedleAutomatonFindsEveryOccurrence(t *testing.T) {
	letters := []string{"a", "b", "s", "k", "A", "S", "K", "ſ", "\u212a", "-", "<", " ", "é", "\xff", "\xc5", "\xe2\x84"}
	rapid.Check(t, func(rt *rapid.T) {
		var needles []needle
		var placed []bool
		for i := range rapid.IntRange(1, 12).Draw(rt, "needles") {
			w := rapid.StringOfN(rapid.SampledFrom([]rune("absk-< ")), 1, 5, -1).Draw(rt, fmt.Sprint("word", i))
			n := needle{word: w}
			if rapid.Bool().Draw(rt, fmt.Sprint("exact", i)) {
				n.exact = strings.Map(func(r rune) rune {
					if rapid.Bool().Draw(rt, "upper") {
						return unicode.ToUpper(r)
					}
					return r
				}, w)
			}
			if slices.Contains(needles, n) {
				continue
			}
			needles = append(needles, n)
			placed = append(placed, rapid.IntRange(0, 3).Draw(rt, fmt.Sprint("placed", i)) > 0)
		}
		a := newNeedleAutomaton(needles, placed)
		text := strings.Join(rapid.SliceOfN(rapid.SampledFrom(letters), 0, 80).Draw(rt, "text"), "")
		m := scanWith(a, text)
		var want []needleHit
		var seen idSet
		for _, h := range naiveHits(text, needles) {
			seen.add(h.id)
			if placed[h.id] {
				want = append(want, h)
			}
		}
		if got := sortHits(m.hits); !slices.Equal(got, sortHits(want)) {
			rt.Fatalf("%q: hits %v, want %v", text, got, sortHits(want))
		}
		if m.seen != seen {
			rt.Fatalf("%q: seen %v, want %v", text, m.seen, seen)
		}
		if !slices.IsSortedFunc(m.hits, func(a, b needleHit) int { return cmp.Compare(a.start, b.start) }) {
			rt.Fatalf("hits not in order of their start: %v", m.hits)
		}
	})
}
