package signatures

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gowebpki/jcs"

	"github.com/rugwatch/rugwatch"
)

// Default limits; a server's tool listing is far below all of them.
const (
	DefaultMaxDepth       = 64
	DefaultMaxStringBytes = 1 << 20
	DefaultMaxBytes       = 16 << 20
)

// Limits bound the parser; zero fields take defaults (MaxDepth 64,
// MaxStringBytes 1<<20, MaxBytes 16<<20).
type Limits struct{ MaxDepth, MaxStringBytes, MaxBytes int }

func (l Limits) withDefaults() Limits {
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxStringBytes <= 0 {
		l.MaxStringBytes = DefaultMaxStringBytes
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	return l
}

// Reasons a HostileError carries.
const (
	ReasonDuplicateKey  = "duplicate key"
	ReasonInvalidUTF8   = "invalid UTF-8"
	ReasonLoneSurrogate = "lone surrogate escape"
	ReasonTooDeep       = "nesting too deep"
	ReasonStringTooLong = "string too long"
	ReasonTooLarge      = "document too large"
	ReasonTrailingData  = "trailing data"
	ReasonNotJSON       = "not JSON"
	ReasonNumberRange   = "number out of range"
	ReasonNotCanonical  = "rejected by canonicalizer"
)

// HostileError marks input rejected as hostile (duplicate key, invalid UTF-8,
// lone surrogate escape, too deep, string too long, trailing data, not JSON).
// Error() says which, with the JSON pointer path where known.
type HostileError struct {
	Reason string
	Path   string // RFC 6901 pointer; "" is the whole document
	// Detail is extra context from the parser, never a copy of the input
	// beyond what the path already names.
	Detail string
}

// maxErrorPath bounds how much of a hostile key reaches an error string.
const maxErrorPath = 200

func (e *HostileError) Error() string {
	var b strings.Builder
	b.WriteString("hostile JSON: ")
	b.WriteString(e.Reason)
	if e.Detail != "" {
		b.WriteString(" (")
		b.WriteString(e.Detail)
		b.WriteString(")")
	}
	if e.Path != "" {
		p := e.Path
		truncated := false
		if len(p) > maxErrorPath {
			p, truncated = p[:maxErrorPath], true
		}
		// %q keeps control and escape characters of a hostile key from
		// reaching a terminal or log line raw.
		fmt.Fprintf(&b, " at %q", p)
		if truncated {
			b.WriteString("…")
		}
	}
	return b.String()
}

// IsHostile reports whether err is, or wraps, a *HostileError.
func IsHostile(err error) bool {
	var h *HostileError
	return errors.As(err, &h)
}

// Canonical strictly parses raw JSON and returns its RFC 8785 (JCS) canonical
// form. Duplicate object keys at any depth, invalid UTF-8 (raw bytes) and
// escaped lone surrogates (\ud800 not followed by a low surrogate) are
// rejected with *HostileError, never hashed.
func Canonical(raw []byte, lim Limits) ([]byte, error) {
	// jcs itself refuses duplicate keys, invalid UTF-8, lone surrogates,
	// control characters in strings, out-of-range numbers and trailing
	// data, so valid input needs only the limits checked first: a byte
	// scan, several times cheaper than the tokenizer walk of validate. Only
	// input that fails takes the slow walk, which names the reason and the
	// JSON pointer. FuzzCanonical checks that both paths agree.
	if withinLimits(raw, lim) {
		if out, err := jcs.Transform(raw); err == nil {
			return out, nil
		}
	}
	if err := validate(raw, lim); err != nil {
		return nil, err
	}
	out, err := jcs.Transform(raw)
	if err != nil {
		// validate accepts a subset of what jcs accepts; reaching this is
		// a disagreement between the two parsers, so the input is refused.
		return nil, &HostileError{Reason: ReasonNotCanonical, Detail: err.Error()}
	}
	return out, nil
}

// DigestOf returns "sha256:<hex>" of canonical bytes (already canonical).
func DigestOf(canonical []byte) rugwatch.Digest {
	sum := sha256.Sum256(canonical)
	return rugwatch.Digest("sha256:" + hex.EncodeToString(sum[:]))
}

// Digest = Canonical + DigestOf.
func Digest(raw []byte, lim Limits) (rugwatch.Digest, []byte, error) {
	c, err := Canonical(raw, lim)
	if err != nil {
		return "", nil, err
	}
	return DigestOf(c), c, nil
}

// withinLimits reports whether raw stays within the size, depth, string
// and number limits, by one pass over its bytes. It does not check the
// grammar: jcs does, and anything odd falls back to validate.
func withinLimits(raw []byte, lim Limits) bool {
	lim = lim.withDefaults()
	if len(raw) > lim.MaxBytes {
		return false
	}
	depth := 0
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; c {
		case '{', '[':
			depth++
			if depth > lim.MaxDepth {
				return false
			}
		case '}', ']':
			depth--
		case '"':
			start := i + 1
			for i = start; i < len(raw) && raw[i] != '"'; i++ {
				if raw[i] == '\\' {
					i++
				}
			}
			if i-start > lim.MaxStringBytes {
				return false
			}
		case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			start := i
			for i < len(raw) && strings.IndexByte("+-.0123456789eE", raw[i]) >= 0 {
				i++
			}
			if i-start > lim.MaxStringBytes {
				return false
			}
			i--
		}
	}
	return true
}

// frame is one open object or array during validation.
type frame struct {
	object  bool
	path    string              // pointer of the container itself
	keys    map[string]struct{} // object: keys seen so far
	key     string              // object: key of the member being read
	wantKey bool                // object: next token is a key or '}'
	index   int                 // array: index of the next element
}

func (f *frame) childPath() string {
	if f.object {
		return f.path + "/" + escapePointer(f.key)
	}
	return f.path + "/" + strconv.Itoa(f.index)
}

// CheckMembers refuses JSON that two parsers could read two ways, as
// hostile: a duplicate member, or two member names of one object that are
// equal once case is folded (Go's encoding/json matches names without
// regard to case, last one winning; JavaScript's parsers take the exact
// name, first one winning), at any depth; invalid UTF-8 and lone
// surrogates; input over the limits. What passes reads the same to every
// parser that matches names exactly, and to those that fold case.
func CheckMembers(raw []byte, lim Limits) error {
	// The proxy checks every message a client sends: the tokenizer walk
	// costs some 150 allocations on a small request, most of a proxied
	// call's garbage. Input the byte scan of membersFast vouches for
	// needs no walk; anything it is unsure of takes the walk, which is
	// the authority and names the reason. FuzzCheckMembers checks that
	// the scan never passes what the walk refuses.
	if membersFast(raw, lim) {
		return nil
	}
	return walk(raw, lim, true)
}

// membersFast reports, without allocating, that CheckMembers' walk would
// pass raw: valid JSON and UTF-8 within the limits, no \uD800-\uDFFF escape
// anywhere (it cannot tell a pair from a lone half), member names of plain
// ASCII with no escapes and none equal to another of its object once case
// is folded, at most maxFastKeys members an object, and numbers with no
// exponent and short enough that they cannot leave a double's range.
// False means "not sure", never "hostile".
func membersFast(raw []byte, lim Limits) bool {
	lim = lim.withDefaults()
	if len(raw) > lim.MaxBytes || !utf8.Valid(raw) || !json.Valid(raw) {
		return false
	}
	var keyBuf [4 * maxFastKeys]span
	var frameBuf [64]int
	keys, frames := keyBuf[:0], frameBuf[:0] // frames: where each open container's keys start
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; c {
		case '{', '[':
			if len(frames) >= lim.MaxDepth {
				return false
			}
			frames = append(frames, len(keys))
		case '}':
			from := frames[len(frames)-1]
			frames = frames[:len(frames)-1]
			if !distinctFolded(raw, keys[from:]) {
				return false
			}
			keys = keys[:from]
		case ']':
			frames = frames[:len(frames)-1]
		case '"':
			start := i + 1
			escaped := false
			for i = start; raw[i] != '"'; i++ {
				if raw[i] == '\\' {
					escaped = true
					i++
					if raw[i] == 'u' && (raw[i+1] == 'd' || raw[i+1] == 'D') {
						return false // a surrogate half: the walk pairs them
					}
				}
			}
			if i-start > lim.MaxStringBytes {
				return false
			}
			// A string followed by ':' is a member name (json.Valid vouched
			// for the grammar).
			k := i + 1
			for k < len(raw) && (raw[k] == ' ' || raw[k] == '\t' || raw[k] == '\n' || raw[k] == '\r') {
				k++
			}
			if k < len(raw) && raw[k] == ':' {
				if escaped || !plainASCII(raw[start:i]) || len(keys)-frames[len(frames)-1] >= maxFastKeys {
					return false
				}
				keys = append(keys, span{start, i})
			}
		case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			start := i
			for i < len(raw) && strings.IndexByte("+-.0123456789eE", raw[i]) >= 0 {
				if raw[i] == 'e' || raw[i] == 'E' {
					return false // may overflow a double: the walk parses it
				}
				i++
			}
			if i-start > min(lim.MaxStringBytes, 300) {
				return false
			}
			i--
		}
	}
	return true
}

// maxFastKeys bounds the members of one object membersFast compares pair
// by pair; a larger object takes the walk.
const maxFastKeys = 32

// span is a member name's bytes in raw, quotes excluded.
type span struct{ from, to int }

func plainASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// distinctFolded reports whether no two names are equal with ASCII case
// folded (foldName on plain ASCII).
func distinctFolded(raw []byte, keys []span) bool {
	for a := 0; a < len(keys); a++ {
		ka := raw[keys[a].from:keys[a].to]
		for b := a + 1; b < len(keys); b++ {
			if kb := raw[keys[b].from:keys[b].to]; len(ka) == len(kb) && bytes.EqualFold(ka, kb) {
				return false
			}
		}
	}
	return true
}

// validate is CheckMembers with exact member names only.
func validate(raw []byte, lim Limits) error {
	return walk(raw, lim, false)
}

// foldName is a member name with case folded the way a case-insensitive
// decoder folds it, Kelvin sign and long s included.
func foldName(s string) string {
	return strings.ToLower(strings.ToUpper(s))
}

// walk walks raw with encoding/json's tokenizer, which checks the
// grammar, while this function checks what the tokenizer forgives:
// duplicate keys (case-folded with fold), invalid UTF-8 and lone
// surrogates (both silently turned into U+FFFD by encoding/json), and the
// limits.
func walk(raw []byte, lim Limits, fold bool) error {
	lim = lim.withDefaults()
	if len(raw) > lim.MaxBytes {
		return &HostileError{Reason: ReasonTooLarge, Detail: fmt.Sprintf("%d bytes, limit %d", len(raw), lim.MaxBytes)}
	}

	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()

	var stack []*frame
	done := false
	var prev int64
	for {
		tok, err := dec.Token()
		start, end := prev, dec.InputOffset()
		prev = end
		if err == io.EOF {
			if done {
				break
			}
			return &HostileError{Reason: ReasonNotJSON, Detail: "unexpected end of input"}
		}
		if err != nil {
			if done {
				return &HostileError{Reason: ReasonTrailingData}
			}
			return &HostileError{Reason: ReasonNotJSON, Path: currentPath(stack), Detail: syntaxDetail(err)}
		}
		if done {
			return &HostileError{Reason: ReasonTrailingData}
		}

		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}

		// Closing delimiters end the current container.
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			done = advance(stack)
			continue
		}

		// An object member key.
		if top != nil && top.object && top.wantKey {
			key, _ := tok.(string) // the tokenizer allows only a string here
			path := top.path + "/" + escapePointer(key)
			if err := checkString(raw[start:end], lim, func() string { return path }); err != nil {
				return err
			}
			seen := key
			if fold {
				seen = foldName(key)
			}
			if _, dup := top.keys[seen]; dup {
				return &HostileError{Reason: ReasonDuplicateKey, Path: path}
			}
			top.keys[seen] = struct{}{}
			top.key = key
			top.wantKey = false
			continue
		}

		// A value: the document itself, an array element or a member value.
		pathOf := func() string {
			if top == nil {
				return ""
			}
			return top.childPath()
		}
		switch v := tok.(type) {
		case json.Delim: // '{' or '['
			if len(stack) >= lim.MaxDepth {
				return &HostileError{Reason: ReasonTooDeep, Path: pathOf(), Detail: fmt.Sprintf("limit %d", lim.MaxDepth)}
			}
			f := &frame{object: v == '{', path: pathOf()}
			if f.object {
				f.keys = make(map[string]struct{})
				f.wantKey = true
			}
			stack = append(stack, f)
			continue
		case string:
			if err := checkString(raw[start:end], lim, pathOf); err != nil {
				return err
			}
		case json.Number:
			if len(v) > lim.MaxStringBytes {
				return &HostileError{Reason: ReasonStringTooLong, Path: pathOf(), Detail: "number"}
			}
			// RFC 8785 numbers are IEEE 754 doubles; one that overflows
			// has no canonical form.
			if _, err := strconv.ParseFloat(string(v), 64); err != nil {
				return &HostileError{Reason: ReasonNumberRange, Path: pathOf()}
			}
		}
		done = advance(stack)
	}
	// Belt and braces: every string was checked above, and the tokenizer
	// rejects non-ASCII outside strings, but the cost is one linear pass.
	if !utf8.Valid(raw) {
		return &HostileError{Reason: ReasonInvalidUTF8}
	}
	return nil
}

// advance records that a value finished inside the top container and
// reports whether that value was the whole document.
func advance(stack []*frame) bool {
	if len(stack) == 0 {
		return true
	}
	top := stack[len(stack)-1]
	if top.object {
		top.wantKey = true
	} else {
		top.index++
	}
	return false
}

func currentPath(stack []*frame) string {
	if len(stack) == 0 {
		return ""
	}
	return stack[len(stack)-1].path
}

// syntaxDetail keeps the tokenizer's message, which names at most one
// offending character, and adds the byte offset.
func syntaxDetail(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s at byte %d", se.Error(), se.Offset)
	}
	return err.Error()
}

// checkString checks one raw string token: seg runs from the end of the
// previous token, so it may start with whitespace, ',' or ':'.
func checkString(seg []byte, lim Limits, path func() string) error {
	i := bytes.IndexByte(seg, '"')
	if i < 0 {
		return &HostileError{Reason: ReasonNotJSON, Path: path(), Detail: "string token not found"}
	}
	s := seg[i:]
	if len(s)-2 > lim.MaxStringBytes {
		return &HostileError{Reason: ReasonStringTooLong, Path: path(), Detail: fmt.Sprintf("%d bytes, limit %d", len(s)-2, lim.MaxStringBytes)}
	}
	fast := true
	for _, c := range s {
		if c == '\\' || c >= utf8.RuneSelf {
			fast = false
			break
		}
	}
	if fast {
		return nil
	}
	if !utf8.Valid(s) {
		return &HostileError{Reason: ReasonInvalidUTF8, Path: path()}
	}
	if loneSurrogate(s) {
		return &HostileError{Reason: ReasonLoneSurrogate, Path: path()}
	}
	return nil
}

// loneSurrogate reports whether the quoted JSON string s holds a \u escape
// of a surrogate that is not half of a high-low pair.
func loneSurrogate(s []byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			continue
		}
		i++
		if i >= len(s) || s[i] != 'u' {
			continue // a one-letter escape; the tokenizer checked it
		}
		r, ok := hex4(s, i+1)
		if !ok {
			return false // malformed, the tokenizer would have refused it
		}
		i += 4
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		case r >= 0xD800 && r <= 0xDBFF:
			if i+2 >= len(s) || s[i+1] != '\\' || s[i+2] != 'u' {
				return true
			}
			lo, ok := hex4(s, i+3)
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 6
		}
	}
	return false
}

func hex4(s []byte, at int) (rune, bool) {
	if at+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range s[at : at+4] {
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(v)
	}
	return r, true
}

// escapePointer escapes one RFC 6901 reference token.
func escapePointer(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}
