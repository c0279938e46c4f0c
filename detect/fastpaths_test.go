package detect

import (
	"math/rand/v2"
	"reflect"
	"sort"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// oldNormalizeLines is normalizeLines as it was before lineKind: every
// line through normalizeText. Kept to hold the fast path to it.
func oldNormalizeLines(s string) (string, []string) {
	var (
		b      strings.Builder
		undone []string
		seen   = map[string]bool{}
	)
	for line := range strings.SplitSeq(s, "\n") {
		n, u := normalizeText(line)
		if len(u) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(n)
		for _, x := range u {
			if !seen[x] {
				seen[x] = true
				undone = append(undone, x)
			}
		}
	}
	return b.String(), undone
}

// TestInertRunesAreNFKC: any two of the inert runes and of ASCII side by
// side are NFKC, and normalizeText maps them as the skeleton does.
func TestInertRunesAreNFKC(t *testing.T) {
	var set []rune
	for r := rune(0x80); r < 0x800; r++ {
		if inert2[r] {
			set = append(set, r)
		}
	}
	for c := rune(0); c < 0x80; c++ {
		set = append(set, c)
	}
	t.Logf("%d inert runes of two bytes", len(set)-0x80)
	for _, a := range set {
		for _, b := range set {
			if s := string([]rune{a, b}); !norm.NFKC.IsNormalString(s) {
				t.Fatalf("%q is not NFKC", s)
			}
		}
	}
	for _, r := range set {
		for _, s := range []string{string(r), "a" + string(r) + "b", string(r) + string(r)} {
			want, wu := normalizeText(s)
			kind := lineKind(s)
			var b strings.Builder
			writeSkeleton(&b, s)
			switch {
			case kind == lineUnchanged && (want != s || wu != nil):
				t.Fatalf("%q: unchanged, normalizeText gives %q %v", s, want, wu)
			case kind == lineLookalikes && (b.String() != want || !reflect.DeepEqual(wu, []string{undoneLookalikes})):
				t.Fatalf("%q: skeleton %q, normalizeText gives %q %v", s, b.String(), want, wu)
			case kind == lineOther && s != "\n" && r >= 0x80:
				t.Fatalf("%q: inert rune left to normalizeText", s)
			}
		}
	}
}

// TestNormalizeLinesAsBefore: normalizeLines gives what every line
// through normalizeText gave, on generated text of every kind of rune.
func TestNormalizeLinesAsBefore(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	pieces := []string{"a", "b", " ", "\n", "ignore", "Привет", "мир", "Ελληνικά", "α", "օ", "é", "e\u0301", "\u0301", "\u0483",
		"ﬁ", "Ａ", "\u00ad", "\u200b", "\u202e", "\u202c", "\ufe0f", "\xff", "\xc2", "\xd0", "\xd0\x41", "\u0600", "\u061c",
		"ſ", "\u212a", "日本", "🙂", "\u0345", "\u0300", "\u05b0", "\u0670", "ӓ", "ё", "й", "\u0419", "\u0418\u0306", "ϒ", "\u03d3",
		"\u00a8", "\u00aa", "\u00b2", "\u00b5", "\u00bc", "\u0132", "\u013f", "\u0149", "\u017f", "\u01c4", "\u02b0", "\u0374", "\u037e", "\u0387"}
	for range 20000 {
		var b strings.Builder
		for range rng.IntN(20) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		s := b.String()
		gn, gu := normalizeLines(s)
		wn, wu := oldNormalizeLines(s)
		if gn != wn || !reflect.DeepEqual(gu, wu) {
			t.Fatalf("%q:\n got  %q %v\n want %q %v", s, gn, gu, wn, wu)
		}
	}
	// Every rune of two bytes, alone and between letters.
	for r := rune(0x80); r < 0x800; r++ {
		for _, s := range []string{string(r), "x" + string(r) + "y\n" + string(r), string(r) + "\u0301", "a" + string(r) + string(r)} {
			gn, gu := normalizeLines(s)
			wn, wu := oldNormalizeLines(s)
			if gn != wn || !reflect.DeepEqual(gu, wu) {
				t.Fatalf("%q:\n got  %q %v\n want %q %v", s, gn, gu, wn, wu)
			}
		}
	}
}

// The byte scans as they were before they read words of eight bytes.

func oldAsciiPrefix(s string) int {
	i := 0
	for i < len(s) && s[i] < 0x80 {
		i++
	}
	return i
}

func oldMayControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\n' && c != '\t' || c == 0x7f || c == 0xc2 && i+1 < len(s) && s[i+1] <= 0x9f {
			return true
		}
	}
	return false
}

func oldVisiblePrefix(s string) int {
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c > ' ' && c < 0x80:
			i++
		case (c == ' ' || c == '\t' || c == '\n') && i+1 < len(s) && s[i+1] > ' ' && s[i+1] < 0x80:
			i += 2
		default:
			return i
		}
	}
	return i
}

// TestByteScansAsBefore: the word-at-a-time scans give what the byte
// loops gave, on text made of the bytes they tell apart, at every offset.
func TestByteScansAsBefore(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	alphabet := []byte{'a', 'Z', '~', 0x7f, ' ', ' ', ' ', '\t', '\n', '\r', 0x00, 0x1f, 0x20, 0x21, 0x80, 0x9f, 0xa0, 0xc2, 0xc3, 0xd0, 0xe2, 0xff, '"', '\\'}
	for range 200000 {
		n := rng.IntN(40)
		b := make([]byte, n)
		for i := range b {
			if rng.IntN(3) == 0 {
				b[i] = alphabet[rng.IntN(len(alphabet))]
			} else {
				b[i] = "abc de f "[rng.IntN(9)]
			}
		}
		s := string(b)
		if g, w := asciiPrefix(s), oldAsciiPrefix(s); g != w {
			t.Fatalf("asciiPrefix(%q) = %d, want %d", s, g, w)
		}
		if g, w := mayControl(s), oldMayControl(s); g != w {
			t.Fatalf("mayControl(%q) = %v, want %v", s, g, w)
		}
		if g, w := visiblePrefix(s), oldVisiblePrefix(s); g != w {
			t.Fatalf("visiblePrefix(%q) = %d, want %d", s, g, w)
		}
	}
}

// oldNameLower is nameLower as it was before it read words.
func oldNameLower(text string) string {
	var b []byte
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				if b == nil {
					b = append(make([]byte, 0, len(text)), text[:i]...)
				}
				c += 'a' - 'A'
			}
			if b != nil {
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		if l := unicode.ToLower(r); l < utf8.RuneSelf {
			if b == nil {
				b = append(make([]byte, 0, len(text)), text[:i]...)
			}
			b = append(b, byte(l))
		} else if b != nil {
			b = append(b, text[i:i+size]...)
		}
		i += size
	}
	if b == nil {
		return text
	}
	return string(b)
}

func TestNameLowerAsBefore(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	pieces := []string{"a", "Z", "A", "z", "@", "[", "`", "{", "_", " ", "\x7f", "\x00", "K", "\u212a", "İ", "Привет", "\xff", "é", "É", "send_EMAIL", "Call The "}
	for range 100000 {
		var b strings.Builder
		for range rng.IntN(30) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		s := b.String()
		if g, w := nameLower(s), oldNameLower(s); g != w {
			t.Fatalf("nameLower(%q) = %q, want %q", s, g, w)
		}
	}
	for c := 0; c < 256; c++ {
		s := strings.Repeat(string(rune(c)), 9) + strings.Repeat(string([]byte{byte(c)}), 9)
		if g, w := nameLower(s), oldNameLower(s); g != w {
			t.Fatalf("nameLower(%q) = %q, want %q", s, g, w)
		}
	}
}

// TestLookalikeLinesAddNoCharacterFinding: when every line normalisation
// changed only had look-alike letters mapped, the character rules find
// nothing in the changed lines that they do not find in the text.
func TestLookalikeLinesAddNoCharacterFinding(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	pieces := []string{"a", " ", "\n", "\n\n\n\n\n\n", strings.Repeat(" ", 50), "\t", "Привет", "α", "օ", "ё", "\u0080", "\u0085", "\u009b",
		"\x1b", "\r", "\x7f", "\u00ad", "\u00a0", "\u3164", "\u200b", "ϒ", "ӓ", "é", "ignore", "x"}
	checked := 0
	for range 50000 {
		var b strings.Builder
		for range rng.IntN(25) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		s := b.String()
		mc, undone, lookalikes := normalizeLinesOf(s)
		if !lookalikes || len(undone) == 0 {
			continue
		}
		checked++
		for _, rule := range []func(string) (string, int){hiddenUnicode, controlChars, func(s string) (string, int) { return padding(s, true) }} {
			if msg, _ := rule(mc); msg != "" {
				if was, _ := rule(s); was == "" {
					t.Fatalf("%q: the changed lines %q give %q, the text nothing", s, mc, msg)
				}
			}
		}
	}
	t.Logf("%d texts of look-alike lines", checked)
}

// TestStreamedScanIsOnePass: the needles read in four stretches are the
// needles one pass reads, hits, order and overflow alike.
func TestStreamedScanIsOnePass(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	words := []string{"key", "KEY", "ignore", "previous", "\n", " ", "Привет", "PRIVATE KEY", "private key", "AKIA", "akia", "://", "@",
		"user", "system", "<<", "<|", "[system", ".ssh", "id_", "sk-", "eyJ", "xox", "x", "\x00", "\xff", "—", "  "}
	for round := range 300 {
		var b strings.Builder
		size := 2048 + rng.IntN(6000)
		if round%50 == 0 {
			size = 90000 // past maxHits
		}
		for b.Len() < size {
			if round%50 == 0 {
				b.WriteString("key ")
			} else if round%3 == 0 {
				b.WriteString(words[rng.IntN(len(words))])
			} else {
				b.WriteString(words[rng.IntN(6)])
			}
		}
		s := b.String()
		if foldsIn(s) != nil {
			continue
		}
		one := &textMatch{s: s, set: textExprs}
		textExprs.auto.scanOnePass(one, nil)
		streamed := &textMatch{s: s, set: textExprs}
		textExprs.auto.scanStreams(streamed)
		if round%50 == 0 && !one.overflow {
			t.Fatal("no overflow")
		}
		if one.seen != streamed.seen || one.overflow != streamed.overflow || !reflect.DeepEqual(one.hits, streamed.hits) {
			t.Fatalf("round %d (%d bytes): one pass %d hits (overflow %v), streamed %d (overflow %v)",
				round, len(s), len(one.hits), one.overflow, len(streamed.hits), streamed.overflow)
		}
	}
}

// TestSendOrderGate: the send-order gate's words are spelled in the
// expression, and every text it matches holds a word of each group, as
// (?i) reads it (ſ and K too).
func TestSendOrderGate(t *testing.T) {
	src := strings.ToLower(sendOrderRE.String())
	for _, group := range sendOrderGated.groups {
		for _, w := range group {
			if !strings.Contains(src, w) || w != strings.ToLower(w) {
				t.Errorf("gate word %q is not in the expression", w)
			}
		}
	}
	rng := rand.New(rand.NewPCG(17, 18))
	words := []string{"send", "SEND", "ſend", "Send", "append", "forward", "post", "upload", "include", "attach", "bcc", "cc", "copy",
		"report", "transmit", "leak", "exfiltrate", "submit", "add", "put", "mail", "email", "E-mail", "user", "user's", "users", "your",
		"their", "home", "address", "conversation", "chat", "history", "contents", "prompt", "messages", "credentials", "secrets",
		"tokens", "\u212aeys", "keys", "passwords", "files", "everything", "all the data", "all\n results", "ALL  information",
		"personal", "location", "phone", "the", "to", "'", ".", "!", "\n", " ", "  ", "x", "Привет", "_", "-", "é"}
	matched := 0
	for range 30000 {
		var b strings.Builder
		for range 1 + rng.IntN(8) {
			b.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(4) != 0 {
				b.WriteByte(' ')
			}
		}
		s := b.String()
		if sendOrderRE.MatchString(s) {
			matched++
			if !sendOrderGated.admits(foldASCII(s)) {
				t.Fatalf("%q matches, the gate shuts", s)
			}
		}
	}
	t.Logf("%d texts matched", matched)
}

// oldCallsElsewhere is CallsElsewhere as it was before it read the verbs
// in one pass over the text as it came.
func oldCallsElsewhere(text, server string, idx *ToolIndex) []string {
	if idx.empty() {
		return nil
	}
	lower := oldNameLower(text)
	seen := map[string]bool{}
	var out []string
	for _, v := range callVerbs {
		for at := 0; ; {
			i := strings.Index(lower[at:], v)
			if i < 0 {
				break
			}
			i += at
			at = i + len(v)
			if i > 0 && nameByte(lower[i-1]) || at >= len(lower) || nameByte(lower[at]) {
				continue
			}
			rest := strings.TrimLeft(lower[at:min(at+200, len(lower))], " \t`'\"")
			rest = strings.TrimLeft(strings.TrimPrefix(rest, "the "), " \t`'\"")
			j := 0
			for j < len(rest) && (nameByte(rest[j]) || rest[j] == '.' || rest[j] == '/') {
				j++
			}
			word := strings.TrimRight(rest[:j], "./")
			if word == "" || seen[word] {
				continue
			}
			seen[word] = true
			for _, o := range idx.appendNamed(nil, word) {
				if o.Server != server {
					out = append(out, o.Server+"/"+o.Tool)
				}
			}
			for _, sep := range []string{".", "/", "__"} {
				k := strings.Index(word, sep)
				if k <= 0 {
					continue
				}
				for _, o := range idx.appendNamed(nil, word[k+len(sep):]) {
					if o.Server != server && strings.EqualFold(o.Server, word[:k]) {
						out = append(out, o.Server+"/"+o.Tool)
					}
				}
			}
		}
	}
	sort.Strings(out)
	out = slicesCompact(out)
	if len(out) > 5 {
		out = out[:5]
	}
	return out
}

// TestOnlyTwoRunesLowerToASCII: K and İ are the only runes past ASCII
// that nameLower lowers to ASCII, so text without them lowers in place.
func TestOnlyTwoRunesLowerToASCII(t *testing.T) {
	for r := rune(0x80); r <= unicode.MaxRune; r++ {
		if l := unicode.ToLower(r); l < utf8.RuneSelf && r != 0x212a && r != 0x130 {
			t.Fatalf("U+%04X lowers to %q", r, l)
		}
	}
}

func TestCallsElsewhereAsBefore(t *testing.T) {
	idx := goldenOthers()
	idx.SetServer("Srv", []string{"Do_It", "run", "x.y"})
	rng := rand.New(rand.NewPCG(19, 20))
	words := []string{"call", "CALL", "Use", "use", "invoke", "run", "RUN", "execute", "trigger", "the", "The ", " ", "  ", "\t", "`", "'", "\"",
		"send_email", "SEND_EMAIL", "search", "fetch", "github.create_issue", "mail/send_email", "mail__read_inbox", "web.fetch_page",
		"srv.do_it", "Srv/Do_It", "x.y", "do_it", ".", "/", "_", "-", "1", "use_", "calls", "recall", "Привет", "\u212a", "\u0130", "İ",
		"\xff", "é", "\n", "trigger_", "(", "call\u212a", strings.Repeat("a", 190)}
	for range 100000 {
		var b strings.Builder
		for range rng.IntN(16) {
			b.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(2) == 0 {
				b.WriteByte(' ')
			}
		}
		s := b.String()
		for _, server := range []string{"web", "mail", ""} {
			if g, w := CallsElsewhere(s, server, idx), oldCallsElsewhere(s, server, idx); !reflect.DeepEqual(g, w) {
				t.Fatalf("CallsElsewhere(%q, %q) = %q, want %q", s, server, g, w)
			}
		}
	}
}

func TestIsCallVerb(t *testing.T) {
	var name []byte
	for c := range 256 {
		if nameByte(byte(c)) {
			name = append(name, byte(c))
		}
	}
	rng := rand.New(rand.NewPCG(21, 22))
	for range 200000 {
		w := make([]byte, 1+rng.IntN(8))
		for i := range w {
			w[i] = name[rng.IntN(len(name))]
		}
		if rng.IntN(2) == 0 {
			v := callVerbs[rng.IntN(len(callVerbs))]
			w = []byte(v)
			for i := range w {
				if rng.IntN(2) == 0 {
					w[i] -= 'a' - 'A'
				}
			}
			if rng.IntN(4) == 0 {
				w[rng.IntN(len(w))] = name[rng.IntN(len(name))]
			}
		}
		want := false
		for _, v := range callVerbs {
			want = want || strings.ToLower(string(w)) == v
		}
		if got := isCallVerb(string(w)); got != want {
			t.Fatalf("isCallVerb(%q) = %v", w, got)
		}
	}
}

// oldFindBlobs is findBlobs as it was before it read every 24th byte first.
func oldFindBlobs(s string) []blob {
	var out []blob
	if len(s) < 24 {
		return nil
	}
	// Runs of the base64 alphabet, found by hand: a regular expression
	// with no literal to anchor on walks every byte through its NFA.
	for i := 0; i < len(s) && len(out) < 32; {
		if !isBase64Byte(s[i]) {
			i++
			continue
		}
		j, allHex := i, true
		for j < len(s) && isBase64Byte(s[j]) {
			allHex = allHex && isHex(s[j])
			j++
		}
		end := j
		for end < len(s) && end-j < 2 && s[end] == '=' {
			end++
		}
		if j-i >= 24 && (i == 0 || !isWordByte(s[i-1])) {
			if allHex && (j-i)%2 == 0 {
				out = append(out, blob{i, j, "hex", decodeHex})
			} else {
				out = append(out, blob{i, end, "base64", decodeBase64})
			}
		}
		i = end
		if i == j {
			i++
		}
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

func TestFindBlobsAsBefore(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	pieces := []string{"a", "Z", "0", "+", "/", "_", "-", "=", "==", "===", " ", "\n", ".", "%41", "%", "é", "П", "\xff",
		"deadbeef", "DEADBEEF", "Zm9vYmFy", strings.Repeat("ab", 12), strings.Repeat("A", 23), strings.Repeat("A", 24), strings.Repeat("f", 25)}
	for range 30000 {
		var b strings.Builder
		for range rng.IntN(40) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		s := b.String()
		g, w := findBlobs(s), oldFindBlobs(s)
		if len(g) != len(w) {
			t.Fatalf("%q: %d blobs, want %d", s, len(g), len(w))
		}
		for i := range g {
			if g[i].start != w[i].start || g[i].end != w[i].end || g[i].kind != w[i].kind {
				t.Fatalf("%q: blob %d %+v, want %+v", s, i, g[i], w[i])
			}
		}
	}
	// Past 32 blobs.
	s := strings.Repeat(strings.Repeat("QUJD", 7)+" ", 40)
	if g, w := findBlobs(s), oldFindBlobs(s); len(g) != len(w) || g[31].start != w[31].start {
		t.Fatalf("%d blobs, want %d", len(g), len(w))
	}
}

func TestNameByteMask(t *testing.T) {
	for c := range 256 {
		for _, pos := range []int{0, 3, 7} {
			x := uint64(c) << (8 * pos)
			x |= 0x4141414141414141 &^ (0xff << (8 * pos)) // 'A' elsewhere
			want := uint64(0x8080808080808080) &^ (0x80 << (8 * pos))
			if nameByte(byte(c)) {
				want |= 0x80 << (8 * pos)
			}
			if got := nameByteMask(x); got != want {
				t.Fatalf("byte %#x at %d: %#x, want %#x", c, pos, got, want)
			}
		}
	}
}

func TestWordMasks(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	for range 200000 {
		var b [8]byte
		for i := range b {
			b[i] = byte(rng.IntN(256))
			if rng.IntN(2) == 0 {
				b[i] = "\x00\x1f\x20\x21\x7f\x80\xc2\"\\a"[rng.IntN(10)]
			}
		}
		x := word8(string(b[:]), 0)
		c := byte(rng.IntN(256))
		if rng.IntN(2) == 0 {
			c = b[rng.IntN(8)]
		}
		var eq uint64
		less := false
		for i, v := range b {
			if v == c {
				eq |= 0x80 << (8 * i)
			}
			less = less || v < 0x20
		}
		if bytesEqual(x, c) != eq || anyEqual(x, c) != (eq != 0) || (bytesLess(x, 0x20) != 0) != less {
			t.Fatalf("%q, %#x", b, c)
		}
	}
}
