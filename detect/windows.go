package detect

import (
	"cmp"
	"fmt"
	"iter"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Go's (?i) expressions cost about a microsecond a byte, and results run to
// megabytes: each rule expression runs only on windows of the text around
// its needles' hits. A window must hold every match through its hit, or a
// long run of spaces or of letters inside a match ("ignore" + 400 spaces +
// "previous instructions") carries it past the rules. So a window is not a
// fixed count of bytes but of steps: a step crosses one rune, or a whole
// run of a class the expression repeats without bound (\s+, \w*, [^`]+).
// A match is a sequence of pieces, each a rune or such a repetition, and
// each piece takes at most one step, so a match of at most n pieces lies
// within n steps either side of any rune of it. reach works out n from the
// expression's syntax tree, and the windows answer what the expression
// gives on the whole text (TestWindowsAnswerAsTheWholeText).

// ruleExpr is one expression of the text and result rules with its needles.
type ruleExpr struct {
	re *regexp.Regexp
	// inner is re with ^ never matching, for windows that begin inside
	// the text; nil when re has no ^.
	inner *regexp.Regexp
	// window holds needles one of which every match holds: windows are
	// cut around their hits (empty: no needle, the whole text). Every
	// match also holds one word of each also group.
	window idSet
	also   []idSet
	// steps bounds the pieces of a match; runs are the classes re repeats
	// without bound, a bit each, by byte: an ASCII byte they hold, and
	// every byte past ASCII for a class holding a rune past ASCII (a run
	// is then no shorter than the class's).
	steps int
	runs  [256]uint32
	// whole: re has no bound (a repeated group, a $): it reads the whole
	// text when its gate opens.
	whole bool
}

// reach bounds the pieces of a match of re and gives the classes it
// repeats without bound, as rune ranges; ok is false when nothing bounds
// it.
func reach(re *syntax.Regexp) (pieces int, runs [][]rune, ok bool) {
	switch re.Op {
	case syntax.OpNoMatch, syntax.OpEmptyMatch, syntax.OpWordBoundary, syntax.OpNoWordBoundary, syntax.OpBeginText:
		return 0, nil, true
	case syntax.OpLiteral:
		return len(re.Rune), nil, true
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return 1, nil, true
	case syntax.OpCapture, syntax.OpQuest:
		return reach(re.Sub[0])
	case syntax.OpConcat, syntax.OpAlternate:
		for _, sub := range re.Sub {
			p, r, ok := reach(sub)
			if !ok {
				return 0, nil, false
			}
			if re.Op == syntax.OpConcat {
				pieces += p
			} else {
				pieces = max(pieces, p)
			}
			runs = append(runs, r...)
		}
		return pieces, runs, true
	case syntax.OpRepeat, syntax.OpStar, syntax.OpPlus:
		if re.Op == syntax.OpRepeat && re.Max >= 0 {
			p, r, ok := reach(re.Sub[0])
			return p * re.Max, r, ok
		}
		if rs, ok := runesOf(re.Sub[0]); ok {
			return 1, [][]rune{rs}, true
		}
	}
	// $, multi-line anchors, a repeated group: no window answers for them.
	return 0, nil, false
}

// runesOf is the runes a one-rune expression matches, as ranges.
func runesOf(re *syntax.Regexp) ([]rune, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		if len(re.Rune) != 1 {
			return nil, false
		}
		r := re.Rune[0]
		rs := []rune{r, r}
		if re.Flags&syntax.FoldCase != 0 {
			for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
				rs = append(rs, f, f)
			}
		}
		return rs, true
	case syntax.OpCharClass:
		return re.Rune, true
	case syntax.OpAnyCharNotNL:
		return []rune{0, '\n' - 1, '\n' + 1, unicode.MaxRune}, true
	case syntax.OpAnyChar:
		return []rune{0, unicode.MaxRune}, true
	case syntax.OpCapture:
		return runesOf(re.Sub[0])
	}
	return nil, false
}

// runMasks is the bytes of each class of runs, a bit each; a class whose
// bytes another's hold is left out, its runs inside the other's.
func runMasks(runs [][]rune) [256]uint32 {
	var classes [][256]bool
	for _, rs := range runs {
		var c [256]bool
		for i := 0; i < len(rs); i += 2 {
			for r := rs[i]; r <= rs[i+1] && r < utf8.RuneSelf; r++ {
				c[r] = true
			}
			if rs[i+1] >= utf8.RuneSelf {
				for b := utf8.RuneSelf; b < 256; b++ {
					c[b] = true
				}
			}
		}
		classes = append(classes, c)
	}
	var masks [256]uint32
	bit := uint32(1)
	for i, c := range classes {
		if slices.ContainsFunc(classes[i+1:], func(o [256]bool) bool { return within(c, o) }) ||
			slices.ContainsFunc(classes[:i], func(o [256]bool) bool { return within(c, o) && c != o }) {
			continue
		}
		if bit == 0 {
			panic("more classes of runs than a mask holds")
		}
		for b, in := range c {
			if in {
				masks[b] |= bit
			}
		}
		bit <<= 1
	}
	return masks
}

// within reports whether every byte of c is one of o.
func within(c, o [256]bool) bool {
	for b := range c {
		if c[b] && !o[b] {
			return false
		}
	}
	return true
}

// withoutBeginText is re with every ^ replaced by a match of nothing, or
// nil when it has none.
func withoutBeginText(re *syntax.Regexp) *syntax.Regexp {
	if re.Op == syntax.OpBeginText {
		return &syntax.Regexp{Op: syntax.OpNoMatch}
	}
	var subs []*syntax.Regexp
	for i, sub := range re.Sub {
		if w := withoutBeginText(sub); w != nil {
			if subs == nil {
				subs = append([]*syntax.Regexp(nil), re.Sub...)
			}
			subs[i] = w
		}
	}
	if subs == nil {
		return nil
	}
	c := *re
	c.Sub = subs
	return &c
}

// --- steps ---

// back is where n steps back from p end (at floor at the latest), then
// past any ASCII word byte before it, so that \b reads at the window's
// edge as it does in s.
func (e *ruleExpr) back(s string, p, n, floor int) int {
	for ; n > 0 && p > floor; n-- {
		m := e.runs[s[p-1]]
		if m == 0 {
			_, size := utf8.DecodeLastRuneInString(s[:p])
			p -= size
			continue
		}
		start := p
		for ; m != 0; m &= m - 1 {
			bit, q := m&-m, p
			for q > floor && e.runs[s[q-1]]&bit != 0 {
				q--
			}
			start = min(start, q)
		}
		p = start
	}
	p = max(p, floor)
	for p > floor && syntax.IsWordChar(rune(s[p-1])) {
		p--
	}
	return p
}

// forward is where n steps forward from p end, then past any ASCII word
// byte after it.
func (e *ruleExpr) forward(s string, p, n int) int {
	for ; n > 0 && p < len(s); n-- {
		m := e.runs[s[p]]
		if m == 0 {
			_, size := utf8.DecodeRuneInString(s[p:])
			p += size
			continue
		}
		end := p
		for ; m != 0; m &= m - 1 {
			bit, q := m&-m, p
			for q < len(s) && e.runs[s[q]]&bit != 0 {
				q++
			}
			end = max(end, q)
		}
		p = end
	}
	for p < len(s) && syntax.IsWordChar(rune(s[p])) {
		p++
	}
	return p
}

// --- one text ---

// textMatch answers the rule expressions over one text: on the windows
// around the needles' hits, or, with whole (noPrefilter), by running each
// expression over all of it, the reference the tests hold the windows to.
type textMatch struct {
	s        string
	set      *textExprSet
	whole    bool
	seen     idSet
	hits     []needleHit // sorted by start
	overflow bool        // more hits than maxHits: windows give way to the whole text
}

// newTextMatch is the text rules' needles found in s (none with whole).
func newTextMatch(s string, whole bool) *textMatch { return textExprs.match(s, whole) }

// match is the needles of t found in s, or none with whole.
func (t *textExprSet) match(s string, whole bool) *textMatch {
	m := &textMatch{s: s, set: t, whole: whole}
	if !whole {
		t.auto.scan(m)
	}
	return m
}

// admits reports whether s holds e's needles: one of its window and a
// word of every also group. When it does not, e cannot match.
func (m *textMatch) admits(e *ruleExpr) bool {
	if !e.window.empty() && !m.seen.meets(&e.window) {
		return false
	}
	for i := range e.also {
		if !m.seen.meets(&e.also[i]) {
			return false
		}
	}
	return true
}

// first is e's first match in s[lo:] (as e.re.FindStringIndex(s[lo:]),
// in offsets of s), nil when none.
func (m *textMatch) first(e *ruleExpr, lo int) []int {
	if m.whole {
		return shifted(e.re.FindStringIndex(m.s[lo:]), lo)
	}
	if !m.admits(e) {
		return nil
	}
	for a, b := range m.windows(e, lo) {
		if loc := e.at(a, lo).FindStringIndex(m.s[a:b]); loc != nil {
			return shifted(loc, a)
		}
	}
	return nil
}

// firstOf is the first match of any of exprs, the earlier expression's on
// a tie.
func (m *textMatch) firstOf(exprs []*ruleExpr) []int { return m.firstOfFrom(exprs, 0) }

// firstOfFrom is firstOf in s[lo:], in offsets of s.
func (m *textMatch) firstOfFrom(exprs []*ruleExpr, lo int) []int {
	var best []int
	for _, e := range exprs {
		if loc := m.first(e, lo); loc != nil && (best == nil || loc[0] < best[0]) {
			best = loc
		}
	}
	return best
}

// all is e.re.FindAllStringIndex(s, n).
func (m *textMatch) all(e *ruleExpr, n int) [][]int {
	if m.whole {
		return e.re.FindAllStringIndex(m.s, n)
	}
	if !m.admits(e) {
		return nil
	}
	var out [][]int
	for a, b := range m.windows(e, 0) {
		for _, loc := range e.at(a, 0).FindAllStringIndex(m.s[a:b], n-len(out)) {
			out = append(out, shifted(loc, a))
		}
		if len(out) == n {
			break
		}
	}
	return out
}

func shifted(loc []int, by int) []int {
	if loc == nil {
		return nil
	}
	return []int{loc[0] + by, loc[1] + by}
}

// at is the expression for a window beginning at a of a search from lo:
// ^ matches only at lo.
func (e *ruleExpr) at(a, lo int) *regexp.Regexp {
	if a > lo && e.inner != nil {
		return e.inner
	}
	return e.re
}

// windows yields the stretches [a, b) of s[lo:] that e runs on, in order:
// around each hit of its window needles, merged where they meet, so that
// a match found in one is the match the whole text gives. Each window
// end is walked once: consecutive hits inside a window cost nothing.
func (m *textMatch) windows(e *ruleExpr, lo int) iter.Seq2[int, int] {
	return func(yield func(int, int) bool) {
		s, n := m.s, e.steps
		if e.whole || m.overflow || e.window.empty() || n >= len(s)-lo {
			yield(lo, len(s))
			return
		}
		// The window being gathered is [start, end), around hits up to
		// last; stale says end was walked from an earlier hit than last,
		// and is walked again only when a hit past it asks.
		have, stale := false, false
		var start, end, last int
		from, _ := slices.BinarySearchFunc(m.hits, lo, func(h needleHit, lo int) int { return cmp.Compare(h.start, lo) })
		for _, h := range m.hits[from:] {
			p := h.start
			if !e.window.has(h.id) {
				continue
			}
			if have && p > end && stale {
				end, stale = e.forward(s, last, n), false
			}
			if have && p <= end {
				last, stale = p, true
				continue
			}
			floor := lo
			if have {
				floor = end // a window reaching back to it joins this one
			}
			b := e.back(s, p, n, floor)
			if have && b <= end {
				last, stale = p, true
				continue
			}
			if have && !yield(start, end) {
				return
			}
			have, start, last, end, stale = true, b, p, e.forward(s, p, n), false
		}
		if have {
			if stale {
				end = e.forward(s, last, n)
			}
			yield(start, end)
		}
	}
}

// --- the table ---

// textExprs is every expression of the text and result rules with its
// needles, and the automaton that finds all the needles in one pass.
var textExprs = newTextExprSet()

type textExprSet struct {
	auto *needleAutomaton
	// In the order of their tables: instructionREs, roleSwitchREs, sensitiveREs,
	// escalationREs, secretREs.
	instruction, roleSwitch, sensitive, escalation, secrets []*ruleExpr
	secretWord, url, email, errorWord                       *ruleExpr
	// sendOrder and resultOrder are only gates (the words of an order,
	// seen anywhere in the text): sendOrderIn reads sentence by sentence.
	sendOrder, resultOrder *ruleExpr
}

// exprBuilder gathers the needles of the expressions as they are made.
type exprBuilder struct {
	needles []needle
	placed  []bool
	ids     map[needle]uint16
	set     *textExprSet
}

func newTextExprSet() *textExprSet {
	b := newExprBuilder()
	t := b.set
	for i, re := range instructionREs {
		t.instruction = append(t.instruction, b.expr(re, anyCase(instructionNeedles[i]...), instructionAlso[i]))
	}
	for i, re := range roleSwitchREs {
		t.roleSwitch = append(t.roleSwitch, b.expr(re, anyCase(roleSwitchNeedles[i]...), roleSwitchAlso[i]))
	}
	for i, re := range sensitiveREs {
		t.sensitive = append(t.sensitive, b.expr(re, anyCase(sensitiveNeedles[i]...), nil))
	}
	t.secretWord = b.expr(secretWordRE, anyCase(secretNeedles...), nil)
	// Every URL match holds "://" and every address "@".
	t.url = b.expr(urlRE, anyCase("://"), nil)
	t.email = b.expr(emailRE, anyCase("@"), nil)
	t.errorWord = b.gated(errorWordGated)
	t.sendOrder = b.expr(sendOrderRE, nil, sendOrderGated.groups)
	t.resultOrder = b.expr(resultOrderRE, nil, resultOrderGated.groups)
	for _, g := range escalationGated {
		t.escalation = append(t.escalation, b.gated(g))
	}
	for _, sr := range secretREs {
		t.secrets = append(t.secrets, b.expr(sr.re, append(exactCase(sr.needles...), anyCase(sr.lowerNeedles...)...), nil))
	}
	return b.done()
}

func newExprBuilder() *exprBuilder {
	return &exprBuilder{ids: map[needle]uint16{}, set: &textExprSet{}}
}

// done compiles the needles of every expression made into the set's
// automaton.
func (b *exprBuilder) done() *textExprSet {
	b.set.auto = newNeedleAutomaton(b.needles, b.placed)
	return b.set
}

func anyCase(words ...string) []needle {
	out := make([]needle, len(words))
	for i, w := range words {
		out[i] = needle{word: w}
	}
	return out
}

func exactCase(words ...string) []needle {
	out := make([]needle, len(words))
	for i, w := range words {
		out[i] = needle{word: strings.ToLower(w), exact: w}
	}
	return out
}

// gated is the expression of a gatedRE: its first group is the window
// (every group holds a word of every match), the rest its also groups.
// Its words are looked up in text whose whitespace foldASCII did not
// collapse, so none may hold whitespace.
func (b *exprBuilder) gated(g gatedRE) *ruleExpr {
	if g.alts != nil || len(g.groups) == 0 {
		panic("gatedRE of alternatives in the result rules")
	}
	for _, group := range g.groups {
		for _, w := range group {
			if strings.ContainsAny(w, " \t\n\f\r") {
				panic(fmt.Sprintf("gate word %q holds whitespace", w))
			}
		}
	}
	return b.expr(g.re, anyCase(g.groups[0]...), g.groups[1:])
}

func (b *exprBuilder) expr(re *regexp.Regexp, window []needle, also [][]string) *ruleExpr {
	e := &ruleExpr{re: re}
	for _, n := range window {
		e.window.add(b.id(n, true))
	}
	for _, group := range also {
		var set idSet
		for _, w := range group {
			set.add(b.id(needle{word: w}, false))
		}
		e.also = append(e.also, set)
	}
	parsed, err := syntax.Parse(re.String(), syntax.Perl)
	if err != nil {
		panic(err)
	}
	steps, runs, ok := reach(parsed)
	e.steps, e.runs, e.whole = max(steps, 1), runMasks(runs), !ok
	if w := withoutBeginText(parsed); w != nil {
		e.inner = regexp.MustCompile(w.String())
	}
	return e
}

// id is n's needle id; placed keeps its hits.
func (b *exprBuilder) id(n needle, placed bool) uint16 {
	id, ok := b.ids[n]
	if !ok {
		if len(b.needles) == maxNeedles {
			panic("more needles than an idSet holds")
		}
		id = uint16(len(b.needles))
		b.ids[n] = id
		b.needles = append(b.needles, n)
		b.placed = append(b.placed, false)
	}
	b.placed[id] = b.placed[id] || placed
	return id
}
