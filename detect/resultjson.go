package detect

import (
	"bytes"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Reading a result without decoding it into map[string]any: a result of
// 64 KiB of page text cost more to decode (every value materialised, the
// text unquoted rune by rune) than the rules cost to read it. The reader
// here validates the result as encoding/json's Decoder does and keeps
// only the strings the scanner reads; whatever it is not sure it reads
// exactly as the decoder would (structured content, an escaped or
// repeated key it looks at, deep nesting, anything invalid) sends the
// result to the full decode instead (TestResultScanGolden,
// TestReadResultAgreesWithDecode).

// resultText is one string of a result the scanner reads, in reading
// order.
type resultText struct {
	text, path string
	item       int  // the content item it is the text of
	resource   bool // the item's resource's text rather than its own
}

// maxFastDepth is the deepest nesting the reader follows; deeper results
// go to the full decode (whose limit, 10000, then applies).
const maxFastDepth = 512

type resultReader struct {
	s     []byte
	i     int
	depth int
	bad   bool // not read: the full decode decides
}

// readResult reads raw as ScanResult's decode would see it: the texts the
// scanner reads and isError. ok is false when the full decode must
// decide (it then also gives every verdict on invalid input).
func readResult(raw []byte) (texts []resultText, isError, ok bool) {
	r := &resultReader{s: raw}
	r.space()
	if r.i >= len(r.s) || r.s[r.i] != '{' {
		return nil, false, false
	}
	r.i++
	var seenContent, seenError bool
	r.members(func(key []byte) {
		switch string(key) {
		case "content":
			if seenContent {
				r.bad = true
				return
			}
			seenContent = true
			texts = r.content()
		case "isError":
			if seenError {
				r.bad = true
				return
			}
			seenError = true
			isError = r.literal("true")
			if !isError {
				r.value()
			}
		case "structuredContent":
			r.bad = true
		default:
			r.value()
		}
	})
	if r.bad {
		return nil, false, false
	}
	return texts, isError, true
}

// space skips JSON whitespace.
func (r *resultReader) space() {
	for r.i < len(r.s) {
		switch r.s[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// members reads the members of an object whose '{' was read, through
// its '}', calling member for each with the reader at its value, which
// member must read.
func (r *resultReader) members(member func(key []byte)) {
	r.space()
	if r.i < len(r.s) && r.s[r.i] == '}' {
		r.i++
		return
	}
	for !r.bad {
		r.space()
		if r.i >= len(r.s) || r.s[r.i] != '"' {
			r.bad = true
			return
		}
		key, escaped := r.stringToken()
		if r.bad {
			return
		}
		if escaped {
			// An escaped key may spell one looked at: the decoder
			// decides.
			r.bad = true
			return
		}
		r.space()
		if r.i >= len(r.s) || r.s[r.i] != ':' {
			r.bad = true
			return
		}
		r.i++
		r.space()
		member(key)
		if r.bad {
			return
		}
		r.space()
		if r.i >= len(r.s) {
			r.bad = true
			return
		}
		switch r.s[r.i] {
		case ',':
			r.i++
		case '}':
			r.i++
			return
		default:
			r.bad = true
			return
		}
	}
}

// elements reads the elements of an array whose '[' was read, through its
// ']', calling element with the reader at each, which it must read.
func (r *resultReader) elements(element func(n int)) {
	r.space()
	if r.i < len(r.s) && r.s[r.i] == ']' {
		r.i++
		return
	}
	for n := 0; !r.bad; n++ {
		r.space()
		element(n)
		if r.bad {
			return
		}
		r.space()
		if r.i >= len(r.s) {
			r.bad = true
			return
		}
		switch r.s[r.i] {
		case ',':
			r.i++
		case ']':
			r.i++
			return
		default:
			r.bad = true
			return
		}
	}
}

// content reads the content array (or any other value under the key) and
// returns the texts of its items.
func (r *resultReader) content() []resultText {
	if r.i >= len(r.s) || r.s[r.i] != '[' {
		r.value()
		return nil
	}
	r.i++
	r.depth++
	var texts []resultText
	r.elements(func(n int) {
		if r.i >= len(r.s) || r.s[r.i] != '{' {
			r.value()
			return
		}
		r.i++
		r.depth++
		var text, resource *resultText
		var seenText, seenResource bool
		r.members(func(key []byte) {
			switch string(key) {
			case "text":
				if seenText {
					r.bad = true
					return
				}
				seenText = true
				if s, ok := r.stringValue(); ok {
					text = &resultText{text: s, path: "/content/" + strconv.Itoa(n) + "/text", item: n}
				}
			case "resource":
				if seenResource {
					r.bad = true
					return
				}
				seenResource = true
				resource = r.resource(n)
			default:
				r.value()
			}
		})
		r.depth--
		// The item's own text first, then its resource's, whatever
		// their order in it.
		if text != nil {
			texts = append(texts, *text)
		}
		if resource != nil {
			texts = append(texts, *resource)
		}
	})
	r.depth--
	return texts
}

// resource reads an item's resource (or any other value under the key)
// and returns its text, nil when it has none.
func (r *resultReader) resource(n int) *resultText {
	if r.i >= len(r.s) || r.s[r.i] != '{' {
		r.value()
		return nil
	}
	r.i++
	r.depth++
	var text *resultText
	seen := false
	r.members(func(key []byte) {
		if string(key) != "text" {
			r.value()
			return
		}
		if seen {
			r.bad = true
			return
		}
		seen = true
		if s, ok := r.stringValue(); ok {
			text = &resultText{text: s, path: "/content/" + strconv.Itoa(n) + "/resource/text", item: n, resource: true}
		}
	})
	r.depth--
	return text
}

// stringValue reads a value, returning it when it is a string.
func (r *resultReader) stringValue() (string, bool) {
	if r.i >= len(r.s) || r.s[r.i] != '"' {
		r.value()
		return "", false
	}
	raw, escaped, invalid := r.stringTokenUTF8()
	if r.bad {
		return "", false
	}
	if !escaped {
		return string(raw), true
	}
	if !invalid {
		return unquoteValid(raw), true
	}
	s, ok := unquoteJSON(raw)
	if !ok {
		r.bad = true
		return "", false
	}
	return s, true
}

// literal reads word when the value is it.
func (r *resultReader) literal(word string) bool {
	if len(r.s)-r.i >= len(word) && string(r.s[r.i:r.i+len(word)]) == word {
		r.i += len(word)
		return true
	}
	return false
}

// value reads (validates) one value of any kind.
func (r *resultReader) value() {
	if r.i >= len(r.s) {
		r.bad = true
		return
	}
	switch c := r.s[r.i]; {
	case c == '"':
		r.stringToken()
	case c == '{':
		r.i++
		if r.depth++; r.depth > maxFastDepth {
			r.bad = true
			return
		}
		r.members(func([]byte) { r.value() })
		r.depth--
	case c == '[':
		r.i++
		if r.depth++; r.depth > maxFastDepth {
			r.bad = true
			return
		}
		r.elements(func(int) { r.value() })
		r.depth--
	case c == 't':
		r.bad = !r.literal("true")
	case c == 'f':
		r.bad = !r.literal("false")
	case c == 'n':
		r.bad = !r.literal("null")
	case c == '-' || '0' <= c && c <= '9':
		r.number()
	default:
		r.bad = true
	}
}

// number reads a JSON number.
func (r *resultReader) number() {
	s, i := r.s, r.i
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		j := i
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		return i - j
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		digits()
	default:
		r.bad = true
		return
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			r.bad = true
			return
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			r.bad = true
			return
		}
	}
	r.i = i
}

// stringSpecial marks the bytes a string's quick read stops at: the
// quote, a backslash, a control character, a byte past ASCII.
var stringSpecial = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c == '"' || c == '\\' || c < ' ' || c >= utf8.RuneSelf
	}
	return t
}()

// stringToken reads a string token, from its opening quote through its
// closing one, and returns its contents as they stand; escaped says they
// must be unquoted (escapes, or invalid UTF-8 the decoder replaces).
func (r *resultReader) stringToken() (raw []byte, escaped bool) {
	raw, escaped, _ = r.stringTokenUTF8()
	return raw, escaped
}

// stringTokenUTF8 is stringToken that also says whether the contents
// hold invalid UTF-8.
func (r *resultReader) stringTokenUTF8() (raw []byte, escaped, invalid bool) {
	s := r.s
	start := r.i + 1
	i := start
	for {
		// Eight plain bytes at a time: no quote, backslash, control
		// byte or byte past ASCII.
		for i+8 <= len(s) {
			x := wordBytes(s, i)
			if bytesLess(x, 0x20)|x&bytes80 != 0 || anyEqual(x, '"') || anyEqual(x, '\\') {
				break
			}
			i += 8
		}
		for i < len(s) && !stringSpecial[s[i]] {
			i++
		}
		if i >= len(s) {
			r.bad = true
			return nil, false, false
		}
		switch c := s[i]; {
		case c == '"':
			r.i = i + 1
			return s[start:i], escaped, invalid
		case c == '\\':
			escaped = true
			if i+1 >= len(s) {
				r.bad = true
				return nil, false, false
			}
			switch s[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(s) || !isHex(s[i+2]) || !isHex(s[i+3]) || !isHex(s[i+4]) || !isHex(s[i+5]) {
					r.bad = true
					return nil, false, false
				}
				i += 6
			default:
				r.bad = true
				return nil, false, false
			}
		case c < ' ':
			r.bad = true
			return nil, false, false
		default:
			rr, size := utf8.DecodeRune(s[i:])
			if rr == utf8.RuneError && size == 1 {
				escaped, invalid = true, true
			}
			i += size
		}
	}
}

// unquoteJSON is encoding/json's unquote of a string's contents (quotes
// off) that stringToken read: escapes undone, a lone surrogate and each
// byte of invalid UTF-8 as U+FFFD.
func unquoteJSON(s []byte) (string, bool) {
	b := make([]byte, 0, len(s)+2*utf8.UTFMax)
	for r := 0; r < len(s); {
		switch c := s[r]; {
		case c == '\\':
			r++
			if r >= len(s) {
				return "", false
			}
			switch s[r] {
			default:
				return "", false
			case '"', '\\', '/', '\'':
				b = append(b, s[r])
				r++
			case 'b':
				b = append(b, '\b')
				r++
			case 'f':
				b = append(b, '\f')
				r++
			case 'n':
				b = append(b, '\n')
				r++
			case 'r':
				b = append(b, '\r')
				r++
			case 't':
				b = append(b, '\t')
				r++
			case 'u':
				r--
				rr := getu4(s[r:])
				if rr < 0 {
					return "", false
				}
				r += 6
				if utf16.IsSurrogate(rr) {
					rr1 := getu4(s[r:])
					if dec := utf16.DecodeRune(rr, rr1); dec != unicode.ReplacementChar {
						r += 6
						b = utf8.AppendRune(b, dec)
						break
					}
					rr = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, rr)
			}
		case c == '"', c < ' ':
			return "", false
		case c < utf8.RuneSelf:
			// A run of plain ASCII at once.
			j := r + 1
			for j < len(s) && s[j] >= ' ' && s[j] < utf8.RuneSelf && s[j] != '\\' && s[j] != '"' {
				j++
			}
			b = append(b, s[r:j]...)
			r = j
		default:
			rr, size := utf8.DecodeRune(s[r:])
			r += size
			b = utf8.AppendRune(b, rr)
		}
	}
	return string(b), true
}

// unquoteValid is unquoteJSON of contents stringToken read and found
// valid UTF-8: the text between escapes is copied as it stands (the
// decoder's rune-by-rune copy of valid UTF-8 writes the same bytes).
func unquoteValid(s []byte) string {
	var b strings.Builder
	b.Grow(len(s))
	for {
		k := bytes.IndexByte(s, '\\')
		if k < 0 {
			b.Write(s)
			return b.String()
		}
		b.Write(s[:k])
		s = s[k:]
		// stringToken checked the escape.
		switch c := s[1]; c {
		case 'u':
			rr := getu4(s)
			s = s[6:]
			if utf16.IsSurrogate(rr) {
				rr1 := getu4(s)
				if dec := utf16.DecodeRune(rr, rr1); dec != unicode.ReplacementChar {
					s = s[6:]
					b.WriteRune(dec)
					break
				}
				rr = unicode.ReplacementChar
			}
			b.WriteRune(rr)
		default:
			b.WriteByte(unescape[c])
			s = s[2:]
		}
	}
}

// unescape is the byte of each one-letter escape.
var unescape = [256]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

// wordBytes is word8 of a byte slice.
func wordBytes(s []byte, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// getu4 decodes \uXXXX from the beginning of s, returning the hex value,
// or it returns -1 (as encoding/json's).
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c = c - '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}
