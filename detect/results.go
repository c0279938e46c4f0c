package detect

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/visible"
)

// Result scanning: the text a tool result hands the model (documents, web
// pages, e-mails a tool fetched) is where indirect prompt injection lives.
// The poisoning rules run on it after the usual evasions are undone, and
// two rules of their own look for what only results carry: an error that
// sends the model to another tool, and a secret.

// ResultScanOptions bound and switch one scan.
type ResultScanOptions struct {
	// Redact masks secret-in-result matches in the returned result.
	Redact bool
	// MaxBytes bounds the result text read (default 4 MiB); MaxDecoded
	// the bytes decoded from base64/hex/percent blobs and re-scanned
	// (default 256 KiB); MaxDepth how deep decoded text is decoded again
	// (default 2).
	MaxBytes, MaxDecoded, MaxDepth int
	// Raw switches the undoing of evasions off (NFKC, look-alike
	// letters, bidi reordering, hidden characters, decoding): only tests
	// set it, to show an evasion passing without it.
	Raw bool
	// Server and Others, when set, are the server whose result this is and
	// every server's tool names: a result that tells the model to call
	// another server's tool is cross-server-call.
	Server string
	Others *ToolIndex
	// noPrefilter runs every gated expression on every text: only tests
	// set it, to prove the literal gates change no finding.
	noPrefilter bool
}

// ResultScan is what one scan found.
type ResultScan struct {
	Findings []rugwatch.Finding
	// Secrets are the secret-in-result matches as found (decoded where
	// they were encoded), for the proxy's exfiltration-chain check; they
	// never leave the process.
	Secrets []string
	// Sensitive are the sensitive-path matches (credential paths and the
	// like), for the same check.
	Sensitive []string
	// Redacted is the result with every secret masked, when Redact was
	// set and a secret was found; nil otherwise.
	Redacted json.RawMessage
}

// ScanResult runs the rules over a tools/call result: content text,
// embedded resource text and every string of structured content. isError
// results are read with false-error-escalation too.
func ScanResult(raw json.RawMessage, opts ResultScanOptions) ResultScan {
	opts = opts.withDefaults()
	if texts, isErr, ok := readResult(raw); ok {
		return scanTexts(raw, texts, isErr, opts)
	}
	return scanDecoded(raw, opts)
}

func (o ResultScanOptions) withDefaults() ResultScanOptions {
	if o.MaxBytes <= 0 {
		o.MaxBytes = 4 << 20
	}
	if o.MaxDecoded <= 0 {
		o.MaxDecoded = 256 << 10
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = 2
	}
	return o
}

// scanDecoded is ScanResult of a result decoded whole: what readResult
// does not read (structured content, anything it is not sure of).
func scanDecoded(raw json.RawMessage, opts ResultScanOptions) ResultScan {
	var res map[string]any
	if decodeResult(raw, &res) != nil {
		return ResultScan{}
	}
	isErr, _ := res["isError"].(bool)
	s := &resultScanner{opts: opts, c: &collector{noPrefilter: opts.noPrefilter}, budget: opts.MaxBytes, decoded: opts.MaxDecoded, isError: isErr}
	changed := false
	edit := func(text, path string) (string, bool) {
		out, masked := s.scanString(text, path)
		changed = changed || masked
		return out, masked
	}
	if content, ok := res["content"].([]any); ok {
		for i, c := range content {
			item, ok := c.(map[string]any)
			if !ok {
				continue
			}
			if text, ok := item["text"].(string); ok {
				if out, m := edit(text, fmt.Sprintf("/content/%d/text", i)); m {
					item["text"] = out
				}
			}
			if r, ok := item["resource"].(map[string]any); ok {
				if text, ok := r["text"].(string); ok {
					if out, m := edit(text, fmt.Sprintf("/content/%d/resource/text", i)); m {
						r["text"] = out
					}
				}
			}
		}
	}
	if sc, ok := res["structuredContent"]; ok {
		res["structuredContent"] = s.walk(sc, "/structuredContent", 0, edit)
	}
	out := ResultScan{Findings: s.c.sorted(), Secrets: s.secrets, Sensitive: s.sensitive}
	if opts.Redact && changed {
		if b, err := json.Marshal(res); err == nil {
			out.Redacted = b
		}
	}
	return out
}

// decodeResult decodes raw as ScanResult reads it.
func decodeResult(raw json.RawMessage, res *map[string]any) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	return d.Decode(res)
}

// scanTexts is ScanResult of a result read by readResult: its texts
// scanned in order, and, when a secret was masked and Redact is set, the
// result decoded and written again with the masked texts in their places.
func scanTexts(raw json.RawMessage, texts []resultText, isErr bool, opts ResultScanOptions) ResultScan {
	s := &resultScanner{opts: opts, c: &collector{noPrefilter: opts.noPrefilter}, budget: opts.MaxBytes, decoded: opts.MaxDecoded, isError: isErr}
	type edit struct {
		at  resultText
		out string
	}
	var edits []edit
	for _, t := range texts {
		if out, m := s.scanString(t.text, t.path); m {
			edits = append(edits, edit{t, out})
		}
	}
	out := ResultScan{Findings: s.c.sorted(), Secrets: s.secrets, Sensitive: s.sensitive}
	if !opts.Redact || len(edits) == 0 {
		return out
	}
	var res map[string]any
	if decodeResult(raw, &res) != nil {
		return ResultScan{} // readResult read what the decoder does not: cannot be
	}
	content, _ := res["content"].([]any)
	for _, e := range edits {
		item, _ := content[e.at.item].(map[string]any)
		if e.at.resource {
			item, _ = item["resource"].(map[string]any)
		}
		item["text"] = e.out
	}
	if b, err := json.Marshal(res); err == nil {
		out.Redacted = b
	}
	return out
}

type resultScanner struct {
	opts      ResultScanOptions
	c         *collector
	budget    int // result bytes left to read
	decoded   int // decoded bytes left to re-scan
	isError   bool
	secrets   []string
	sensitive []string
}

func (s *resultScanner) walk(v any, path string, depth int, edit func(string, string) (string, bool)) any {
	if depth > 64 {
		return v
	}
	switch x := v.(type) {
	case string:
		if out, m := edit(x, path); m {
			return out
		}
	case []any:
		for i, e := range x {
			x[i] = s.walk(e, fmt.Sprintf("%s/%d", path, i), depth+1, edit)
		}
	case map[string]any:
		for k, e := range x {
			x[k] = s.walk(e, path+"/"+PointerToken(k), depth+1, edit)
		}
	}
	return v
}

// scanString scans one string of the result and returns it with its
// secrets masked (when Redact is set) and whether anything was masked.
func (s *resultScanner) scanString(text, path string) (string, bool) {
	if text == "" {
		return text, false
	}
	read := text
	if len(read) > s.budget {
		// Padding a result past the budget must not carry what follows
		// past the rules unseen: the unread part is itself the finding.
		read = text[:max(s.budget, 0)]
		s.c.add(RuleUnscannedResult, path, false, fmt.Sprintf("%d bytes of result text past the first %d were not read by the rules", len(text)-len(read), s.opts.MaxBytes))
	}
	s.budget -= len(read)
	if read == "" {
		return text, false
	}
	spans := s.scan(read, path, 0, "")
	if !s.opts.Redact || len(spans) == 0 {
		return text, false
	}
	// The masked part read, the rest as it came (the finding above says
	// it is unread): cutting it off would change the result.
	return mask(read, spans) + text[len(read):], true
}

// scan applies the rules to text found at path, depth decodings deep (how
// names them, for messages), and returns the byte spans of text that hold
// a secret: the secret itself, or the whole blob it was encoded in.
func (s *resultScanner) scan(text, path string, depth int, how string) [][2]int {
	// Character rules read the text as it came: the hidden characters
	// are the finding.
	mt := newTextMatch(text, s.opts.noPrefilter)
	s.textRules(mt, path, how, false)
	// The rules read again only the lines normalisation changed: a page
	// of Cyrillic prose is not scanned twice over.
	ms := []*textMatch{mt}
	if !s.opts.Raw {
		if changed, undone, lookalikes := normalizeLinesOf(text); len(undone) > 0 {
			mc := newTextMatch(changed, s.opts.noPrefilter)
			ms = append(ms, mc)
			s.textRules(mc, path, how+"(after undoing "+strings.Join(undone, ", ")+") ", lookalikes)
		}
	}
	for _, m := range ms {
		// sensitive ran in textRules; it runs again only to keep the
		// match when that found one.
		if s.c.seen[[2]string{path, RuleSensitivePath}] {
			if sens := m.sensitive(); sens.found() {
				s.sensitive = append(s.sensitive, sens.term)
			}
		}
		if s.isError || m.first(textExprs.errorWord, 0) != nil {
			if loc := m.firstOf(textExprs.escalation); loc != nil {
				s.c.add(RuleFalseErrorEscalation, path, false, fmt.Sprintf("%san error that sends the model elsewhere: %s", how, visible.Quote(m.s[loc[0]:loc[1]])))
			}
		}
	}
	if called := CallsElsewhere(text, s.opts.Server, s.opts.Others); len(called) > 0 {
		parts := make([]string, len(called))
		for i, c := range called {
			parts[i] = visible.Quote(c)
		}
		// A one-word name ("search", "fetch") is also a word a page may
		// use in passing: a warning. A compound name like send_email is
		// an errand.
		sev := rugwatch.SeverityWarning
		for _, c := range called {
			if tool := c[strings.IndexByte(c, '/')+1:]; strings.ContainsAny(tool, "_-.") {
				sev = rugwatch.SeverityCritical
			}
		}
		s.c.addSev(RuleCrossServerCall, path, false, fmt.Sprintf("%stells the model to call another server's tool: %s", how, strings.Join(parts, ", ")), sev)
	}
	var spans [][2]int
	for i, sr := range secretREs {
		for _, loc := range mt.all(textExprs.secrets[i], 8) {
			spans = append(spans, [2]int{loc[0], loc[1]})
			s.secrets = append(s.secrets, text[loc[0]:loc[1]])
			s.c.add(RuleSecretInResult, path, false, fmt.Sprintf("%s%s (%d characters, not shown)", how, sr.kind, loc[1]-loc[0]))
		}
	}
	if s.opts.Raw || depth >= s.opts.MaxDepth {
		return spans
	}
	for _, b := range findBlobs(text) {
		if s.decoded <= 0 {
			break
		}
		dec := b.decode(text[b.start:b.end])
		if dec == "" {
			continue
		}
		if len(dec) > s.decoded {
			dec = dec[:s.decoded]
		}
		s.decoded -= len(dec)
		inner := s.scan(dec, path, depth+1, how+b.kind+"-decoded ")
		if len(inner) > 0 {
			spans = append(spans, [2]int{b.start, b.end})
		}
	}
	return spans
}

// textRules is textRules for a result's text, read through m (which the
// result rules read again; results keep no memo).
//
// Rules the collector holds a finding of for path already are not run:
// it keeps no second. lookalikes says m reads lines of the text read
// before with look-alike letters mapped and nothing else changed
// (normalizeLinesOf): the character rules then find nothing they did
// not find in the text as it came, which is a finding already when
// they did, and they are not run again either.
func (s *resultScanner) textRules(m *textMatch, path, what string, lookalikes bool) {
	seen := func(rule string) bool {
		if lookalikes && (rule == RuleHiddenUnicode || rule == RuleControlChars || rule == RuleWhitespacePadding) {
			return true
		}
		return s.c.seen[[2]string{path, rule}]
	}
	for _, f := range textFindingsSkipping(m.s, m, what, true, seen) {
		s.c.addSev(f.rule, path, false, f.msg, f.sev)
	}
}

// mask replaces the spans of s with a marker; overlapping spans merge.
func mask(s string, spans [][2]int) string {
	var b strings.Builder
	at := 0
	for {
		// The next span starting at or after at, earliest first.
		best := -1
		for i, sp := range spans {
			if sp[1] > at && (best < 0 || sp[0] < spans[best][0]) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		start, end := max(spans[best][0], at), spans[best][1]
		for changed := true; changed; {
			changed = false
			for _, sp := range spans {
				if sp[0] <= end && sp[1] > end {
					end, changed = sp[1], true
				}
			}
		}
		b.WriteString(s[at:start])
		b.WriteString("[redacted by rugwatch]")
		at = end
	}
	b.WriteString(s[at:])
	return b.String()
}

// --- undoing evasions ---

// normalizeLines is normalizeText line by line; it returns the lines it
// changed, joined, and what it undid.
func normalizeLines(s string) (string, []string) {
	n, u, _ := normalizeLinesOf(s)
	return n, u
}

// normalizeLinesOf is normalizeLines, and whether every line it changed
// is of lineKind lineLookalikes: lines of the text with letters of
// inert2 mapped to ASCII letters, nothing else. The character rules
// (hidden characters, control characters, padding) find nothing in such
// lines that the text itself does not hold: the runes they report are
// not inert, the mapped letters are letters, and a changed line holds a
// letter, so no blank lines run together.
func normalizeLinesOf(s string) (string, []string, bool) {
	var (
		b          strings.Builder
		undone     []string
		lookalikes = true
	)
	for line := range strings.SplitSeq(s, "\n") {
		switch lineKind(line) {
		case lineUnchanged:
			continue
		case lineLookalikes:
			// normalizeText would only map look-alike letters.
			if b.Len() > 0 {
				b.WriteByte('\n')
			}
			writeSkeleton(&b, line)
			if !slices.Contains(undone, undoneLookalikes) {
				undone = append(undone, undoneLookalikes)
			}
			continue
		}
		n, u := normalizeText(line)
		if len(u) == 0 {
			continue
		}
		lookalikes = false
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(n)
		for _, x := range u {
			if !slices.Contains(undone, x) {
				undone = append(undone, x)
			}
		}
	}
	return b.String(), undone, lookalikes
}

const undoneLookalikes = "look-alike letters"

// Most lines of most results are ASCII with a few letters of another
// alphabet (a name, a greeting in Cyrillic or Greek): two-byte runes that
// no step of normalizeText but the skeleton touches. lineKind tells such
// a line from the rest without normalizeText's passes over it.
const (
	lineUnchanged  = iota // normalizeText leaves it as it is
	lineLookalikes        // normalizeText maps look-alike letters only, skeleton does it
	lineOther             // normalizeText decides
)

// twoByteRunes classifies the runes of two UTF-8 bytes (U+0080–U+07FF):
// inert2 the runes normalizeText leaves alone but for the skeleton: no
// format character, no NFKC decomposition, starters that combine with
// nothing before them (as ASCII): in a string of them and of ASCII no
// rune combines with the one before, so it is NFKC
// (TestInertRunesAreNFKC); skel2 the skeleton's letter for
// each, 0 for none.
var inert2, skel2 = func() (inert [0x800]bool, skel [0x800]byte) {
	for r := rune(0x80); r < 0x800; r++ {
		p := norm.NFKC.PropertiesString(string(r))
		inert[r] = !unicode.Is(unicode.Cf, r) && !isVariationSelector(r) && !isHiddenOrBad(r) && !mayHide(r) && !visible.Blank(r) &&
			p.BoundaryBefore() && len(p.Decomposition()) == 0 && p.CCC() == 0 &&
			p.LeadCCC() == 0 && p.TrailCCC() == 0 && norm.NFKC.IsNormalString(string(r))
		if a, ok := skeletonTable[r]; ok {
			if !('a' <= a && a <= 'z' || 'A' <= a && a <= 'Z') {
				panic("skeleton letter not an ASCII letter")
			}
			skel[r] = byte(a)
		}
	}
	return inert, skel
}()

// lineKind is what normalizeText does to line, when it is
// lineUnchanged or lineLookalikes; lineOther otherwise.
func lineKind(line string) int {
	kind := lineUnchanged
	for i := 0; ; {
		i += asciiPrefix(line[i:])
		if i == len(line) {
			return kind
		}
		c := line[i]
		if c < 0xc2 || c > 0xdf || i+1 == len(line) || line[i+1]&0xc0 != 0x80 {
			return lineOther
		}
		r := rune(c&0x1f)<<6 | rune(line[i+1]&0x3f)
		if !inert2[r] {
			return lineOther
		}
		if skel2[r] != 0 {
			kind = lineLookalikes
		}
		i += 2
	}
}

// writeSkeleton writes skeleton(line) for a line of lineKind
// lineLookalikes.
func writeSkeleton(b *strings.Builder, line string) {
	b.Grow(len(line))
	for i := 0; ; {
		j := i + asciiPrefix(line[i:])
		b.WriteString(line[i:j])
		if j == len(line) {
			return
		}
		r := rune(line[j]&0x1f)<<6 | rune(line[j+1]&0x3f)
		if a := skel2[r]; a != 0 {
			b.WriteByte(a)
		} else {
			b.WriteString(line[j : j+2])
		}
		i = j + 2
	}
}

// normalizeText undoes what makes text read one way to a model and
// another to a regular expression: hidden format characters dropped,
// right-to-left overrides re-ordered, NFKC (full-width and other
// compatibility forms to their plain letters), and the confusables
// skeleton (look-alike Cyrillic and Greek letters to Latin). It says
// which it undid.
func normalizeText(s string) (string, []string) {
	// ASCII is NFKC, holds no hidden character and no look-alike: most
	// lines of most results.
	if isASCII(s) {
		return s, nil
	}
	var undone []string
	if t := unBidi(s); t != s {
		s = t
		undone = append(undone, "a right-to-left override")
	}
	if holdsRune(s, isHiddenOrBad) {
		if t := strings.Map(func(r rune) rune {
			if unicode.Is(unicode.Cf, r) || isVariationSelector(r) {
				return -1
			}
			return r
		}, s); t != s {
			s = t
			undone = append(undone, "hidden characters")
		}
	}
	if !norm.NFKC.IsNormalString(s) {
		s = norm.NFKC.String(s)
		undone = append(undone, "NFKC")
	}
	if t := skeleton(s); t != s {
		s = t
		undone = append(undone, "look-alike letters")
	}
	return s, undone
}

// unBidi reverses the text a RIGHT-TO-LEFT OVERRIDE (U+202E) displays
// reversed, up to its POP DIRECTIONAL FORMATTING or the line's end, so
// "\u202esnoitcurtsni suoiverp erongi" reads as the model would be told.
func unBidi(s string) string {
	if !strings.ContainsRune(s, 0x202e) {
		return s
	}
	var b strings.Builder
	for {
		i := strings.IndexRune(s, 0x202e)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		rest := s[i+len("\u202e"):]
		end := strings.IndexAny(rest, "\u202c\n")
		if end < 0 {
			end = len(rest)
		}
		rs := []rune(rest[:end])
		for l, r := 0, len(rs)-1; l < r; l, r = l+1, r-1 {
			rs[l], rs[r] = rs[r], rs[l]
		}
		b.WriteString(string(rs))
		s = rest[end:]
	}
}

// skeletonTable is a bundled subset of the Unicode confusables data (UTS
// #39, confusables.txt): the Cyrillic, Greek, Armenian and Latin-extension
// letters that render like a basic Latin letter in common fonts, mapped
// to it. Full-width and mathematical letters need no entry: NFKC maps
// them first. Its limits: it maps single letters to single letters only
// (no "rn"→"m" multi-character skeletons), covers the scripts seen in
// homoglyph attacks on English text, not all 6,000+ entries of the full
// table, and it is applied to prose for matching only, never shown.
var skeletonTable = func() map[rune]rune {
	m := map[rune]rune{
		// Cyrillic lower case beyond the name table.
		'ɡ': 'g', 'ԍ': 'g', 'ԗ': 'x', 'ѵ': 'v', 'ү': 'y', 'ҳ': 'x', 'ԛ': 'q', 'ӓ': 'a', 'ӧ': 'o', 'ӱ': 'y',
		'Ԁ': 'D', 'Ԛ': 'Q', 'Ԝ': 'W', 'Ү': 'Y', 'Ѵ': 'V', 'Һ': 'h',
		// Greek beyond the name table.
		'ϲ': 'c', 'ϳ': 'j', 'ϵ': 'e', 'ɛ': 'e', 'Ϲ': 'C', 'Ϳ': 'J', 'ϒ': 'Y',
		// Armenian.
		'օ': 'o', 'ս': 'u', 'ց': 'g', 'հ': 'h', 'ո': 'n', 'ա': 'w', 'ք': 'p', 'Տ': 'S', 'Օ': 'O',
		// Latin extensions and symbols.
		'ƅ': 'b', 'ɗ': 'd', 'ɦ': 'h', 'ɪ': 'i', 'ʀ': 'r', 'ꜱ': 's', 'ᴜ': 'u', 'ᴠ': 'v', 'ᴡ': 'w', 'ᴢ': 'z', 'ⅼ': 'l',
	}
	for k, v := range confusables {
		m[k] = v
	}
	return m
}()

// SkeletonTableSize is the number of look-alike letters the skeleton maps.
func SkeletonTableSize() int { return len(skeletonTable) }

// isHiddenOrBad is a rune normalizeText drops, or RuneError: strings.Map
// writes invalid UTF-8 out as U+FFFD, so it changes a string that holds
// some whatever it maps.
func isHiddenOrBad(r rune) bool {
	return r == utf8.RuneError || unicode.Is(unicode.Cf, r) || isVariationSelector(r)
}

// isLookalikeOrBad is a rune skeleton maps, or RuneError (isHiddenOrBad).
func isLookalikeOrBad(r rune) bool {
	_, ok := skeletonTable[r]
	return ok || r == utf8.RuneError
}

// skeleton maps the look-alike letters of s to the Latin ones, as
// strings.Map with skeletonTable would (invalid UTF-8 written as U+FFFD),
// copying the ASCII between them whole.
func skeleton(s string) string {
	i := indexRune(s, isLookalikeOrBad)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + utf8.UTFMax)
	for {
		j := i + asciiPrefix(s[i:])
		b.WriteString(s[:j])
		if s = s[j:]; s == "" {
			return b.String()
		}
		r, n := utf8.DecodeRuneInString(s)
		if a, ok := skeletonTable[r]; ok {
			r = a
		}
		b.WriteRune(r)
		s, i = s[n:], 0
	}
}

// --- encoded blobs ---

type blob struct {
	start, end int
	kind       string
	decode     func(string) string
}

var (
	pctRE = regexp.MustCompile(`[^\s"'<>]*(?:%[0-9A-Fa-f]{2}[^\s"'<>%]*){3,}`)
)

// findBlobs finds runs of text that decode (base64, hex, percent
// encoding) to readable text worth scanning again.
func findBlobs(s string) []blob {
	var out []blob
	if len(s) < 24 {
		return nil
	}
	// Runs of the base64 alphabet, found by hand: a regular expression
	// with no literal to anchor on walks every byte through its NFA.
	// Only runs of 24 bytes or more count, and one holds every 24th
	// byte: the byte 23 past where a run may start is read first, and
	// when it is none of the alphabet no run that counts starts before
	// it. Prose is read a few bytes in 24.
	for p := 0; p+24 <= len(s) && len(out) < 32; {
		// s[p-1], when there is one, is none of the alphabet.
		if !isBase64Byte(s[p+23]) {
			p += 24
			continue
		}
		i := p + 23
		for i > p && isBase64Byte(s[i-1]) {
			i--
		}
		j := p + 24
		for j < len(s) && isBase64Byte(s[j]) {
			j++
		}
		if j-i >= 24 && (i == 0 || !isWordByte(s[i-1])) {
			allHex := true
			for k := i; k < j && allHex; k++ {
				allHex = isHex(s[k])
			}
			end := j
			for end < len(s) && end-j < 2 && s[end] == '=' {
				end++
			}
			if allHex && (j-i)%2 == 0 {
				out = append(out, blob{i, j, "hex", decodeHex})
			} else {
				out = append(out, blob{i, end, "base64", decodeBase64})
			}
		}
		p = j + 1
	}
	if strings.Contains(s, "%") {
		for _, loc := range pctRE.FindAllStringIndex(s, 16) {
			out = append(out, blob{loc[0], loc[1], "percent", func(t string) string {
				return readable([]byte(percentDecode(t)))
			}})
		}
	}
	return out
}

func isBase64Byte(c byte) bool { return base64Bytes[c] }

// base64Bytes are the bytes of the base64 alphabets, standard and URL.
var base64Bytes = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-") {
		t[c] = true
	}
	return t
}()

func isWordByte(c byte) bool { return c >= utf8.RuneSelf }

func decodeHex(t string) string {
	b, err := hex.DecodeString(t)
	if err != nil {
		return ""
	}
	return readable(b)
}

func decodeBase64(t string) string {
	t = strings.TrimRight(t, "=")
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(t); err == nil {
			return readable(b)
		}
	}
	return ""
}

// percentDecode decodes %XX escapes (and '+' as space), leaving a
// malformed escape as it is.
func percentDecode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			v, _ := hex.DecodeString(s[i+1 : i+3])
			b.WriteByte(v[0])
			i += 2
		case s[i] == '+':
			b.WriteByte(' ')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// readable returns b as text when it is valid UTF-8 made mostly of
// letters and spaces (an instruction or a key, not an image or a hash),
// else "".
func readable(b []byte) string {
	if len(b) < 8 || !utf8.Valid(b) {
		return ""
	}
	printable := 0
	n := 0
	for _, r := range string(b) {
		n++
		if unicode.IsPrint(r) || r == '\n' || r == '\t' || r == '\r' || unicode.Is(unicode.Cf, r) {
			printable++
		}
	}
	if printable*10 < n*9 {
		return ""
	}
	return string(b)
}

// --- result rules ---

// errorWordRE marks text that presents itself as an error, for results
// not flagged isError that still read as one.
var errorWordRE = regexp.MustCompile(`(?i)\b(error|failed|failure|denied|unauthori[sz]ed|forbidden|not\s+permitted|exception|could\s+not|cannot|unable\s+to)\b`)

// escalationREs are an error's orders to go elsewhere: another tool by
// name, a shell, elevated rights. "Retry with a smaller page size" is
// honest advice and does not match; "retry with sudo" and "use run_shell
// instead" do.
var escalationREs = compileAll(
	`(?i)\b(retry|try\s+again|re-?run|re-?try)\b[^.\n]{0,60}?\b(with|using|via|through|as)\b[^.\n]{0,40}?(\bsudo\b|\broot\b|\badmin(istrator)?\b|\belevated\b|\bprivileg\w*|--force\b|--no-verify\b|\bshell\b|\bbash\b|\b[a-z]+_[a-z_]+\b|`+"`[^`]+`"+`)`,
	`(?i)\b(use|call|invoke|run|switch\s+to)\s+(the\s+)?`+"`?"+`(run_shell|execute_command|exec_command|run_command|shell_exec|shell|bash|terminal|exec|eval|sudo)`+"`?"+`\b`,
	`(?i)\b(use|call|invoke|run)\s+(the\s+)?`+"`?"+`[a-z]+_[a-z_]+`+"`?"+`\s+(tool\s+)?(instead|first|now)\b`,
	`(?i)\b(escalate|elevate)\s+(your\s+|the\s+)?(privileges?|permissions?|access|rights)\b|\b(disable|turn\s+off|bypass|skip)\s+(the\s+)?(sandbox|safety|security|confirmation|approval|guard)\w*`,
	`(?i)\bgrant\s+(yourself|the\s+assistant|me)\s+(full\s+|admin\s+|root\s+)?(access|permissions?|privileges?)\b`,
)

// errorWordGated and escalationGated are errorWordRE and escalationREs
// with the words their matches hold (see gatedRE), their needles in
// textExprs: results run to megabytes, and most hold none of them.
var (
	errorWordGated = gatedRE{re: errorWordRE, groups: [][]string{
		{"error", "fail", "denied", "unauthori", "forbidden", "permitted", "exception", "could", "cannot", "unable"},
	}}
	escalationGated = []gatedRE{
		{re: escalationREs[0], groups: [][]string{{"try", "run"}}},
		{re: escalationREs[1], groups: [][]string{{"shell", "exec", "command", "bash", "terminal", "eval", "sudo"}}},
		{re: escalationREs[2], groups: [][]string{{"instead", "first", "now"}}},
		{re: escalationREs[3], groups: [][]string{{"escalate", "elevate", "disable", "turn", "bypass", "skip"}}},
		{re: escalationREs[4], groups: [][]string{{"grant"}}},
	}
)

// secretREs are credentials whose shape alone identifies them.
// Every match holds one of needles, case-sensitive literals, or of
// lowerNeedles, for the case-insensitive ones: the expressions run only
// around them (textExprs.secrets).
var secretREs = []struct {
	kind                  string
	re                    *regexp.Regexp
	needles, lowerNeedles []string
}{
	{"a private key", regexp.MustCompile(`-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?:[A-Za-z0-9+/=\s:,-]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)?`), []string{"PRIVATE KEY"}, nil},
	{"an AWS access key id", regexp.MustCompile(`\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b`), []string{"AKIA", "ASIA", "ABIA", "ACCA"}, nil},
	{"an AWS secret access key", regexp.MustCompile(`(?i)\baws_?secret_?access_?key\b["']?\s*[:=]\s*["']?[A-Za-z0-9/+=]{40}\b`), nil, []string{"secret"}},
	{"a Google API key", regexp.MustCompile(`\bAIza[0-9A-Za-z_-]{35}\b`), []string{"AIza"}, nil},
	{"a GitHub token", regexp.MustCompile(`\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{60,})\b`), []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"}, nil},
	{"a Slack token", regexp.MustCompile(`\bxox[abposr]-[A-Za-z0-9-]{10,}\b`), []string{"xox"}, nil},
	{"an OpenAI or Anthropic API key", regexp.MustCompile(`\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{32,}\b`), []string{"sk-"}, nil},
	{"a Stripe secret key", regexp.MustCompile(`\b[rs]k_live_[A-Za-z0-9]{20,}\b`), []string{"k_live_"}, nil},
	{"a JWT", regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`), []string{"eyJ"}, nil},
	{"a bearer token", regexp.MustCompile(`(?i)\bbearer\s+[A-Za-z0-9._~+/-]{20,}=*`), nil, []string{"bearer"}},
}
