package detect

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// The result and text rules look up their needles (the literal words every
// match of an expression holds) in one pass over a text, whatever their
// number: a page of 64 KiB read once, not once per word per rule.

// needle is one literal the automaton looks up: word, lower-case ASCII, in
// text folded as a (?i) expression reads it; exact, when set, is the
// spelling a match must have (a case-sensitive expression's literal).
type needle struct {
	word, exact string
}

// maxNeedles is how many needles an idSet holds.
const maxNeedles = 256

// idSet is a set of needle ids.
type idSet [maxNeedles / 64]uint64

func (s *idSet) add(id uint16)      { s[id/64] |= 1 << (id % 64) }
func (s *idSet) has(id uint16) bool { return s[id/64]&(1<<(id%64)) != 0 }

// meets reports whether s and o share an id.
func (s *idSet) meets(o *idSet) bool {
	for i := range s {
		if s[i]&o[i] != 0 {
			return true
		}
	}
	return false
}

func (s *idSet) empty() bool { return *s == idSet{} }

// needleHit is one occurrence of needle id at s[start:end].
type needleHit struct {
	start, end int
	id         uint16
}

// maxHits bounds the occurrences a text keeps; past it the expressions
// read the whole text (what they cost without needles), so a text made
// of needles costs no more memory than this.
const maxHits = 1 << 14

// needleAutomaton is an Aho–Corasick automaton over the needles, compiled
// to a table of transitions over byte columns. The text is read folded:
// ASCII letters in either case, and ſ LONG S and K KELVIN SIGN as s and k,
// the only runes outside ASCII that Unicode simple folding (what (?i)
// matches by) takes to an ASCII letter (TestOnlyTwoRunesFoldToASCII).
type needleAutomaton struct {
	needles []needle
	placed  []bool     // per needle, whether its hits are kept (windows are cut around them)
	col     [256]uint8 // byte → column; 0 for a byte in no needle
	shift   uint       // a state's row is its number << shift
	// next is the transition table: next[row+col] is the next state's
	// row, with hasOut set when needles end at it.
	next []uint32
	out  [][]uint16 // per state, the needles ending there
	// onlySeen is, per state whose needles are all of any spelling and
	// keep no hits, the set of them: reporting them is marking them
	// seen. Prose hits such needles ("on", "it") every few bytes.
	onlySeen []*idSet
}

const hasOut = 1 << 31

// newNeedleAutomaton compiles needles; placed says which keep their hits.
func newNeedleAutomaton(needles []needle, placed []bool) *needleAutomaton {
	a := &needleAutomaton{needles: needles, placed: placed}
	cols := a.columns()
	for 1<<a.shift < cols {
		a.shift++
	}
	a.complete(a.trie(), cols)
	return a
}

// columns gives each byte of a needle a column, upper-case ASCII letters
// their lower case's, and returns how many there are.
func (a *needleAutomaton) columns() int {
	cols := 1
	for _, n := range a.needles {
		if n.word == "" || n.word != strings.ToLower(n.word) || !isASCII(n.word) || (n.exact != "" && strings.ToLower(n.exact) != n.word) {
			panic(fmt.Sprintf("needle %q (%q): want lower-case ASCII", n.word, n.exact))
		}
		for i := 0; i < len(n.word); i++ {
			if c := n.word[i]; a.col[c] == 0 {
				a.col[c] = uint8(cols)
				cols++
			}
		}
	}
	for c := 'A'; c <= 'Z'; c++ {
		a.col[c] = a.col[c+'a'-'A']
	}
	return cols
}

// trie is the needles' trie: trie[state<<shift+col] is a child's state,
// 0 for none (the root, state 0, is nobody's child); a.out gets the
// needles each state spells.
func (a *needleAutomaton) trie() []uint32 {
	width := 1 << a.shift
	trie := make([]uint32, width)
	a.out = [][]uint16{nil}
	for id, n := range a.needles {
		st := 0
		for i := 0; i < len(n.word); i++ {
			at := st<<a.shift + int(a.col[n.word[i]])
			if trie[at] == 0 {
				trie[at] = uint32(len(a.out))
				a.out = append(a.out, nil)
				trie = append(trie, make([]uint32, width)...)
			}
			st = int(trie[at])
		}
		a.out[st] = append(a.out[st], uint16(id))
	}
	return trie
}

// complete makes the trie the automaton's table: breadth first, each
// state's missing transitions are its failure state's (the state of its
// longest proper suffix, shallower, so already complete), and it ends the
// needles that state ends.
func (a *needleAutomaton) complete(trie []uint32, cols int) {
	fail := make([]int, len(a.out))
	for queue := []int{0}; len(queue) > 0; queue = queue[1:] {
		st := queue[0]
		if st != 0 {
			a.out[st] = append(a.out[st], a.out[fail[st]]...)
		}
		for c := range cols {
			child := int(trie[st<<a.shift+c])
			switch {
			case child == 0 && st != 0:
				trie[st<<a.shift+c] = trie[fail[st]<<a.shift+c]
			case child != 0:
				if st != 0 {
					fail[child] = int(trie[fail[st]<<a.shift+c])
				}
				queue = append(queue, child)
			}
		}
	}
	for i, st := range trie {
		trie[i] = st << a.shift
		if a.out[st] != nil {
			trie[i] |= hasOut
		}
	}
	a.next = trie
	a.onlySeen = make([]*idSet, len(a.out))
	for st, out := range a.out {
		if len(out) == 0 || slices.ContainsFunc(out, func(id uint16) bool { return a.placed[id] || a.needles[id].exact != "" }) {
			continue
		}
		set := new(idSet)
		for _, id := range out {
			set.add(id)
		}
		a.onlySeen[st] = set
	}
}

// scan adds to m every needle in m.s: seen, and its hit when placed.
func (a *needleAutomaton) scan(m *textMatch) {
	s := m.s
	// The table reads bytes; the rare ſ and K are fed as s and k between
	// runs of it.
	folds := foldsIn(s)
	if folds == nil && len(s) >= minStreamed {
		a.scanStreams(m)
	} else {
		a.scanOnePass(m, folds)
	}
	// Hits come out by their end; windows are cut by their start.
	slices.SortStableFunc(m.hits, func(x, y needleHit) int { return cmp.Compare(x.start, y.start) })
}

// scanOnePass is scan reading the text in one pass; folds are foldsIn(m.s).
func (a *needleAutomaton) scanOnePass(m *textMatch, folds []int) {
	s := m.s
	var row uint32
	at := 0
	for _, f := range folds {
		row = a.run(m, row, at, f, folds != nil)
		c, n := foldLead(s[f:])
		at = f + n
		row = a.step(m, row, c, at, true)
	}
	a.run(m, row, at, len(s), folds != nil)
}

// run feeds s[from:to] to the automaton from row and returns the row it
// ends at; folded says s holds ſ or K.
func (a *needleAutomaton) run(m *textMatch, row uint32, from, to int, folded bool) uint32 {
	next, col, s := a.next, &a.col, m.s[:to]
	for i := from; i < len(s); i++ {
		row = next[row+uint32(col[s[i]])]
		if row&hasOut != 0 {
			row &^= hasOut
			a.report(m, i+1, int(row>>a.shift), folded)
		}
	}
	return row
}

// step feeds the byte c, which ends at s[:end].
func (a *needleAutomaton) step(m *textMatch, row uint32, c byte, end int, folded bool) uint32 {
	row = a.next[row+uint32(a.col[c])]
	if row&hasOut != 0 {
		row &^= hasOut
		a.report(m, end, int(row>>a.shift), folded)
	}
	return row
}

// foldsIn is where s holds ſ or K, in order; nil for most text.
func foldsIn(s string) []int {
	var out []int
	for _, f := range []string{"\u017f", "\u212a"} {
		for i := 0; ; {
			k := strings.Index(s[i:], f)
			if k < 0 {
				break
			}
			out = append(out, i+k)
			i += k + len(f)
		}
	}
	slices.Sort(out)
	return out
}

// foldLead is the ASCII letter s begins with folded, and its length, when
// s begins with ſ or K; 0 otherwise.
func foldLead(s string) (byte, int) {
	switch {
	case strings.HasPrefix(s, "\u017f"):
		return 's', len("\u017f")
	case strings.HasPrefix(s, "\u212a"):
		return 'k', len("\u212a")
	}
	return 0, 0
}

// report records the needles ending at state st, at s[:end].
func (a *needleAutomaton) report(m *textMatch, end, st int, folded bool) {
	for _, id := range a.out[st] {
		n := a.needles[id]
		start := end - len(n.word)
		if folded {
			start = foldedStart(m.s, end, len(n.word))
		}
		if n.exact != "" && m.s[start:end] != n.exact {
			continue
		}
		m.seen.add(id)
		if !a.placed[id] {
			continue
		}
		if len(m.hits) >= maxHits {
			m.overflow = true
			continue
		}
		m.hits = append(m.hits, needleHit{start, end, id})
	}
}

// foldedStart is where the n folded letters ending at s[:end] begin: each
// is one byte, or ſ or K.
func foldedStart(s string, end, n int) int {
	for ; n > 0; n-- {
		switch {
		case strings.HasSuffix(s[:end], "\u017f"):
			end -= len("\u017f")
		case strings.HasSuffix(s[:end], "\u212a"):
			end -= len("\u212a")
		default:
			end--
		}
	}
	return end
}

// Reading a text is a chain of table look-ups, each waiting on the one
// before: the processor idles between them. A long text is read as four
// stretches at once instead, cut after bytes of no needle (after which
// the automaton is at its root whatever came before), so that each
// stretch starts where one pass would be. The hits of each stretch are
// kept apart and joined in order: what one pass gives
// (TestStreamedScanIsOnePass).

// minStreamed is the shortest text read in stretches.
const minStreamed = 2048

const streams = 4

// scanStreams is scan of a text without ſ or K, read in stretches.
func (a *needleAutomaton) scanStreams(m *textMatch) {
	s := m.s
	// Stretch k is s[cut[k]:cut[k+1]].
	var cut [streams + 1]int
	cut[streams] = len(s)
	for k := 1; k < streams; k++ {
		p := max(len(s)*k/streams, cut[k-1])
		for p < len(s) && a.col[s[p]] != 0 {
			p++
		}
		cut[k] = min(p+1, len(s))
	}
	var hits [streams][]needleHit
	var over [streams]bool
	next, col := a.next, &a.col
	p0, p1, p2, p3 := cut[0], cut[1], cut[2], cut[3]
	var r0, r1, r2, r3 uint32
	n := min(cut[1]-p0, cut[2]-p1, cut[3]-p2, cut[4]-p3)
	for ; n > 0; n-- {
		r0 = next[r0+uint32(col[s[p0]])]
		r1 = next[r1+uint32(col[s[p1]])]
		r2 = next[r2+uint32(col[s[p2]])]
		r3 = next[r3+uint32(col[s[p3]])]
		p0, p1, p2, p3 = p0+1, p1+1, p2+1, p3+1
		if (r0|r1|r2|r3)&hasOut != 0 {
			if r0&hasOut != 0 {
				r0 &^= hasOut
				hits[0], over[0] = a.reportTo(m, hits[0], over[0], p0, int(r0>>a.shift))
			}
			if r1&hasOut != 0 {
				r1 &^= hasOut
				hits[1], over[1] = a.reportTo(m, hits[1], over[1], p1, int(r1>>a.shift))
			}
			if r2&hasOut != 0 {
				r2 &^= hasOut
				hits[2], over[2] = a.reportTo(m, hits[2], over[2], p2, int(r2>>a.shift))
			}
			if r3&hasOut != 0 {
				r3 &^= hasOut
				hits[3], over[3] = a.reportTo(m, hits[3], over[3], p3, int(r3>>a.shift))
			}
		}
	}
	pos := [streams]int{p0, p1, p2, p3}
	rows := [streams]uint32{r0, r1, r2, r3}
	for k := range streams {
		row := rows[k]
		for i := pos[k]; i < cut[k+1]; i++ {
			row = next[row+uint32(col[s[i]])]
			if row&hasOut != 0 {
				row &^= hasOut
				hits[k], over[k] = a.reportTo(m, hits[k], over[k], i+1, int(row>>a.shift))
			}
		}
	}
	// Joined in order, the first maxHits kept, as one pass keeps them.
	total := 0
	for k := range streams {
		total += len(hits[k])
	}
	m.hits = slices.Grow(m.hits, min(total, maxHits))
	for k := range streams {
		if over[k] {
			m.overflow = true
		}
		for _, h := range hits[k] {
			if len(m.hits) >= maxHits {
				m.overflow = true
				break
			}
			m.hits = append(m.hits, h)
		}
	}
}

// reportTo is report for a stretch of a text without ſ or K: the hits
// go to hits, at most maxHits of them (over says more came).
func (a *needleAutomaton) reportTo(m *textMatch, hits []needleHit, over bool, end, st int) ([]needleHit, bool) {
	if set := a.onlySeen[st]; set != nil {
		for i := range set {
			m.seen[i] |= set[i]
		}
		return hits, over
	}
	for _, id := range a.out[st] {
		n := a.needles[id]
		start := end - len(n.word)
		if n.exact != "" && m.s[start:end] != n.exact {
			continue
		}
		m.seen.add(id)
		if !a.placed[id] {
			continue
		}
		if len(hits) >= maxHits {
			over = true
			continue
		}
		hits = append(hits, needleHit{start, end, id})
	}
	return hits, over
}
